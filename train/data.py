"""Data-set readers: DRIVE as distributed, PaddleSeg file lists, and plain image/label folders.

Each reader yields ``Sample`` records (paths only); ``load_sample`` reads and checks one.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fundus_edge.runtime.errors import InputError, nearest
from fundus_edge.runtime.fov import estimate_fov
from fundus_edge.runtime.images import IMAGE_SUFFIXES, read_binary, read_image

LAYOUTS = ("auto", "drive", "filelist", "folders", "stare", "chase")
STARE_IMAGE = re.compile(r"im\d{4}\.ppm$", re.I)
STARE_LABEL = re.compile(r"(im\d{4})\.(ah|vk)\.p[pg]m$", re.I)  # the distribution has both
CHASE_IMAGE = re.compile(r"Image_\d{2}[LR]\.jpg$", re.I)


@dataclass(frozen=True)
class Sample:
    name: str
    image: Path
    label: Path | None
    fov: Path | None = None


@dataclass(frozen=True)
class LoadedSample:
    name: str
    rgb: np.ndarray  # HxWx3 uint8
    label: np.ndarray | None  # HxW bool
    fov: np.ndarray  # HxW bool


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _drive(root: Path, split: str) -> list[Sample]:
    sub = {"train": "training", "training": "training", "test": "test"}.get(split)
    if sub is None:
        raise InputError(f"{root}: unknown DRIVE split {split!r} (use train or test)")
    base = root / sub
    img_dir, lab_dir, fov_dir = base / "images", base / "1st_manual", base / "mask"
    if not img_dir.is_dir():
        raise InputError(f"{img_dir}: missing DRIVE images folder")
    images = _images_in(img_dir)
    if not images:
        raise InputError(f"{img_dir}: no images")
    samples = []
    for img in images:
        m = re.match(r"(\d+)_", img.name)
        if not m:
            raise InputError(f"{img}: not a DRIVE image name (NN_{sub}.tif)")
        num = m.group(1)
        label = lab_dir / f"{num}_manual1.gif"
        fov = fov_dir / f"{num}_{sub}_mask.gif"
        if not label.is_file():
            raise InputError(f"{img}: no label {label}")
        samples.append(Sample(num, img, label, fov if fov.is_file() else None))
    return samples


def _filelist(listfile: Path, root: Path | None) -> list[Sample]:
    root = root or listfile.parent
    samples = []
    for i, line in enumerate(listfile.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) not in (2, 3):
            raise InputError(f"{listfile}:{i}: expected 'image_path label_path [fov_path]', got {line!r}")
        paths = [p if Path(p).is_absolute() else root / p for p in map(Path, parts)]
        for p in paths:
            if not p.is_file():
                raise InputError(f"{listfile}:{i}: no such file {p}")
        samples.append(Sample(paths[0].stem, paths[0], paths[1], paths[2] if len(paths) == 3 else None))
    if not samples:
        raise InputError(f"{listfile}: no images listed")
    return samples


def _folders(root: Path) -> list[Sample]:
    """A site folder (images/ plus labels, optional FOV masks): read by measure.site, the one reader of
    site data, so STARE and DRIVE's split folders read as distributed."""
    from fundus_edge.measure.site import read_site

    return [Sample(s.name, s.image, s.label, s.fov) for s in read_site(root).images]


def _files(root: Path, pattern: re.Pattern) -> list[Path]:
    return sorted(
        (p for p in root.rglob("*") if p.is_file() and pattern.search(p.name)), key=lambda p: p.name
    )


def _stare(root: Path) -> list[Sample]:
    """STARE as distributed (once un-gzipped): im0001.ppm images and im0001.ah.pgm (Hoover, the first
    observer, used here) / im0001.vk.pgm or .ppm labels, in one folder or in sub-folders. No FOV masks: the
    FOV is estimated from each image."""
    labels = {}
    for p in _files(root, STARE_LABEL):
        stem, who = STARE_LABEL.search(p.name).groups()
        if who.lower() == "ah":
            labels[stem.lower()] = p
    images = _files(root, STARE_IMAGE)
    if not images:
        raise InputError(f"{root}: no STARE images (im0001.ppm ...)")
    missing = [p.name for p in images if p.stem.lower() not in labels]
    if missing:
        raise InputError(f"{root}: no .ah.pgm / .ah.ppm label for {', '.join(missing[:5])}")
    return [Sample(p.stem, p, labels[p.stem.lower()]) for p in images]


