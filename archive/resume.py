"""What an archive job's output location was made by: the resume key (model, the options that change the
outputs, the tool's version and the table schema), kept in ``<output>/.fundus-edge/job.json`` and in the
results table's parquet metadata. A run resumes only a location whose key equals its own; another key is
refused in one line naming both, or (``--force``) its rows are dropped and every input is redone. A
results table this tool did not write (a user's file, another schema) is never overwritten without --force."""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, fields

from ..runtime.errors import InputError
from .storage import Storage
from .table import ROWS_DIR, TABLE_NAMES, is_our_table, table_metadata

KEY_FILE = ".fundus-edge/job.json"
# The row and table layout; a location written under another one is refused like another model's.
JOB_SCHEMA = 2


@dataclass(frozen=True)
class JobKey:
    model: str  # manifest name (variant): for messages; the sha256 is what identifies the model
    model_sha256: str  # of manifest.yaml, which holds every model file's sha256
    backend: str  # as asked (auto resolves per node)
    device: str
    precision: str  # as asked ("auto" by default); "" = the model's own
    rescale: bool
    crop_fov: bool
    fov: str  # auto | none | the mask file or folder, resolved
    tool_version: str
    schema: int = JOB_SCHEMA
    # What "auto" resolved to on the driver (runtime/precision.py): the same command resumed on a CPU without
    # bf16 runs fp32 and writes other masks, so it is another job. "" = the model's own.
    precision_resolved: str = ""

    @classmethod
    def from_dict(cls, d: dict) -> JobKey:
        # A key written before precision_resolved existed reads as "" there (and so differs from an auto
        # run's).
        return cls(
            **{
                f.name: d[f.name] if f.name in d or f.default is MISSING else d.get(f.name, f.default)
                for f in fields(cls)
            }
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _describe_model(k: JobKey) -> str:
    return f"{k.model} [manifest sha256 {k.model_sha256[:12]}]"


_LABELS = {
    "backend": "backend",
    "device": "device",
    "precision": "precision",
    "rescale": "rescale",
    "crop_fov": "FOV crop",
    "fov": "--fov",
    "tool_version": "fundus-edge",
    "schema": "job schema",
    "precision_resolved": "precision resolved",
}


def _show(name: str, value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return (value or "the model's own") if name in ("precision", "precision_resolved") else str(value)


def differences(there: JobKey, now: JobKey) -> list[str]:
    """'<what> <value there> there, <value now> now' for each field that differs (the model once)."""
    out = []
    if there.model_sha256 != now.model_sha256:
        out.append(f"model {_describe_model(there)} there, {_describe_model(now)} now")
    for f in fields(JobKey):
        if f.name in ("model", "model_sha256"):
            continue
        a, b = getattr(there, f.name), getattr(now, f.name)
        if a != b:
            out.append(f"{_LABELS[f.name]} {_show(f.name, a)} there, {_show(f.name, b)} now")
    return out


def read_key(out: Storage) -> JobKey | None:
    """The key of the job that wrote this location: job.json, else the parquet table's metadata; None when
    neither is there. An unreadable one is refused (never guessed)."""
    data = out.read_bytes(KEY_FILE)
    where = KEY_FILE
    if data is None:
        data, where = table_metadata(out), "results.parquet"
        if data is None:
            return None
    try:
        return JobKey.from_dict(json.loads(data))
    except (ValueError, TypeError, KeyError):
        raise InputError(
            f"{out.display(where)}: unreadable resume key (use --force to redo every input)"
        ) from None


def write_key(out: Storage, key: JobKey) -> None:
    out.write_bytes(KEY_FILE, key.to_json().encode())


def foreign_tables(out: Storage) -> list[str]:
    """Results tables at this location that this tool (this job schema) did not write."""
    return [n for n in TABLE_NAMES if out.exists(n) and not is_our_table(out, n)]


def claim(out: Storage, key: JobKey, force: bool) -> bool:
    """Check, before anything is written, that this run may write here, then record its key. True when
    the location held another job's rows, now dropped (--force): every input is to be redone."""
    foreign = foreign_tables(out)
    if foreign and not force:
        raise InputError(
            f"{out.display(foreign[0])}: not a fundus-edge results table"
            " (use --force to overwrite, or another --output)"
        )
    there = read_key(out) if not force else _key_or_none(out)
    has_rows = bool(out.list(ROWS_DIR, ".json"))
    stale = False
    if there is None and has_rows:
        stale = True
        if not force:
            raise InputError(
                f"{out}: rows of an archive job without a resume key (an older fundus-edge);"
                " use --force to redo every input, or another --output"
            )
    elif there is not None and there != key:
        stale = True
        if not force:
            raise InputError(
                f"{out}: results of another job ({'; '.join(differences(there, key))});"
                " use --force to redo every input, or another --output"
            )
    if stale:
        for name in out.list(ROWS_DIR, ".json"):
            out.delete(name)
    write_key(out, key)
    return stale


def _key_or_none(out: Storage) -> JobKey | None:
    try:
        return read_key(out)
    except InputError:
        return None  # --force: an unreadable key is replaced like another one
