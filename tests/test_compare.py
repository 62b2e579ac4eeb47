"""bench.compare: two runs agree row by row within their spreads; the machine factor is reported."""

from __future__ import annotations

import numpy as np
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


def test_accuracy_is_compared_by_a_paired_interval_when_both_rows_have_counts():
    from fundus_edge.bench.compare import accuracy_report, f1_diff, scored_pairs

    rng = np.random.default_rng(0)
    base = [(int(tp), 100, 100, 5000) for tp in rng.integers(300, 600, 12)]
    same = [
        (tp + int(d), fp, fn, tn) for (tp, fp, fn, tn), d in zip(base, rng.integers(-3, 4, 12), strict=True)
    ]
    worse = [(tp - 60, fp + 30, fn + 60, tn) for tp, fp, fn, tn in base]

    def rec(v, counts, f1):
        return BenchRecord(variant=v, backend="openvino", status="ok", f1=f1, per_image_counts=counts)

    d = f1_diff(base, worse)
    assert d.high < 0 and f1_diff(base, same).low <= 0 <= f1_diff(base, same).high
    assert f1_diff(base, None) is None and f1_diff(base, worse[:5]) is None  # not the same images
    a = [rec("x", tuple(base), 0.8), rec("y", tuple(base), 0.8), rec("z", None, 0.8)]
    b = [rec("x", tuple(same), 0.8), rec("y", tuple(worse), 0.7), rec("z", None, 0.8)]
    text = accuracy_report(scored_pairs(a, b))
    assert text[0].startswith("accuracy: 1 of 2 rows with per-image counts in both runs agree on F1")
    assert text[0].endswith("1 rows without counts not compared")
    assert any(x.startswith("| x |") and x.endswith("| yes |") for x in text)
    assert any(x.startswith("| y |") and x.endswith("| no |") for x in text)
    old = accuracy_report(scored_pairs(a[2:], b[2:]))
    assert old == [
        "accuracy: none of the 1 rows has per-image counts in both runs (records before 2026-12-07 have "
        "none): F1 not compared"
    ]
