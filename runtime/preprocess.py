"""The one preprocessing function. Training, export checks and the deployed runtime all call it,
so a model always sees on the device exactly what it saw in training."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from .clahe import clahe
from .errors import InputError


@dataclass(frozen=True)
class PreprocessConfig:
    """How an RGB uint8 image becomes the network input (stored in every manifest)."""

    channels: str = "rgb+clahe_g"  # "rgb", "g", "clahe_g" or "rgb+clahe_g"
    clahe_clip: float = 2.0
    clahe_tiles: int = 8
    # x * scale + offset: [0, 255] -> [-1, 1]. One value for every channel, or one per channel (an imported
    # PaddleSeg model's Normalize: scale = 1 / (255 std), offset = -mean / std).
    scale: float | tuple[float, ...] = 1.0 / 127.5
    offset: float | tuple[float, ...] = -1.0

    @property
    def in_channels(self) -> int:
        return {"rgb": 3, "g": 1, "clahe_g": 1, "rgb+clahe_g": 4}[self.channels]

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessConfig:
        known = {
            k: (tuple(float(x) for x in d[k]) if isinstance(d[k], (list, tuple)) else d[k])
            for k in cls.__dataclass_fields__
            if k in d
        }
        cfg = cls(**known)
        if cfg.channels not in ("rgb", "g", "clahe_g", "rgb+clahe_g"):
            raise InputError(f"unknown preprocessing channels {cfg.channels!r}")
        for k in ("scale", "offset"):
            v = getattr(cfg, k)
            if isinstance(v, tuple) and len(v) != cfg.in_channels:
                raise InputError(f"preprocessing {k} has {len(v)} values for {cfg.in_channels} channels")
        return cfg

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


# Which CLAHE computes the green plane (issue 40). OpenCV's differs by architecture: the aarch64 wheel puts
# some pixels one grey level off the x86-64 one the models were trained with. runtime/clahe.py computes
# x86-64 OpenCV's output bit for bit in numpy on every CPU, but about 10x slower, so x86-64 keeps OpenCV
# (tests/test_arm.py checks the two agree there) and every other architecture runs the numpy one.
# FUNDUS_EDGE_CLAHE=opencv or numpy forces one (measurements; docs/deploy.md, "ARM64").
CLAHE_IMPL = os.environ.get("FUNDUS_EDGE_CLAHE") or (
    "opencv" if platform.machine().lower() in ("x86_64", "amd64") else "numpy"
)


def clahe_green(rgb: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    green = np.ascontiguousarray(rgb[..., 1])
    if CLAHE_IMPL not in ("opencv", "numpy"):
        raise InputError(f"FUNDUS_EDGE_CLAHE={CLAHE_IMPL!r}: not opencv or numpy")
    if CLAHE_IMPL == "numpy":
        return clahe(green, cfg.clahe_clip, cfg.clahe_tiles)
    op = cv2.createCLAHE(clipLimit=cfg.clahe_clip, tileGridSize=(cfg.clahe_tiles, cfg.clahe_tiles))
    return op.apply(green)


def preprocess(rgb: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """HxWx3 uint8 RGB -> CxHxW float32 network input."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(f"preprocess expects HxWx3 uint8 RGB, got {rgb.shape} {rgb.dtype}")
    if cfg.channels == "rgb":
        planes = [rgb[..., 0], rgb[..., 1], rgb[..., 2]]
    elif cfg.channels == "g":
        planes = [rgb[..., 1]]
    elif cfg.channels == "clahe_g":
        planes = [clahe_green(rgb, cfg)]
    else:
        planes = [rgb[..., 0], rgb[..., 1], rgb[..., 2], clahe_green(rgb, cfg)]
    x = np.stack(planes, axis=0).astype(np.float32)
    x *= np.asarray(cfg.scale, np.float32).reshape(-1, 1, 1)  # one value, or one per channel
    x += np.asarray(cfg.offset, np.float32).reshape(-1, 1, 1)
    return x


def pad_to_multiple(x: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Reflect-pad a CxHxW array at the bottom/right to a multiple; returns the array and (H, W)."""
    h, w = x.shape[-2:]
    ph = (-h) % multiple
    pw = (-w) % multiple
    if ph or pw:
        mode = "reflect" if (ph < h and pw < w) else "edge"
        x = np.pad(x, ((0, 0), (0, ph), (0, pw)), mode=mode)
    return x, (h, w)
