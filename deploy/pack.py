"""``pack``: one bench row (variant x engine x precision) -> a self-contained deploy bundle.

The bundle holds only the files that engine reads (a model folder with its own manifest), golden inputs
with this exact engine + precision's outputs for them (made here by the Predictor), the validated
figures from the record, pinned runtime requirements without Paddle or a quantizer, a README for the
device, and ``bundle.yaml`` hashing them all. It is written beside ``--out`` and renamed into place, so a
refused pack leaves nothing behind; it must fit the 5 MB budget.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np
from fundus_edge.bench.records import BenchRecord
from fundus_edge.runtime.errors import InputError, ModelError
from fundus_edge.runtime.images import IMAGE_SUFFIXES, read_image, write_png
from fundus_edge.runtime.manifest import (
    MANIFEST,
    confined,
    read_manifest,
    sha256,
    verify_files,
    write_manifest,
)
from fundus_edge.runtime.predictor import Predictor, choose_engine

from fundus_edge import __version__

from .bundle import BUNDLE, GOLDENS, MAX_BYTES, Bundle, Golden, Validated, write_bundle, write_prob
from .pick import Record, choice_key, record_refusal
from .platforms import Platform, arm_refusal, get_platform, is_arm

# What a device installs besides fundus-edge itself: the runtime's own dependencies (pyproject's
# ``dependencies``) and the one engine, each pinned to the version the goldens were made with.
RUNTIME_PACKAGES = ("numpy", "opencv-python-headless", "pyyaml", "pillow", "tqdm")
ENGINE_PACKAGES = {"openvino": "openvino", "onnxruntime": "onnxruntime", "litert": "ai-edge-litert"}


@dataclass(frozen=True)
class PackOptions:
    out: Path
    data: Path | None = (
        None  # where the golden inputs come from: a DRIVE folder (test/images) or a folder of images
    )
    goldens: int = 3
    input_size: tuple[int, int] | None = None  # the camera's fixed W x H
    models_dir: Path = Path("build/models")  # where the bench built its variants
    shipped: Path = Path("models")
    engine: str | None = None  # for a model-folder CHOICE
    precision: str | None = None
    threads: int | None = None
    any_cpu: bool = False
    force: bool = False
    # the device's platform (deploy.platforms: linux-x86_64, linux-aarch64); None: this machine's
    platform: str | None = None
    any_arch: bool = False  # pack from a record of another architecture than the device's


@dataclass(frozen=True)
class Packed:
    folder: Path
    bundle: Bundle
    size_bytes: int
    files: int


def parse_size(text: str) -> tuple[int, int]:
    """``WxH`` -> (W, H)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--input-size {text!r}: expected WxH, e.g. 1444x1444") from None
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise InputError(f"--input-size {text}: each side must be 16 to 8192 pixels")
    return w, h


def resolve(choice: str, record: Record, opts: PackOptions) -> tuple[Path, BenchRecord]:
    """(model folder, the record's row) for CHOICE: what pick printed (VARIANT/ENGINE[/PRECISION]) or a
    model folder with --engine (and --precision when the row asked one): its row is the variant named
    after the folder."""
    folder = Path(choice)
    if (folder / MANIFEST).is_file():
        if not opts.engine:
            raise InputError(
                f"{choice}: a model folder as CHOICE needs --engine"
                " (and --precision for a row that asked one)"
            )
        key = f"{folder.resolve().name}/{opts.engine}" + (f"/{opts.precision}" if opts.precision else "")
    else:
        folder, key = None, choice
    rows = [r for r in record.rows if choice_key(r) == key and not str(r.device or "cpu").startswith("gpu")]
    if not rows:
        raise InputError(
            f"{record.path}: no CPU row {key!r}"
            f" (its rows: {', '.join(sorted({choice_key(r) for r in record.rows}))})"
        )
    row = rows[0]
    if row.status != "ok" or row.f1 is None:
        raise InputError(
            f"{record.path}: row {key} has no validated figures"
            f" (status {row.status}{': ' + row.error if row.error else ''})"
        )
    if folder is None and row.model_dir:
        # The record names the folder it measured, pinned by its manifest sha256: bundle that very model.
        folder = Path(row.model_dir)
        if not (folder / MANIFEST).is_file():
            raise InputError(f"{record.path}: row {key} measured {folder}, which is not a model folder here")
        if row.model_sha256 and sha256(folder / MANIFEST) != row.model_sha256:
            raise InputError(
                f"{folder}: its manifest changed since the bench measured it (run the bench again)"
            )
    if folder is None:
        found = [
            d for d in (opts.models_dir / row.variant, opts.shipped / row.variant) if (d / MANIFEST).is_file()
        ]
        if not found:
            raise InputError(
                f"variant {row.variant}: no model folder in {opts.models_dir} or {opts.shipped}"
                " (give the folder as CHOICE with --engine)"
            )
        folder = found[0]
    return folder, row


