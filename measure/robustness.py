"""Accuracy under camera perturbations: each named perturbation is applied to every image, the model
segments the perturbed image (the runtime rescales it to the training FOV), and the probability map,
taken back to the original size, is scored against the original label inside the original FOV."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from fundus_edge.measure.camera import Perturbation, PerturbationChain, parse_perturbation
from fundus_edge.measure.metrics import MetricAccumulator, VesselMetrics
from fundus_edge.runtime.scale import resize_prob

# prob_fn(rgb, fov) -> HxW probability at rgb's size
ProbFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class PerturbedScore:
    perturbation: str
    metrics: VesselMetrics
    delta_f1: float  # against the clean figure of the same run
    best_threshold: tuple[float, float] | None = (
        None  # (threshold, F1) maximising pooled F1 under this perturbation
    )
    # per biomarker, the mean absolute difference (%) of the perturbed masks' values from the clean masks'
    # values (measure.biomarkers.compare_biomarkers); None when not asked for
    biomarker_change: dict | None = None


def perturb_sample(
    p: Perturbation | PerturbationChain | None, rgb: np.ndarray, fov: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The perturbed image and its FOV mask (resized with it for scale perturbations)."""
    if p is None:
        return rgb, fov
    out = p.apply(rgb)
    if out.shape[:2] != rgb.shape[:2]:
        fov = cv2.resize(
            fov.astype(np.uint8), (out.shape[1], out.shape[0]), interpolation=cv2.INTER_NEAREST
        ).astype(bool)
    return out, fov


def score_perturbations(
    prob_fn: ProbFn,
    samples: Sequence,
    names: Sequence[str],
    threshold: float,
    progress=None,
    biomarkers: bool = False,
) -> list[PerturbedScore]:
    """Clean first, then each perturbation; ``samples`` are loaded samples (rgb, label, fov). ``biomarkers``:
    also each biomarker's change from the clean masks, measured on the mask at the image's own size inside
    its own FOV (so a scale perturbation shows the model's change, not the measuring's)."""
    if biomarkers:
        from fundus_edge.measure.biomarkers import compare_biomarkers, compute_biomarkers
    perts = [None] + [parse_perturbation(n) for n in names]
    results, clean_f1, clean_bm = [], None, None
    for p in perts:
        acc = MetricAccumulator(threshold=threshold, per_image_auc=False)
        bms = []
        for s in samples:
            rgb, fov = perturb_sample(p, s.rgb, s.fov)
            prob = resize_prob(prob_fn(rgb, fov), s.rgb.shape[:2])
            acc.add(prob, s.label, s.fov, s.name)
            if biomarkers:
                bms.append(compute_biomarkers(prob >= threshold, s.fov))
            if progress is not None:
                progress.update(1)
        m = acc.pooled()
        clean_f1 = m.f1 if p is None else clean_f1
        clean_bm = bms if p is None else clean_bm
        change = compare_biomarkers(bms, clean_bm) if biomarkers else None
        results.append(
            PerturbedScore("clean" if p is None else p.name, m, m.f1 - clean_f1, acc.best_threshold(), change)
        )
    return results
