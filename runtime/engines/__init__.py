"""Engine registry. Adding an engine is one module here and one line in ``ENGINES``.

Each engine module is imported only when that engine is asked for, so a device that has only ONNX
Runtime never imports Paddle or OpenVINO.
"""

from __future__ import annotations

import importlib
import importlib.util

from ..errors import EngineUnavailable
from .base import Engine, EngineOptions

# engine name -> (module in this package, the Python package it needs). This order is the bench's and
# the model cards' (the first engine of a variant is the bench's reference for the others).
ENGINES: dict[str, tuple[str, str]] = {
    "onnxruntime": ("onnxruntime", "onnxruntime"),
    "openvino": ("openvino", "openvino"),
    "paddle": ("paddle", "paddle"),
    # LiteRT (ai-edge-litert): .tflite files made by fundus_edge.export.litert; a device needs it and numpy.
    "litert": ("litert", "ai_edge_litert"),
}
# "auto" picks the first installed engine that reads a format of the model, in this order.
AUTO_ORDER = ("openvino", "onnxruntime", "paddle", "litert")


def installed_engines() -> list[str]:
    return [name for name, (_, pkg) in ENGINES.items() if importlib.util.find_spec(pkg) is not None]


def gpu_engines(names: list[str] | tuple[str, ...] | None = None) -> list[str]:
    """The installed engines (of ``names``) that can run on a GPU here. An engine whose check
    fails (a broken CUDA install, say) is left out: its CPU rows still run."""
    out = []
    for name in names or installed_engines():
        try:
            if engine_class(name).has_gpu():
                out.append(name)
        except Exception:  # noqa: BLE001 - a failing probe means no GPU row, not a failed sweep
            pass
    return out


def engine_class(name: str) -> type[Engine]:
    if name not in ENGINES:
        raise EngineUnavailable(f"unknown engine {name!r}; known: {', '.join(ENGINES)}")
    module, pkg = ENGINES[name]
    if importlib.util.find_spec(pkg) is None:
        have = ", ".join(installed_engines()) or "none"
        raise EngineUnavailable(
            f"engine {name!r} is not installed (pip install {pkg}); installed engines: {have}"
        )
    return importlib.import_module(f"{__name__}.{module}").ENGINE


__all__ = [
    "ENGINES",
    "AUTO_ORDER",
    "Engine",
    "EngineOptions",
    "engine_class",
    "gpu_engines",
    "installed_engines",
]
