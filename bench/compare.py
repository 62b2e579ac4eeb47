"""Do two bench runs agree? Row by row, within the spread each run reports.

    python -m fundus_edge.bench.compare docs/results/A.json docs/results/B.json [--engine openvino]

A row of both runs (same variant, engine, requested precision and shape, device; status ok) agrees when its
two p50s differ by no more than the larger of its two spreads (the range of its rounds' p50s over their
median).
The machine factor is the median of B's p50 over A's across those rows: on a VM whose speed moves between runs
most of a disagreement is that one factor, so the rows are also compared with B divided by it. Issue #32 asks
two runs on one machine to agree on every OpenVINO row; this prints how far they are from that.

Accuracy: where both rows carry their test images' confusion counts (``per_image_counts``, recorded from
2026-12-07 on) for the same number of images, their F1s are compared by a paired bootstrap over the images
(measure/intervals.py): B - A and its 95 % interval, and the accuracy agrees when that interval includes 0.
Rows without counts say so; their F1s are not compared (a difference without an interval says nothing).
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass

import numpy as np
from fundus_edge.bench.history import load_record
from fundus_edge.bench.records import BenchRecord
from fundus_edge.measure.intervals import ImageStats, Interval, paired


@dataclass(frozen=True)
class RowPair:
    key: tuple
    a: BenchRecord
    b: BenchRecord

    def diff_pct(self, factor: float = 1.0) -> float:
        """How far apart the two p50s are, in % of the smaller (B divided by ``factor`` first)."""
        pa, pb = self.a.p50_ms, self.b.p50_ms / factor
        return abs(pb - pa) / min(pa, pb) * 100.0

    @property
    def spread_pct(self) -> float:
        return max(self.a.spread_pct or 0.0, self.b.spread_pct or 0.0)

    @property
    def own_spread_pct(self) -> float:
        """The larger of the two rows' own round ranges, without the machine's terms (older runs: spread)."""
        own = (r.spread_pct if r.round_spread_pct is None else r.round_spread_pct for r in (self.a, self.b))
        return max(v or 0.0 for v in own)

    def agrees(self, factor: float = 1.0, own: bool = False) -> bool:
        return self.diff_pct(factor) <= (self.own_spread_pct if own else self.spread_pct)


def f1_diff(a_counts, b_counts) -> Interval | None:
    """B's F1 - A's from two rows' per-image counts (image-name order), with its paired 95 % bootstrap
    interval; None when either has none or they are of different numbers of images (not the same images)."""
    if not a_counts or not b_counts or len(a_counts) != len(b_counts) or len(a_counts) < 2:
        return None
    names = tuple(str(i) for i in range(len(a_counts)))
    a = ImageStats(names, np.asarray(a_counts, np.int64).reshape(-1, 4))
    b = ImageStats(names, np.asarray(b_counts, np.int64).reshape(-1, 4))
    return paired(a, b, ("f1",))["f1"].diff


def accuracy_report(rows: list[RowPair]) -> list[str]:
    """Each row pair's F1 compared by a paired bootstrap where both have per-image counts."""
    diffs = [(p, f1_diff(p.a.per_image_counts, p.b.per_image_counts)) for p in rows]
    have = [(p, d) for p, d in diffs if d is not None]
    if not have:
        return [
            f"accuracy: none of the {len(rows)} rows has per-image counts in both runs (records before "
            "2026-12-07 have none): F1 not compared"
        ]
    agree = sum(d.low <= 0 <= d.high for _, d in have)
    lines = [
        f"accuracy: {agree} of {len(have)} rows with per-image counts in both runs agree on F1 (the paired "
        f"95 % interval of B - A includes 0); {len(rows) - len(have)} rows without counts not compared",
        "",
        "| variant | engine | precision asked | A F1 | B F1 | B - A (paired 95 % CI) | agrees |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p, d in have:
        lines.append(
            f"| {p.key[0]} | {p.key[1]} | {p.key[2] or '-'} | {p.a.f1:.4f} | {p.b.f1:.4f} "
            f"| {d.value:+.4f} ({d.low:+.4f} to {d.high:+.4f}) | {'yes' if d.low <= 0 <= d.high else 'no'} |"
        )
    return lines


def _key(r: BenchRecord) -> tuple:
    return (r.variant, r.backend, r.precision_requested, r.shape_requested, r.device)


def pairs(a: list[BenchRecord], b: list[BenchRecord], engine: str | None = None) -> list[RowPair]:
    """The rows timed in both runs (ok, with a p50), optionally of one engine only."""

    def timed(rs):
        ok = (r for r in rs if r.status == "ok" and r.p50_ms)
        return {_key(r): r for r in ok if engine is None or r.backend == engine}

    ta, tb = timed(a), timed(b)
    return [RowPair(k, ta[k], tb[k]) for k in ta if k in tb]


def scored_pairs(a: list[BenchRecord], b: list[BenchRecord], engine: str | None = None) -> list[RowPair]:
    """The rows scored in both runs (ok, with an F1), optionally of one engine only."""

    def scored(rs):
        ok = (r for r in rs if r.status == "ok" and r.f1 is not None)
        return {_key(r): r for r in ok if engine is None or r.backend == engine}

    sa, sb = scored(a), scored(b)
    return [RowPair(k, sa[k], sb[k]) for k in sa if k in sb]


def machine_factor(rows: list[RowPair]) -> float:
    """The median ratio of B's p50 to A's: how much slower (> 1) the machine ran B."""
    return statistics.median(p.b.p50_ms / p.a.p50_ms for p in rows) if rows else 1.0


def report(rows: list[RowPair]) -> list[str]:
    f = machine_factor(rows)
    lines = [
        f"{sum(p.agrees() for p in rows)} of {len(rows)} rows agree within their spread;"
        f" machine factor {f:.3f} (B / A, median over rows); divided by it,"
        f" {sum(p.agrees(f) for p in rows)} of {len(rows)} agree; within the rounds' own ranges alone"
        f" (no machine terms) {sum(p.agrees(own=True) for p in rows)} of {len(rows)}",
        "",
        "| variant | engine | precision asked | A p50 ms | B p50 ms | differ % | spread % | differ % / factor"
        " |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in sorted(rows, key=lambda p: -p.diff_pct()):
        if p.agrees():
            continue
        lines.append(
            f"| {p.key[0]} | {p.key[1]} | {p.key[2] or '-'} | {p.a.p50_ms:.1f} | {p.b.p50_ms:.1f}"
            f" | {p.diff_pct():.0f} | {p.spread_pct:.0f} | {p.diff_pct(f):.0f} |"
        )
    return lines


def probe_line(a: dict | None, b: dict | None) -> str:
    """The two runs' speed probes (``meta.speed_probe``, bench/machine.SpeedProbe), where both have one."""
    if not a or not b:
        return "speed probe: not in both runs (runs before 2026-12-04 22:00 have none)"
    if a.get("method") != b.get("method"):
        return "speed probe: the two runs used different probes (not comparable)"
    return (
        f"speed probe: A median {a['median_ms']:.1f} ms (range {a['spread_pct']} %),"
        f" B {b['median_ms']:.1f} ms (range {b['spread_pct']} %): B / A {b['median_ms'] / a['median_ms']:.3f}"
    )


def main(argv=None) -> int:
    from fundus_edge.runtime.engines.table import names

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="a bench results.json")
    ap.add_argument("b", help="another, from the same machine")
    ap.add_argument(
        "--engine",
        default="openvino",
        choices=["all", *names()],
        help="the rows of this engine only ('all': every engine)",
    )
    args = ap.parse_args(argv)
    (ra, ma), (rb, mb) = load_record(args.a), load_record(args.b)
    engine = None if args.engine == "all" else args.engine
    print(f"A {ma['date']} ({ma['machine']['cpu']}), B {mb['date']} ({mb['machine']['cpu']})")
    print(probe_line(ma.get("speed_probe"), mb.get("speed_probe")))
    print("\n".join(report(pairs(ra, rb, engine))))
    print()
    print("\n".join(accuracy_report(scored_pairs(ra, rb, engine))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
