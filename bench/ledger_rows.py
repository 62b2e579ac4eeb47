"""The bench's reads of DRIVE test in the test-read ledger (issue 32, docs/test-reads.md).

Every bench run with labels scores each variant on the test images, so each run adds one ``report`` row per
variant (model folder): a re-score of a model already fixed, not counted in the cards, nothing chosen by
it. The row carries the variant's reference-engine F1 and AUC (its first ok row) and names the engines.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from .records import BenchRecord


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
) -> list:
    """Append the run's rows to the ledger (``path``, else ledger_path()) when the bench scored DRIVE test;
    returns the rows written (none without labels or without a ledger)."""
    from fundus_edge.measure.ledger import append_read, ledger_path

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
    rows = rows_for(
        records,
        dirs,
        data,
        command if command is not None else " ".join(["fundus-edge", *sys.argv[1:]]),
        quick,
    )
    for row in rows:
        append_read(path, row)
    return rows
