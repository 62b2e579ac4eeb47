"""Precision "auto": the fastest precision the engine can run on this CPU among those the model's manifest
records as validated (F1 on training images within ``TOLERANCE`` of fp32 through the same engine, written by
``fundus-edge validate``); never an unvalidated one. An INT8 model runs its own precision."""

from __future__ import annotations

from dataclasses import dataclass

from . import cpu
from .engines.table import reduced
from .manifest import Manifest

AUTO = "auto"
# The largest pooled-F1 change (either way) from fp32 through the same engine that validates a precision.
TOLERANCE = 0.005
# The reduced float precisions an engine can be asked for, fastest first, are the engine table's
# (``table.reduced``: its precisions marked ``asked``); an engine with none runs the file's own precision.


@dataclass(frozen=True)
class PrecisionChoice:
    asked: str | None  # "auto", an explicit precision, or None (the model's own)
    precision: str | None  # what the engine is asked for (None: the model's own)
    reason: str  # why, for predict's line ("" when asked explicitly)


def passed(record: object, manifest: Manifest) -> bool:
    """A validation record that holds for this folder: marked passed, its own figures within the tolerance
    (a record edited to say passed over figures that do not is not believed), made at the manifest's
    threshold and on the very files the manifest hashes now (a record copied into another folder, or left
    behind by a new threshold or new weights, no longer counts)."""
    if not isinstance(record, dict) or record.get("passed") is not True:
        return False
    files = record.get("files")
    try:
        return (
            abs(float(record["f1"]) - float(record["f1_reference"])) <= TOLERANCE
            and float(record["threshold"]) == float(manifest.threshold)
            and isinstance(files, dict)
            and bool(files)
            and all(manifest.files.get(n) == h for n, h in files.items())
        )
    except (KeyError, TypeError, ValueError):
        return False


def choose_precision(
    manifest: Manifest,
    engine: str,
    device: str = "cpu",
    asked: str | None = AUTO,
    flags: frozenset | None = None,
) -> PrecisionChoice:
    """What to ask ``engine`` for. ``flags``: the CPU's flags (default: this CPU's, from /proc/cpuinfo)."""
    if asked != AUTO:
        return PrecisionChoice(asked, asked, "")
    if manifest.quantization is not None:
        return PrecisionChoice(
            AUTO, None, f"the model's own: an INT8 model ({manifest.quantization.get('method', 'int8')})"
        )
    if device != "cpu":
        return PrecisionChoice(AUTO, "fp32", "lower precisions are validated on CPUs only")
    asked_for = reduced(engine)
    if not asked_for:
        return PrecisionChoice(AUTO, "fp32", f"{engine} runs the file's own precision")
    records = manifest.validated.get(engine, {}) if isinstance(manifest.validated, dict) else {}
    records = records if isinstance(records, dict) else {}
    have = cpu.cpu_model_and_flags()[1] if flags is None else frozenset(flags)
    why = []
    for p in asked_for:
        rec = records.get(p)
        if rec is None:
            continue
        if not passed(rec, manifest):
            why.append(f"{p} did not pass validation")
            continue
        flag = cpu.precision_flag(p, have, engine)
        if flag is None:
            why.append(f"{p} validated, but this CPU lacks {' and '.join(cpu.precision_flags(p, engine))}")
            continue
        delta = float(rec["f1"]) - float(rec["f1_reference"])
        return PrecisionChoice(
            AUTO,
            p,
            f"validated on {rec.get('images', 'training images')}, F1 Δ {delta:+.4f}; this CPU has {flag}",
        )
    if not why:
        why.append(f"no lower precision validated for {engine} in the manifest")
    return PrecisionChoice(AUTO, "fp32", "; ".join(why))
