"""``python -m fundus_edge.modelcard ...`` (the Makefile's card targets)."""

from fundus_edge.modelcard.write import main

raise SystemExit(main())
