"""``pick``: from a bench record, the fastest variant x engine x precision that meets the accuracy (and
optional latency and size) bounds, on the CPU the record was measured on: the same identity (vendor, family /
model and flags, runtime.cpu.CpuIdentity), not the same name, since one name ("AMD EPYC") covers a Zen 4
and a Zen 5 whose INT8 rows differ 1.8x."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fundus_edge.bench.records import BenchRecord
from fundus_edge.runtime.cpu import CpuIdentity, cpu_identity, identity_of
from fundus_edge.runtime.errors import InputError

from .platforms import Platform, arch_mismatch, arm_refusal, here, is_arm

DEFAULT_RECORD = Path("build/bench/results.json")
MIN_F1 = 0.82  # the project's accuracy target


@dataclass(frozen=True)
class Bounds:
    min_f1: float = MIN_F1
    max_ms: float | None = None
    max_mb: float | None = None


@dataclass(frozen=True)
class Record:
    """A bench record as pick and pack read it: the rows and the header's facts about the machine."""

    path: Path
    rows: tuple[BenchRecord, ...]
    meta: dict

    @property
    def isa_flags(self) -> list[str]:
        return list(self.meta.get("machine", {}).get("isa_flags") or [])

    @property
    def identity(self) -> CpuIdentity:
        return identity_of(self.meta.get("machine") or {})

    @property
    def machine(self) -> str | None:
        """The architecture the record was measured on (bench/machine.py's ``machine``; None before it)."""
        return (self.meta.get("machine") or {}).get("machine")

    @property
    def cpu(self) -> str:
        """The CPU by name and generation ("AMD EPYC Zen 4"), as pick and bundles print it."""
        return self.identity.short


def choice_key(r: BenchRecord) -> str:
    """VARIANT/ENGINE, or VARIANT/ENGINE/PRECISION for a row that asked its engine for a precision (the
    bench's own key for a cell, and what pack takes)."""
    return f"{r.variant}/{r.backend}" + (f"/{r.precision_requested}" if r.precision_requested else "")


def read_record(path: str | Path) -> Record:
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"{path}: no bench record here (run `make bench` or `fundus-edge bench --out {path.parent}`)"
        )
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc.__class__.__name__})") from None
    if (
        not isinstance(d, dict)
        or not isinstance(d.get("results"), list)
        or not isinstance(d.get("meta"), dict)
    ):
        raise InputError(f"{path}: not a bench record (needs 'meta' and 'results')")
    try:
        rows = tuple(BenchRecord.from_dict(r) for r in d["results"])
    except TypeError as exc:
        raise InputError(f"{path}: a result row is incomplete ({exc})") from None
    return Record(path, rows, d["meta"])


def cpu_mismatch(record: Record, here: CpuIdentity | None = None) -> str | None:
    """Why the record's figures do not describe this CPU (its flags of interest, or its vendor, family or
    model differ; a record without family / model cannot show it is this CPU), or None."""
    here = cpu_identity() if here is None else here
    there = record.identity
    if there.key == here.key:
        return None
    only_there = sorted(set(there.flags) - set(here.flags))
    only_here = sorted(set(here.flags) - set(there.flags))
    parts = ([f"it had {', '.join(only_there)}, which this CPU lacks"] if only_there else []) + (
        [f"this CPU has {', '.join(only_here)}, which it lacked"] if only_here else []
    )
    if not parts:
        parts = [f"this CPU is {here.title}"] + (
            ["the record kept no family / model to show it was this one"] if there.family is None else []
        )
    return (
        f"{record.path}: measured on another CPU ({there.title}): {'; '.join(parts)}"
        " (--any-cpu to pick from it anyway)"
    )


