"""``fundus-edge predict --ray``: its options and the Ray Data pipeline over the inputs (the work is
fundus_edge.archive)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from fundus_edge.runtime.errors import FundusEdgeError


def add_ray_options(r) -> None:
    """predict's --ray and the options of its Ray Data pipeline."""
    r.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="run as a Ray Data pipeline (pip install 'fundus-edge[ray]'): a local Ray, or join the cluster "
        "at ADDRESS (--ray=host:port, --ray=auto); resumable: inputs whose outputs and row exist are "
        "skipped; writes results.parquet and results.csv",
    )
    r.add_argument(
        "--workers",
        type=int,
        help="with --ray: Predictor actors (default: this machine's CPUs / threads per worker)",
    )
    r.add_argument(
        "--threads-per-worker",
        type=int,
        help="with --ray: engine threads of each actor (default: this machine's CPUs, at most 4)",
    )


def run_ray(a, model: Path, files: list) -> int:
    from fundus_edge.archive.job import RayOptions, SegmentOptions, run_archive

    if a.threads:
        raise FundusEdgeError("with --ray, give --threads-per-worker (and --workers), not --threads")
    address = None if a.ray == "local" else a.ray
    # Default: engines of up to 4 threads, as many as the CPUs hold. On the 2-core development machine one
    # 2-thread actor beat two 1-thread ones (1.92 vs 1.31 images/s, README), as one process beats two there.
    cpus = os.cpu_count() or 1
    tpw = a.threads_per_worker or min(4, cpus)
    workers = a.workers or max(1, cpus // tpw)
    opts = SegmentOptions(
        model,
        backend=a.backend,
        device=a.device,
        precision=a.precision,
        rescale=not a.no_rescale,
        crop_fov=not a.no_fov_crop,
        fov=a.fov,
        save_prob=a.save_prob,
        save_overlay=a.overlay,
        biomarkers=a.biomarkers,
        max_pixels=a.max_pixels,
    )
    print(
        f"model {model}: {len(files)} inputs, Ray {'local' if address is None else address}, "
        f"{workers} workers x {tpw} threads",
        file=sys.stderr,
    )
    s = run_archive(
        files, a.output, opts, RayOptions(address, workers, tpw), force=a.force, progress=not a.no_progress
    )
    nodes = ", ".join(f"{n[:8]}: {c}" for n, c in sorted(s.nodes.items())) or "none"
    print(
        f"{s.ok} written, {s.failed} failed, {s.done_before} done before (skipped) of {s.inputs} inputs "
        f"in {s.seconds:.1f} s ({s.images_per_s:.2f} images/s); images per node: {nodes}; "
        f"table: {s.rows} rows ({s.rows_ok} ok) in {', '.join(s.tables)}",
        file=sys.stderr,
    )
    return 1 if s.failed else 0
