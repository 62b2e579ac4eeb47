"""bench.compare: two runs agree row by row within their spreads; the machine factor is reported."""

from __future__ import annotations

from fundus_edge.bench.compare import machine_factor, pairs, report
from fundus_edge.bench.records import BenchRecord


def _rec(variant: str, p50: float, spread: float, backend="openvino", status="ok") -> BenchRecord:
    return BenchRecord(variant=variant, backend=backend, status=status, p50_ms=p50, spread_pct=spread)


def test_rows_agree_within_the_larger_spread_and_the_factor_is_the_median_ratio():
    a = [_rec("x", 10.0, 5.0), _rec("y", 20.0, 5.0), _rec("z", 40.0, 2.0), _rec("w", 5.0, 1.0, "paddle")]
    b = [_rec("x", 10.4, 2.0), _rec("y", 26.0, 10.0), _rec("z", 48.0, 2.0), _rec("w", 9.0, 1.0, "paddle")]
    rows = pairs(a, b, "openvino")
    assert [p.key[0] for p in rows] == ["x", "y", "z"]  # one engine only
    assert [p.agrees() for p in rows] == [True, False, False]  # 4 % <= 5; 30 % > 10; 20 % > 2
    assert machine_factor(rows) == 1.2
    assert [p.agrees(machine_factor(rows)) for p in rows] == [False, True, True]
    text = report(rows)
    assert text[0].startswith("1 of 3 rows agree") and "divided by it, 2 of 3 agree" in text[0]
    assert text[0].endswith("(no machine terms) 1 of 3")
    # A run whose spreads carry the machine's terms: the rounds' own range is kept apart.
    wide = BenchRecord(
        variant="x", backend="openvino", status="ok", p50_ms=12.0, spread_pct=25.0, round_spread_pct=5.0
    )
    (pair,) = pairs([_rec("x", 10.0, 5.0)], [wide])
    assert pair.agrees() and not pair.agrees(own=True)
    assert sum(line.startswith("| y |") or line.startswith("| z |") for line in text) == 2


def test_failed_or_untimed_rows_are_not_compared():
    a = [_rec("x", 10.0, 5.0), _rec("y", 10.0, 5.0, status="run_failed")]
    b = [_rec("x", 10.0, 5.0), _rec("y", 10.0, 5.0)]
    assert [p.key[0] for p in pairs(a, b)] == ["x"]


def test_the_speed_probes_are_compared_when_both_runs_have_one():
    from fundus_edge.bench.compare import probe_line

    a, b = {"median_ms": 30.0, "spread_pct": 4.0}, {"median_ms": 33.0, "spread_pct": 6.0}
    assert probe_line(a, b).endswith("B / A 1.100") and "range 6.0 %" in probe_line(a, b)
    assert probe_line(None, b).startswith("speed probe: not in both runs")
    assert "different probes" in probe_line({**a, "method": "numpy"}, {**b, "method": "conv"})
