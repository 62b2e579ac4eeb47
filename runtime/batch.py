"""Folder-level prediction for the CLI: inputs -> <stem>_mask.png / _prob.png / _overlay.png.

A bad input is reported and skipped; the caller turns the failures into a non-zero exit."""
from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import FundusEdgeError, InputError
from .images import IMAGE_SUFFIXES, write_png


@dataclass(frozen=True)
class FileOutcome:
    input: Path
    outputs: tuple[Path, ...]
    error: str | None
    total_ms: float


def expand_inputs(inputs: list[str | Path]) -> list[Path]:
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InputError(f"{item}: no images in folder")
            files += found
        elif item.exists():
            files.append(item)
        else:
            raise InputError(f"{item}: no such file or folder")
    return files


def overlay(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = rgb.copy()
    green = np.array([0, 255, 0], np.float32)
    out[mask] = (0.45 * out[mask] + 0.55 * green).astype(np.uint8)
    return out


def predict_files(predictor, files: list[Path], out_dir: Path, save_prob: bool = False, save_overlay: bool = False, fov: str = "auto", force: bool = False, progress: bool = True) -> list[FileOutcome]:
    from tqdm import tqdm

    from .images import read_image

    out_dir.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for f in tqdm(files, desc="predict", unit="img", disable=not progress):
        targets = [out_dir / f"{f.stem}_mask.png"]
        if save_prob:
            targets.append(out_dir / f"{f.stem}_prob.png")
        if save_overlay:
            targets.append(out_dir / f"{f.stem}_overlay.png")
        try:
            existing = [t for t in targets if t.exists()]
            if existing and not force:
                raise InputError(f"{existing[0]}: exists (use --force to overwrite)")
            rgb = read_image(f)
            fmask = fov
            if fov not in ("auto", "none"):
                fmask = _match_fov(Path(fov), f) if Path(fov).is_dir() else Path(fov)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # reported below, one line per file
                res = predictor.predict(rgb, fov=fmask)
            if res.warning:
                tqdm.write(f"warning: {f}: {res.warning}", file=sys.stderr)
            write_png(targets[0], res.mask.astype(np.uint8) * 255)
            if save_prob:
                write_png(targets[1], np.clip(res.prob * 255.0 + 0.5, 0, 255).astype(np.uint8))
            if save_overlay:
                write_png(targets[-1], overlay(rgb, res.mask))
            outcomes.append(FileOutcome(f, tuple(targets), None, res.total_ms))
        except FundusEdgeError as exc:
            msg = str(exc) if str(f) in str(exc) else f"{f}: {exc}"
            tqdm.write(f"error: {msg}", file=sys.stderr)
            outcomes.append(FileOutcome(f, (), msg, 0.0))
    return outcomes


def _match_fov(folder: Path, image: Path) -> Path:
    """The FOV mask for ``image`` in ``folder``: same stem, or DRIVE's NN_test_mask.gif naming."""
    for p in sorted(folder.iterdir()):
        if p.stem == image.stem or p.stem == f"{image.stem}_mask":
            return p
    raise InputError(f"{image}: no FOV mask for it in {folder}")
