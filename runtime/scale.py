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

from .errors import InputError, nearest
from .fov import fov_diameter

# Below this relative change resizing costs more detail than it gains.
MIN_CHANGE = 0.05


def scale_factor(fov_diameter: float, train_diameter: float | None) -> float:
    """Resize factor that brings an input's FOV to the training diameter (1.0 when unknown).

    Within MIN_CHANGE of an exact reduction 1/k (k = 1, 2, 3, ...) the factor is 1/k: a camera of k
    times DRIVE's resolution is then averaged over exact k x k blocks, the network sees the image the
    native camera would give, and a JPEG decoded at 1/2, 1/4 or 1/8 in its DCT (``images.read_decoded``)
    needs no further resize. An inexact factor (0.2495 for DRIVE test at 4x) resamples on a grid a
    fraction of a pixel off the native one."""
    if not train_diameter or fov_diameter <= 0:
        return 1.0
    f = float(train_diameter) / float(fov_diameter)
    k = max(1, round(1.0 / f))
    return 1.0 / k if abs(f * k - 1.0) < MIN_CHANGE else f


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


# How a network-scale probability map is brought to the input's size (ScaleOptions.upsample). Chosen on
# the 4x DRIVE stand-in, figures in docs/cameras.md ("High-resolution cameras").
UPSAMPLERS = ("linear", "cubic", "nearest", "guided", "mask")
DEFAULT_UPSAMPLE = "mask"


def check_upsampler(method: str) -> None:
    """A one-line InputError for a method not in UPSAMPLERS, naming the nearest ones."""
    if method not in UPSAMPLERS:
        tail = nearest(method, UPSAMPLERS, "fundus_edge.runtime.scale.UPSAMPLERS")
        raise InputError(f"unknown upsampling {method!r}{tail}")


