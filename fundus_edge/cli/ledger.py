"""evaluate's row of the test-read ledger: its options and the row (the work is
fundus_edge.measure.ledger)."""

from __future__ import annotations


def add_ledger_options(e) -> None:
    """evaluate's options for its row of the test-read ledger."""
    # Every read of a held-out split (not --split train) is a row of the test-read ledger
    # (docs/test-reads.md).
    e.add_argument(
        "--why",
        choices=("candidate", "gate", "shipped", "report"),
        default="candidate",
        help="why the test images are read, for the ledger: candidate (default), gate (a check before "
        "shipping), shipped (the one read whose figure ships), report (re-scoring a model already fixed; "
        "not counted)",
    )
    e.add_argument(
        "--rule-before",
        action="store_true",
        help="the use of this score was written down before the read (ledger column rule_before)",
    )
    e.add_argument(
        "--lineage",
        help="the shipped model this read belongs to (default: the checkpoint's config name or the "
        "manifest's name)",
    )
    e.add_argument("--note", default="", help="a note for the ledger row")
    e.add_argument(
        "--search",
        default="",
        help="the recipe search this read belongs to (ledger column search): the search's lineages are "
        "counted together in their cards",
    )
    e.add_argument(
        "--ledger",
        help="the ledger CSV (default: $FUNDUS_EDGE_LEDGER, else the repository's docs/test-reads.csv)",
    )
    e.add_argument("--no-ledger", action="store_true", help="do not record this read (for scratch data only)")


def record_read(a, report) -> None:
    """A held-out evaluation appends its row to the test-read ledger (measure/ledger.py)."""
    if a.no_ledger:
        return
    from fundus_edge.measure.ledger import ledger_path, record

    # The command as the options that change the score (main may be called with an argv of its own).
    opts = [
        ("--split", a.split, "test"),
        ("--layout", a.layout, "auto"),
        ("--threshold", a.threshold, None),
        ("--backend", a.backend, "auto"),
        ("--precision", getattr(a, "precision", None), None),
        ("--perturb", a.perturb, None),
    ]
    command = " ".join(
        [
            "fundus-edge evaluate",
            str(a.source),
            "--data",
            str(a.data),
            *(f"{k} {v}" for k, v, default in opts if v != default),
        ]
    )
    record(
        report,
        a.why,
        ledger_path(a.ledger),
        command=command,
        lineage=a.lineage,
        rule_before="yes" if a.rule_before else "no",
        note=a.note,
        search=a.search,
    )
