"""Vessel-segmentation metrics, plain numpy (+ scikit-learn's ROC AUC).

One home for training (validation, threshold choice) and bench (accuracy through each engine).
Evaluation follows the DRIVE literature: pixels inside the FOV only, pooled over the images of a set.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from fundus_edge.measure.intervals import ImageStats, Interval, bootstrap, histograms


@dataclass(frozen=True)
class VesselMetrics:
    f1: float  # = Dice
    iou: float  # vessel IoU
    miou: float  # mean of vessel and background IoU
    acc: float
    se: float  # sensitivity (recall)
    sp: float  # specificity
    precision: float
    kappa: float
    auc: float | None
    pixels: int

    def to_dict(self) -> dict:
        return asdict(self)


def _div(a: float, b: float) -> float:
    return float(a) / float(b) if b else 0.0


def metrics_from_counts(tp: int, fp: int, fn: int, tn: int, auc: float | None = None) -> VesselMetrics:
    n = tp + fp + fn + tn
    acc = _div(tp + tn, n)
    # Cohen's kappa: observed vs chance agreement from the 2x2 table.
    pe = _div((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn), n * n) if n else 0.0
    kappa = _div(acc - pe, 1.0 - pe) if pe < 1.0 else 0.0
    iou_v = _div(tp, tp + fp + fn)
    iou_b = _div(tn, tn + fp + fn)
    return VesselMetrics(
        f1=_div(2 * tp, 2 * tp + fp + fn),
        iou=iou_v,
        miou=(iou_v + iou_b) / 2.0,
        acc=acc,
        se=_div(tp, tp + fn),
        sp=_div(tn, tn + fp),
        precision=_div(tp, tp + fp),
        kappa=kappa,
        auc=auc,
        pixels=int(n),
    )


def confusion(
    pred: np.ndarray, truth: np.ndarray, fov: np.ndarray | None = None
) -> tuple[int, int, int, int]:
    pred = np.asarray(pred, bool)
    truth = np.asarray(truth, bool)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and label {truth.shape} differ in size")
    if fov is not None:
        fov = np.asarray(fov, bool)
        pred, truth = pred[fov], truth[fov]
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred & ~truth))
    fn = int(np.count_nonzero(~pred & truth))
    tn = int(pred.size - tp - fp - fn)
    return tp, fp, fn, tn


def roc_auc(prob: np.ndarray, truth: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    truth = np.asarray(truth, bool).ravel()
    if truth.all() or not truth.any():
        return None
    return float(roc_auc_score(truth, np.asarray(prob, np.float32).ravel()))


@dataclass
class MetricAccumulator:
    """Accumulates one set (pooled) and keeps per-image figures."""

    threshold: float = 0.5
    with_auc: bool = True
    # Each image's own AUC is a sort of its pixels (~0.2 s for a DRIVE image, 4 s per pass over the test
    # set): callers that read only the pooled figures turn it off.
    per_image_auc: bool = True
    counts: list = field(default_factory=lambda: [0, 0, 0, 0])
    per_image: list = field(default_factory=list)
    # Per-image sufficient statistics for the bootstrap intervals (measure/intervals.py): each image's
    # confusion counts and, with probabilities, its vessel / background probability histograms.
    per_image_counts: list = field(default_factory=list)
    _hists: list = field(default_factory=list)
    _probs: list = field(default_factory=list)
    _truths: list = field(default_factory=list)

    def add(
        self,
        prob: np.ndarray,
        truth: np.ndarray,
        fov: np.ndarray | None = None,
        name: str = "",
        pred: np.ndarray | None = None,
    ) -> VesselMetrics:
        """Add one image. ``prob`` is a probability map in [0, 1] (or a bool mask: AUC is then
        skipped); ``pred``, when given, is the binary mask to score instead of ``prob >= threshold``."""
        prob = np.asarray(prob)
        if pred is None:
            pred = prob if prob.dtype == bool else prob >= self.threshold
        c = confusion(pred, truth, fov)
        for i in range(4):
            self.counts[i] += c[i]
        self.per_image_counts.append(c)
        sel = np.asarray(fov, bool) if fov is not None else np.ones(prob.shape, bool)
        auc = None
        if self.with_auc and prob.dtype != bool:
            p, t = prob[sel].astype(np.float32), np.asarray(truth, bool)[sel]
            self._probs.append(p)
            self._truths.append(t)
            self._hists.append(histograms(p, t))
            auc = roc_auc(p, t) if self.per_image_auc else None
        m = metrics_from_counts(*c, auc=auc)
        self.per_image.append((name, m))
        return m

    def best_threshold(self) -> tuple[float, float] | None:
        """(threshold, F1) maximising pooled F1 over the images added so far; None without probabilities."""
        return best_threshold(self._probs, self._truths) if self._probs else None

    def pooled(self) -> VesselMetrics:
        auc = None
        if self._probs:
            auc = roc_auc(np.concatenate(self._probs), np.concatenate(self._truths))
        return metrics_from_counts(*self.counts, auc=auc)

    def image_stats(self) -> ImageStats:
        """The images added so far as per-image statistics (histograms only when every image had
        probabilities)."""
        names = tuple(n for n, _ in self.per_image)
        counts = np.asarray(self.per_image_counts, np.int64).reshape(-1, 4)
        if self._hists and len(self._hists) == len(names):
            pos = np.stack([h[0] for h in self._hists])
            neg = np.stack([h[1] for h in self._hists])
            return ImageStats(names, counts, pos, neg)
        return ImageStats(names, counts)

    def intervals(self, pooled: VesselMetrics | None = None, **kw) -> dict[str, Interval]:
        """95 % bootstrap intervals over the images of F1, IoU, Se, Sp (and AUC), around the exact pooled
        figures (``pooled``, computed when not given)."""
        m = pooled or self.pooled()
        return bootstrap(
            self.image_stats(), {k: getattr(m, k) for k in ("f1", "iou", "se", "sp", "auc")}, **kw
        )


def best_threshold(
    probs: list[np.ndarray], truths: list[np.ndarray], bins: int = 1000
) -> tuple[float, float]:
    """Threshold in (0, 1) that maximises pooled F1; returns (threshold, F1).

    Histograms of the probabilities of vessel and background pixels give TP/FP/FN at every
    threshold in one pass (exact up to the bin width).
    """
    pos = np.zeros(bins, np.int64)
    neg = np.zeros(bins, np.int64)
    for p, t in zip(probs, truths, strict=False):
        idx = np.clip((np.asarray(p, np.float64) * bins).astype(np.int64), 0, bins - 1)
        t = np.asarray(t, bool)
        pos += np.bincount(idx[t], minlength=bins)
        neg += np.bincount(idx[~t], minlength=bins)
    # Predicted positive when bin index >= k, i.e. prob >= k / bins.
    tp = np.cumsum(pos[::-1])[::-1]
    fp = np.cumsum(neg[::-1])[::-1]
    fn = pos.sum() - tp
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    k = int(np.argmax(f1[1:])) + 1
    return k / bins, float(f1[k])
