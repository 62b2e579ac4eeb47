"""A model scored on one site's labelled images: what a site report says, computed (no presentation here).

The model's pooled figures with 95 % bootstrap intervals over the images (measure/intervals.py), each image's
figures, and, where the site has a second observer's labels, that observer scored against the first the same
way (the human reference: a model as close to the first observer as the second one is does as well as a
person), the model's F1 minus the observer's by a paired bootstrap over the same images, and the vessel
biomarkers of the model's masks and of the second observer's labels against the first observer's (the
measures of docs/biomarkers.md: measure.validate_biomarkers.agreement). The worst images by F1 are kept
(image, mask, label, FOV) for their overlays; only those few, so a site of many large images is scored in
bounded memory.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from fundus_edge.measure.biomarkers import compute_biomarkers
from fundus_edge.measure.intervals import Comparison, ImageStats, Interval, paired
from fundus_edge.measure.metrics import MetricAccumulator, VesselMetrics
from fundus_edge.runtime.errors import InputError

WORST = 4  # images shown with overlays by default
MIN_IMAGES = 2  # a bootstrap over images needs two


@dataclass(frozen=True)
class SiteCase:
    """One image of a site, read: the image, its first-observer label, FOV and second observer's label."""

    name: str
    rgb: np.ndarray  # HxWx3 uint8
    label: np.ndarray  # HxW bool, the first observer (the reference)
    fov: np.ndarray  # HxW bool
    second: np.ndarray | None = None  # HxW bool, a second observer


@dataclass(frozen=True)
class Scored:
    """One scorer (the model, or the second observer) against the first observer's labels."""

    pooled: VesselMetrics
    per_image: tuple  # (name, VesselMetrics) in image order
    intervals: dict[str, Interval]
    stats: ImageStats

    @classmethod
    def of(cls, acc: MetricAccumulator) -> Scored:
        pooled = acc.pooled()
        return cls(pooled, tuple(acc.per_image), acc.intervals(pooled), acc.image_stats())

    def to_dict(self, with_stats: bool = True) -> dict:
        """As JSON; ``with_stats``: the per-image statistics too (ImageStats.to_dict), from which intervals
        and paired comparisons are recomputed later (python -m fundus_edge.measure.intervals)."""
        d = {
            "pooled": self.pooled.to_dict(),
            "intervals": {k: iv.to_dict() for k, iv in self.intervals.items()},
            "per_image": {n: m.to_dict() for n, m in self.per_image},
        }
        return {**d, "image_stats": self.stats.to_dict()} if with_stats else d


@dataclass(frozen=True)
class WorstImage:
    """One of the worst images by the model's F1, kept for its overlay."""

    name: str
    f1: float
    rgb: np.ndarray
    pred: np.ndarray  # the model's mask
    label: np.ndarray
    fov: np.ndarray


@dataclass(frozen=True)
class SiteScore:
    model: Scored
    second: Scored | None  # the second observer against the first; None without one
    vs_second: dict[str, Comparison]  # model - second observer, paired over the images ({} without one)
    biomarkers: dict[str, dict] | None  # the model's masks against the first observer's labels
    second_biomarkers: dict[str, dict] | None  # the second observer's labels against the first's
    worst: tuple[WorstImage, ...] = field(default_factory=tuple)  # worst first

    def to_dict(self, with_stats: bool = True) -> dict:
        return {
            "model": self.model.to_dict(with_stats),
            "second_observer": None if self.second is None else self.second.to_dict(with_stats),
            "model_minus_second_observer": {k: c.to_dict() for k, c in self.vs_second.items()},
            "biomarkers": {"model_vs_first": self.biomarkers, "second_vs_first": self.second_biomarkers},
            "worst": [{"name": w.name, "f1": w.f1} for w in self.worst],
        }


def _keep_worst(heap: list, n: int, item: WorstImage, order: int) -> None:
    """Keep the ``n`` lowest-F1 images in a max-heap on -F1 (ties: the earlier image stays)."""
    entry = (-item.f1, -order, item)
    if len(heap) < n:
        heapq.heappush(heap, entry)
    elif entry > heap[0]:
        heapq.heapreplace(heap, entry)


def score_site(
    cases: Iterable[SiteCase],
    predict: Callable[[np.ndarray, np.ndarray], np.ndarray],
    threshold: float,
    worst: int = WORST,
    biomarkers: bool = True,
) -> SiteScore:
    """Score ``predict(rgb, fov) -> probability map`` (the image's own size) on every case. The second
    observer is scored only when every case has one (a partial second reading is no reference)."""
    model = MetricAccumulator(threshold=threshold)
    human = MetricAccumulator(threshold=0.5)
    heap: list = []
    bm_model, bm_first, bm_second = [], [], []
    seconds = 0
    for i, c in enumerate(cases):
        prob = predict(c.rgb, c.fov)
        pred = prob >= threshold
        m = model.add(prob, c.label, c.fov, c.name, pred=pred)
        if worst > 0:
            _keep_worst(heap, worst, WorstImage(c.name, m.f1, c.rgb, pred, c.label, c.fov), i)
        if c.second is not None:
            seconds += 1
            human.add(c.second, c.label, c.fov, c.name)  # a bool mask: counts only, no AUC
        if biomarkers:
            bm_model.append(compute_biomarkers(pred, c.fov))
            bm_first.append(compute_biomarkers(c.label, c.fov))
            if c.second is not None:
                bm_second.append(compute_biomarkers(c.second, c.fov))
    n = len(model.per_image)
    if n < MIN_IMAGES:
        raise InputError(f"a site report needs at least {MIN_IMAGES} labelled images, got {n}")
    with_second = seconds == n
    second = Scored.of(human) if with_second else None
    agree = None
    if biomarkers:
        # validate_biomarkers holds docs/biomarkers.md's measures; imported here only (it is a CLI module).
        from fundus_edge.measure.validate_biomarkers import agreement

        agree = agreement(bm_model, bm_first)
    scored = Scored.of(model)
    return SiteScore(
        model=scored,
        second=second,
        vs_second=paired(second.stats, scored.stats, ("f1", "iou", "se", "sp")) if second else {},
        biomarkers=agree,
        second_biomarkers=agreement(bm_second, bm_first) if biomarkers and with_second else None,
        worst=tuple(e[2] for e in sorted(heap, reverse=True)),
    )