def golden_sources(data: Path, n: int) -> list[Path]:
    """The first ``n`` images of a DRIVE folder's test split (or of a folder of images), sorted."""
    where = data / "test" / "images" if (data / "test" / "images").is_dir() else data
    if not where.is_dir():
        raise InputError(f"{data}: no such folder of images for the goldens")
    files = sorted(p for p in where.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise InputError(f"{where}: no images for the goldens")
    return files[:n]


def data_of(record: Record) -> Path | None:
    """The data folder the record's figures were measured on (its header: '... from PATH'), if still there."""
    desc = str(record.meta.get("images", ""))
    if " from " in desc:
        p = Path(desc.rsplit(" from ", 1)[1].strip())
        return p if p.is_dir() else None
    return None


def _golden_image(src: Path, input_size: tuple[int, int] | None) -> np.ndarray:
    """A small golden: the image at the camera's size, or halved on each side (a quarter of its area)."""
    rgb = read_image(src)
    h, w = rgb.shape[:2]
    size = input_size or (max(16, w // 2), max(16, h // 2))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _fix_onnx_dims(path: Path, shape: tuple[int, ...]) -> None:
    """ONNX Runtime's fixed dims: the graph's input declared at the camera's one network shape, so the
    session plans its memory once (the onnx package is a development dependency: pack runs there)."""
    import onnx

    m = onnx.load_model(str(path))
    dims = m.graph.input[0].type.tensor_type.shape.dim
    if len(dims) != len(shape):
        raise ModelError(f"{path}: input has {len(dims)} dims, the network input {len(shape)}")
    for d, v in zip(dims, shape, strict=False):
        d.ClearField("dim_param")
        d.dim_value = int(v)
    onnx.save_model(m, str(path))


def requirements_text(engine: str, target: Platform) -> str:
    """The bundle's requirements.txt: the runtime and the engine pinned to the versions installed here."""
    lines = [
        "# The runtime a device needs for this bundle (no Paddle, no quantizer),"
        " pinned to the versions its goldens were made with.",
        f"# For {target.name}: every pin has a wheel there for Python 3.11"
        " (pip download --only-binary=:all: --platform ...; tests/test_arm.py).",
        f"# fundus-edge {__version__} itself:"
        " pip install --no-deps the project's wheel (or source) after these.",
    ]
    for pkg in RUNTIME_PACKAGES + (ENGINE_PACKAGES[engine],):
        try:
            lines.append(f"{pkg}=={metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            raise InputError(
                f"{pkg}: not installed here, so its version cannot be pinned for the device"
            ) from None
    return "\n".join(lines) + "\n"


def _readme(b: Bundle, model: str, files: list[str]) -> str:
    v = b.validated
    f = lambda x, fmt: "n/a" if x is None else fmt.format(x)  # noqa: E731
    static = (
        (
            f"Static shape: the goldens are {b.input_size[0]}x{b.input_size[1]} (the camera's size); "
            + (
                f"model.onnx is fixed to the network input {b.static['onnx']}:"
                " another size fails in one line. "
                if b.static.get("onnx")
                else "OpenVINO compiles each input shape once (static) and keeps it,"
                " so a fixed camera size compiles once. "
            )
        )
        if b.input_size
        else ""
    )
    # Named pieces keep the template's source lines within the line length.
    scores = f"F1 {f(v.f1, '{:.4f}')}, AUC {f(v.auc, '{:.4f}')}, IoU {f(v.iou, '{:.4f}')}"
    p50 = f(v.p50_ms, "{:.1f}")
    cpu = v.identity().title
    ver, prec, n_goldens = b.fundus_edge_version, b.precision, len(b.goldens)
    predict = f"fundus-edge predict . IMAGES -o OUT --backend {b.engine}" + (
        " --precision " + b.precision_request if b.precision_request else ""
    )
    return f"""# {model}: {b.engine} {b.precision} deploy bundle

Validated ({v.images}; {v.date}): {scores}; engine p50 {p50} ms
({v.threads} threads) on {cpu}.

Install on {b.platform or "linux-x86_64"} (no Paddle, no quantizer): `pip install -r requirements.txt`, then
fundus-edge {ver} with `--no-deps`.

Before screening anyone: `fundus-edge selftest .` checks every file's sha256, that this CPU can run {prec},
runs the {n_goldens} golden images ({GOLDENS}/) against this engine's own outputs (vessel Dice >= 0.99) and
times them; it prints PASS or FAIL with the reason (exit code 0 / 1).

Segment: `{predict}`.
{static}
Files: {", ".join(files)}, {BUNDLE} (the sha256 of every other file), {GOLDENS}/.
"""


def pack(choice: str, record: Record, opts: PackOptions) -> Packed:
    target = get_platform(opts.platform)
    if why := record_refusal(record, target, opts.any_cpu, opts.any_arch):
        raise InputError(why)
    out = Path(opts.out)
    if out.exists() and not opts.force:
        raise InputError(f"{out}: exists (use --force to replace it)")
    if out.exists() and not (out / BUNDLE).is_file():
        raise InputError(f"{out}: exists and is not a bundle (no {BUNDLE}); not replaced, even with --force")
    model_dir, row = resolve(choice, record, opts)
    if is_arm(target) and (why := arm_refusal(row.backend, row.precision or "fp32")):
        raise InputError(f"{choice_key(row)} for {target.name}: {why}")
    data = opts.data or data_of(record)
    if data is None:
        raise InputError(
            f"{record.path}: the data it was measured on is not here;"
            " give --data (a DRIVE folder or a folder of images) for the goldens"
        )
    sources = golden_sources(Path(data), opts.goldens)
    man = read_manifest(model_dir)
    engine, fmt = choose_engine(man, row.backend)
    if row.format and row.format != fmt:
        fmt = row.format  # what the bench ran (the engine's preferred format may have failed there)
    names = list(man.formats[fmt])
    verify_files(model_dir, man, names)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        packed = _write(tmp, model_dir, man, engine, fmt, names, row, record, sources, opts, target)
        if out.exists():
            shutil.rmtree(out)
        tmp.chmod(0o755)  # mkdtemp's 0700 would keep the device's user out
        tmp.rename(out)
        return replace(packed, folder=out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fix_static_shape(
    tmp: Path, man, names: list[str], shapes: list[list[int]], opts: PackOptions
) -> list[int]:
    """--input-size for ONNX Runtime: the model's input fixed to the goldens' one network shape (returned)."""
    if len({tuple(s) for s in shapes}) != 1:
        raise InputError(
            f"--input-size {opts.input_size[0]}x{opts.input_size[1]}:"
            f" the goldens give network inputs {shapes}, not one static shape"
        )
    _fix_onnx_dims(tmp / names[0], tuple(shapes[0]))
    write_manifest(tmp, replace(read_manifest(tmp), input={**man.input, "dynamic": []}), written=names[:1])
    return shapes[0]


def _write_goldens(
    gdir: Path, sources: list[Path], images: list[np.ndarray], pred: Predictor
) -> list[Golden]:
    """Each golden image as a PNG with this engine's probability and mask for it, hashed."""
    gdir.mkdir()
    goldens = []
    for i, (src, rgb) in enumerate(zip(sources, images, strict=False)):
        stem = f"{i + 1:02d}_{src.stem}"
        g = Golden(f"{stem}.png", f"{stem}.prob.png", f"{stem}.mask.png", {})
        write_png(gdir / g.image, rgb)
        p = pred.predict(read_image(gdir / g.image), fov="auto")  # the file as the device will read it
        write_prob(gdir / g.prob, p.prob)
        write_png(gdir / g.mask, p.mask.astype(np.uint8) * 255)
        goldens.append(replace(g, sha256={n: sha256(gdir / n) for n in (g.image, g.prob, g.mask)}))
    return goldens


def _validated(row: BenchRecord, record: Record) -> Validated:
    """The row's figures and the machine and data the record measured them on."""
    meta = record.meta
    return Validated(
        f1=row.f1,
        auc=row.auc,
        iou=row.iou,
        p50_ms=row.p50_ms,
        e2e_p50_ms=row.e2e_p50_ms,
        threads=row.threads,
        images=str(meta.get("images", "")),
        cpu=record.cpu,
        isa_flags=record.isa_flags,
        cpu_identity=record.identity.to_dict(),
        date=str(meta.get("date", "")),
        record=str(record.path),
        unsteady=row.unsteady,
    )


def _write(
    tmp: Path,
    model_dir: Path,
    man,
    engine: str,
    fmt: str,
    names: list[str],
    row: BenchRecord,
    record: Record,
    sources: list[Path],
    opts: PackOptions,
    target: Platform,
) -> Packed:
    for n in names:
        shutil.copyfile(confined(model_dir, n, str(model_dir / MANIFEST)), tmp / n)
    write_manifest(tmp, replace(man, formats={fmt: names}, files={}), written=names)

    # An ARM64 bundle tells its engine the precision it validated, never the engine's default: OpenVINO
    # runs f16 by default on ARM CPUs that have it, which the goldens were not made with.
    request = row.precision_requested or ((row.precision or "fp32") if is_arm(target) else None)

    def load() -> Predictor:
        return Predictor.load(tmp, backend=engine, threads=opts.threads, precision=request, fmt=fmt)

    pred = load()
    images = [_golden_image(s, opts.input_size) for s in sources]
    shapes = [[1, *pred.prepare(rgb, fov="auto")[0].shape] for rgb in images]
    static: dict = {}
    if opts.input_size and engine == "onnxruntime":
        static = {"onnx": _fix_static_shape(tmp, man, names, shapes, opts)}
        pred = load()
    if pred.precision != (row.precision or pred.precision):
        raise ModelError(
            f"{tmp}: {engine} runs {pred.precision} here,"
            f" the record's row {choice_key(row)} ran {row.precision}"
        )
    if is_arm(target) and (why := arm_refusal(engine, pred.precision)):
        raise InputError(f"{choice_key(row)} for {target.name}: {why}")
    goldens = _write_goldens(tmp / GOLDENS, sources, images, pred)

    (tmp / "requirements.txt").write_text(requirements_text(engine, target))
    b = Bundle(
        variant=row.variant,
        engine=engine,
        format=fmt,
        precision=pred.precision,
        precision_request=request,
        threads=row.threads,
        validated=_validated(row, record),
        goldens=tuple(goldens),
        files={},
        input_size=opts.input_size,
        network_inputs=shapes,
        static=static,
        created=time.strftime("%Y-%m-%d %H:%M"),
        fundus_edge_version=__version__,
        platform=target.name,
        machine=target.machine,
        validated_machine=record.machine or "x86_64",
    )
    top = [MANIFEST, *names, "requirements.txt", "README.md"]
    (tmp / "README.md").write_text(_readme(b, man.name, top))
    b = replace(b, files={n: sha256(tmp / n) for n in top})
    write_bundle(tmp, b)
    size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
    if size > MAX_BYTES:
        raise InputError(
            f"{choice_key(row)}: the bundle would be {size / 1e6:.2f} MB,"
            f" over the {MAX_BYTES / 1e6:g} MB budget for shipped bundles"
        )
    return Packed(tmp, b, size, sum(1 for p in tmp.rglob("*") if p.is_file()))
