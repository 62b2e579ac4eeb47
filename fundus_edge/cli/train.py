"""``fundus-edge train``: its options and its command (the work is fundus_edge.train.trainer)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add(sub) -> None:
    t = sub.add_parser("train", help="train a U-Net on DRIVE (or a file list / image+label folders)")
    t.add_argument(
        "--config",
        default="default",
        help="a packaged config name (default, small, seed-unet) or a YAML file",
    )
    t.add_argument("--data", help="data set: DRIVE folder, PaddleSeg file list or images/+labels/ folder")
    t.add_argument("--out", help="output folder (default runs/<config name>)")
    t.add_argument("--iters", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--crop", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--val-every", type=int)
    t.add_argument(
        "--val-count",
        type=int,
        help="training images held out for validation (default 4; 0 = refit on all "
        "training images with a recipe chosen on validation before: no checkpoint selection)",
    )
    t.add_argument(
        "--threshold",
        type=_threshold_arg,
        help="threshold stored with the weights when --val-count is 0: a number "
        "(default 0.5) or 'train' for the one that maximises F1 on the training images",
    )
    t.add_argument("--seed", type=int)
    _add_distill_options(t)
    t.add_argument("--init", help="start from this checkpoint's weights (fine-tuning)")
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    t.add_argument("--threads", type=int, help="CPU threads")
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last checkpoint (same data order and schedule)",
    )
    t.add_argument(
        "--to-static",
        action="store_true",
        help="trace the training step with paddle.jit.to_static (faster on some CPUs: "
        "python -m fundus_edge.train.throughput --to-static measures it)",
    )
    t.add_argument(
        "--checkpoint-minutes",
        type=float,
        default=10.0,
        help="also save last/ after this much wall time (default 10; 0 = only at validation)",
    )
    t.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=run)


def _add_distill_options(t) -> None:
    """train's --teacher, --teacher-mode and --distill-weight."""
    t.add_argument(
        "--teacher",
        help="distil from this trained model (folder or checkpoint with the same preprocessing); "
        "several, comma-separated, are an ensemble whose probabilities are averaged",
    )
    t.add_argument(
        "--teacher-mode",
        choices=["crop", "image"],
        help="crop (default): the teacher runs on every augmented crop; image: once on "
        "each whole clean training image (and its mirror), the map cropped with the batch - "
        "no teacher cost per step",
    )
    t.add_argument(
        "--distill-weight",
        type=float,
        help="weight of the distillation term (default 1 with --teacher, else 0 = off)",
    )


def _threshold_arg(text: str):
    """--threshold for train: a probability, or 'train' (chosen on the training images of a refit)."""
    if text == "train":
        return text
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number nor 'train'") from None
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in (0, 1)")
    return v


def _resolve_config(name_or_path: str):
    from fundus_edge.train.config import resolve_config

    return resolve_config(name_or_path)


def run(a) -> int:
    from fundus_edge.train.trainer import Trainer

    cfg = _resolve_config(a.config)
    optim = {
        k: v
        for k, v in {
            "iters": a.iters,
            "batch_size": a.batch_size,
            "crop": a.crop,
            "lr": a.lr,
            "val_every": a.val_every,
            "seed": a.seed,
            "threshold": a.threshold,
            "teacher": a.teacher,
            "distill_weight": a.distill_weight,
            "teacher_mode": a.teacher_mode,
        }.items()
        if v is not None
    }
    if a.teacher and a.distill_weight is None:
        optim["distill_weight"] = 1.0
    data = {"root": str(a.data)} if a.data else {}
    if a.val_count is not None:
        data["val_count"] = a.val_count
    cfg = cfg.with_overrides(optim=optim, data=data)
    out = Path(a.out) if a.out else Path("runs") / cfg.name
    res = Trainer(
        cfg,
        out,
        device=a.device,
        progress=not a.no_progress,
        init_weights=a.init,
        checkpoint_minutes=a.checkpoint_minutes,
        to_static=a.to_static,
    ).fit(resume=a.resume, force=a.force)
    if res.stopped_at is not None:
        print(
            f"stopped by SIGTERM at iteration {res.stopped_at} of {cfg.optim.iters}; "
            f"{res.out_dir}/last is saved there: continue with the same command and --resume"
        )
        return 143  # 128 + SIGTERM, as a shell reports a process the signal ended
    if cfg.data.val_count == 0:
        kept = (
            f"no validation split (refit): {res.out_dir}/best holds the final weights "
            f"with threshold {res.threshold:.3f}"
        )
    else:
        figure = (
            "mean of clean and perturbed val F1"
            if cfg.optim.select == "robust" and cfg.optim.val_perturb
            else "val F1"
        )
        kept = (
            f"best {figure} {res.best_val_f1:.4f} at {res.best_iteration} (threshold {res.threshold:.2f}); "
            f"checkpoints in {res.out_dir}/best and {res.out_dir}/last"
        )
    print(
        f"done: {res.iterations} iterations on {res.device}, {res.iters_per_s:.2f} it/s this run, "
        f"{res.elapsed_s / 60:.1f} min in all; {kept}"
    )
    return 0
