"""Field-of-view (FOV) estimation: the bright disc of the retina inside the black camera frame."""
from __future__ import annotations

import cv2
import numpy as np


def estimate_fov(rgb: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Return an HxW bool FOV mask estimated from the image.

    The frame around the retina is near black in every channel; the red channel is brightest inside
    the FOV, so threshold it (Otsu on a blurred copy, or a fixed level), keep the largest component
    and fill holes. Returns an all-True mask when no dark frame is found (a crop of the retina).
    """
    red = cv2.GaussianBlur(np.ascontiguousarray(rgb[..., 0]), (0, 0), 2)
    if threshold is None:
        level = max(10.0, min(40.0, float(cv2.threshold(red, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[0]) * 0.5))
    else:
        level = float(threshold)
    mask = (red > level).astype(np.uint8)
    if mask.mean() > 0.98 or mask.mean() < 0.02:
        return np.ones(red.shape, bool)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n > 1:
        biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        mask = (labels == biggest).astype(np.uint8)
    k = max(3, (min(mask.shape) // 100) | 1)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    return mask.astype(bool)


def fov_diameter(mask: np.ndarray) -> float:
    """Horizontal extent of the FOV in pixels (the width of its bounding box)."""
    cols = np.flatnonzero(mask.any(axis=0))
    return float(cols[-1] - cols[0] + 1) if cols.size else 0.0
