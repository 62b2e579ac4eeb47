"""Bootstrap intervals over images for pooled vessel metrics, and paired comparisons of two models.

DRIVE test is 20 images: a pooled F1 of 0.8232 carries about +-0.007 of image-to-image luck, more than most
differences between the shipped models. Every figure is therefore given with a 95 % percentile interval from
resampling the *images* (the unit that was sampled), and two models scored on the same images are compared
by a paired bootstrap: one draw of image indices applied to both, so the interval is that of the difference.

Everything is recomputed per resample from per-image sufficient statistics, never from pixels:
- confusion counts (TP, FP, FN, TN inside the FOV) give the pooled F1, IoU, Se and Sp of any resample
  (sums of counts);
- histograms of the vessel and background pixels' probabilities give the pooled ROC AUC of any resample
  (sums of histograms; pixels in one bin count as ties, half a pair each). The bins are equal steps of the
  logit over [-12, 12], not of the probability: half the background pixels lie below 0.0011, and 1024 equal
  probability bins put most of them in the first bin with the dim vessels, which moved s2d-fast's pooled
  AUC by -0.0003; logit bins leave it within 1e-6 of the exact figure (0.978912 against 0.978912).

The resampling is written here rather than with ``scipy.stats.bootstrap`` because every figure and both
models of a pair must use the *same* index draws (a 2000 x n matrix of multiplicities applied to the counts
and histograms by one matrix product); scipy draws its own resamples per call and would recompute each
statistic from resampled arrays instead of weighting the sums.

    python -m fundus_edge.measure.intervals A.json [B.json ...]   # each file's intervals; B - A paired
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fundus_edge.runtime.errors import FundusEdgeError, InputError

RESAMPLES = 2000
SEED = 0
LEVEL = 0.95
HIST_BINS = 1024
LOGIT_RANGE = 12.0  # bins span logit(p) in [-12, 12] (p from 6e-6 to 1 - 6e-6); outside: the end bins
METRICS = ("f1", "iou", "se", "sp", "auc")


@dataclass(frozen=True)
class Interval:
    """A pooled figure and its bootstrap percentile interval over images."""

    value: float
    low: float
    high: float
    n_images: int
    resamples: int
    level: float = LEVEL

    def ci(self, digits: int = 3) -> str:
        """``95 % CI 0.816-0.830`` (a difference keeps its signs: ``-0.003 to +0.005``)."""
        pct = f"{self.level * 100:.0f} % CI"
        if self.low < 0 or self.high < 0:
            return f"{pct} {self.low:+.{digits}f} to {self.high:+.{digits}f}"
        return f"{pct} {self.low:.{digits}f}-{self.high:.{digits}f}"

    def text(self, digits: int = 4) -> str:
        """``0.8232 (95 % CI 0.816-0.830)``."""
        return f"{self.value:.{digits}f} ({self.ci()})"

    def to_dict(self) -> dict:
        return {
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "n_images": self.n_images,
            "resamples": self.resamples,
            "level": self.level,
        }


@dataclass(frozen=True)
class ImageStats:
    """Per-image sufficient statistics of one model on one image set (rows in image order)."""

    names: tuple[str, ...]
    counts: np.ndarray  # (n, 4) int64: TP, FP, FN, TN inside the FOV
    pos_hist: np.ndarray | None = None  # (n, bins) int64: vessel pixels per probability bin
    neg_hist: np.ndarray | None = None  # (n, bins) int64: background pixels per probability bin

    def __post_init__(self):
        n = len(self.names)
        if self.counts.shape != (n, 4):
            raise InputError(f"per-image counts of shape {self.counts.shape}, expected ({n}, 4)")
        for h in (self.pos_hist, self.neg_hist):
            if h is not None and h.shape[0] != n:
                raise InputError(f"per-image histograms for {h.shape[0]} images, expected {n}")

    @property
    def n(self) -> int:
        return len(self.names)

    def to_dict(self) -> dict:
        d = {"names": list(self.names), "counts": self.counts.tolist()}
        if self.pos_hist is not None:
            d.update(bins=int(self.pos_hist.shape[1]), binning=f"logit [-{LOGIT_RANGE:g}, {LOGIT_RANGE:g}]")
            d["pos_hist"] = self.pos_hist.tolist()
            d["neg_hist"] = self.neg_hist.tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "per-image statistics") -> ImageStats:
        try:
            counts = np.asarray(d["counts"], np.int64).reshape(-1, 4)
            pos = np.asarray(d["pos_hist"], np.int64) if d.get("pos_hist") is not None else None
            neg = np.asarray(d["neg_hist"], np.int64) if d.get("neg_hist") is not None else None
            return cls(tuple(d["names"]), counts, pos, neg)
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{where}: not per-image statistics ({e})") from None


def histograms(prob: np.ndarray, truth: np.ndarray, bins: int = HIST_BINS) -> tuple[np.ndarray, np.ndarray]:
    """(vessel, background) histograms of one image's probabilities (already restricted to its FOV), in
    ``bins`` equal logit steps (a monotone map, so the order of the pixels, and thus the AUC, is kept)."""
    p = np.clip(np.asarray(prob, np.float64).ravel(), 1e-12, 1.0 - 1e-12)
    z = (np.log(p) - np.log1p(-p) + LOGIT_RANGE) / (2 * LOGIT_RANGE)
    idx = np.clip((z * bins).astype(np.int64), 0, bins - 1)
    t = np.asarray(truth, bool).ravel()
    return np.bincount(idx[t], minlength=bins), np.bincount(idx[~t], minlength=bins)


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b > 0)


def from_counts(c: np.ndarray) -> dict[str, np.ndarray]:
    """F1, IoU, Se, Sp of summed counts ``c`` (..., 4), vectorized over the leading axes."""
    c = np.asarray(c, np.float64)
    tp, fp, fn, tn = c[..., 0], c[..., 1], c[..., 2], c[..., 3]
    return {
        "f1": _div(2 * tp, 2 * tp + fp + fn),
        "iou": _div(tp, tp + fp + fn),
        "se": _div(tp, tp + fn),
        "sp": _div(tn, tn + fp),
    }


def auc_from_hist(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """ROC AUC of summed histograms (..., bins): P(vessel score > background score), ties counting half."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    below = np.cumsum(neg, axis=-1) - neg  # background pixels in lower bins
    pairs = pos.sum(-1) * neg.sum(-1)
    return _div((pos * (below + 0.5 * neg)).sum(-1), pairs)


