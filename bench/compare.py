"""Do two bench runs agree? Row by row, within the spread each run reports.

    python -m fundus_edge.bench.compare docs/results/A.json docs/results/B.json [--engine openvino]

A row of both runs (same variant, engine, requested precision and shape, device; status ok) agrees when its
two p50s differ by no more than the larger of its two spreads (the range of its rounds' p50s over their
median).
The machine factor is the median of B's p50 over A's across those rows: on a VM whose speed moves between runs
most of a disagreement is that one factor, so the rows are also compared with B divided by it. Issue #32 asks
two runs on one machine to agree on every OpenVINO row; this prints how far they are from that.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass

from fundus_edge.bench.history import load_record
from fundus_edge.bench.records import BenchRecord


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


def _key(r: BenchRecord) -> tuple:
    return (r.variant, r.backend, r.precision_requested, r.shape_requested, r.device)


def pairs(a: list[BenchRecord], b: list[BenchRecord], engine: str | None = None) -> list[RowPair]:
    """The rows timed in both runs (ok, with a p50), optionally of one engine only."""

    def timed(rs):
        ok = (r for r in rs if r.status == "ok" and r.p50_ms)
        return {_key(r): r for r in ok if engine is None or r.backend == engine}

    ta, tb = timed(a), timed(b)
    return [RowPair(k, ta[k], tb[k]) for k in ta if k in tb]


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
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="a bench results.json")
    ap.add_argument("b", help="another, from the same machine")
    ap.add_argument("--engine", default="openvino", help="the rows of this engine only ('all': every engine)")
    args = ap.parse_args(argv)
    (ra, ma), (rb, mb) = load_record(args.a), load_record(args.b)
    engine = None if args.engine == "all" else args.engine
    print(f"A {ma['date']} ({ma['machine']['cpu']}), B {mb['date']} ({mb['machine']['cpu']})")
    print(probe_line(ma.get("speed_probe"), mb.get("speed_probe")))
    print("\n".join(report(pairs(ra, rb, engine))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
