"""Score a training checkpoint (dygraph) or an exported model folder (runtime engine) on a data set."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fundus_edge.measure.intervals import ImageStats, Interval
from fundus_edge.measure.metrics import MetricAccumulator, VesselMetrics
from fundus_edge.runtime.errors import ModelError


@dataclass(frozen=True)
class ReportHead:
    """What was scored, on what, and how (shared by plain and perturbed evaluations)."""

    source: str
    data: str
    split: str
    images: int
    threshold: float
    via: str


def _threshold_dict(best: tuple | None) -> dict | None:
    """(threshold, F1) as JSON."""
    return None if best is None else {"threshold": best[0], "f1": best[1]}


@dataclass(frozen=True)
class EvalReport(ReportHead):
    pooled: VesselMetrics
    per_image: tuple
    best_threshold: tuple | None = None  # (threshold, F1) maximising pooled F1 on these images
    # 95 % bootstrap intervals over the images (f1, iou, se, sp, auc; measure/intervals.py); {} for 1 image
    intervals: dict[str, Interval] = field(default_factory=dict)
    image_stats: ImageStats | None = None  # the per-image statistics they come from

    def to_dict(self, with_stats: bool = False) -> dict:
        """The report as JSON; ``with_stats`` adds the per-image statistics (``--per-image-out``), from which
        intervals and paired comparisons are recomputed without reading the images again."""
        d = {
            "source": self.source,
            "data": self.data,
            "split": self.split,
            "images": self.images,
            "threshold": self.threshold,
            "via": self.via,
            "pooled": self.pooled.to_dict(),
            "intervals": {k: iv.to_dict() for k, iv in self.intervals.items()},
            "per_image": {n: m.to_dict() for n, m in self.per_image},
            "best_threshold": _threshold_dict(self.best_threshold),
        }
        if with_stats and self.image_stats is not None:
            d["image_stats"] = self.image_stats.to_dict()
        return d

    def interval_line(self) -> str:
        """``F1 0.8232 (95 % CI 0.816-0.830)  AUC ...  IoU ...`` (the pooled figures alone for one image)."""
        m = self.pooled
        parts = []
        for k, label in (("f1", "F1"), ("auc", "AUC"), ("iou", "IoU")):
            v = getattr(m, k)
            if k in self.intervals:
                parts.append(f"{label} {self.intervals[k].text()}")
            else:
                parts.append(f"{label} {'n/a' if v is None else f'{v:.4f}'}")
        return "  ".join(parts)


def _model_scorer(source: Path, threshold, backend, threads):
    """(threshold, how, image -> probabilities) for an exported model folder, through the Predictor."""
    from fundus_edge.runtime.predictor import Predictor

    pred = Predictor.load(
        source, backend=backend, threads=threads, precision=None
    )  # the model's own precision (not auto): scores stay fp32 or int8 ones
    thr = pred.threshold if threshold is None else threshold
    via = f"{pred.backend} ({pred.device}, {pred.precision})"
    return thr, via, lambda s: pred.predict(s.rgb, fov=s.fov).prob


def _is_outputs_dir(source: Path) -> bool:
    return source.is_dir() and (any(source.glob("*_prob.png")) or any(source.glob("*_mask.png")))


def _outputs_scorer(source: Path, threshold):
    """(threshold, how, image -> probabilities, pending) for a folder of `fundus-edge predict` outputs: the
    files themselves are scored (the stable contract). The caller sets ``pending["stem"]`` before each image;
    ``pending["pred"]`` then holds that image's saved mask when the masks are scored."""
    from fundus_edge.runtime.images import read_raw

    use_prob = any(source.glob("*_prob.png"))
    use_mask = any(source.glob("*_mask.png")) and threshold is None
    thr = 0.5 if threshold is None else threshold
    via = (
        "predict outputs ("
        + ", ".join(
            x
            for x, on in (
                ("F1 etc. from <stem>_mask.png", use_mask),
                ("AUC from <stem>_prob.png / 255", use_prob),
            )
            if on
        )
        + ")"
    )
    pending = {}

    def _png(kind):
        f = source / f"{pending['stem']}_{kind}.png"
        if not f.is_file():
            raise ModelError(f"{f}: missing prediction for {pending['stem']}")
        return read_raw(f)

    def run(s):
        if use_mask:
            pending["pred"] = _png("mask") >= 128
        return _png("prob").astype(np.float32) / 255.0 if use_prob else _png("mask") >= 128

    return thr, via, run, pending