def _chase(root: Path) -> list[Sample]:
    """CHASE_DB1: Image_01L.jpg with Image_01L_1stHO.png (first observer, used here) and _2ndHO.png.
    No FOV masks: the FOV is estimated from each image."""
    images = _files(root, CHASE_IMAGE)
    if not images:
        raise InputError(f"{root}: no CHASE_DB1 images (Image_01L.jpg ...)")
    samples = []
    for p in images:
        lab = p.with_name(f"{p.stem}_1stHO.png")
        if not lab.is_file():
            raise InputError(f"{p}: no label {lab.name} beside it")
        samples.append(Sample(p.stem, p, lab))
    return samples


def detect_layout(path: Path) -> str:
    if path.is_file():
        return "filelist"
    if (path / "training" / "images").is_dir() or (path / "test" / "images").is_dir():
        return "drive"
    if (path / "images").is_dir():
        return "folders"
    names = [p.name for p in path.rglob("*") if p.is_file()]
    if any(STARE_LABEL.search(n) for n in names):
        return "stare"
    if any(CHASE_IMAGE.search(n) for n in names):
        return "chase"
    raise InputError(
        f"{path}: not a DRIVE, STARE or CHASE_DB1 folder, a file list or an images/ + labels/ folder"
    )


def discover(
    path: str | Path, split: str = "train", layout: str = "auto", root: str | Path | None = None
) -> list[Sample]:
    """List the samples of a data set. ``split`` only matters for DRIVE (train or test); STARE and
    CHASE_DB1 have no official split, so every image is returned."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if layout not in LAYOUTS:
        raise InputError(
            f"unknown layout {layout!r}{nearest(layout, LAYOUTS, 'fundus_edge.train.data.LAYOUTS')}"
        )
    layout = detect_layout(path) if layout == "auto" else layout
    if layout == "drive":
        return _drive(path, split)
    if layout == "filelist":
        return _filelist(path, Path(root) if root else None)
    if layout == "stare":
        return _stare(path)
    if layout == "chase":
        return _chase(path)
    return _folders(path)


def load_sample(s: Sample) -> LoadedSample:
    rgb = read_image(s.image)
    label = read_binary(s.label, "label") if s.label else None
    if label is not None and label.shape != rgb.shape[:2]:
        raise InputError(
            f"{s.label}: label is {label.shape[1]}x{label.shape[0]} "
            f"but image {s.image} is {rgb.shape[1]}x{rgb.shape[0]}"
        )
    if s.fov is not None:
        fov = read_binary(s.fov, "FOV mask")
        if fov.shape != rgb.shape[:2]:
            raise InputError(
                f"{s.fov}: FOV mask is {fov.shape[1]}x{fov.shape[0]} "
                f"but image {s.image} is {rgb.shape[1]}x{rgb.shape[0]}"
            )
    else:
        fov = estimate_fov(rgb)
    return LoadedSample(s.name, rgb, label, fov)


def split_train_val(
    samples: list[Sample], val_count: int = 4, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Fixed-seed split of the training images; the test split is never touched here."""
    if val_count < 0 or val_count >= len(samples):
        raise InputError(
            f"validation count {val_count} must be in [0, {len(samples) - 1}] for {len(samples)} images"
        )
    order = sorted(samples, key=lambda s: s.name)
    random.Random(seed).shuffle(order)
    val = sorted(order[:val_count], key=lambda s: s.name)
    train = sorted(order[val_count:], key=lambda s: s.name)
    return train, val


def model_training_split(model_dir: str | Path, data: str | Path) -> list[Sample]:
    """The training images (never validation, never test) of the split a model folder was trained on: its
    manifest's training config names the layout and the validation split (a folder without one: auto, 4,
    seed 0). Calibration of every INT8 quantizer and converter reads these."""
    from fundus_edge.runtime.manifest import read_manifest

    from .config import config_from_dict

    man = read_manifest(model_dir)
    src = man.source or {}
    cfg = config_from_dict(src["config"], f"{model_dir}/manifest.yaml") if "config" in src else None
    layout, val_count, seed = (
        ("auto", 4, 0) if cfg is None else (cfg.data.layout, cfg.data.val_count, cfg.data.split_seed)
    )
    train, _ = split_train_val(discover(data, split="train", layout=layout), val_count, seed)
    if not train:
        raise InputError(f"{data}: no training images for calibration")
    return train
