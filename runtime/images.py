"""Image and label reading for every layout we support, plus colour-mode normalisation.

OpenCV reads TIFF/PNG/JPEG/PPM but not GIF (DRIVE's labels and masks), so GIF and anything OpenCV
refuses go through Pillow.

What an image may cost is capped before it is decoded: Pillow reads the header alone (``Image.open`` is
lazy), and an image that declares more than ``max_pixels`` is refused in one line (``ImageTooLarge``) before
a byte of pixels is allocated. A file whose header Pillow cannot read is checked again after decoding.

A JPEG much larger than the network needs is decoded reduced in its DCT (``read_decoded``): the cap still
applies to the size its header declares.
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError
from .limits import DEFAULT_MAX_PIXELS

try:  # our own one-line errors replace OpenCV's decoder chatter on broken files
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
except AttributeError:
    pass

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".gif", ".webp")


class ImageTooLarge(InputError):
    """An image with more pixels than the cap: refused before decoding (``serve`` answers 413)."""


def _megapixels(n: int) -> str:
    return f"{n / 1e6:.1f} MP"


def check_pixels(name: str, width: int, height: int, max_pixels: int | None, what: str = "declares") -> None:
    """Raise ImageTooLarge naming the file and its size when width x height is over ``max_pixels``."""
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLarge(
            f"{name}: {what} {width} x {height} pixels ({_megapixels(width * height)}), over the cap of"
            f" {_megapixels(max_pixels)} (--max-pixels)"
        )


def header_size(source, name: str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[int, int] | None:
    """(width, height) from the header alone, checked against ``max_pixels``; None when Pillow cannot
    identify the file (OpenCV may still decode it: ``read_raw`` checks its pixels after decoding).
    ``source``: a path or a binary file object."""
    head = header(source, name, max_pixels)
    return None if head is None else head[:2]


def header(source, name: str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[int, int, str] | None:
    """(width, height, Pillow's format name) from the header alone, checked against ``max_pixels``; None
    when Pillow cannot identify the file."""
    from PIL import Image

    fmt = ""
    try:
        with warnings.catch_warnings():
            # Pillow warns from 89 MP on and raises from 179 MP on (its decompression-bomb guard); our cap
            # is the limit that counts, so its warning is noise and its error becomes ours below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                (width, height), fmt = im.size, im.format or ""
    except Image.DecompressionBombError:
        # Pillow refuses in Image.open itself, before telling the size. Our cap is the limit that counts:
        # read the header again with Pillow's guard off (under a lock: it is a module global) to name the
        # declared size; nothing is decoded.
        width, height = _size_past_pillow_guard(source)
    except Exception:  # noqa: BLE001 - an unidentified or broken header: the decoder gives the error
        return None
    check_pixels(name, width, height, max_pixels)
    return width, height, fmt


_PILLOW_GUARD = threading.Lock()


def _size_past_pillow_guard(source) -> tuple[int, int]:
    from PIL import Image

    with _PILLOW_GUARD:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            if hasattr(source, "seek"):
                source.seek(0)
            with Image.open(source) as im:
                return im.size
        finally:
            Image.MAX_IMAGE_PIXELS = saved


# Formats whose OpenCV decoder reads every valid file: when it refuses one, the file is broken, and
# Pillow's more lenient reader is not asked.
_OPENCV_COMPLETE = ("PNG", "JPEG")


def _imdecode(path: Path, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray | None:
    """OpenCV's decode, its own assertion (e.g. CV_IO_MAX_IMAGE_PIXELS) turned into our one-line error."""
    data = np.fromfile(str(path), dtype=np.uint8)
    try:
        return cv2.imdecode(data, flags)
    except cv2.error as exc:
        reason = str(exc).strip().splitlines()[-1].split(") ", 1)[-1][:200]
        raise InputError(f"{path}: not a readable image (OpenCV: {reason})") from None


def read_raw(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The file's pixels as OpenCV gives them (BGR order); ``max_pixels`` caps width x height, checked on
    the header before decoding (None: no cap)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    header_size(path, str(path), max_pixels)
    arr = None
    if path.suffix.lower() != ".gif":
        arr = _imdecode(path)
    if arr is None:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                check_pixels(str(path), *im.size, max_pixels)
                if arr is None and im.format in _OPENCV_COMPLETE:
                    # OpenCV's libpng / libjpeg refused it; Pillow would pad a file cut short (one that lies
                    # about its size) with black and call it an image.
                    raise InputError(
                        f"{path}: not a readable image ({im.format} declares {im.size[0]} x {im.size[1]}"
                        " pixels, but its data is cut short or corrupt)"
                    )
                im.load()
                if im.mode == "P":
                    im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                elif im.mode not in ("L", "RGB", "RGBA", "I;16", "I", "F"):
                    im = im.convert("RGB")
                arr = np.array(im)
        except (
            UnidentifiedImageError,
            OSError,
            SyntaxError,
            ValueError,
            Image.DecompressionBombError,
        ) as exc:
            raise InputError(f"{path}: not a readable image ({exc.__class__.__name__}: {exc})") from None
        if arr.ndim == 3 and arr.shape[2] >= 3:
            # Pillow gives RGB(A); keep the OpenCV convention (BGR) for what we return.
            arr = np.ascontiguousarray(arr[..., [2, 1, 0] + ([3] if arr.shape[2] == 4 else [])])
    if arr.size == 0:
        raise InputError(f"{path}: image has no pixels")
    # A header Pillow could not read was not checked before decoding: check what was decoded.
    check_pixels(str(path), arr.shape[1], arr.shape[0], max_pixels, what="decodes to")
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


def read_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a colour fundus image as HxWx3 uint8 RGB (grey, RGBA and 16-bit files handled); one of more
    than ``max_pixels`` pixels is refused before decoding (ImageTooLarge)."""
    return to_rgb_uint8(read_raw(path, max_pixels), order="bgr", source=str(path))


# JPEG's DCT lets libjpeg decode at 1/2, 1/4 or 1/8 of the size for a fraction of the work (an 8 x 8 block
# becomes 4 x 4, 2 x 2 or one pixel without the inverse transform at full size): OpenCV's IMREAD_REDUCED_*.
# IGNORE_ORIENTATION: the full-size reader (IMREAD_UNCHANGED) ignores EXIF orientation too, so both sizes
# of one file have the same geometry.
_REDUCED = {
    2: cv2.IMREAD_REDUCED_COLOR_2 | cv2.IMREAD_IGNORE_ORIENTATION,
    4: cv2.IMREAD_REDUCED_COLOR_4 | cv2.IMREAD_IGNORE_ORIENTATION,
    8: cv2.IMREAD_REDUCED_COLOR_8 | cv2.IMREAD_IGNORE_ORIENTATION,
}


@dataclass(frozen=True)
class Decoded:
    """An image as read for the network: ``rgb`` is the file's pixels at 1/``reduction`` of its size
    (``full_hw``, the size the outputs are given at)."""

    rgb: np.ndarray
    reduction: int
    full_hw: tuple[int, int]


def _whole(rgb: np.ndarray) -> Decoded:
    return Decoded(rgb, 1, rgb.shape[:2])


def jpeg_reduction(side: float, need: float | None) -> int:
    """The largest DCT reduction (8, 4, 2; else 1) that keeps ``side`` pixels at or above ``need``."""
    if not need or need <= 0:
        return 1
    return next((k for k in sorted(_REDUCED, reverse=True) if side / k >= need), 1)


def read_decoded(
    path: str | os.PathLike,
    need: float | None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    side: float | None = None,
) -> Decoded:
    """Read an image for a network that needs its FOV ``need`` pixels across: a JPEG whose ``side``
    (the FOV's diameter when known, else the frame's shorter side: fundus cameras fill the frame's height
    with the retina) leaves room for it is decoded reduced in the DCT; any other file is read whole. The
    cap ``max_pixels`` applies to the declared (full) size, as in ``read_image``."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return _whole(read_image(path, max_pixels))
    head = header(path, str(path), max_pixels)
    k = 1 if head is None or head[2] != "JPEG" else jpeg_reduction(side or min(head[:2]), need)
    if k == 1:
        return _whole(read_image(path, max_pixels))
    arr = _imdecode(path, _REDUCED[k])
    if arr is None or arr.size == 0:  # a broken file: the full reader gives its one-line error
        return _whole(read_image(path, max_pixels))
    return Decoded(cv2.cvtColor(arr, cv2.COLOR_BGR2RGB), k, (head[1], head[0]))


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
