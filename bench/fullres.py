"""Full-resolution input: how masks are brought back to a large input, and what a large JPEG costs.

``python -m fundus_edge.bench.fullres score MODEL --native DRIVE --standin build/standin/drive-x4``
scores the model on the stand-in (``measure/standin.py``) once per way of reaching full size (the
runtime's ``ScaleOptions.upsample`` methods, and predicting at twice the training scale) and on the native
images once, through one engine; prints F1 with its 95 % interval and the paired difference against
native. Each scoring is a held-out read when the images are: one ``report`` row of the test-read ledger
(it chooses an upsampling method, not a model).

``python -m fundus_edge.bench.fullres time MODEL --image IMG`` makes an 8 MP JPEG of ``IMG`` (enlarged 4x
on a black 3:2 canvas, 3504 x 2336, quality 90) and times ``Predictor.predict`` on its path: full decode
with the bilinear probability against the runtime's default (reduced decode), runs alternating.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from fundus_edge.measure.camera import resize
from fundus_edge.measure.intervals import ImageStats, bootstrap, paired
from fundus_edge.measure.metrics import MetricAccumulator, VesselMetrics
from fundus_edge.measure.site import read_site
from fundus_edge.runtime.engines.table import backend_choices
from fundus_edge.runtime.errors import FundusEdgeError
from fundus_edge.runtime.images import read_binary, read_image

# What is scored: name -> ScaleOptions fields. "native" runs on the native images, the rest on the stand-in.
ALTERNATIVES = {
    "native": {},
    "default": {},  # the runtime's own path, whatever its defaults are
    "linear": {"upsample": "linear"},
    "cubic": {"upsample": "cubic"},
    "guided": {"upsample": "guided"},
    "nearest": {"upsample": "nearest"},
    "mask": {"upsample": "mask"},
    "net2x": {"net_scale": 2.0},
    # On a JPEG stand-in: the whole file decoded, against the runtime's reduced decode.
    "jpeg-full": {"reduced_decode": False},
    "jpeg-reduced": {},
}


@dataclass(frozen=True)
class ReadReport:
    """What the ledger's ``record`` needs of one scoring."""

    source: str
    data: str
    split: str
    pooled: VesselMetrics


def score(model: str, data: str, options: dict, backend: str, threads: int, split: str | None = None):
    """(pooled metrics, per-image statistics) of ``model`` on a site folder, scoring each Prediction's
    mask (the file ``predict`` writes) against the labels inside the FOV masks."""
    from fundus_edge.runtime.predictor import Predictor, ScaleOptions

    pred = Predictor.load(
        model, backend=backend, threads=threads, precision=None, scale=ScaleOptions(**options)
    )
    acc = MetricAccumulator(threshold=pred.threshold, with_auc=False)
    for s in read_site(data, split).images:
        fov = read_binary(s.fov, "FOV mask") if s.fov else "auto"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = pred.predict(s.image, fov=fov)
        acc.add(r.prob, read_binary(s.label), r.fov, s.name, pred=r.mask)
    return acc.pooled(), acc.image_stats()


def cmd_score(a) -> int:
    from fundus_edge.measure.ledger import ledger_path, record

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stats: dict[str, ImageStats] = {}
    for name in a.alternatives.split(","):
        data, split = (a.native, "test") if name == "native" else (a.standin, None)
        pooled, st = score(a.model, data, ALTERNATIVES[name], a.backend, a.threads, split)
        stats[name] = st
        (out / f"{name}.json").write_text(
            json.dumps({"pooled": pooled.to_dict(), "image_stats": st.to_dict()})
        )
        if not a.no_ledger:
            note = (
                f"{a.note}; full-resolution alternative {name!r}: chooses an upsampling method, not a model"
            )
            cmd = f"python -m fundus_edge.bench.fullres score {a.model} --alternatives {name}"
            record(
                ReadReport(a.model, str(data), "test", pooled),
                "report",
                ledger_path(a.ledger),
                cmd,
                note=note,
            )
        iv = bootstrap(st, {"f1": pooled.f1})["f1"]
        line = f"{name:8s} F1 {iv.text()}"
        if a.against in stats and name != a.against:
            line += f"  vs {a.against} " + paired(stats[a.against], st, ("f1",))["f1"].text()
        print(line, flush=True)
    return 0


def frame_8mp(image: str, out: Path) -> Path:
    """``image`` enlarged 4x (bicubic) on a black 3504 x 2336 canvas, JPEG quality 90."""
    rgb = resize(read_image(image), 4.0)[:2336, :3504]
    canvas = np.zeros((2336, 3504, 3), np.uint8)
    x0 = (3504 - rgb.shape[1]) // 2
    canvas[: rgb.shape[0], x0 : x0 + rgb.shape[1]] = rgb
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), canvas[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    return out


def cmd_time(a) -> int:
    from fundus_edge.runtime.predictor import Predictor, ScaleOptions

    path = frame_8mp(a.image, Path(a.out) / "8mp.jpg")
    ways = {
        "full decode, bilinear": ScaleOptions(reduced_decode=False, upsample="linear"),
        "default": ScaleOptions(),
    }
    preds = {
        k: Predictor.load(a.model, backend=a.backend, threads=a.threads, precision=None, scale=v)
        for k, v in ways.items()
    }
    got: dict[str, list] = {k: [] for k in ways}
    for i in range(a.runs + 2):  # alternating, two warm-up rounds
        for k, p in preds.items():
            c0 = time.process_time()
            r = p.predict(path, fov="auto")
            if i >= 2:
                got[k].append((r.engine_ms, r.total_ms, (time.process_time() - c0) * 1e3))
    for k, rows in got.items():
        eng, tot, cpu = (statistics.median(x[j] for x in rows) for j in range(3))
        print(f"{k}: engine {eng:.1f} ms, total {tot:.1f} ms ({tot / eng:.2f}x engine), CPU {cpu:.1f} ms")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m fundus_edge.bench.fullres", description=__doc__.split("\n")[0]
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("score", help="score the ways of reaching full size on a stand-in")
    s.add_argument("model")
    s.add_argument("--native", required=True, help="the native site folder (DRIVE's root: its test split)")
    s.add_argument("--standin", required=True, help="its stand-in (python -m fundus_edge.measure.standin)")
    s.add_argument("--alternatives", default=",".join(ALTERNATIVES), help="comma list; native first")
    s.add_argument("--against", default="native", help="the alternative the others are paired with")
    s.add_argument("--out", default="build/fullres", help="per-image statistics, NAME.json each")
    s.add_argument("--note", default="", help="a note for the ledger rows")
    s.add_argument("--ledger", default=None, help="the ledger CSV (default: evaluate's)")
    s.add_argument("--no-ledger", action="store_true", help="scratch data only: record no read")
    t = sub.add_parser("time", help="time an 8 MP JPEG end to end")
    t.add_argument("model")
    t.add_argument("--image", required=True, help="a fundus image to enlarge into the 8 MP frame")
    t.add_argument("--runs", type=int, default=10)
    t.add_argument("--out", default="build/fullres")
    for p in (s, t):
        p.add_argument("--backend", default="openvino", choices=backend_choices())
        p.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    try:
        return cmd_score(a) if a.cmd == "score" else cmd_time(a)
    except FundusEdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
