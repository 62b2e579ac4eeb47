"""Data-set readers: DRIVE as distributed, PaddleSeg file lists, and plain image/label folders.

Each reader yields ``Sample`` records (paths only); ``load_sample`` reads and checks one.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fundus_edge.runtime.errors import InputError
from fundus_edge.runtime.fov import estimate_fov
from fundus_edge.runtime.images import IMAGE_SUFFIXES, read_binary, read_image

LAYOUTS = ("auto", "drive", "filelist", "folders")


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
    img_dir = root / "images"
    lab_dir = next((root / d for d in ("labels", "annotations", "masks_vessel") if (root / d).is_dir()), None)
    fov_dir = next((root / d for d in ("fov", "mask", "masks") if (root / d).is_dir()), None)
    if not img_dir.is_dir() or lab_dir is None:
        raise InputError(f"{root}: expected images/ and labels/ folders")
    images = _images_in(img_dir)
    if not images:
        raise InputError(f"{img_dir}: no images")
    labels = {p.stem: p for p in _images_in(lab_dir)}
    fovs = {p.stem: p for p in _images_in(fov_dir)} if fov_dir else {}
    samples, unpaired = [], []
    for img in images:
        lab = labels.pop(img.stem, None)
        if lab is None:
            unpaired.append(img.name)
            continue
        samples.append(Sample(img.stem, img, lab, fovs.get(img.stem)))
    if unpaired:
        raise InputError(f"{img_dir}: no label in {lab_dir} for {', '.join(unpaired[:5])}")
    if labels:
        raise InputError(f"{lab_dir}: labels without an image: {', '.join(sorted(labels)[:5])}")
    return samples


def detect_layout(path: Path) -> str:
    if path.is_file():
        return "filelist"
    if (path / "training" / "images").is_dir() or (path / "test" / "images").is_dir():
        return "drive"
    if (path / "images").is_dir():
        return "folders"
    raise InputError(f"{path}: not a DRIVE folder, a file list or an images/ + labels/ folder")


def discover(path: str | Path, split: str = "train", layout: str = "auto", root: str | Path | None = None) -> list[Sample]:
    """List the samples of a data set. ``split`` only matters for DRIVE (train or test)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    layout = detect_layout(path) if layout == "auto" else layout
    if layout == "drive":
        return _drive(path, split)
    if layout == "filelist":
        return _filelist(path, Path(root) if root else None)
    return _folders(path)


def load_sample(s: Sample) -> LoadedSample:
    rgb = read_image(s.image)
    label = read_binary(s.label, "label") if s.label else None
    if label is not None and label.shape != rgb.shape[:2]:
        raise InputError(f"{s.label}: label is {label.shape[1]}x{label.shape[0]} but image {s.image} is {rgb.shape[1]}x{rgb.shape[0]}")
    if s.fov is not None:
        fov = read_binary(s.fov, "FOV mask")
        if fov.shape != rgb.shape[:2]:
            raise InputError(f"{s.fov}: FOV mask is {fov.shape[1]}x{fov.shape[0]} but image {s.image} is {rgb.shape[1]}x{rgb.shape[0]}")
    else:
        fov = estimate_fov(rgb)
    return LoadedSample(s.name, rgb, label, fov)


def split_train_val(samples: list[Sample], val_count: int = 4, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """Fixed-seed split of the training images; the test split is never touched here."""
    if val_count < 0 or val_count >= len(samples):
        raise InputError(f"validation count {val_count} must be in [0, {len(samples) - 1}] for {len(samples)} images")
    order = sorted(samples, key=lambda s: s.name)
    random.Random(seed).shuffle(order)
    val = sorted(order[:val_count], key=lambda s: s.name)
    train = sorted(order[val_count:], key=lambda s: s.name)
    return train, val
