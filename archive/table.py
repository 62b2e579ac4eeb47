"""The per-image results table of an archive job: one row per input, kept as one small JSON file per image
under ``<output>/.fundus-edge/rows/`` while the job runs (a killed job loses at most the images in flight),
and gathered into ``results.parquet`` and ``results.csv`` at the end of every run.

Resuming reads the same row files: an input whose row says ok and whose outputs exist is done."""
from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

ROWS_DIR = Path(".fundus-edge") / "rows"
TABLE_NAMES = ("results.parquet", "results.csv")
# A row is written "writing" before the outputs and "ok" after: outputs of a row left "writing" are this
# tool's own half-written files, which a resumed run may replace without --force.
STATUSES = ("ok", "error", "writing")


@dataclass(frozen=True)
class ImageRow:
    path: str
    status: str  # ok | error | writing
    error: str = ""  # one line, naming the file
    width: int = 0
    height: int = 0
    fov_found: bool = False
    fov_diameter_px: float = math.nan  # the FOV's diameter in the input (nan: none found or none used)
    scale: float = math.nan  # resize factor applied before the network (1.0: none)
    warning: str = ""
    vessel_share: float = math.nan  # vessel pixels / FOV pixels (/ all pixels when there is no FOV)
    engine: str = ""
    precision: str = ""
    device: str = ""
    model: str = ""  # manifest name (variant)
    model_sha256: str = ""  # of the model's manifest.yaml, which holds every file's sha256
    read_ms: float = math.nan  # read + decode (a task)
    segment_ms: float = math.nan  # Predictor.predict: preprocessing + engine + postprocessing (an actor)
    engine_ms: float = math.nan  # the engine call alone
    write_ms: float = math.nan  # PNG encoding + writing (a task)
    node: str = ""  # Ray node id of the actor that segmented it
    outputs: str = ""  # output file names, ';'-separated, in the output folder
    finished: str = ""  # ISO time the row was written

    def output_names(self) -> list[str]:
        return [n for n in self.outputs.split(";") if n]


COLUMNS = tuple(f.name for f in fields(ImageRow))


def row_path(out_dir: Path, image: Path) -> Path:
    return out_dir / ROWS_DIR / f"{image.stem}.json"


def write_row(out_dir: Path, row: ImageRow) -> None:
    """Atomically: a reader sees the old row or the new one, never half of one."""
    p = row_path(out_dir, Path(row.path))
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(row), allow_nan=True))
    os.replace(tmp, p)


def read_row(path: Path) -> ImageRow | None:
    try:
        d = json.loads(path.read_text())
        return ImageRow(**{k: d[k] for k in COLUMNS if k in d})
    except (OSError, ValueError, TypeError):
        return None  # unreadable: treated as not done


def read_rows(out_dir: Path) -> dict[str, ImageRow]:
    """Row files of this output folder, by input path."""
    folder = out_dir / ROWS_DIR
    rows = (read_row(p) for p in sorted(folder.glob("*.json"))) if folder.is_dir() else ()
    return {r.path: r for r in rows if r is not None}


def is_done(row: ImageRow | None, out_dir: Path) -> bool:
    return row is not None and row.status == "ok" and all((out_dir / n).exists() for n in row.output_names())


def write_table(out_dir: Path, rows: list[ImageRow]) -> list[Path]:
    """results.csv always; results.parquet through pyarrow (part of the ray extra)."""
    rows = sorted(rows, key=lambda r: r.path)
    written = []
    csv_path = out_dir / "results.csv"
    with open(csv_path.with_suffix(".csv.tmp"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow(asdict(r))
    os.replace(csv_path.with_suffix(".csv.tmp"), csv_path)
    written.append(csv_path)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return written
    types = {int: pa.int64(), float: pa.float64(), bool: pa.bool_(), str: pa.string()}
    hints = {f.name: f.type for f in fields(ImageRow)}
    schema = pa.schema([(c, types[{"int": int, "float": float, "bool": bool, "str": str}[hints[c]]]) for c in COLUMNS])
    table = pa.Table.from_pylist([asdict(r) for r in rows], schema=schema)
    pq_path = out_dir / "results.parquet"
    pq.write_table(table, pq_path.with_suffix(".parquet.tmp"))
    os.replace(pq_path.with_suffix(".parquet.tmp"), pq_path)
    written.append(pq_path)
    return written
