"""Throughput of plain ``predict`` against the Ray path on one machine, same engine and threads in total:
``python -m fundus_edge.archive.throughput --data DRIVE --copies 10`` copies DRIVE's 20 test images N times
(unique names), runs each configuration into a fresh folder and prints images/s, Ray's fixed start-up cost
and its cost per image, and the archive size from which Ray pays off.

Ray's start-up (starting Ray, placing actors, loading one model per actor) is fitted from two archive sizes:
wall = fixed + n / rate."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def _copies(data: Path, copies: int, dest: Path) -> list[Path]:
    src = sorted((data / "test" / "images").iterdir())
    if not src:
        raise SystemExit(f"{data}/test/images: no images")
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for c in range(copies):
        for s in src:
            d = dest / f"{s.stem}_c{c:03d}{s.suffix}"
            if not d.exists():
                shutil.copyfile(s, d)
            out.append(d)
    return out


def _parser() -> argparse.ArgumentParser:
    from ..runtime.engines.table import backend_choices

    p = argparse.ArgumentParser(
        prog="python -m fundus_edge.archive.throughput", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--data", required=True, help="DRIVE folder")
    p.add_argument("--model", default="models/s2d-fast", help="model folder (default: predict's own)")
    p.add_argument("--backend", default="openvino", choices=backend_choices())
    p.add_argument("--copies", type=int, default=10)
    p.add_argument(
        "--threads",
        type=int,
        default=2,
        help="threads in total (plain: the engine's; Ray: workers x threads per worker)",
    )
    p.add_argument("--small", type=int, default=20, help="the smaller archive of the fit of Ray's fixed cost")
    p.add_argument("--json", help="also write the figures here")
    return p


# The helpers import the runtime only when called: main sets OMP_NUM_THREADS first.
def _time_plain(a: argparse.Namespace, files: list[Path], out: Path) -> tuple[float, float]:
    """(model load s, predict s) of plain ``predict`` over ``files``."""
    from ..runtime.batch import predict_files
    from ..runtime.predictor import Predictor

    t0 = time.perf_counter()
    # precision "auto", as predict and the Ray path (SegmentOptions) choose it
    pred = Predictor.load(a.model, backend=a.backend, threads=a.threads, precision="auto")
    load_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    outs = predict_files(pred, files, out, progress=False)
    plain_s = time.perf_counter() - t1
    assert all(o.error is None for o in outs)
    return load_s, plain_s


def _time_ray(a: argparse.Namespace, files: list[Path], work: Path, res: dict, load_s: float, plain_s: float):
    """Each Ray configuration of ``a.threads`` in total over ``files`` (into ``res``), then the best one on
    the first ``a.small`` files, for the fit of Ray's fixed cost and cost per image (``res["fit"]``)."""
    from .job import RayOptions, SegmentOptions, run_archive

    n = len(files)
    opts = SegmentOptions(Path(a.model), backend=a.backend)
    configs = [(1, a.threads), (a.threads, 1)] if a.threads > 1 else [(1, 1)]
    for workers, tpw in configs:
        s = run_archive(
            files, work / f"ray-{workers}x{tpw}", opts, RayOptions(None, workers, tpw), progress=False
        )
        assert s.ok == n, s
        res[f"ray {workers}x{tpw}"] = {"wall_s": s.seconds, "images_per_s": s.images_per_s}
    best = max((k for k in res if k.startswith("ray ")), key=lambda k: res[k]["images_per_s"])
    workers, tpw = (int(v) for v in best.split()[1].split("x"))
    s_small = run_archive(
        files[: a.small], work / "ray-small", opts, RayOptions(None, workers, tpw), progress=False
    )
    per_img = (res[best]["wall_s"] - s_small.seconds) / (n - a.small)
    fixed = s_small.seconds - a.small * per_img
    plain_per = plain_s / n
    res["fit"] = {
        "config": best,
        "small_images": a.small,
        "small_wall_s": s_small.seconds,
        "ray_fixed_s": fixed,
        "ray_s_per_image": per_img,
        "plain_s_per_image": plain_per,
        "plain_load_s": load_s,
        "break_even_images": (fixed - load_s) / (plain_per - per_img) if plain_per > per_img else None,
    }


def _print_summary(a: argparse.Namespace, res: dict) -> None:
    print(
        f"{res['images']} images ({a.copies} x DRIVE test), {a.model} on {a.backend}, {a.threads} threads"
        f" in total, {os.cpu_count()} CPUs, ISA {','.join(res['isa_flags'])}"
    )
    for k, v in res.items():
        if isinstance(v, dict) and "images_per_s" in v:
            print(f"  {k:10s} {v['wall_s']:7.1f} s  {v['images_per_s']:6.2f} images/s")
    f = res["fit"]
    be = f["break_even_images"]
    print(
        f"  Ray ({f['config']}): {f['ray_fixed_s']:.1f} s fixed (start, actors, model loads)"
        f" + {f['ray_s_per_image'] * 1e3:.0f} ms per image; "
        f"plain: {f['plain_load_s']:.1f} s load + {f['plain_s_per_image'] * 1e3:.0f} ms per image; "
        + (
            f"Ray pays off from about {be:.0f} images"
            if be is not None
            else "Ray does not pay off on this machine"
        )
    )


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    from ..runtime.threads import apply_threads

    apply_threads(a.threads)
    from ..runtime.cpu import isa_flags

    work = Path(tempfile.mkdtemp(prefix="fe-throughput-"))
    try:
        files = _copies(Path(a.data), a.copies, work / "in")
        n = len(files)
        res: dict = {
            "images": n,
            "model": a.model,
            "backend": a.backend,
            "threads": a.threads,
            "isa_flags": isa_flags(),
            "cpus": os.cpu_count(),
        }
        load_s, plain_s = _time_plain(a, files, work / "plain")
        res["plain"] = {"wall_s": plain_s + load_s, "load_s": load_s, "images_per_s": n / (plain_s + load_s)}
        _time_ray(a, files, work, res, load_s, plain_s)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _print_summary(a, res)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
