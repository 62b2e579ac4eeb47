"""OpenCV's CLAHE for 8-bit images (imgproc/src/clahe.cpp, 4.x and 5.0) in numpy, written by hand because
no library computes it the same on every architecture: the aarch64 opencv-python-headless wheel's CLAHE puts
some pixels one grey level off x86's (issue 40), which the model turns into probability differences of 0.08.
scikit-image's equalize_adapthist is another algorithm (its clip limit and tile interpolation differ).

Every step here is exact or one IEEE float32 operation at a time (numpy's ufuncs never fuse a multiply and an
add), so the result is the same bits on every CPU; on x86-64 it equals OpenCV's to the bit (tests/test_arm.py,
all DRIVE test images at full and half size). The steps follow OpenCV's: an image whose sides are not both
multiples of the tile grid is extended by reflection (OpenCV adds a whole tile on a side that already is
one: reproduced), each tile's 256-bin histogram is clipped at ``int(clip * tile_area / 256)`` (at least 1)
with the excess spread evenly and its remainder one by one at a fixed step, its cumulative sum times
``255 / tile_area`` rounded to the tile's lookup table, and each pixel interpolated bilinearly between the
four nearest tiles' tables in float32, rounded half to even.
"""

from __future__ import annotations

import cv2
import numpy as np

BINS = 256


def _tile_luts(ext: np.ndarray, tiles: int, th: int, tw: int, clip: float) -> np.ndarray:
    """The tiles' lookup tables, flat (tile-major, BINS each), as float32 (exact small integers)."""
    area = th * tw
    limit = max(int(clip * area / BINS), 1) if clip > 0 else 0
    per_tile = ext.reshape(tiles, th, tiles, tw).transpose(0, 2, 1, 3).reshape(tiles * tiles, area)
    offsets = np.arange(tiles * tiles, dtype=np.int64)[:, None] * BINS
    hist = np.bincount((offsets + per_tile).ravel(), minlength=tiles * tiles * BINS).reshape(-1, BINS)
    if limit > 0:
        excess = np.maximum(hist - limit, 0).sum(axis=1)
        hist = np.minimum(hist, limit) + (excess // BINS)[:, None]
        for t in np.nonzero(rest := excess % BINS)[0]:
            n = int(rest[t])
            hist[t, np.arange(0, BINS, max(BINS // n, 1))[:n]] += 1
    cum = np.cumsum(hist, axis=1).astype(np.float32) * np.float32((BINS - 1) / area)
    return np.clip(np.rint(cum), 0, 255).astype(np.float32).ravel()


def _axis(n: int, size: int, tiles: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel along one axis: the two nearest tiles and the weights of each (OpenCV's float32 steps)."""
    f = np.arange(n, dtype=np.float32) * (np.float32(1.0) / np.float32(size)) - np.float32(0.5)
    low = np.floor(f).astype(np.int32)
    w_high = f - low.astype(np.float32)
    return np.maximum(low, 0), np.minimum(low + 1, tiles - 1), np.float32(1.0) - w_high, w_high


def clahe(gray: np.ndarray, clip: float = 2.0, tiles: int = 8) -> np.ndarray:
    """HxW uint8 -> HxW uint8, as ``cv2.createCLAHE(clip, (tiles, tiles)).apply(gray)`` on x86-64."""
    src = np.ascontiguousarray(gray, np.uint8)
    rows, cols = src.shape
    if rows % tiles or cols % tiles:
        pad = (tiles - rows % tiles, tiles - cols % tiles)
        ext = cv2.copyMakeBorder(src, 0, pad[0], 0, pad[1], cv2.BORDER_REFLECT_101)
    else:
        ext = src
    th, tw = ext.shape[0] // tiles, ext.shape[1] // tiles
    lut = _tile_luts(ext, tiles, th, tw, clip)
    x1, x2, wx1, wx2 = _axis(cols, tw, tiles)
    y1, y2, wy1, wy2 = _axis(rows, th, tiles)
    i11 = src.astype(np.int32) + ((y1 * tiles * BINS)[:, None] + (x1 * BINS)[None, :])
    dx, dy = ((x2 - x1) * BINS)[None, :], ((y2 - y1) * tiles * BINS)[:, None]
    top = np.take(lut, i11) * wx1
    top += np.take(lut, i11 + dx) * wx2
    i11 += dy
    bottom = np.take(lut, i11) * wx1
    bottom += np.take(lut, i11 + dx) * wx2
    top *= wy1[:, None]
    bottom *= wy2[:, None]
    top += bottom
    return np.rint(top).astype(np.uint8)
