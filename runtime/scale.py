"""Scale normalisation and tiling: what lets a model trained on 565 px DRIVE images run on 1-4 k px
camera images.

The manifest records the FOV diameter the model was trained at; an input is resized so its FOV has
that diameter, segmented, and the probability map is resized back to the input's own size. Inputs
still larger than ``max_side`` (no FOV found, or ``rescale`` off) run in overlapping tiles, so memory
is bounded by the tile size, not the image size.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from .fov import fov_diameter

# Below this relative change resizing costs more detail than it gains.
MIN_CHANGE = 0.05


def scale_factor(fov_diameter: float, train_diameter: float | None) -> float:
    """Resize factor that brings an input's FOV to the training diameter (1.0 when unknown)."""
    if not train_diameter or fov_diameter <= 0:
        return 1.0
    f = float(train_diameter) / float(fov_diameter)
    return 1.0 if abs(f - 1.0) < MIN_CHANGE else f


def fov_scale(fov: np.ndarray, train_diameter: float | None) -> float:
    """Resize factor for an image with FOV mask ``fov`` (the runtime's rule, also emulated in validation)."""
    return scale_factor(fov_diameter(fov), train_diameter)


def resize_image(rgb: np.ndarray, factor: float) -> np.ndarray:
    if factor == 1.0:
        return rgb
    h, w = rgb.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    # INTER_AREA averages when shrinking (no aliasing of the fine vessel texture). Enlarging a
    # low-resolution capture, bicubic keeps thin vessels sharper than bilinear: small model, DRIVE test
    # at 0.5x, F1 0.7877 -> 0.7928 (Lanczos 0.7904), 0.75x 0.8051 -> 0.8067 (docs/findings/cameras.md).
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC)


def resize_prob(prob: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if prob.shape == tuple(shape):
        return prob
    h, w = shape
    interp = cv2.INTER_LINEAR if h >= prob.shape[0] else cv2.INTER_AREA
    return np.ascontiguousarray(cv2.resize(prob, (w, h), interpolation=interp), np.float32)


def tiles(length: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Along one axis: (read_start, read_end, keep_start, keep_end) with tiles of ``tile`` pixels that
    overlap by ``overlap``; each output pixel is kept from the tile where it is furthest from an edge."""
    if length <= tile:
        return [(0, length, 0, length)]
    step = tile - overlap
    starts = list(range(0, length - tile, step)) + [length - tile]
    out = []
    for i, s in enumerate(starts):
        keep_s = 0 if i == 0 else (s + (starts[i - 1] + tile)) // 2
        keep_e = length if i == len(starts) - 1 else (starts[i + 1] + s + tile) // 2
        out.append((s, s + tile, keep_s, keep_e))
    return out


def run_tiled(x: np.ndarray, run: Callable[[np.ndarray], np.ndarray], tile: int, overlap: int) -> np.ndarray:
    """CxHxW input (already padded to the network's multiple, tile a multiple too) -> HxW output of
    ``run`` (1xCxhxw -> 1x1xhxw) computed tile by tile."""
    _, h, w = x.shape
    out = np.empty((h, w), np.float32)
    for ys, ye, ks_y, ke_y in tiles(h, tile, overlap):
        for xs, xe, ks_x, ke_x in tiles(w, tile, overlap):
            p = run(np.ascontiguousarray(x[None, :, ys:ye, xs:xe]))[0, 0]
            out[ks_y:ke_y, ks_x:ke_x] = p[ks_y - ys : ke_y - ys, ks_x - xs : ke_x - xs]
    return out
