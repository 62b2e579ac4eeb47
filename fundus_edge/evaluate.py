"""Score a training checkpoint (dygraph) or an exported model folder (runtime engine) on a data set."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fundus_edge.metrics import MetricAccumulator, VesselMetrics
from fundus_edge.runtime.errors import ModelError


@dataclass(frozen=True)
class EvalReport:
    source: str
    data: str
    split: str
    images: int
    threshold: float
    via: str
    pooled: VesselMetrics
    per_image: tuple

    def to_dict(self) -> dict:
        return {
            "source": self.source, "data": self.data, "split": self.split, "images": self.images,
            "threshold": self.threshold, "via": self.via, "pooled": self.pooled.to_dict(),
            "per_image": {n: m.to_dict() for n, m in self.per_image},
        }


def evaluate_source(source, data, split="test", layout="auto", threshold=None, backend="auto", threads=None, progress=True) -> EvalReport:
    from tqdm import tqdm

    from fundus_edge.train.data import discover, load_sample

    source = Path(source)
    samples = discover(data, split=split, layout=layout)
    if (source / "manifest.yaml").is_file():
        from fundus_edge.runtime.predictor import Predictor

        pred = Predictor.load(source, backend=backend, threads=threads)
        thr = pred.threshold if threshold is None else threshold
        via = f"{pred.backend} ({pred.device}, {pred.precision})"
        run = lambda s: pred.predict(s.rgb, fov=s.fov).prob  # noqa: E731
    else:
        from fundus_edge.train.checkpoint import is_checkpoint, load_network
        from fundus_edge.train.infer import predict_prob

        if not is_checkpoint(source):
            raise ModelError(f"{source}: neither a model folder (manifest.yaml) nor a training checkpoint")
        net, info = load_network(source)
        thr = info.threshold if threshold is None else threshold
        via = "paddle dygraph"
        run = lambda s: predict_prob(net, s.rgb, info.config.preprocess, net.pad_multiple)  # noqa: E731
    acc = MetricAccumulator(threshold=thr)
    for s in tqdm(samples, desc="evaluate", disable=not progress, unit="img"):
        ls = load_sample(s)
        acc.add(run(ls), ls.label, ls.fov, ls.name)
    return EvalReport(str(source), str(data), split, len(samples), thr, via, acc.pooled(), tuple(acc.per_image))
