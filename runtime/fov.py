"""Field of view (FOV): the bright disc of the retina inside the black camera frame, estimated from the
image or read from a mask file matched to the image by name (one rule for predict, biomarkers and sites)."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError
from .images import IMAGE_SUFFIXES


def estimate_fov(rgb: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Return an HxW bool FOV mask estimated from the image; all True when no dark frame is found
    (a crop of the retina) or no retina is seen."""
    m = find_fov(rgb, threshold)
    return np.ones(rgb.shape[:2], bool) if m is None else m


# Above this many pixels the FOV is found on a reduced copy: a 4000x3000 frame needs no full-size blur.
_FIND_MAX_SIDE = 1024


def find_fov(rgb: np.ndarray, threshold: float | None = None) -> np.ndarray | None:
    """HxW bool FOV mask, or None when the image shows no FOV (no dark frame, or no bright retina).

    The frame around the retina is near black in every channel; the red channel is brightest inside
    the FOV, so threshold it (Otsu on a blurred copy, or a fixed level), keep the largest component
    and fill holes.
    """
    h, w = rgb.shape[:2]
    if max(h, w) > _FIND_MAX_SIDE:
        f = _FIND_MAX_SIDE / max(h, w)
        # Nearest sampling: the blur below smooths it anyway, and averaging a 12 MP frame took 35-70 ms of
        # a 4000x3000 prediction for a diameter within 0.1 % of the sampled one (DRIVE test images at 2x, 5x).
        small = cv2.resize(
            np.ascontiguousarray(rgb),
            (max(1, round(w * f)), max(1, round(h * f))),
            interpolation=cv2.INTER_NEAREST,
        )
        m = find_fov(small, threshold)
        return (
            None
            if m is None
            else cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
        )
    red = cv2.GaussianBlur(np.ascontiguousarray(rgb[..., 0]), (0, 0), 2)
    if threshold is None:
        level = max(
            10.0, min(40.0, float(cv2.threshold(red, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[0]) * 0.5)
        )
    else:
        level = float(threshold)
    mask = (red > level).astype(np.uint8)
    if mask.mean() > 0.98 or mask.mean() < 0.02:
        return None
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n > 1:
        biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        mask = (labels == biggest).astype(np.uint8)
    k = max(3, (min(mask.shape) // 100) | 1)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    return mask.astype(bool)


def fov_diameter(mask: np.ndarray) -> float:
    """FOV diameter in pixels: the longer side of its bounding box (cameras often cut the disc at the
    top and bottom, rarely at both sides)."""
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    if not cols.size:
        return 0.0
    return float(max(cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1))


# Why by hand: pairing a data set's files by name is a convention of each data set (DRIVE's 01_test /
# 01_test_mask / 01_manual1, STARE's im0001 / im0001.ah), not something a library knows.
SEPARATORS = "._- "
_LEADING_NUMBER = re.compile(r"^(\d+)(?=[._\- ]|$)")


def match_key(image_stem: str, other_stem: str) -> bool:
    """Does ``other_stem`` (a label's or mask's) belong to the image ``image_stem``? Same stem; or the
    image's stem then a separator (im0001 / im0001.ah); or the same leading number (21_training /
    21_manual1 / 21_training_mask). Case is ignored."""
    a, b = image_stem.lower(), other_stem.lower()
    if a == b or (b.startswith(a) and b[len(a)] in SEPARATORS):
        return True
    na, nb = _LEADING_NUMBER.match(a), _LEADING_NUMBER.match(b)
    return bool(na and nb and na.group(1) == nb.group(1))


def match_fov_file(folder: Path, image: Path, stem: str | None = None) -> Path:
    """The FOV mask file of ``image`` (named by ``stem``, default its own) among the image files of
    ``folder``: one whose stem is the image's or the image's + ``_mask`` (DRIVE: 01_test -> 01_test_mask.gif),
    else the one file that ``match_key`` pairs with it (01_manual1 -> 01_test_mask.gif). None found, or two
    by the second rule, is an error naming ``image``."""
    stem = (image.stem if stem is None else stem).lower()
    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    own = [p for p in files if p.stem.lower() in (stem, f"{stem}_mask")]
    if own:
        return own[0]
    paired = [p for p in files if match_key(stem, p.stem)]
    if len(paired) == 1:
        return paired[0]
    raise InputError(
        f"{image}: no FOV mask for it in {folder}"
        + (f" ({len(paired)} files could be it: {', '.join(p.name for p in paired[:4])})" if paired else "")
    )
