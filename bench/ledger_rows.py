"""The bench's reads of DRIVE test in the test-read ledger (issue 32, docs/test-reads.md).

Every bench run with labels scores each variant on the test images, so each run adds one ``report`` row per
variant (model folder): a re-score of a model already fixed, not counted in the cards, nothing chosen by
it. The row carries the variant's reference-engine F1 and AUC (its first ok row) and names the engines.

The bench writes these rows to a ledger of the run's own (``<out>/test-reads.csv``, build/bench/ under `make
bench`), replaced by each run, so a benchmark leaves the checkout as it found it (issue 42); `make publish`
appends them to the committed docs/test-reads.csv with the run's page (``publish_reads``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from .records import BenchRecord

RUN_LEDGER = "test-reads.csv"  # the run's own reads, in the bench's output folder


def rows_for(records: list[BenchRecord], dirs: dict, data: str, command: str, quick: bool = False):
    """One TestRead per variant that was scored (its reference engine's row first among its ok rows)."""
    from fundus_edge.measure.ledger import TestRead, identify

    date = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    rows = []
    for variant, folder in dirs.items():
        scored = [
            r
            for r in records
            if r.variant == variant and r.status in ("ok", "wrong_output") and r.f1 is not None
        ]
        ok = [r for r in scored if r.status == "ok"]
        if not scored:
            continue
        ref = (ok or scored)[0]
        lineage, sha, run = identify(folder)
        engines = ", ".join(
            dict.fromkeys(
                f"{r.backend} {r.precision}" + (f" {r.device}" if r.device and r.device != "cpu" else "")
                for r in scored
            )
        )
        rows.append(
            TestRead(
                date=date,
                lineage=lineage or variant,
                scored=str(folder),
                weights_sha256=sha,
                run=run,
                command=command,
                data=f"{data} test",
                f1=f"{ref.f1:.4f}",
                auc="" if ref.auc is None else f"{ref.auc:.4f}",
                why="report",
                rule_before="yes",
                source="fundus-edge bench",
                note=f"bench variant {variant}: F1/AUC from {ref.backend} {ref.precision}"
                f" (the reference engine); engines scored: {engines}"
                + ("; --quick: 3 test images" if quick else "")
                + "; a re-score of a fixed model, nothing chosen",
            )
        )
    return rows


def record_test_reads(
    records: list[BenchRecord],
    dirs: dict,
    data: str | None,
    has_labels: bool,
    command: str | None = None,
    quick: bool = False,
    path: Path | None = None,
    run_dir: Path | None = None,
) -> list:
    """Write the run's rows when the bench scored DRIVE test: to ``run_dir``/test-reads.csv (the run's own
    ledger, replaced: the bench's way), else append to ``path``, else to ledger_path(). Returns the rows
    written (none without labels or without a ledger)."""
    from fundus_edge.measure.ledger import append_read, ledger_path

    if run_dir is not None:
        path = Path(run_dir) / RUN_LEDGER
        path.unlink(missing_ok=True)  # an earlier run's reads were its own
    if not (data and has_labels):
        return []
    path = path or ledger_path()
    if path is None:
        print(
            "note: no test-read ledger found (set FUNDUS_EDGE_LEDGER):"
            " the bench's reads of DRIVE test are not recorded",
            file=sys.stderr,
        )
        return []
    from fundus_edge.measure.ledger import portable_row

    rows = rows_for(
        records,
        dirs,
        data,
        command if command is not None else " ".join(["fundus-edge", *sys.argv[1:]]),
        quick,
    )
    rows = [portable_row(r) for r in rows]  # as the ledger holds them: no machine path
    for row in rows:
        append_read(path, row)
    return rows


def publish_reads(run_ledger: str | Path, to: str | Path | None = None) -> tuple[int, Path]:
    """Append the rows of a run's own ledger that ``to`` (default ledger_path(): $FUNDUS_EDGE_LEDGER, else
    the committed docs/test-reads.csv) does not hold yet: publishing a run twice adds its reads once.
    Returns (rows appended, the ledger written)."""
    from fundus_edge.measure.ledger import append_read, ledger_path, portable_row, read_ledger
    from fundus_edge.runtime.errors import InputError

    src = Path(run_ledger)
    if not src.is_file():
        raise InputError(
            f"{src}: no test-read ledger of the run here (a bench without DRIVE labels reads none)"
        )
    dst = Path(to) if to else ledger_path()
    if dst is None:
        raise InputError("no test-read ledger to publish into (set FUNDUS_EDGE_LEDGER)")
    have = {portable_row(r) for r in read_ledger(dst)}
    new = [r for r in map(portable_row, read_ledger(src)) if r not in have]
    for row in new:
        append_read(dst, row)
    return len(new), dst
