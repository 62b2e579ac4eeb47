"""Where the shipped models are: the model folder predict and serve run when none is given, the folder
bench and pack read."""

from __future__ import annotations

from pathlib import Path

from fundus_edge.runtime.errors import FundusEdgeError
from fundus_edge.runtime.manifest import is_model_dir


def shipped_models(given: str | None = None) -> Path:
    """The folder that holds the shipped models (default/, small/, ...): --models, else ./models, else the
    source checkout's models/ (an editable install). Model weights are not package data: a wheel stays
    small and a device ships the one model folder it runs."""
    # fundus_edge/cli/models.py: parents[2] is the source checkout's root
    cands = [Path(given)] if given else [Path("models"), Path(__file__).resolve().parents[2] / "models"]
    for c in cands:
        if is_model_dir(c / "default"):
            return c
    where = given or "./models"
    raise FundusEdgeError(
        f"{where}: no shipped models here (no default/manifest.yaml); give --models DIR or a model folder"
    )


# What predict and serve run when no model folder is given: s2d-fast scores higher than `default` on DRIVE
# test (0.8232 against 0.8223) and under every camera perturbation, at a quarter of its bf16 latency.
PREDICT_MODEL = "s2d-fast"


def default_model_dir(models: str | None = None) -> Path:
    """PREDICT_MODEL among the shipped models (``default`` where a models folder predates it)."""
    root = shipped_models(models)
    return root / PREDICT_MODEL if is_model_dir(root / PREDICT_MODEL) else root / "default"


def shipped_or_here() -> Path:
    """The shipped models' folder when there is one, else ./models (pack may be given a model folder
    instead)."""
    try:
        return shipped_models()
    except FundusEdgeError:
        return Path("models")
