"""``fundus-edge predict``: segment images in this process (with --ray: cli/predict_ray.py)."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from fundus_edge.runtime.errors import FundusEdgeError

from .common import add_engine_options, add_max_pixels, add_scale_options, load_predictor
from .models import PREDICT_MODEL, default_model_dir
from .predict_ray import add_ray_options, run_ray


def add(sub) -> None:
    r = sub.add_parser("predict", help="segment images: writes <stem>_mask.png (and _prob.png, _overlay.png)")
    r.add_argument(
        "paths",
        nargs="+",
        metavar="[MODEL_DIR] INPUT",
        help=f"model folder (default: {PREDICT_MODEL}/ of --models), then image files or folders",
    )
    r.add_argument(
        "--models",
        help="folder of the shipped models when no model folder is given (default ./models, else the source "
        "checkout's)",
    )
    r.add_argument(
        "--output",
        "-o",
        required=True,
        help="output folder (with --ray also a pyarrow file system URI: s3://bucket/prefix, gs://..., "
        "file:///...)",
    )
    add_engine_options(
        r,
        threads_help=None,
        precision_help="what to run (default auto: the fastest precision this CPU runs that the model's "
        "manifest records as validated (fundus-edge validate), else fp32; an INT8 model its own); an engine "
        "that cannot honour it fails: OpenVINO takes fp32, and bf16 or fp16 where the device computes them "
        "(for an INT8 model: its float layers); ONNX Runtime and Paddle run the file's own precision (fp32 "
        "or int8); Paddle also int8-sim (an INT8 program's Q/DQ graph on float kernels)",
    )
    r.add_argument("--fov", default="auto", help="auto (estimate), none, a mask file or a folder of masks")
    add_scale_options(
        r,
        rescale_help="do not resize the input so its FOV matches the training scale",
        crop_help="run the network on the whole frame, not just the FOV's bounding box",
    )
    r.add_argument("--save-prob", action="store_true", help="also write <stem>_prob.png (probability x 255)")
    r.add_argument("--overlay", action="store_true", help="also write <stem>_overlay.png")
    r.add_argument(
        "--biomarkers",
        action="store_true",
        help="also write <stem>_biomarkers.json (vessel density, length, branch and end "
        "points, width, tortuosity, fractal dimension inside the FOV used) and add its row to "
        "OUTPUT/biomarkers.csv; with --ray: one biomarker_* column each in the results table",
    )
    r.add_argument("--force", action="store_true", help="overwrite existing outputs")
    add_max_pixels(r, "an input whose header declares more refuses the job before anything runs (exit 2)")
    add_ray_options(r)
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(func=run)


def run(a) -> int:
    from fundus_edge.runtime.batch import expand_inputs, predict_files, refuse_oversized
    from fundus_edge.runtime.bundle_choice import is_set
    from fundus_edge.runtime.manifest import is_model_dir

    paths = list(a.paths)
    if paths and (is_model_dir(paths[0]) or is_set(paths[0])):
        model = Path(paths.pop(0))
    else:
        model = default_model_dir(a.models)
    if not paths:
        raise FundusEdgeError("no input images given")
    files = expand_inputs(paths)
    if a.max_pixels < 1:
        raise FundusEdgeError(f"--max-pixels must be at least 1 (got {a.max_pixels})")
    refuse_oversized(files, a.max_pixels)  # headers only, before a model loads or an output is written
    if a.ray is not None:
        return run_ray(a, model, files)
    if a.workers is not None or a.threads_per_worker is not None:
        raise FundusEdgeError("--workers and --threads-per-worker are options of --ray")
    pred = load_predictor(model, a)
    print(
        f"model {model} ({pred.manifest.name}, {pred.manifest.variant}) on {pred.backend}, "
        f"device {pred.device}, {pred.precision_line()}",
        file=sys.stderr,
    )
    after = None
    if a.biomarkers:
        from fundus_edge.measure.biomarker_files import PredictBiomarkers

        after = PredictBiomarkers()
    t0 = time.perf_counter()
    outcomes = predict_files(
        pred,
        files,
        Path(a.output),
        save_prob=a.save_prob,
        save_overlay=a.overlay,
        fov=a.fov,
        force=a.force,
        progress=not a.no_progress,
        after=after,
        max_pixels=a.max_pixels,
    )
    wall = time.perf_counter() - t0
    if after is not None and after.rows:
        from fundus_edge.measure.biomarker_files import CSV_NAME, write_csv

        # Adds to the folder's table: rows of earlier runs stay, a re-predicted image's row is replaced.
        table = write_csv(after.rows, Path(a.output) / CSV_NAME, merge=True)
        print(f"biomarkers: {len(after.rows)} rows in {table}", file=sys.stderr)
    ok = [o for o in outcomes if o.error is None]
    failed = len(outcomes) - len(ok)
    mean = sum(o.total_ms for o in ok) / len(ok) if ok else 0.0
    # The median is what the bench reports (its e2e p50); the mean also carries one-off costs, such as
    # an engine's build for an input shape not seen before.
    median = statistics.median(o.total_ms for o in ok) if ok else 0.0
    print(
        f"{len(ok)} of {len(outcomes)} images written to {a.output} in {wall:.1f} s "
        f"({len(outcomes) / wall:.2f} images/s; per image end to end: mean {mean:.1f} ms, "
        f"median {median:.1f} ms)" + (f"; {failed} failed" if failed else ""),
        file=sys.stderr,
    )
    return 1 if failed else 0
