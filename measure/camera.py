"""What screening cameras do to an image: JPEG compression, exposure and gamma, colour casts, lower
resolution, blur, sensor noise, greyscale / red-free capture.

Two uses: random camera copies of the training images (``random_camera``, for robustness training) and
the named perturbations that ``fundus-edge evaluate --perturb`` scores a model under (``PERTURBATIONS``).
All functions take and return HxWx3 uint8 RGB.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np
from fundus_edge.runtime.errors import InputError


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


def gamma(rgb: np.ndarray, g: float) -> np.ndarray:
    lut = np.clip(255.0 * (np.arange(256) / 255.0) ** g + 0.5, 0, 255).astype(np.uint8)
    return cv2.LUT(rgb, lut)


def resize(rgb: np.ndarray, factor: float) -> np.ndarray:
    """The image as a camera of ``factor`` times the resolution would take it."""
    h, w = rgb.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC)


def greyscale(rgb: np.ndarray) -> np.ndarray:
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return np.repeat(g[..., None], 3, axis=2)


def blur(rgb: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(rgb, (0, 0), sigma)


def noise(rgb: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    n = rng.normal(0.0, sigma, rgb.shape).astype(np.float32)
    return np.clip(rgb.astype(np.float32) + n, 0, 255).astype(np.uint8)


def colour(rgb: np.ndarray, gains) -> np.ndarray:
    return np.clip(rgb.astype(np.float32) * np.asarray(gains, np.float32), 0, 255).astype(np.uint8)


# -- named perturbations for evaluation ------------------------------------------------------------
@dataclass(frozen=True)
class Perturbation:
    name: str
    kind: str  # jpeg | gamma | scale | grey
    value: float = 0.0

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        if self.kind == "jpeg":
            return jpeg(rgb, int(self.value))
        if self.kind == "gamma":
            return gamma(rgb, self.value)
        if self.kind == "scale":
            return resize(rgb, self.value)
        return greyscale(rgb)


# The ranges of the robustness issue: JPEG quality 30-90, gamma 0.6-1.6, scale 0.5x-2x, greyscale.
PERTURBATIONS = (
    "jpeg30",
    "jpeg50",
    "jpeg70",
    "jpeg90",
    "gamma0.6",
    "gamma0.8",
    "gamma1.25",
    "gamma1.6",
    "scale0.5",
    "scale0.75",
    "scale1.5",
    "scale2",
    "grey",
)


@dataclass(frozen=True)
class PerturbationChain:
    """Perturbations applied in order, e.g. ``scale2+jpeg30``: a camera of twice DRIVE's resolution
    that stores JPEG quality 30 (its blocks are then half as large against the vessels)."""

    name: str
    steps: tuple[Perturbation, ...]

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        for p in self.steps:
            rgb = p.apply(rgb)
        return rgb


def parse_perturbation(name: str) -> Perturbation | PerturbationChain:
    """``jpeg30``, ``gamma0.6``, ``scale2``, ``grey``, or a chain such as ``scale2+jpeg30`` -> a
    Perturbation (clear error otherwise)."""
    if "+" in name:
        steps = tuple(parse_perturbation(part) for part in name.split("+"))
        return PerturbationChain("+".join(p.name for p in steps), steps)
    if name in ("grey", "gray", "greyscale", "grayscale"):
        return Perturbation("grey", "grey")
    m = re.fullmatch(r"(jpeg|gamma|scale)([0-9]*\.?[0-9]+)", name)
    if not m:
        raise InputError(
            f"unknown perturbation {name!r}; use jpegQ (1-100), gammaG, scaleS or grey,"
            f" e.g. {', '.join(PERTURBATIONS[:4])}"
        )
    kind, value = m.group(1), float(m.group(2))
    if (kind == "jpeg" and not 1 <= value <= 100) or (kind != "jpeg" and not 0.05 <= value <= 8):
        raise InputError(f"perturbation {name!r}: value out of range")
    return Perturbation(name, kind, value)


# -- random camera copies for training -------------------------------------------------------------
def random_camera(
    rgb: np.ndarray, rng: np.random.Generator, jpeg_p: float = 0.6, jpeg_quality: tuple[int, int] = (20, 95)
) -> np.ndarray:
    """One random camera rendering of a training image (geometry unchanged, so labels still fit).

    Order follows the imaging chain: exposure and colour, optics and resolution, sensor noise,
    capture mode, then JPEG at the end as in the camera's encoder.
    """
    x = rgb
    if rng.random() < 0.6:
        x = gamma(x, float(np.exp(rng.uniform(np.log(0.5), np.log(1.8)))))
    if rng.random() < 0.3:
        x = colour(x, rng.uniform(0.8, 1.2, size=3))
    if rng.random() < 0.5:  # lower resolution, then back to this size: the runtime upsamples small FOVs
        f = rng.uniform(0.4, 0.9)
        h, w = x.shape[:2]
        x = cv2.resize(resize(x, f), (w, h), interpolation=cv2.INTER_CUBIC)
    elif rng.random() < 0.3:
        x = blur(x, rng.uniform(0.3, 1.2))
    if rng.random() < 0.3:
        x = noise(x, rng.uniform(1.0, 6.0), rng)
    if rng.random() < 0.2:
        x = greyscale(x)
    if rng.random() < jpeg_p:
        x = jpeg(x, int(rng.integers(jpeg_quality[0], jpeg_quality[1] + 1)))
    return x
