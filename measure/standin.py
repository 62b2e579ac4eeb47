"""Stand-ins for high-resolution cameras: a labelled site folder enlarged by an integer factor.

No public fundus set has 8-24 MP images with vessel labels, so a larger camera is imitated: each image
is enlarged bicubically (``camera.resize``), optionally blurred as a camera's optics would (Gaussian,
sigma in output pixels) and stored as JPEG; its labels, second observer and FOV mask are enlarged by
nearest sampling, so they stay binary and every label pixel becomes a block of ``scale`` x ``scale``.
A stand-in has no detail the source lacked and blocky labels, which a real camera's labels would not:
it measures what the scale change costs (decoding, resizing down and back up), not a camera.

``python -m fundus_edge.measure.standin --data DRIVE --scale 4 [--blur S --jpeg Q] --out build/standin/x4``
writes ``images/`` (PNG, or JPEG with ``--jpeg``), ``1st_manual/``, ``2nd_manual/`` and ``mask/`` (PNG)
named by each image's stem, which ``measure.site`` and ``fundus-edge evaluate --data`` read back.
Stand-ins belong under ``build/`` (git-ignored): they are copies of data sets with their own terms.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from fundus_edge.runtime.errors import InputError
from fundus_edge.runtime.images import read_binary, read_image, write_png

from .camera import blur, resize
from .site import read_site

# Sub-folder names written, one per role; measure.site reads each back by these names.
OUT_FOLDERS = {"label": "1st_manual", "second": "2nd_manual", "fov": "mask"}


@dataclass(frozen=True)
class StandIn:
    """How a stand-in is made from its source."""

    scale: int  # integer enlargement (labels stay exact blocks)
    blur: float = 0.0  # Gaussian sigma in output pixels after enlarging (0: none)
    jpeg: int | None = None  # JPEG quality of the stored image (None: PNG, lossless)

    def __post_init__(self):
        if not 1 <= self.scale <= 16:
            raise InputError(f"--scale {self.scale}: use an integer from 1 to 16")
        if self.blur < 0:
            raise InputError(f"--blur {self.blur}: a sigma is not negative")
        if self.jpeg is not None and not 1 <= self.jpeg <= 100:
            raise InputError(f"--jpeg {self.jpeg}: quality is 1 to 100")

    def image(self, rgb: np.ndarray) -> np.ndarray:
        x = resize(rgb, float(self.scale)) if self.scale != 1 else rgb
        return blur(x, self.blur) if self.blur > 0 else x

    def binary(self, mask: np.ndarray) -> np.ndarray:
        """A label or FOV mask enlarged by nearest sampling, as uint8 0/255."""
        m = mask.astype(np.uint8) * 255
        return np.repeat(np.repeat(m, self.scale, axis=0), self.scale, axis=1)


def _write_image(path: Path, rgb: np.ndarray, quality: int | None) -> None:
    if quality is None:
        write_png(path, rgb)
        return
    ok = cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise InputError(f"{path}: could not write JPEG")


def make_standin(
    data: str | Path, out: str | Path, how: StandIn, split: str | None = None, force=False
) -> int:
    """Write the stand-in of the site folder ``data`` (DRIVE's root with ``split``, STARE, any site
    folder) into ``out``; returns the number of images. An existing ``out`` is refused without ``force``."""
    site = read_site(data, split)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise InputError(f"{out}: exists and is not empty (--force to write over it)")
    (out / "images").mkdir(parents=True, exist_ok=True)
    suffix = ".png" if how.jpeg is None else ".jpg"
    for s in site.images:
        _write_image(out / "images" / f"{s.name}{suffix}", how.image(read_image(s.image)), how.jpeg)
        for role, folder in OUT_FOLDERS.items():
            src = getattr(s, role)
            if src is None:
                continue
            (out / folder).mkdir(exist_ok=True)
            write_png(out / folder / f"{s.name}.png", how.binary(read_binary(src, role)))
    return len(site.images)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m fundus_edge.measure.standin", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--data", required=True, help="a site folder: DRIVE's root (with --split), STARE, ...")
    ap.add_argument(
        "--split", default=None, help="DRIVE's split when --data is its root: test (default) or train"
    )
    ap.add_argument("--scale", type=int, required=True, help="integer enlargement, e.g. 2 or 4")
    ap.add_argument(
        "--blur", type=float, default=0.0, help="camera-like Gaussian blur, sigma in output pixels"
    )
    ap.add_argument("--jpeg", type=int, default=None, help="store images as JPEG of this quality")
    ap.add_argument("--out", required=True, help="the stand-in folder (under build/)")
    ap.add_argument("--force", action="store_true", help="write into an existing, non-empty --out")
    a = ap.parse_args(argv)
    try:
        n = make_standin(a.data, a.out, StandIn(a.scale, a.blur, a.jpeg), a.split, a.force)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{a.out}: {n} images at {a.scale}x"
        + (f", blur {a.blur}" if a.blur else "")
        + (f", JPEG {a.jpeg}" if a.jpeg else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
