"""``fundus-edge average``: checkpoint averaging (the work is fundus_edge.train.average)."""

from __future__ import annotations

from .common import add_run_options


def add(sub) -> None:
    v = sub.add_parser(
        "average",
        help="average the weights of checkpoints of one run (SWA of cycle ends), recompute BatchNorm, "
        "validate",
    )
    v.add_argument(
        "checkpoints",
        nargs="+",
        help="checkpoint folders of one network (e.g. the ends of a cyclical schedule's cycles)",
    )
    v.add_argument(
        "--data",
        required=True,
        help="the training data (BatchNorm batches and the validation split of the last checkpoint's config)",
    )
    v.add_argument("--out", required=True, help="the averaged checkpoint's folder")
    v.add_argument(
        "--bn-batches",
        type=int,
        default=200,
        help="training batches for the BatchNorm statistics (default 200)",
    )
    add_run_options(v, threads_help="CPU threads", force_help="overwrite a non-empty --out")
    v.set_defaults(func=run)


def run(a) -> int:
    from fundus_edge.train.average import average_checkpoints

    r = average_checkpoints(
        a.checkpoints, a.out, a.data, bn_batches=a.bn_batches, force=a.force, progress=not a.no_progress
    )
    val = (
        "no validation split"
        if r.val_f1 is None
        else f"val F1 {r.val_f1:.4f}, AUC {r.val_auc:.4f}, threshold {r.threshold:.3f}"
    )
    print(
        f"averaged {len(r.members)} checkpoints, BatchNorm from {r.bn_batches} training batches: {val}; "
        f"saved to {r.out_dir} ({r.elapsed_s:.0f} s)"
    )
    return 0
