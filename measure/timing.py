"""The one timing harness: warm-up, a run budget, percentiles. Used by the bench cells, ``bench.frames``,
model cards and the pytest-benchmark suite, so every latency figure the project prints follows one rule.

p99 is reported only from at least ``P99_MIN_RUNS`` runs: from 30 it is simply the slowest run.

Rounds: a shared machine drifts (a bench row read 37.8 ms, then 24.1 ms half an hour later), so the bench
times every cell in several rounds spread over its run. A row's figure is the median of its rounds' p50s,
its spread the range of those p50s over that median; two rows are compared round by round (the median of
the per-round ratios), so a slow stretch that lands on one round cancels out of the ratio.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

P99_MIN_RUNS = 100
SPREAD_LIMIT = (
    0.20  # rounds whose p50s range over more than this fraction of their median: not a steady figure
)


@dataclass(frozen=True)
class TimingPolicy:
    warmup: int = 3  # untimed calls first (compilation, caches)
    runs: int = 30  # at most this many timed calls ...
    min_runs: int = 5  # ... and at least this many, whatever the budget
    budget_s: float = 12.0  # stop timing once this much wall time has passed


@dataclass(frozen=True)
class Timing:
    samples_ms: tuple[float, ...]

    @property
    def runs(self) -> int:
        return len(self.samples_ms)

    def pct(self, q: float) -> float:
        return float(np.percentile(np.asarray(self.samples_ms), q))

    @property
    def p50(self) -> float:
        return self.pct(50)

    @property
    def p90(self) -> float:
        return self.pct(90)

    @property
    def p99(self) -> float | None:
        return self.pct(99) if self.runs >= P99_MIN_RUNS else None

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples_ms)

    @property
    def std(self) -> float:
        return statistics.pstdev(self.samples_ms)


def time_calls(call: Callable[[], float | None], policy: TimingPolicy = TimingPolicy()) -> Timing:
    """Time ``call``; if it returns a number, that is the sample in ms (e.g. a Prediction's engine time),
    otherwise its wall time is."""
    for _ in range(policy.warmup):
        call()
    out: list[float] = []
    deadline = time.perf_counter() + policy.budget_s
    while len(out) < policy.runs and (time.perf_counter() < deadline or len(out) < policy.min_runs):
        t0 = time.perf_counter()
        v = call()
        out.append(float(v) if isinstance(v, (int, float)) else (time.perf_counter() - t0) * 1e3)
    return Timing(tuple(out))


@dataclass(frozen=True)
class Rounds:
    """One figure (a p50, ms) timed in several rounds; None marks a round that failed."""

    p50s: tuple[float | None, ...]

    @property
    def timed(self) -> list[float]:
        return [v for v in self.p50s if v is not None]

    @property
    def median(self) -> float | None:
        return statistics.median(self.timed) if self.timed else None

    @property
    def spread(self) -> float | None:
        """(slowest - fastest round) / median; None from fewer than two rounds."""
        t = self.timed
        return (max(t) - min(t)) / self.median if len(t) >= 2 and self.median else None

    @property
    def unsteady(self) -> bool:
        return self.spread is not None and self.spread > SPREAD_LIMIT


def round_ratio(num: tuple[float | None, ...] | list, den: tuple[float | None, ...] | list) -> float | None:
    """Median over rounds of num[i] / den[i], from the rounds both timed (two rows of one run, timed in the
    same rounds); None when the rows were not timed in the same rounds or share none."""
    if not num or not den or len(num) != len(den):
        return None
    r = [a / b for a, b in zip(num, den, strict=False) if a is not None and b]
    return statistics.median(r) if r else None
