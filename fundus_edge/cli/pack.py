"""``fundus-edge pack``: a bench row -> a deploy bundle (the work is fundus_edge.deploy.pack)."""

from __future__ import annotations

from pathlib import Path

from .common import add_platform_args
from .models import shipped_models, shipped_or_here


def add(sub) -> None:
    pk = sub.add_parser(
        "pack",
        help="a bench row -> a self-contained deploy bundle (the engine's files, goldens, validated figures, "
        "pinned runtime)",
    )
    pk.add_argument(
        "choice",
        metavar="CHOICE",
        nargs="?",
        help="what pick printed (VARIANT/ENGINE[/PRECISION]), or a model folder with --engine [--precision]; "
        "omit it with --candidates N",
    )
    pk.add_argument(
        "--candidates",
        type=int,
        metavar="N",
        help="the N fastest rows meeting the bounds in one bundle (1-5); selftest on the device chooses",
    )
    pk.add_argument("--min-f1", type=float, default=0.82, help="with --candidates: lowest F1 (default 0.82)")
    pk.add_argument("--max-ms", type=float, help="with --candidates: highest p50 in ms")
    pk.add_argument("--max-mb", type=float, help="with --candidates: largest model in MB")
    pk.add_argument("--out", required=True, help="bundle folder to write")
    pk.add_argument(
        "--record",
        default="build/bench/results.json",
        help="bench record the figures come from (default build/bench/results.json; not read for an "
        "adapted model folder, whose figures are its site's and whose speed is timed at pack time)",
    )
    pk.add_argument("--engine", help="with a model folder as CHOICE: the engine")
    pk.add_argument(
        "--precision", help="with a model folder as CHOICE: the precision its row asked for (e.g. bf16)"
    )
    pk.add_argument(
        "--data",
        help="golden inputs from a DRIVE folder's test images, a site folder's images or a folder of images "
        "(default: the record's data; for an adapted model, its site)",
    )
    pk.add_argument(
        "--goldens",
        type=int,
        default=3,
        help="golden images (default 3, each halved on both sides unless --input-size)",
    )
    pk.add_argument(
        "--input-size",
        metavar="WxH",
        help="the camera's fixed image size: goldens at that size; ONNX Runtime's input fixed to its network "
        "shape",
    )
    pk.add_argument("--models-dir", default="build/models", help="where the bench built its variants")
    pk.add_argument(
        "--models", help="folder of the shipped models (default ./models, else the source checkout's)"
    )
    pk.add_argument("--threads", type=int)
    pk.add_argument("--any-cpu", action="store_true", help="pack from a record measured on another CPU")
    add_platform_args(pk)
    pk.add_argument("--force", action="store_true", help="replace an existing bundle")
    pk.set_defaults(func=run)


def run(a) -> int:
    from fundus_edge.deploy.adapted import adapted_of
    from fundus_edge.deploy.pack import PackOptions, pack, parse_size
    from fundus_edge.deploy.pick import read_record
    from fundus_edge.runtime.errors import InputError
    from fundus_edge.runtime.manifest import is_model_dir

    if a.candidates and a.choice:
        raise InputError("pack: give CHOICE or --candidates N, not both")
    if not a.candidates and not a.choice:
        raise InputError(
            "pack: give CHOICE (what pick printed, or a model folder with --engine) or --candidates N"
        )
    adapted = bool(a.choice) and is_model_dir(a.choice) and adapted_of(Path(a.choice)) is not None
    rec = None if adapted else read_record(a.record)
    opts = PackOptions(
        out=Path(a.out),
        data=Path(a.data) if a.data else None,
        goldens=a.goldens,
        input_size=parse_size(a.input_size) if a.input_size else None,
        models_dir=Path(a.models_dir),
        shipped=shipped_models(a.models) if a.models else shipped_or_here(),
        engine=a.engine,
        precision=a.precision,
        threads=a.threads,
        any_cpu=a.any_cpu,
        force=a.force,
        platform=a.platform,
        any_arch=a.any_arch,
    )
    if a.candidates:
        return _candidates(a, rec, opts)
    r = pack(a.choice, rec, opts)
    b = r.bundle
    print(
        f"packed {b.variant} on {b.engine} {b.precision} ({b.format}) into {r.folder}: {r.files} files, "
        f"{r.size_bytes / 1e6:.2f} MB; {len(b.goldens)} goldens; "
        + (b.validated.images if b.validated.site else f"validated F1 {b.validated.f1:.4f}")
        + (f", static input {b.static['onnx']}" if b.static.get("onnx") else "")
    )
    print(f"on the device: fundus-edge selftest {r.folder}")
    return 0


def _candidates(a, rec, opts) -> int:
    from fundus_edge.deploy.pack_set import pack_candidates
    from fundus_edge.deploy.pick import Bounds

    r = pack_candidates(rec, Bounds(a.min_f1, a.max_ms, a.max_mb), a.candidates, opts)
    for why in r.passed_over:
        print(f"passed over {why}")
    print(
        f"packed {len(r.index.candidates)} candidates into {r.folder}: {r.files} files, "
        f"{r.size_bytes / 1e6:.2f} MB: " + ", ".join(c.label for c in r.index.candidates)
    )
    print(f"on the device: fundus-edge selftest {r.folder} (times each, keeps the fastest that passes)")
    return 0
