"""Biomarkers of mask files: ``fundus-edge biomarkers MASKS_DIR`` (masks made elsewhere, e.g. manual
labels) and ``predict --biomarkers`` (<stem>_biomarkers.json beside each mask, rows in biomarkers.csv)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fundus_edge.runtime.errors import FundusEdgeError, InputError, one_line
from fundus_edge.runtime.fov import match_fov_file as match_fov_in
from fundus_edge.runtime.images import IMAGE_SUFFIXES, read_binary

from .biomarkers import NAMES, Biomarkers, compute_biomarkers

CSV_NAME = "biomarkers.csv"
# file: the mask's (or predicted image's) name; fov: where the FOV came from (a file, "estimated" by
# predict, or "frame" when none was given: densities are then per frame area).
COLUMNS = ("file", "fov", "fov_area_px", "fov_diameter_px", "segments", *NAMES)


@dataclass(frozen=True)
class BiomarkerRow:
    file: str
    fov: str
    values: Biomarkers

    def to_dict(self) -> dict:
        return {"file": self.file, "fov": self.fov, **self.values.to_dict()}


def _compute(where: Path, mask: np.ndarray, fov: np.ndarray | None) -> Biomarkers:
    """Our errors name the file; anything a library raises becomes one line that does too."""
    try:
        return compute_biomarkers(mask, fov)
    except FundusEdgeError as exc:
        raise InputError(f"{where}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - one image's failure is that image's error, not a traceback
        raise InputError(f"{where}: biomarkers failed ({one_line(exc)})") from None


def mask_files(folder: Path) -> list[Path]:
    """The masks in ``folder``: predict's <stem>_mask.png when there are any (its _prob and _overlay
    images are not masks), else every image file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    predicted = [p for p in files if p.name.endswith("_mask.png")]
    if predicted:
        return predicted
    if not files:
        raise InputError(f"{folder}: no mask images in folder")
    return files


def match_fov_file(mask: Path, fov_dir: Path) -> Path:
    """The FOV mask of ``mask`` in ``fov_dir``: the same stem (without predict's _mask), that stem +
    _mask (DRIVE: 01_test_mask.png -> 01_test_mask.gif), else the one file of the same leading number
    (DRIVE: 01_manual1.gif -> 01_test_mask.gif): the runtime's rule (``predict --fov DIR`` uses it too)."""
    stem = mask.stem[: -len("_mask")] if mask.name.endswith("_mask.png") else mask.stem
    return match_fov_in(fov_dir, mask, stem)


def folder_biomarkers(masks_dir: Path, fov_dir: Path | None = None) -> list[BiomarkerRow]:
    """One row per mask in ``masks_dir``, normalised by its FOV from ``fov_dir`` (else the whole frame)."""
    if fov_dir is not None and not Path(fov_dir).is_dir():
        raise InputError(f"{fov_dir}: no such folder")
    rows = []
    for f in mask_files(Path(masks_dir)):
        fov_file = match_fov_file(f, Path(fov_dir)) if fov_dir is not None else None
        fov = read_binary(fov_file, "FOV mask") if fov_file is not None else None
        rows.append(
            BiomarkerRow(
                f.name,
                fov_file.name if fov_file else "frame",
                _compute(f, read_binary(f, "vessel mask"), fov),
            )
        )
    return rows


def _fmt(v) -> str:
    return "" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))


def write_csv(rows: list[BiomarkerRow], path: Path, merge: bool = False) -> Path:
    """``rows`` as CSV (COLUMNS). ``merge``: keep the rows of other files already in ``path`` and
    replace those of the same file (predict adds to its folder's table)."""
    table: dict[str, dict] = {}
    if merge and path.is_file():
        with path.open(newline="") as fh:
            for r in csv.DictReader(fh):
                table[r.get("file", "")] = r
    for r in rows:
        table[r.file] = {k: _fmt(v) for k, v in r.to_dict().items()}
    try:
        with path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
            w.writeheader()
            for name in sorted(table):
                w.writerow(table[name])
    except OSError as exc:
        raise InputError(f"{path}: could not write ({exc.strerror or exc})") from None
    return path


class PredictBiomarkers:
    """The ``after`` writer of ``runtime.batch.predict_files``: <stem>_biomarkers.json for each predicted
    mask inside the FOV the prediction used; ``rows`` collects them for biomarkers.csv."""

    def __init__(self) -> None:
        self.rows: list[BiomarkerRow] = []

    def targets(self, f: Path, out_dir: Path) -> tuple[Path, ...]:
        return (out_dir / f"{f.stem}_biomarkers.json",)

    def write(self, f: Path, prediction, targets: tuple[Path, ...]) -> None:
        fov = prediction.fov
        row = BiomarkerRow(f.name, "frame" if fov is None else "predict", _compute(f, prediction.mask, fov))
        try:
            targets[0].write_text(json.dumps(row.to_dict(), indent=2) + "\n")
        except OSError as exc:
            raise InputError(f"{targets[0]}: could not write ({exc.strerror or exc})") from None
        self.rows.append(row)
