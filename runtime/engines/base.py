"""What every engine offers: load a model folder's format, run a NCHW float32 batch."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class EngineOptions:
    """Options common to every engine (engines may take more through their own subclass)."""

    device: str = "cpu"  # cpu | gpu
    threads: int | None = None  # None: the engine's default
    precision: str | None = None  # None: the model's own precision; "fp32", "bf16", "fp16"


class Engine:
    name = "base"

    def __init__(self, model_dir: Path, fmt: str, files: list[str], options: EngineOptions, quantized: bool):
        self.model_dir = Path(model_dir)
        self.format = fmt
        self.files = files
        self.options = options
        self.quantized = quantized
        self.device = "cpu"  # what was actually used, set by load()
        self.precision = "fp32"  # what actually runs, read back from the engine where it can say

    @staticmethod
    def has_gpu() -> bool:
        """Whether this engine, as installed, can run on a GPU here (imports the engine)."""
        return False

    def load(self) -> None:
        raise NotImplementedError

    def run(self, x: np.ndarray) -> np.ndarray:
        """N x C x H x W float32 -> N x 1 x H x W float32 probabilities."""
        raise NotImplementedError

    def versions(self) -> dict:
        return {}