def _checkpoint_scorer(source: Path, threshold):
    """(threshold, how, image -> probabilities) for a training checkpoint, in Paddle dygraph."""
    from fundus_edge.train.checkpoint import is_checkpoint, load_network
    from fundus_edge.train.infer import predict_prob

    if not is_checkpoint(source):
        raise ModelError(f"{source}: neither a model folder (manifest.yaml) nor a training checkpoint")
    net, info = load_network(source)
    thr = info.threshold if threshold is None else threshold
    return thr, "paddle dygraph", lambda s: predict_prob(net, s.rgb, info.config.preprocess, net.pad_multiple)


def evaluate_source(
    source, data, split="test", layout="auto", threshold=None, backend="auto", threads=None, progress=True
) -> EvalReport:
    from tqdm import tqdm

    from fundus_edge.runtime.manifest import is_model_dir
    from fundus_edge.train.data import discover, load_sample

    source = Path(source)
    samples = discover(data, split=split, layout=layout)
    pending = None  # only for predict outputs: the image being scored and its saved mask
    if is_model_dir(source):
        thr, via, run = _model_scorer(source, threshold, backend, threads)
    elif _is_outputs_dir(source):
        thr, via, run, pending = _outputs_scorer(source, threshold)
    else:
        thr, via, run = _checkpoint_scorer(source, threshold)
    acc = MetricAccumulator(threshold=thr)
    for s in tqdm(samples, desc="evaluate", disable=not progress, unit="img"):
        if pending is not None:
            pending["stem"] = s.image.stem
        ls = load_sample(s)
        prob = run(ls)
        acc.add(prob, ls.label, ls.fov, ls.name, pred=pending.get("pred") if pending is not None else None)
    pooled = acc.pooled()
    return EvalReport(
        str(source),
        str(data),
        split,
        len(samples),
        thr,
        via,
        pooled,
        tuple(acc.per_image),
        acc.best_threshold(),
        acc.intervals(pooled) if len(samples) >= 2 else {},
        acc.image_stats(),
    )


@dataclass(frozen=True)
class PerturbReport(ReportHead):
    rescale: bool
    rows: tuple  # PerturbedScore, clean first

    def to_dict(self, with_stats: bool = False) -> dict:
        """The report as JSON: each row with its intervals and paired drop against clean; ``with_stats``
        adds each row's per-image confusion counts (``--per-image-out``)."""
        return {
            "source": self.source,
            "data": self.data,
            "split": self.split,
            "images": self.images,
            "threshold": self.threshold,
            "via": self.via,
            "rescale": self.rescale,
            "rows": [
                {
                    "perturbation": r.perturbation,
                    "delta_f1": r.delta_f1,
                    **r.metrics.to_dict(),
                    "best_threshold": _threshold_dict(r.best_threshold),
                    **r.interval_fields(with_stats),
                    **(
                        {"biomarker_change_pct": r.biomarker_change} if r.biomarker_change is not None else {}
                    ),
                }
                for r in self.rows
            ],
        }


def evaluate_perturbed(
    source,
    data,
    perturbations,
    split="test",
    layout="auto",
    threshold=None,
    backend="auto",
    threads=None,
    rescale=True,
    crop_fov=True,
    progress=True,
    biomarkers=False,
) -> PerturbReport:
    """F1 / AUC of an exported model under named camera perturbations (see fundus_edge.measure.camera)."""
    from tqdm import tqdm

    from fundus_edge.measure.camera import parse_perturbation
    from fundus_edge.measure.robustness import score_perturbations
    from fundus_edge.runtime.manifest import is_model_dir
    from fundus_edge.runtime.predictor import Predictor, ScaleOptions
    from fundus_edge.train.data import discover, load_sample

    source = Path(source)
    if not is_model_dir(source):
        raise ModelError(
            f"{source}: --perturb needs an exported model folder (manifest.yaml): it runs through the runtime"
        )
    names = [parse_perturbation(n).name for n in perturbations]  # fail on a bad name before loading anything
    samples = [load_sample(s) for s in discover(data, split=split, layout=layout)]
    pred = Predictor.load(
        source,
        backend=backend,
        threads=threads,
        precision=None,
        scale=ScaleOptions(rescale=rescale, crop_fov=crop_fov),
    )
    bar = tqdm(total=len(samples) * (len(names) + 1), desc="perturb", unit="img", disable=not progress)
    thr = pred.threshold if threshold is None else float(threshold)
    rows = score_perturbations(
        lambda rgb, fov: pred.predict(rgb, fov=fov).prob, samples, names, thr, bar, biomarkers=biomarkers
    )
    bar.close()
    via = f"{pred.backend} ({pred.device}, {pred.precision})"
    return PerturbReport(str(source), str(data), split, len(samples), thr, via, rescale, tuple(rows))
