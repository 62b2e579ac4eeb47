"""Image and label reading for every layout we support, plus colour-mode normalisation.

OpenCV reads TIFF/PNG/JPEG/PPM but not GIF (DRIVE's labels and masks), so GIF and anything OpenCV
refuses go through Pillow.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError

try:  # our own one-line errors replace OpenCV's decoder chatter on broken files
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
except AttributeError:
    pass

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".gif", ".webp")


def read_raw(path: str | os.PathLike) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    arr = None
    if path.suffix.lower() != ".gif":
        data = np.fromfile(str(path), dtype=np.uint8)
        arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if arr is None:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                im.load()
                if im.mode == "P":
                    im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                elif im.mode not in ("L", "RGB", "RGBA", "I;16", "I", "F"):
                    im = im.convert("RGB")
                arr = np.array(im)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise InputError(f"{path}: not a readable image ({exc.__class__.__name__}: {exc})") from None
        if arr.ndim == 3 and arr.shape[2] >= 3:
            # Pillow gives RGB(A); keep the OpenCV convention (BGR) for what we return.
            arr = np.ascontiguousarray(arr[..., [2, 1, 0] + ([3] if arr.shape[2] == 4 else [])])
    if arr.size == 0:
        raise InputError(f"{path}: image has no pixels")
    return arr


def to_rgb_uint8(arr: np.ndarray, order: str = "rgb", source: str = "image") -> np.ndarray:
    """Any array a user may hand us -> HxWx3 uint8 RGB.

    Greyscale is replicated, alpha dropped, 16-bit and float inputs scaled. ``order`` says whether a
    3/4-channel input is RGB or BGR.
    """
    if not isinstance(arr, np.ndarray):
        raise InputError(f"{source}: expected a numpy array, got {type(arr).__name__}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise InputError(f"{source}: unsupported image shape {arr.shape}")
    if arr.dtype == np.uint8:
        pass
    elif arr.dtype == np.uint16:
        arr = (arr.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        hi = 1.0 if float(np.nanmax(arr)) <= 1.0 else 255.0
        arr = np.clip(np.nan_to_num(arr) / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool:
        hi = 1 if arr.max() <= 1 else (255 if arr.max() <= 255 else 65535)
        arr = (arr.astype(np.float32) * (255.0 / hi) + 0.5).astype(np.uint8)
    else:
        raise InputError(f"{source}: unsupported pixel type {arr.dtype}")
    if arr.ndim == 2:
        return np.ascontiguousarray(np.repeat(arr[..., None], 3, axis=2))
    arr = arr[..., :3]
    if order.lower() == "bgr":
        arr = arr[..., ::-1]
    elif order.lower() != "rgb":
        raise InputError(f"{source}: channel order must be 'rgb' or 'bgr', got {order!r}")
    return np.ascontiguousarray(arr)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a colour fundus image as HxWx3 uint8 RGB (grey, RGBA and 16-bit files handled)."""
    return to_rgb_uint8(read_raw(path), order="bgr", source=str(path))


def read_binary(path: str | os.PathLike, what: str = "label") -> np.ndarray:
    """Read a label or FOV mask as HxW bool. Accepts 0/255, 0/1 and two-colour palettes."""
    arr = read_raw(path)
    if arr.ndim == 3:
        arr = arr[..., :3].max(axis=2)
    values = np.unique(arr)
    if values.size > 2:
        raise InputError(f"{path}: {what} has {values.size} distinct values; expected a binary image")
    if values.size == 1:
        return np.zeros(arr.shape, bool) if values[0] == 0 else np.ones(arr.shape, bool)
    return arr == values.max()


def encode_png(arr: np.ndarray, where: str = "image") -> bytes:
    """uint8 grey (HxW) or RGB (HxWx3) -> PNG bytes."""
    if arr.ndim == 3:
        arr = arr[..., ::-1]
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr))
    if not ok:
        raise InputError(f"{where}: could not encode PNG")
    return buf.tobytes()


def write_png(path: str | os.PathLike, arr: np.ndarray) -> None:
    """Write uint8 grey (HxW) or RGB (HxWx3) to PNG."""
    data = encode_png(arr, str(path))
    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        raise InputError(f"{path}: could not write image ({exc.strerror or exc})") from None
