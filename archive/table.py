"""The per-image results table of an archive job: one row per input, kept as one small JSON file per image
under ``<output>/.fundus-edge/rows/`` (``Storage``: a folder or a pyarrow file system URI) while the job
runs (a killed job loses at most the images in flight), and gathered into ``results.parquet`` and
``results.csv`` at the end of every run.

Resuming reads the same row files: an input whose row says ok and whose outputs exist is done. A row file is
named after its input's full path, so inputs of one name from different folders never share a row; the
parquet table carries the job's resume key (``resume.py``) in its metadata, which also marks it as ours."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..measure.biomarkers import NAMES as BIOMARKER_NAMES
from .storage import Storage

ROWS_DIR = ".fundus-edge/rows"
TABLE_NAMES = ("results.parquet", "results.csv")
META_KEY = b"fundus-edge"  # parquet key-value metadata: the job's resume key (JSON)
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
    # --biomarkers: measure.biomarkers' values of the mask, by name (empty otherwise); the tables spread
    # them over one column each (BIOMARKER_COLUMNS).
    biomarkers: dict = field(default_factory=dict)

    def output_names(self) -> list[str]:
        return [n for n in self.outputs.split(";") if n]


# The tables' columns: the row's scalar fields, then one column per biomarker (empty / NaN without
# --biomarkers).
BIOMARKER_COLUMNS = tuple(f"biomarker_{n}" for n in BIOMARKER_NAMES)
COLUMNS = tuple(f.name for f in fields(ImageRow) if f.name != "biomarkers") + BIOMARKER_COLUMNS


def table_row(row: ImageRow) -> dict:
    """A row as the tables hold it: its biomarkers spread over their columns."""
    d = asdict(row)
    bm = d.pop("biomarkers") or {}
    return {**d, **{f"biomarker_{n}": float(bm.get(n, math.nan)) for n in BIOMARKER_NAMES}}


def row_name(image: str | Path) -> str:
    """The row file of an input, by its path as the driver resolved it (not resolved again: a worker node
    may see other links)."""
    digest = hashlib.sha256(str(image).encode()).hexdigest()[:16]
    return f"{ROWS_DIR}/{Path(image).stem}-{digest}.json"


def write_row(out: Storage, row: ImageRow) -> None:
    """Whole or not at all: a reader sees the old row or the new one, never half of one."""
    out.write_bytes(row_name(row.path), json.dumps(asdict(row), allow_nan=True).encode())


def _parse(data: bytes | None) -> ImageRow | None:
    try:
        d = json.loads(data)
        return ImageRow(**{f.name: d[f.name] for f in fields(ImageRow) if f.name in d})
    except (TypeError, ValueError):
        return None  # unreadable: treated as not done


def read_rows(out: Storage) -> dict[str, ImageRow]:
    """Row files of this output location, by input path."""
    rows = (_parse(out.read_bytes(n)) for n in out.list(ROWS_DIR, ".json"))
    return {r.path: r for r in rows if r is not None}


def delete_row(out: Storage, path: str) -> None:
    out.delete(row_name(path))


def is_done(row: ImageRow | None, out: Storage, wanted: list[str] | tuple[str, ...] = ()) -> bool:
    """Its row says ok, it lists every output this run asks for (``wanted``), and they all exist."""
    if row is None or row.status != "ok":
        return False
    names = row.output_names()
    return set(wanted) <= set(names) and all(out.exists(n) for n in names)


def table_metadata(out: Storage, name: str = "results.parquet") -> bytes | None:
    """Our metadata in the parquet table there (None: no table, not parquet, or not ours)."""
    data = out.read_bytes(name)
    if data is None:
        return None
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        meta = pq.read_schema(pa.BufferReader(data)).metadata or {}
    except (ImportError, OSError, ValueError):  # pyarrow's ArrowInvalid is a ValueError
        return None
    return meta.get(META_KEY)


def is_our_table(out: Storage, name: str) -> bool:
    """A parquet table with our metadata; a CSV table with exactly our header."""
    if name.endswith(".parquet"):
        return table_metadata(out, name) is not None
    data = out.read_bytes(name) or b""
    return data.split(b"\n", 1)[0].decode(errors="replace") == ",".join(COLUMNS)


def write_table(out: Storage, rows: list[ImageRow], key_json: str) -> list[str]:
    """results.csv always; results.parquet through pyarrow (part of the ray extra), with the job's resume
    key in its metadata. Each file whole or not at all (``Storage.write_bytes``)."""
    rows = sorted(rows, key=lambda r: r.path)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(table_row(r))
    out.write_bytes("results.csv", buf.getvalue().encode())
    written = [out.display("results.csv")]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return written
    types = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "str": pa.string()}
    hints = {**{f.name: f.type for f in fields(ImageRow)}, **{c: "float" for c in BIOMARKER_COLUMNS}}
    table = pa.Table.from_pylist(
        [table_row(r) for r in rows],
        schema=pa.schema([(c, types[hints[c]]) for c in COLUMNS], metadata={META_KEY: key_json.encode()}),
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    out.write_bytes("results.parquet", sink.getvalue().to_pybytes())
    written.append(out.display("results.parquet"))
    return written