def upsample_prob(
    prob: np.ndarray,
    shape: tuple[int, int],
    method: str = "linear",
    threshold: float | None = None,
    guide: np.ndarray | None = None,
) -> np.ndarray:
    """``prob`` (network scale) at ``shape`` (the input's size). "mask" needs the model's ``threshold``,
    "guided" the input image (``guide``, HxWx3 uint8 RGB at ``shape``); without it they are "linear".
    Shrinking always averages (INTER_AREA)."""
    if prob.shape == tuple(shape):
        return prob
    h, w = shape
    check_upsampler(method)
    if h < prob.shape[0] or method == "linear":
        return resize_prob(prob, shape)
    if method == "mask" and threshold is not None:
        return mask_upsample(prob, shape, threshold)
    if method == "guided" and guide is not None:
        return guided_upsample(prob, guide)
    interp = {"cubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}.get(method, cv2.INTER_LINEAR)
    return np.ascontiguousarray(cv2.resize(prob, (w, h), interpolation=interp), np.float32)


def upsample_box(
    prob: np.ndarray,
    shape: tuple[int, int],
    box: tuple[int, int, int, int] | None,
    method: str = "linear",
    threshold: float | None = None,
) -> np.ndarray:
    """``upsample_prob`` of a map that is zero outside ``box`` (top, bottom, left, right at its scale),
    enlarged within the box alone, straight into the full-size map: a 3:2 camera frame's FOV box is two
    thirds of it. The same values as the whole map's (to float rounding, ~1e-8) when both sides scale by
    one whole number; else, and for "cubic" and "guided", the whole map."""
    n_h, n_w = prob.shape
    s = shape[0] // n_h
    interp = {"linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST, "mask": cv2.INTER_LINEAR}.get(method)
    whole = box is None or shape[0] != s * n_h or shape[1] != s * n_w or s < 2
    if whole or interp is None or (method == "mask" and threshold is None):
        return upsample_prob(prob, shape, method, threshold)
    # A margin of 4 network pixels, all zero: "mask" marks the zero pixels next to the box as edges and
    # bilinear reads one more, so the crop's own border (replicated) meets zeros, as the whole map's would.
    top, bottom = max(0, box[0] - 4), min(n_h, box[1] + 4)
    left, right = max(0, box[2] - 4), min(n_w, box[3] + 4)
    crop = prob[top:bottom, left:right]
    if method == "mask":
        crop = _mask_edges(crop, threshold)
    out = np.zeros(shape, np.float32)
    view = out[top * s : bottom * s, left * s : right * s]
    cv2.resize(np.ascontiguousarray(crop), (view.shape[1], view.shape[0]), dst=view, interpolation=interp)
    return out


def mask_upsample(prob: np.ndarray, shape: tuple[int, int], threshold: float) -> np.ndarray:
    """A probability map whose threshold is the network-scale mask enlarged bilinearly: a vessel n network
    pixels wide comes out n x scale pixels wide, its corners rounded rather than blocks.

    Thresholding the bilinear probability widens masks (its ramp between a vessel pixel and a background
    pixel crosses the threshold off the pixel's edge, mostly outside it). Here the pixels on either side of
    the mask's edge first get values symmetric about the threshold (``_mask_edges``): in every network cell
    that the edge crosses, the bilinear map is then t + d (2 m - 1) with m the bilinear mask, so it crosses
    the threshold where the enlarged mask crosses 1/2, the network pixel's edge. Other cells keep the
    model's own probabilities, and one full-size bilinear resize does it all."""
    h, w = shape
    p = _mask_edges(prob, threshold)
    return np.ascontiguousarray(cv2.resize(p, (w, h), interpolation=cv2.INTER_LINEAR), np.float32)


def _mask_edges(prob: np.ndarray, threshold: float) -> np.ndarray:
    """``prob`` with the pixels on either side of its mask's edge (8-neighbours of the other class) set to
    t + d inside and t - d outside: d the median distance of those pixels from t, so the map keeps its
    contrast, kept inside [0, 1]."""
    inside = (prob >= threshold).view(np.uint8)
    k = np.ones((3, 3), np.uint8)
    edge = cv2.dilate(inside, k) != cv2.erode(inside, k)
    p = np.array(prob, np.float32)
    if edge.any():
        d = float(np.median(np.abs(prob[edge] - threshold)))
        d = min(max(d, 1e-3), 0.999 * threshold, 0.999 * (1.0 - threshold))
        p[edge] = np.where(inside[edge].view(bool), threshold + d, threshold - d)
    return p


def guided_upsample(prob: np.ndarray, guide: np.ndarray, radius: int = 1, eps: float = 1e-4) -> np.ndarray:
    """Fast guided filter (He and Sun 2015, arXiv:1505.00996): the probability is modelled as a local
    linear function of the full-size image's green channel (where vessels are darkest), the model's
    coefficients fitted on the network-scale grid and only they interpolated up, so edges follow the
    image rather than the bilinear ramp between network pixels.

    By hand because OpenCV's guided filter lives in contrib's ximgproc, which the headless wheel the
    runtime installs does not hold; it is a handful of box filters (``cv2.boxFilter``)."""
    h, w = guide.shape[:2]
    g = np.ascontiguousarray(guide[..., 1], np.float32) * (1.0 / 255.0)
    small = cv2.resize(g, (prob.shape[1], prob.shape[0]), interpolation=cv2.INTER_AREA)
    k = (2 * radius + 1, 2 * radius + 1)

    def box(x):
        return cv2.boxFilter(x, -1, k, borderType=cv2.BORDER_REFLECT)

    mean_i, mean_p = box(small), box(prob)
    cov = box(small * prob) - mean_i * mean_p
    var = box(small * small) - mean_i * mean_i
    a = cov / (var + eps)
    b = mean_p - a * mean_i
    a_up = cv2.resize(box(a), (w, h), interpolation=cv2.INTER_LINEAR)
    b_up = cv2.resize(box(b), (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(a_up * g + b_up, 0.0, 1.0, dtype=np.float32)


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
