"""``fundus-edge evaluate``: its options and the plain evaluation (the perturbed one is cli/perturbed.py,
the site report cli/site.py, the ledger row cli/ledger.py; the work is fundus_edge.evaluate)."""

from __future__ import annotations

import json

from fundus_edge.runtime.errors import FundusEdgeError

from .common import add_backend, add_scale_options, write_per_image
from .ledger import add_ledger_options, record_read
from .perturbed import run_perturbed
from .site import add_site_options, evaluate_site_cmd, wants_site_report


def add(sub) -> None:
    e = sub.add_parser(
        "evaluate", help="score a checkpoint or model folder on a data set (FOV pixels pooled)"
    )
    e.add_argument("source", help="training checkpoint folder, exported model folder or deploy bundle")
    e.add_argument("--data", required=True)
    e.add_argument("--split", default="test", help="DRIVE split: test (default) or train")
    e.add_argument("--layout", default="auto")
    e.add_argument("--threshold", type=float, help="override the stored threshold")
    e.add_argument(
        "--best-threshold",
        action="store_true",
        help="also print the threshold that maximises pooled F1 on these images "
        "(for choosing one on training or validation images; `export --threshold` stores it)",
    )
    add_backend(e, what="engine for a model folder: ")
    e.add_argument("--threads", type=int)
    e.add_argument("--per-image", action="store_true", help="print each image's figures")
    e.add_argument(
        "--per-image-out",
        metavar="FILE",
        help="write the report with per-image statistics (confusion counts, probability histograms) as JSON: "
        "intervals and paired comparisons are recomputed from it without reading the images again "
        "(python -m fundus_edge.measure.intervals FILE [FILE ...]); with --perturb, each row's confusion "
        "counts (for python -m fundus_edge.modelcard --update perturbations)",
    )
    e.add_argument("--force", action="store_true", help="overwrite an existing --per-image-out file")
    e.add_argument(
        "--perturb",
        nargs="?",
        const="all",
        metavar="LIST",
        help="score a model folder under camera perturbations: all (default) or a comma list such as "
        "jpeg30,gamma0.6,scale2,grey",
    )
    add_scale_options(
        e,
        rescale_help="with --perturb: do not resize inputs to the training FOV scale",
        crop_help="with --perturb: run the network on whole frames, not the FOV's bounding box",
    )
    e.add_argument(
        "--biomarkers",
        action="store_true",
        help="with --perturb: also each vessel biomarker's change (%%) from the clean masks",
    )
    e.add_argument("--json", action="store_true")
    e.add_argument("--no-progress", action="store_true")
    add_site_options(e)  # --report, --precision, --worst (cli/site.py)
    add_ledger_options(e)
    e.set_defaults(func=run)


def run(a) -> int:
    from fundus_edge.evaluate import evaluate_source

    if a.biomarkers and a.perturb is None:
        raise FundusEdgeError(
            "--biomarkers is an option of --perturb "
            "(for masks, see `fundus-edge biomarkers` and `predict --biomarkers`)"
        )
    if a.perturb is not None:
        return run_perturbed(a)
    if wants_site_report(a):  # a model folder or bundle on a site folder: the site report
        return evaluate_site_cmd(a, record_read)

    report = evaluate_source(
        a.source,
        a.data,
        split=a.split,
        layout=a.layout,
        threshold=a.threshold,
        backend=a.backend,
        threads=a.threads,
        progress=not a.no_progress,
    )
    record_read(a, report)
    write_per_image(a, report)
    if a.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    m = report.pooled
    print(
        f"{report.source} on {report.data} ({report.split}, {report.images} images, FOV pixels pooled, "
        f"threshold {report.threshold:.3f}, via {report.via})"
    )
    auc = "n/a" if m.auc is None else f"{m.auc:.4f}"
    print(f"  {report.interval_line()}")
    if report.intervals:
        iv = next(iter(report.intervals.values()))
        print(f"  (bootstrap over the {iv.n_images} images, {iv.resamples} resamples, percentile interval)")
    print(
        f"  F1 {m.f1:.4f}  IoU {m.iou:.4f}  mIoU {m.miou:.4f}  Acc {m.acc:.4f}  Se {m.se:.4f}  "
        f"Sp {m.sp:.4f}  AUC {auc}  kappa {m.kappa:.4f}"
    )
    if a.best_threshold:
        if report.best_threshold is None:
            print("  best threshold: n/a (no probability maps to sweep)")
        else:
            t, f1 = report.best_threshold
            caution = "  (a test split: report it, never ship it)" if report.split == "test" else ""
            print(f"  threshold maximising pooled F1 on these images: {t:.3f} (F1 {f1:.4f}){caution}")
    if a.per_image:
        for name, pm in report.per_image:
            print(
                f"  {name:>12}  F1 {pm.f1:.4f}  IoU {pm.iou:.4f}  Acc {pm.acc:.4f}  "
                f"AUC {pm.auc if pm.auc is None else round(pm.auc, 4)}"
            )
    return 0
