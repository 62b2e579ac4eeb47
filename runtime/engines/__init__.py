"""Engine registry over the one engine table (``table.ENGINE_TABLE``): adding an engine is one module here
and one row there.

Each engine module is imported only when that engine is asked for, so a device that has only ONNX
Runtime never imports Paddle or OpenVINO.
"""

from __future__ import annotations

import importlib
import importlib.util

from ..errors import EngineUnavailable, nearest
from .base import Engine, EngineOptions
from .table import ENGINE_TABLE, EngineSpec, auto_order, register


def __getattr__(name: str):
    # ENGINES and AUTO_ORDER are read from the table when asked, so an engine ``register``ed later shows.
    if name == "ENGINES":
        return {n: (e.module, e.import_name) for n, e in ENGINE_TABLE.items()}
    if name == "AUTO_ORDER":
        return tuple(auto_order())
    raise AttributeError(name)


def installed_engines() -> list[str]:
    return [n for n, e in ENGINE_TABLE.items() if importlib.util.find_spec(e.import_name) is not None]


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
    if name not in ENGINE_TABLE:
        raise EngineUnavailable(f"unknown engine {name!r}{nearest(name, ENGINE_TABLE)}")
    e = ENGINE_TABLE[name]
    if importlib.util.find_spec(e.import_name) is None:
        have = ", ".join(installed_engines()) or "none"
        raise EngineUnavailable(
            f"engine {name!r} is not installed (pip install {e.pip}); installed engines: {have}"
        )
    # A module path with a dot names an engine outside this package (a plug-in, or a test's toy engine).
    module = e.module if "." in e.module else f"{__name__}.{e.module}"
    return importlib.import_module(module).ENGINE


__all__ = [
    "ENGINES",
    "ENGINE_TABLE",
    "AUTO_ORDER",
    "EngineSpec",
    "register",
    "Engine",
    "EngineOptions",
    "engine_class",
    "gpu_engines",
    "installed_engines",
]
