"""Accuracy under camera perturbations: each named perturbation is applied to every image, the model
segments the perturbed image (the runtime rescales it to the training FOV), and the probability map,
taken back to the original size, is scored against the original label inside the original FOV.

Every row carries 95 % bootstrap intervals over the images (measure/intervals.py) and its drop against clean
as a *paired* interval: the perturbed and the clean scores are of the same images, so one draw of image
indices is applied to both and the interval is that of the difference (a drop is claimed only when it
excludes 0). The per-image confusion counts of every row are kept (``PerturbedScore.image_stats``), so the
F1 intervals and paired drops can be recomputed later without the images."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from fundus_edge.measure.camera import Perturbation, PerturbationChain, parse_perturbation
from fundus_edge.measure.intervals import Comparison, ImageStats, Interval, paired
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
    # 95 % bootstrap intervals over the images (f1, iou, se, sp, auc) around the exact pooled figures
    intervals: dict[str, Interval] | None = None
    # this row against clean on the same images, paired bootstrap (f1, auc); None for clean itself
    drop: dict[str, Comparison] | None = None
    image_stats: ImageStats | None = None  # the per-image statistics both come from

    def interval_fields(self, with_stats: bool = False) -> dict:
        """The row's intervals and paired drops as JSON (empty when there are none); ``with_stats`` adds its
        per-image confusion counts alone: 14 rows of 20 images' probability histograms would be ~3 MB a model,
        and the counts are all an F1 interval or a paired F1 drop is recomputed from (the AUC intervals,
        from the histograms, are kept as computed)."""
        out = {}
        if self.intervals:
            out["intervals"] = {k: iv.to_dict() for k, iv in self.intervals.items()}
        if self.drop:
            out["drop"] = {k: c.diff.to_dict() for k, c in self.drop.items()}
        if with_stats and self.image_stats is not None:
            out["image_stats"] = ImageStats(self.image_stats.names, self.image_stats.counts).to_dict()
        return out


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
    results, clean, clean_bm = [], None, None
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
        m, stats = acc.pooled(), acc.image_stats()
        clean_bm = bms if p is None else clean_bm
        change = compare_biomarkers(bms, clean_bm) if biomarkers else None
        many = stats.n >= 2  # no bootstrap over a single image
        row = PerturbedScore(
            "clean" if p is None else p.name,
            m,
            0.0 if p is None else m.f1 - clean.metrics.f1,
            acc.best_threshold(),
            change,
            acc.intervals(m) if many else None,
            paired(clean.image_stats, stats, ("f1", "auc")) if many and p is not None else None,
            stats,
        )
        clean = row if p is None else clean
        results.append(row)
    return results


def perturbed_cells(r: PerturbedScore) -> tuple[str, str, str]:
    """A row's F1, ΔF1 and AUC as table cells: ``0.7767 (95 % CI 0.768-0.786)``, ``-0.0465 (95 % CI -0.051
    to -0.042)`` (paired against clean; clean itself ``+0.0000 (reference)``), the figures alone without
    intervals (one image)."""
    iv = r.intervals or {}
    f1 = iv["f1"].text() if "f1" in iv else f"{r.metrics.f1:.4f}"
    auc = "n/a" if r.metrics.auc is None else iv["auc"].text() if "auc" in iv else f"{r.metrics.auc:.4f}"
    if r.drop and "f1" in r.drop:
        delta = f"{r.delta_f1:+.4f} ({diff_ci(r.drop['f1'].diff)})"
    else:
        delta = f"{r.delta_f1:+.4f}" + (" (reference)" if r.perturbation == "clean" else "")
    return f1, delta, auc


def diff_ci(iv: Interval, digits: int = 4) -> str:
    """A difference's interval with both signs always (``95 % CI -0.0051 to +0.0003``): Interval.ci drops
    them when both ends are positive, which reads as a range of figures, not of changes."""
    return f"{iv.level * 100:.0f} % CI {iv.low:+.{digits}f} to {iv.high:+.{digits}f}"


def row_stats(rec: dict, where: str) -> dict[str, ImageStats]:
    """Each row's per-image counts of an ``evaluate --perturb --per-image-out`` file, by perturbation."""
    from fundus_edge.runtime.errors import InputError

    rows = rec.get("rows") if isinstance(rec, dict) else None
    if not rows or rows[0].get("perturbation") != "clean" or any("image_stats" not in r for r in rows):
        raise InputError(
            f"{where}: not an `evaluate --perturb --per-image-out` file (clean first, rows with counts)"
        )
    return {r["perturbation"]: ImageStats.from_dict(r["image_stats"], where) for r in rows}


def compare_perturbed(a: dict[str, ImageStats], b: dict[str, ImageStats]) -> dict[str, Comparison]:
    """Model B's F1 against model A's under each perturbation both were scored under, paired over the
    images (the same draws for every row): is one model better than the other on the perturbed images?"""
    return {p: paired(a[p], b[p], ("f1",))["f1"] for p in a if p in b}


def compare_drops(a: dict[str, ImageStats], b: dict[str, ImageStats]) -> dict[str, Interval]:
    """B's drop from its clean F1 minus A's, per perturbation, with one draw of images for all four scores
    (positive: B loses less). Does one model lose less under a perturbation than the other?"""
    from fundus_edge.measure.intervals import LEVEL, RESAMPLES, from_counts, resample_weights

    n = a["clean"].n
    w, one = resample_weights(n), np.ones((1, n), np.int64)

    def drop(s: dict[str, ImageStats], p: str, w: np.ndarray) -> np.ndarray:
        return from_counts(w @ s[p].counts)["f1"] - from_counts(w @ s["clean"].counts)["f1"]

    out = {}
    for p in a:
        if p == "clean" or p not in b:
            continue
        lo, hi = np.percentile(drop(b, p, w) - drop(a, p, w), [50 * (1 - LEVEL), 50 * (1 + LEVEL)])
        value = float((drop(b, p, one) - drop(a, p, one))[0])
        out[p] = Interval(value, float(lo), float(hi), n, RESAMPLES)
    return out


def main(argv=None) -> int:
    import argparse
    import json
    import sys

    from fundus_edge.runtime.errors import FundusEdgeError

    ap = argparse.ArgumentParser(
        prog="python -m fundus_edge.measure.robustness",
        description="two models' F1 under each camera perturbation and their drops from clean, B - A paired "
        "over the images",
    )
    ap.add_argument("a", help="model A's evaluate --perturb --per-image-out file")
    ap.add_argument("b", help="model B's, on the same images")
    args = ap.parse_args(argv)
    try:
        recs = []
        for f in (args.a, args.b):
            try:
                recs.append(row_stats(json.loads(open(f).read()), f))
            except (OSError, ValueError) as e:
                raise FundusEdgeError(f"{f}: cannot read ({e})") from None
        if recs[0]["clean"].names != recs[1]["clean"].names:
            raise FundusEdgeError(f"{args.a}, {args.b}: not scored on the same images in the same order")
        drops = compare_drops(*recs)
        for p, c in compare_perturbed(*recs).items():
            d = drops.get(p)
            print(f"{p}: {c.text()}" + (f"; drop B - drop A {d.value:+.4f} ({diff_ci(d)})" if d else ""))
    except FundusEdgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
