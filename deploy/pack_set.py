"""``pack --candidates N``: the N fastest rows of a bench record that meet the bounds, packed into one bundle
for the device to choose among (issue 40).

Each candidate is a single bundle of its own under ``candidates/`` (its model files, manifest, goldens,
requirements pinning its engine, README), exactly what ``pack CHOICE`` writes; beside them ``bundle.yaml``
(schema version 2, runtime.bundle_choice) hashes every file of every candidate, ``requirements.txt`` pins
the runtime and every engine, and a README says what the device does. ``selftest`` then chooses
(deploy/choose.py). The whole bundle keeps the 5 MB budget of a single one.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from fundus_edge.bench.records import BenchRecord
from fundus_edge.runtime.bundle_choice import CANDIDATES, BundleSet, Candidate, write_set
from fundus_edge.runtime.errors import FundusEdgeError, InputError
from fundus_edge.runtime.manifest import sha256

from fundus_edge import __version__

from .bundle import MAX_BYTES, Bundle
from .pack import (
    PackOptions,
    check_out,
    publish,
    requirements_text,
    resolve,
    row_refusal,
    sources_for,
    write_row,
)
from .pick import Bounds, Record, choice_key, pick
from .platforms import Platform, get_platform

MAX_CANDIDATES = 5  # each candidate is about 1 MB with its goldens: five fill the 5 MB budget


@dataclass(frozen=True)
class PackedSet:
    folder: Path
    index: BundleSet
    bundles: tuple[Bundle, ...]
    size_bytes: int
    files: int
    passed_over: tuple[str, ...]  # faster rows that could not be packed, each with why


def candidate_name(row: BenchRecord) -> str:
    """The candidate's folder: VARIANT-ENGINE[-PRECISION ASKED] (the row's key, a file name)."""
    return choice_key(row).replace("/", "-")


def _choose_rows(
    record: Record, bounds: Bounds, n: int, opts: PackOptions, target: Platform
) -> tuple[list[tuple[Path, BenchRecord]], list[str]]:
    """The n fastest rows meeting ``bounds`` that can be packed here, with their model folders; the faster
    rows passed over (an engine no device installs, a model folder no longer here), each with why."""
    rows = pick(record, bounds, opts.any_cpu, target, opts.any_arch)
    chosen, passed_over = [], []
    for r in rows:
        if len(chosen) == n:
            break
        why = row_refusal(r, target)
        if why is None:
            try:
                folder, _ = resolve(choice_key(r), record, opts)
                chosen.append((folder, r))
                continue
            except FundusEdgeError as exc:
                why = str(exc).splitlines()[0]
        passed_over.append(f"{choice_key(r)}: {why}")
    if not chosen:
        raise InputError(
            f"{record.path}: none of the {len(rows)} rows meeting the bounds can be packed"
            f" ({passed_over[0]}{'; ...' if len(passed_over) > 1 else ''})"
        )
    return chosen, passed_over


def _readme(index: BundleSet, bundles: list[Bundle]) -> str:
    lines = [
        f"# A deploy bundle of {len(bundles)} candidates: the device chooses",
        "",
        f"From {index.record} (rows meeting {index.bounds}), fastest there first:",
        "",
    ]
    for c, b in zip(index.candidates, bundles, strict=True):
        v = b.validated
        p50 = "n/a" if v.p50_ms is None else f"{v.p50_ms:.1f} ms"
        lines.append(f"- `{CANDIDATES}/{c.name}`: {c.label} {b.precision}, p50 {p50}, F1 {v.f1:.4f}")
    lines += [
        "",
        f"Install on {index.platform}: `pip install -r requirements.txt` (the runtime and every engine),"
        f" then fundus-edge {index.fundus_edge_version} with `--no-deps`.",
        "",
        "`fundus-edge selftest .` checks every file's sha256 (a changed byte in any candidate fails the whole"
        " bundle), runs each candidate's goldens, times those that pass in rounds and writes `choice.yaml`:"
        " the fastest on this CPU. `predict` and `serve` on this folder run that choice and say so; another"
        " CPU, or `selftest --recheck`, chooses again.",
        "",
    ]
    return "\n".join(lines)


def pack_candidates(record: Record, bounds: Bounds, n: int, opts: PackOptions) -> PackedSet:
    if not 1 <= n <= MAX_CANDIDATES:
        raise InputError(f"--candidates {n}: 1 to {MAX_CANDIDATES} (the bundle keeps the 5 MB budget)")
    if opts.engine or opts.precision:
        raise InputError("--candidates takes rows of the record: no --engine nor --precision")
    target = get_platform(opts.platform)
    out = Path(opts.out)
    check_out(out, opts.force)
    chosen, passed_over = _choose_rows(record, bounds, n, opts, target)
    sources = sources_for(record, opts)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        cands, bundles = [], []
        for folder, row in chosen:
            dest = tmp / CANDIDATES / candidate_name(row)
            dest.mkdir(parents=True)
            b = write_row(dest, folder, row, record, sources, opts, target).bundle
            bundles.append(b)
            cands.append(
                Candidate(
                    dest.name,
                    b.variant,
                    b.engine,
                    b.format,
                    b.precision,
                    b.precision_request,
                    b.threads,
                    b.validated.p50_ms,
                    b.validated.f1,
                )
            )
        (tmp / "requirements.txt").write_text(requirements_text([b.engine for b in bundles], target))
        index = BundleSet(
            candidates=tuple(cands),
            files={},
            record=str(record.path),
            bounds={"min_f1": bounds.min_f1, "max_ms": bounds.max_ms, "max_mb": bounds.max_mb},
            cpu_identity=record.identity.to_dict(),
            platform=target.name,
            machine=target.machine,
            validated_machine=record.machine or "x86_64",
            created=time.strftime("%Y-%m-%d %H:%M"),
            fundus_edge_version=__version__,
        )
        (tmp / "README.md").write_text(_readme(index, bundles))
        files = sorted(p for p in tmp.rglob("*") if p.is_file())
        index = replace(index, files={str(p.relative_to(tmp)): sha256(p) for p in files})
        write_set(tmp, index)
        size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
        if size > MAX_BYTES:
            raise InputError(
                f"{len(cands)} candidates: the bundle would be {size / 1e6:.2f} MB, over the"
                f" {MAX_BYTES / 1e6:g} MB budget (pack fewer --candidates)"
            )
        publish(tmp, out)
        return PackedSet(out, index, tuple(bundles), size, len(files) + 1, tuple(passed_over))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