def resample_weights(n: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(resamples, n) multiplicities of each image in each bootstrap resample (rows sum to n)."""
    if n < 2:
        raise InputError(f"a bootstrap over images needs at least 2 images, got {n}")
    idx = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    w = np.zeros((resamples, n), np.int64)
    np.add.at(w, (np.arange(resamples)[:, None], idx), 1)
    return w


def _resampled(stats: ImageStats, w: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric of every resample (weights ``w``)."""
    out = from_counts(w @ stats.counts)
    if stats.pos_hist is not None:
        out["auc"] = auc_from_hist(w @ stats.pos_hist, w @ stats.neg_hist)
    return out


def point(stats: ImageStats) -> dict[str, float]:
    """The pooled figures of all images (AUC from the histograms)."""
    return {k: float(v[0]) for k, v in _resampled(stats, np.ones((1, stats.n), np.int64)).items()}


def _percentiles(x: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.percentile(x, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def bootstrap(
    stats: ImageStats,
    values: dict[str, float | None] | None = None,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> dict[str, Interval]:
    """Percentile intervals of the pooled metrics over images. ``values``: the exact pooled figures to
    report (e.g. AUC from every pixel rather than the histograms); the interval is the bootstrap's."""
    w = resample_weights(stats.n, resamples, seed)
    base, res = point(stats), _resampled(stats, w)
    out = {}
    for k, dist in res.items():
        v = (values or {}).get(k)
        lo, hi = _percentiles(dist, level)
        out[k] = Interval(base[k] if v is None else float(v), lo, hi, stats.n, resamples, level)
    return out


@dataclass(frozen=True)
class Comparison:
    """B against A on the same images: B - A and its paired bootstrap interval."""

    metric: str
    a: float
    b: float
    diff: Interval

    @property
    def verdict(self) -> str:
        """``better`` / ``worse`` only when the interval excludes 0, else ``not distinguishable``."""
        if self.diff.low > 0:
            return "better"
        if self.diff.high < 0:
            return "worse"
        return "not distinguishable"

    def text(self) -> str:
        return (
            f"{self.metric} {self.b:.4f} vs {self.a:.4f}: {self.diff.value:+.4f} "
            f"({self.diff.ci(4)}): {self.verdict}"
        )

    def to_dict(self) -> dict:
        return {
            "metric": self.metric,
            "a": self.a,
            "b": self.b,
            "diff": self.diff.to_dict(),
            "verdict": self.verdict,
        }


def paired(
    a: ImageStats,
    b: ImageStats,
    metrics: tuple[str, ...] = ("f1", "auc", "iou"),
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> dict[str, Comparison]:
    """Paired bootstrap of B - A: one draw of image indices applied to both models."""
    if a.names != b.names:
        raise InputError("a paired comparison needs both models scored on the same images in the same order")
    w = resample_weights(a.n, resamples, seed)
    pa, pb, ra, rb = point(a), point(b), _resampled(a, w), _resampled(b, w)
    out = {}
    for k in metrics:
        if k not in ra or k not in rb:
            continue
        lo, hi = _percentiles(rb[k] - ra[k], level)
        out[k] = Comparison(k, pa[k], pb[k], Interval(pb[k] - pa[k], lo, hi, a.n, resamples, level))
    return out


# --- the per-image statistics file (`fundus-edge evaluate --per-image-out FILE`) --------------------------


def load_stats(path: str | Path) -> tuple[ImageStats, dict]:
    """(statistics, the whole record) of a per-image statistics file written by ``evaluate``."""
    path = Path(path)
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read per-image statistics ({e})") from None
    if not isinstance(rec, dict) or "image_stats" not in rec:
        raise InputError(f"{path}: no 'image_stats' (write it with `fundus-edge evaluate --per-image-out`)")
    return ImageStats.from_dict(rec["image_stats"], str(path)), rec


def record_intervals(rec: dict, stats: ImageStats, **kw) -> dict[str, Interval]:
    """The intervals of a statistics file, around its recorded exact pooled figures."""
    pooled = rec.get("pooled") or {}
    return bootstrap(stats, {k: pooled.get(k) for k in METRICS}, **kw)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m fundus_edge.measure.intervals", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument(
        "files", nargs="+", help="per-image statistics (evaluate --per-image-out); B - A for each"
    )
    ap.add_argument("--resamples", type=int, default=RESAMPLES)
    ap.add_argument("--seed", type=int, default=SEED)
    a = ap.parse_args(argv)
    try:
        loaded = [(f, *load_stats(f)) for f in a.files]
        for f, stats, rec in loaded:
            iv = record_intervals(rec, stats, resamples=a.resamples, seed=a.seed)
            print(f"{f}: " + ", ".join(f"{k.upper() if k == 'auc' else k} {iv[k].text()}" for k in iv))
        base_f, base, _ = loaded[0]
        for f, stats, _ in loaded[1:]:
            for c in paired(base, stats, resamples=a.resamples, seed=a.seed).values():
                print(f"{f} - {base_f}: {c.text()}")
    except FundusEdgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