def candidates(record: Record, bounds: Bounds) -> tuple[list[BenchRecord], str]:
    """The rows that meet ``bounds`` (CPU rows that ran, with a p50 and an F1), fastest first, and a line
    saying how many rows each bound left out."""
    # Shape rows (a static or dynamic compile beside the engine's own, for one model) measure what a fixed
    # input size gains; a bundle compiles for a camera's size with `pack --input-size`, so they are not
    # choices.
    rows = [
        r
        for r in record.rows
        if r.status == "ok"
        and r.p50_ms is not None
        and not str(r.device or "cpu").startswith("gpu")
        and not r.shape_requested
    ]
    out, dropped = (
        [],
        {
            "no F1": 0,
            f"F1 < {bounds.min_f1}": 0,
            f"p50 > {bounds.max_ms} ms": 0,
            f"size > {bounds.max_mb} MB": 0,
        },
    )
    for r in rows:
        if r.f1 is None:
            dropped["no F1"] += 1
        elif r.f1 < bounds.min_f1:
            dropped[f"F1 < {bounds.min_f1}"] += 1
        elif bounds.max_ms is not None and r.p50_ms > bounds.max_ms:
            dropped[f"p50 > {bounds.max_ms} ms"] += 1
        elif bounds.max_mb is not None and (r.size_mb is None or r.size_mb > bounds.max_mb):
            dropped[f"size > {bounds.max_mb} MB"] += 1
        else:
            out.append(r)
    not_ok = len(record.rows) - len(rows)
    why = ", ".join(f"{n} {k}" for k, n in dropped.items() if n) or "none left out"
    return sorted(
        out, key=lambda r: r.p50_ms
    ), f"{len(rows)} CPU rows that ran ({not_ok} other rows: failed, GPU or untimed); by the bounds: {why}"


def record_refusal(
    record: Record, target: Platform | None = None, any_cpu: bool = False, any_arch: bool = False
) -> str | None:
    """Why the record's figures cannot stand for the device (``target``, default this machine), or None.
    For another architecture the CPU identity is not compared (the device is not this CPU): the record must
    be that architecture's (unless ``any_arch``)."""
    target = target or here()
    if why := arch_mismatch(record.machine, target, str(record.path)):
        return None if any_arch else why
    if target.machine != here().machine:
        return None  # a record of the device's architecture, read elsewhere: no CPU here to compare
    return None if any_cpu else cpu_mismatch(record)


def pick(
    record: Record,
    bounds: Bounds,
    any_cpu: bool = False,
    target: Platform | None = None,
    any_arch: bool = False,
) -> list[BenchRecord]:
    """The rows meeting ``bounds``, fastest first (the first is the choice); refused in one line when the
    record is another CPU's (unless ``any_cpu``) or another architecture's than ``target`` (unless
    ``any_arch``), or no row qualifies. For an ARM64 target, rows whose precision ARM cannot be assumed to
    run are left out."""
    if why := record_refusal(record, target, any_cpu, any_arch):
        raise InputError(why)
    rows, summary = candidates(record, bounds)
    if is_arm(target or here()):
        kept = [r for r in rows if not arm_refusal(r.backend, r.precision or "fp32")]
        summary += f"; {len(rows) - len(kept)} rows left out for ARM64 (precision)"
        rows = kept
    if not rows:
        raise InputError(
            f"{record.path}: no row meets F1 >= {bounds.min_f1}"
            + (f", p50 <= {bounds.max_ms} ms" if bounds.max_ms is not None else "")
            + (f", size <= {bounds.max_mb} MB" if bounds.max_mb is not None else "")
            + f" ({summary})"
        )
    return rows


def table(rows: list[BenchRecord], runners_up: int = 4) -> str:
    """The choice and its runners-up as a short Markdown table."""
    f = lambda v, fmt: "–" if v is None else fmt.format(v)  # noqa: E731
    lines = [
        "| | choice | precision | p50 ms | F1 | AUC | IoU | MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for i, r in enumerate(rows[: runners_up + 1]):
        p50 = f(r.p50_ms, "{:.1f}") + (" (unsteady)" if r.unsteady else "")
        lines.append(
            f"| {'picked' if i == 0 else i + 1} | {choice_key(r)} | {r.precision or '–'} | {p50}"
            f" | {f(r.f1, '{:.4f}')} | {f(r.auc, '{:.4f}')} | {f(r.iou, '{:.4f}')}"
            f" | {f(r.size_mb, '{:.2f}')} |"
        )
    return "\n".join(lines)


def listing(record: Record) -> str:
    """Every row's key with its status, precision, p50 and F1: what a mistyped CHOICE points to
    (``python -m fundus_edge.deploy.pick RECORD``)."""
    f = lambda v, fmt: "-" if v is None else fmt.format(v)  # noqa: E731
    return "\n".join(
        f"{choice_key(r)}\t{r.status}\t{r.precision or '-'}"
        f"\t{f(r.p50_ms, '{:.1f}')} ms\tF1 {f(r.f1, '{:.4f}')}"
        + (f"\t{r.device}" if str(r.device or "cpu") != "cpu" else "")
        + (f"\tshape {r.shape_requested}" if r.shape_requested else "")
        for r in sorted(record.rows, key=choice_key)
    )


if __name__ == "__main__":
    import sys

    try:
        print(listing(read_record(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_RECORD)))
    except InputError as exc:
        sys.exit(f"error: {exc}")
