"""``fundus-edge adapt``: its options and its command (the work is fundus_edge.adapt.run_adapt)."""

from __future__ import annotations

from pathlib import Path


def add(sub) -> None:
    a = sub.add_parser(
        "adapt",
        help="fine-tune a shipped model on a site's labelled images: K-fold estimate, learning curve, "
        "and the model trained on all of them",
    )
    a.add_argument("model", help="the shipped float model folder to start from (e.g. models/s2d-fast)")
    a.add_argument(
        "--data", required=True, help="the site folder: images/ and labels (DRIVE and STARE as distributed)"
    )
    a.add_argument("--folds", type=int, default=4, help="cross-validation folds (default 4)")
    a.add_argument(
        "--curve",
        default="0,2,5,10,15",
        help="learning-curve points: labelled images per fine-tune (default 0,2,5,10,15; '' for none)",
    )
    a.add_argument(
        "--iters", type=int, default=None, help="fine-tuning iterations per fold (default: the recipe's 600)"
    )
    a.add_argument(
        "--keep",
        metavar="DATA",
        help="also train every fine-tune on this data set's training images (e.g. DRIVE: a two-camera model "
        "that keeps its first camera); its test images are never read",
    )
    a.add_argument("--out", required=True, help="folder for the folds, the report and the adapted model")
    a.add_argument("--no-final", action="store_true", help="stop after the estimate (no model on all images)")
    a.add_argument(
        "--no-ship",
        action="store_true",
        help="no INT8 builds or cards after the final model (python -m fundus_edge.adapt_ship OUT later)",
    )
    a.add_argument(
        "--threads", type=int, default=1, help="CPU threads (default 1: two runs at one thread train more)"
    )
    a.add_argument("--no-progress", action="store_true", help="no progress bars")
    a.set_defaults(func=run)


def run(a) -> int:
    from fundus_edge.adapt import run_adapt
    from fundus_edge.measure.intervals import Interval
    from fundus_edge.runtime.errors import InputError
    from fundus_edge.train.adapt import AdaptRecipe

    try:
        curve = tuple(int(x) for x in a.curve.split(",") if x.strip())
    except ValueError:
        raise InputError(f"--curve {a.curve!r}: give numbers of images, comma-separated") from None
    recipe = AdaptRecipe() if a.iters is None else AdaptRecipe(iters=a.iters)
    r = run_adapt(
        a.model,
        a.data,
        Path(a.out),
        a.folds,
        curve,
        recipe,
        not a.no_final,
        not a.no_progress,
        keep=a.keep,
        ship=not a.no_ship,
    )
    zs, cv = Interval(**r.zero_shot["f1"]), Interval(**r.cross_validated["f1"])
    took = f"{r.cv_seconds / 60:.1f} min wall, {r.cv_cpu_seconds / 60:.1f} min CPU"
    print(f"zero-shot F1 {zs.text()}; {r.folds}-fold cross-validated F1 {cv.text()} ({took})")
    for p in r.curve:
        print(f"  {p['n_images']:>3} labelled images: F1 {Interval(**p['f1']).text()}")
    if r.final:
        f = r.final
        print(f"adapted model: {f['folder']} (threshold {f['threshold']}, {f['seconds'] / 60:.1f} min)")
    if r.final and not a.no_ship:
        print(f"INT8 builds and cards: {Path(a.out) / 'ship.json'}")
    print(f"report: {Path(a.out) / 'adapt.json'}")
    return 0
