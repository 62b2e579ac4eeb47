__version__ = "0.1.0"

from pathlib import Path as _Path

# Training configs ship as package data, so they are found from an installed wheel too.
CONFIG_DIR = _Path(__file__).parent / "configs"
