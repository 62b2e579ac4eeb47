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
    # Input shapes (the bench's static-against-dynamic rows). static_hw: the engine is built for one
    # network input, 1 x C x H x W; a smaller input is padded to it (as the Predictor pads, bottom/right)
    # and its output cropped back, a larger one refused. dynamic_shape: one compiled model for every input
    # size (OpenVINO; the others run dynamic shapes unless static_hw is given).
    static_hw: tuple[int, int] | None = None
    dynamic_shape: bool = False
    # The input size to build for at load, where an engine builds per shape (OpenVINO): the one the
    # Predictor expects first, so the first image does not pay for a compile. None: a small probe shape.
    first_hw: tuple[int, int] | None = None


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
        # the input shapes it was built for: "dynamic", "static per input size", "static HxW (batch 1)"
        self.shape = "dynamic"

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

    def _to_static(self, x: np.ndarray) -> np.ndarray:
        """``x`` padded to ``options.static_hw`` (reflect, bottom/right, like the Predictor's own padding)."""
        from ..errors import InputError

        h, w = self.options.static_hw
        n, _, xh, xw = x.shape
        if n != 1 or xh > h or xw > w:
            raise InputError(
                f"{self.name}: built for a static 1x{x.shape[1]}x{h}x{w} input, "
                f"got {'x'.join(map(str, x.shape))}"
            )
        if (xh, xw) == (h, w):
            return x
        mode = "reflect" if (h - xh < xh and w - xw < xw) else "edge"
        return np.pad(x, ((0, 0), (0, 0), (0, h - xh), (0, w - xw)), mode=mode)
