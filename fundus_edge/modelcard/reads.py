"""The card's Test reads section: how often the DRIVE test images were read in this model's lineage (or
its recipe search) and how the shipped figure was chosen, all counted from the test-read ledger."""

from __future__ import annotations

from pathlib import Path

from fundus_edge.measure.ledger import count_lineage, ledger_path, read_ledger
from fundus_edge.modelcard.common import STATS_DIR

READS_HEAD = "## Test reads"


def _ordinal(n: int) -> str:
    return {1: "best", 2: "second best", 3: "third best"}.get(n, f"{n}th best")


def _read_stats(lineage: str, f1: str):
    """The per-image statistics of a ledger read (docs/test-stats/LINEAGE.json, when its pooled F1 is the
    read's to 4 places), None when they were not kept (a candidate that did not ship, an older read)."""
    from fundus_edge.measure.intervals import load_stats

    path = STATS_DIR / f"{lineage}.json"
    if not f1 or not path.is_file():
        return None
    st, rec = load_stats(path)
    return (st, rec) if f"{rec['pooled']['f1']:.4f}" == f"{float(f1):.4f}" else None


def _read_ci(lineage: str, f1: str) -> str:
    """``95 % CI 0.817-0.830`` for a ledger read's F1, or says that read kept no per-image statistics."""
    from fundus_edge.measure.intervals import record_intervals

    got = _read_stats(lineage, f1)
    return (
        record_intervals(got[1], got[0])["f1"].ci() if got else "no interval: per-image statistics not kept"
    )


def reads_section(lineage: str, ledger: Path | None = None) -> list[str]:
    """``DRIVE test reads: N`` for this model's lineage and how its shipped figure was chosen, both
    counted from the test-read ledger (docs/test-reads.md), never typed by hand."""

    def n(k: int, word: str) -> str:
        return f"{k} {word}{'' if k == 1 else 's'}"

    path = ledger or ledger_path()
    c = count_lineage(read_ledger(path) if path else [], lineage)
    s = c.shipped
    rule = (
        "a read whose use was written down before it"
        if s is not None and s.rule_before == "yes"
        else "a read with no rule written down before it"
    )
    if s is None:
        how = "no read of this lineage in the ledger is marked as the shipped one."
    elif c.reads == 1:
        how = f"the shipped figure is that one read ({rule})."
    elif c.candidates == 1:
        # One pre-registered score; the other reads checked the model already fixed (perturbations, INT8).
        how = f"the shipped figure (F1 {s.f1}, {_read_ci(lineage, s.f1)}) is its one candidate score, {rule}."
    else:
        how = (
            f"the shipped figure (F1 {s.f1}, {_read_ci(lineage, s.f1)}) is the {_ordinal(c.rank)} of the "
            f"{n(c.candidates, 'candidate score')}, from {rule}."
        )
    times = "once" if c.reads == 1 else f"{c.reads} times"
    detail = (
        f" ({n(c.candidates, 'candidate score')}, {n(c.gates, 'gate check')} before shipping)"
        if c.reads > 1
        else ""
    )
    where = "in this model's lineage"
    if c.search:
        where = (
            f"in the recipe search `{c.search}` this model came from, counted as one lineage (lineages "
            + ", ".join(f"`{m}`" for m in c.members)
            + ")"
        )
    # Re-scores of fixed models (bench runs, cards) are listed in the ledger but not counted, and not numbered
    # here either: every `make bench` adds some, and a card must not go stale because a bench ran.
    later = "; re-scores of models already fixed (bench runs) are listed there and not counted"
    return [
        f"{READS_HEAD} (`docs/test-reads.csv`, lineage `{lineage}`)",
        f"DRIVE test reads: {c.reads}",
        f"The 20 DRIVE test images were read {times} {where}{detail}{later}; {how}",
        *search_lines(c, path),
        "",
    ]


_WORDS = {2: "two", 3: "three", 4: "four", 5: "five"}


def search_lines(c, path: Path | None) -> list[str]:
    """For a lineage of a recipe search: the search's candidate scores, each with the bar it was read
    against, and for every bar read more than once which candidate was the better one (so a figure that
    met a bar as the best of several reads says so)."""
    if not c.search:
        return []
    from fundus_edge.measure.ledger import bar_of

    rows = read_ledger(path) if path else []
    cand = sorted(
        (r for r in rows if r.lineage in c.members and r.why in ("candidate", "shipped")),
        key=lambda r: r.date,
    )
    listed = "; ".join(
        f"`{r.lineage}` {r.f1 or 'n/a'} ({_read_ci(r.lineage, r.f1)}"
        + (f"; bar {bar_of(r)}, {'shipped' if r.why == 'shipped' else 'not shipped'}" if bar_of(r) else "")
        + ")"
        for r in cand
    )
    k = len(cand)
    out = [
        "",
        f"The search read test {_WORDS.get(k, str(k)) + ' times' if k != 1 else 'once'} for its candidates,"
        f" in order: {listed}.",
    ]
    by_bar: dict[str, list] = {}
    for r in cand:
        if bar_of(r) and r.f1:
            by_bar.setdefault(bar_of(r), []).append(r)
    for bar, rs in by_bar.items():
        if len(rs) > 1:
            best = max(rs, key=lambda r: float(r.f1))
            out.append(
                f"For the {bar} bar, `{best.lineage}` had the higher point figure of "
                f"{_WORDS.get(len(rs), len(rs))} candidates"
                f" on their test reads ({', '.join(f'`{r.lineage}` {r.f1}' for r in rs)}; "
                f"{_paired_reads(best, [r for r in rs if r is not best])}): a figure that met"
                " the bar as the best of several reads is a selected figure, not a one-shot one."
            )
    return out


def _paired_reads(best, others) -> str:
    """The paired comparison of the best read with each other one where both kept per-image statistics, or
    why there is none (a read whose statistics were not kept has only its point figure)."""
    from fundus_edge.measure.intervals import paired

    b = _read_stats(best.lineage, best.f1)
    parts = []
    for r in others:
        o = _read_stats(r.lineage, r.f1)
        if b is None or o is None:
            parts.append(f"against `{r.lineage}` no paired interval: its per-image statistics were not kept")
            continue
        c = paired(o[0], b[0], ("f1",))["f1"]
        parts.append(f"against `{r.lineage}` {c.diff.value:+.4f} ({c.diff.ci()}): {c.verdict}")
    return "; ".join(parts)
