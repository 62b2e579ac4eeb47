"""``fundus-edge import-paddleseg``: a PaddleSeg export -> a model folder (fundus_edge.export.paddleseg)."""

from __future__ import annotations

import sys
from pathlib import Path

from fundus_edge.runtime.errors import FundusEdgeError

from .common import add_run_options


def add(sub) -> None:
    i = sub.add_parser(
        "import-paddleseg",
        help="a PaddleSeg export (deploy.yaml + PIR or legacy program) -> a fundus-edge model folder",
    )
    i.add_argument(
        "export_dir",
        help="the folder PaddleSeg's export.py wrote (deploy.yaml, model.json or model.pdmodel, "
        "model.pdiparams)",
    )
    i.add_argument("--out", required=True, help="model folder to write, e.g. models/NAME")
    i.add_argument("--name", help="model name in the manifest (default: the --out folder's name)")
    i.add_argument(
        "--threshold",
        type=float,
        help="vessel-probability threshold to store (default 0.5: a two-class argmax)",
    )
    i.add_argument(
        "--data",
        help="choose the threshold that maximises pooled F1 on this data set's training images instead",
    )
    i.add_argument(
        "--vessel-class", type=int, default=1, help="class index of vessels in the model's output (default 1)"
    )
    add_run_options(i)
    i.set_defaults(func=run)


def run(a) -> int:
    from fundus_edge.export.paddleseg import import_paddleseg, set_threshold

    if a.threshold is not None and a.data:
        raise FundusEdgeError("give --threshold or --data (to choose one on the training images), not both")
    r = import_paddleseg(
        a.export_dir, a.out, name=a.name, threshold=a.threshold, vessel_class=a.vessel_class, force=a.force
    )
    gmac = f"{r.gmac:.2f} GMAC" if r.gmac else "GMAC unknown"
    print(
        f"imported {a.export_dir} -> {r.model_dir}: {', '.join(r.formats)}; {r.params:,} parameters, "
        f"{gmac}, {r.size_mb:.2f} MB"
    )
    from fundus_edge.runtime.manifest import read_manifest

    man = read_manifest(r.model_dir)
    print(
        f"output: {man.source['output_op']} over {man.source['classes']} classes -> vessel probability "
        f"(class {man.source['vessel_class']}); input multiple {man.pad_multiple}; "
        f"preprocessing {man.preprocess.to_dict()}"
    )
    if man.engines.get("paddle", {}).get("onednn") is False:
        print(
            "warning: Paddle Inference will run it without oneDNN (several times slower): "
            f"{man.engines['paddle']['why']}",
            file=sys.stderr,
        )
    if man.source.get("onnx_not_made"):
        print(
            f"warning: no ONNX (ONNX Runtime and OpenVINO cannot run it): {man.source['onnx_not_made']}",
            file=sys.stderr,
        )
    if a.data:
        from fundus_edge.evaluate import evaluate_source

        rep = evaluate_source(
            r.model_dir, a.data, split="train", threads=a.threads, progress=not a.no_progress
        )
        if rep.best_threshold is None:
            raise FundusEdgeError(f"{a.data}: no probability maps to choose a threshold on")
        t, f1 = rep.best_threshold
        set_threshold(
            r.model_dir,
            t,
            f"F1-maximising on the {rep.images} training images of {Path(a.data).name} (F1 {f1:.4f})",
        )
        print(
            f"threshold {t:.3f}: pooled F1 {f1:.4f} on the {rep.images} training images "
            "(stored in the manifest)"
        )
    return 0
