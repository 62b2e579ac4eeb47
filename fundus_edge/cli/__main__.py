"""``python -m fundus_edge.cli``: the same command as ``fundus-edge`` (bench cells, arm_check, loadtest)."""

import sys

from fundus_edge.cli import main

sys.exit(main())
