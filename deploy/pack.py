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
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np
from fundus_edge.bench.records import BenchRecord
from fundus_edge.measure.site import read_site
from fundus_edge.runtime.engines.table import ENGINE_TABLE
from fundus_edge.runtime.errors import InputError, ModelError, nearest
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

from .adapted import ADAPT_JSON, Adapted, adapted_of, int8_line, site_refusal, time_here
from .adapted import validated as adapted_validated
from .bundle import BUNDLE, GOLDENS, MAX_BYTES, Bundle, Golden, Validated, write_bundle, write_prob
from .pick import Record, choice_key, record_refusal
from .platforms import Platform, arm_refusal, get_platform, is_arm
from .platforms import here as here_platform

# What a device installs besides fundus-edge itself: the runtime's own dependencies (pyproject's
# ``dependencies``) and the engine (the engine table's ``pip``), each pinned to the version the goldens were
# made with.
RUNTIME_PACKAGES = ("numpy", "opencv-python-headless", "pyyaml", "pillow", "tqdm")


@dataclass(frozen=True)
class PackOptions:
    out: Path
    # where the golden inputs come from: a DRIVE folder (test/images), a site folder (images/, labels not
    # needed) or a folder of images
    data: Path | None = None
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
class Source:
    """What one bundle ships and where its figures come from: a bench row, or an adapted folder timed here."""

    key: str  # how messages name it: the row's key (VARIANT/ENGINE[/PRECISION]), or FOLDER/ENGINE
    variant: str
    precision: str | None  # the precision the figures hold for (None: whatever the engine runs)
    request: str | None  # what to ask the engine for (None: the model's own precision)
    threads: int | None
    validated_machine: str  # the architecture the figures were measured on
    # the bundle's validated figures, given the engine loaded from the bundle and the golden images
    figures: Callable[[Predictor, list], Validated]
    readme_note: str = ""  # a sentence the README adds after the validated figures


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
    if opts.engine and opts.engine not in ENGINE_TABLE:
        raise InputError(f"--engine {opts.engine!r}: no such engine{nearest(opts.engine, ENGINE_TABLE)}")
    if (folder / MANIFEST).is_file():
        if not opts.engine:
            raise InputError(
                f"{choice}: a model folder as CHOICE needs --engine"
                " (and --precision for a row that asked one)"
            )
        key = f"{folder.resolve().name}/{opts.engine}" + (f"/{opts.precision}" if opts.precision else "")
    else:
        folder, key = None, choice
    row = find_row(record, key)
    if row.status != "ok" or row.f1 is None:
        raise InputError(
            f"{record.path}: row {key} has no validated figures"
            f" (status {row.status}{': ' + row.error if row.error else ''})"
        )
    if folder is None and row.model_dir:
        # The record names the folder it measured, pinned by its manifest sha256: bundle that very model.
        folder = Path(row.model_dir)
        if not (folder / MANIFEST).is_file():
            # a variant the bench built under build/models is gone from a fresh clone: say how to rebuild it
            rebuilt = " (`make variants` builds it again)" if "build/models" in folder.as_posix() else ""
            raise InputError(
                f"{record.path}: row {key} measured {folder}, which is not a model folder here{rebuilt}"
            )
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


def _names_row(r: BenchRecord, key: str) -> bool:
    """Whether ``key`` names row ``r``: its own key (VARIANT/ENGINE[/PRECISION ASKED]), or
    VARIANT/ENGINE/PRECISION for a row that asked none and ran that precision (fp32 rows carry no
    precision part in their keys; an INT8 model's row runs int8+fp32, named int8 here)."""
    if choice_key(r) == key:
        return True
    variant, engine, precision = (key.split("/") + ["", ""])[:3]
    ran = r.precision or "fp32"
    return (
        bool(precision)
        and not r.precision_requested
        and (r.variant, r.backend) == (variant, engine)
        and precision in (ran, ran.split("+")[0])
    )


def find_row(record: Record, key: str) -> BenchRecord:
    """The CPU row ``key`` names (a row timed at the engine's own shape before a shape row of one key); a
    mistyped key is answered with the three nearest and how to list them all, never all 70."""
    cpu = [r for r in record.rows if not str(r.device or "cpu").startswith("gpu")]
    rows = sorted((r for r in cpu if _names_row(r, key)), key=lambda r: bool(r.shape_requested))
    if rows:
        return rows[0]
    keys = {choice_key(r) for r in cpu} | {
        f"{choice_key(r)}/{(r.precision or 'fp32').split('+')[0]}" for r in cpu if not r.precision_requested
    }
    raise InputError(
        f"{record.path}: no CPU row {key!r}"
        + nearest(key, sorted(keys), f"`python -m fundus_edge.deploy.pick {record.path}`")
    )


def golden_sources(data: Path, n: int) -> list[Path]:
    """The first ``n`` images, sorted, of a DRIVE folder's test split, a site folder's images (measure.site
    reads both; no labels needed) or a folder of images."""
    if not Path(data).is_dir():
        raise InputError(f"{data}: no such folder of images for the goldens")
    try:
        site = read_site(data, require_labels=False)
    except InputError as exc:
        raise InputError(f"--data {data}: {str(exc).splitlines()[0]}") from None
    files = [s.image for s in site.images if s.image.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise InputError(f"{site.folders['images']}: no images for the goldens ({', '.join(IMAGE_SUFFIXES)})")
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


def engine_refusal(engine: str) -> str | None:
    """Why ``pack`` may not ship ``engine`` (its engine-table row says packable=False), or None."""
    spec = ENGINE_TABLE.get(engine)
    if spec is None or spec.packable:
        return None
    ok = ", ".join(n for n, e in ENGINE_TABLE.items() if e.packable)
    return (
        f"{engine}: {spec.label} is not packed for devices (its row in runtime/engines/table.py says"
        f" packable=False: a device installs no {spec.pip}); pack a row of {ok}"
    )


def requirements_text(engine: str | list[str], target: Platform) -> str:
    """The bundle's requirements.txt: the runtime and the engine (or each engine of a bundle of candidates)
    pinned to the versions installed here."""
    engines = [engine] if isinstance(engine, str) else list(dict.fromkeys(engine))
    lines = [
        "# The runtime a device needs for this bundle (no Paddle, no quantizer),"
        " pinned to the versions its goldens were made with.",
        f"# For {target.name}: every pin has a wheel there for Python 3.11"
        " (pip download --only-binary=:all: --platform ...; tests/test_arm.py).",
        f"# fundus-edge {__version__} itself:"
        " pip install --no-deps the project's wheel (or source) after these.",
    ]
    for pkg in RUNTIME_PACKAGES + tuple(ENGINE_TABLE[e].pip for e in engines):
        try:
            lines.append(f"{pkg}=={metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            raise InputError(
                f"{pkg}: not installed here, so its version cannot be pinned for the device"
            ) from None
    return "\n".join(lines) + "\n"


def _figures_text(v: Validated, scores: str, p50: str, note: str) -> str:
    """The README's sentence on where the figures come from: a bench record, or an adapted model's site."""
    cpu = v.identity().title
    if not v.site:
        return (
            f"Validated ({v.images}; {v.date}): {scores}; engine p50 {p50}"
            f" ms\n({v.threads} threads) on {cpu}."
        )
    rounds = len(v.site.get("timed", {}).get("p50_rounds_ms") or [])
    return (
        f"An adapted model, measured on its site, not by the bench on DRIVE: {v.images}"
        f" ({v.record}): {scores}.{note}\nEngine p50 {p50} ms ({v.threads or 'default'} threads), timed at"
        f" pack time ({v.date}; median of {rounds} rounds) on {cpu}."
    )


def _readme(b: Bundle, model: str, files: list[str], note: str = "") -> str:
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
    ver, prec, n_goldens = b.fundus_edge_version, b.precision, len(b.goldens)
    predict = f"fundus-edge predict . IMAGES -o OUT --backend {b.engine}" + (
        " --precision " + b.precision_request if b.precision_request else ""
    )
    return f"""# {model}: {b.engine} {b.precision} deploy bundle

{_figures_text(v, scores, p50, note)}

Install on {b.platform or "linux-x86_64"} (no Paddle, no quantizer): `pip install -r requirements.txt`, then
fundus-edge {ver} with `--no-deps`.

Before screening anyone: `fundus-edge selftest .` checks every file's sha256, that this CPU can run {prec},
runs the {n_goldens} golden images ({GOLDENS}/) against this engine's own outputs (vessel Dice >= 0.99) and
times them; it prints PASS or FAIL with the reason (exit code 0 / 1).

Segment: `{predict}`.
{static}
Files: {", ".join(files)}, {BUNDLE} (the sha256 of every other file), {GOLDENS}/.
"""


def check_out(out: Path, force: bool) -> None:
    """Refuse to replace what is not a bundle, and a bundle without --force."""
    if out.exists() and not force:
        raise InputError(f"{out}: exists (use --force to replace it)")
    if out.exists() and not (out / BUNDLE).is_file():
        raise InputError(f"{out}: exists and is not a bundle (no {BUNDLE}); not replaced, even with --force")


def sources_for(record: Record, opts: PackOptions) -> list[Path]:
    """The golden inputs: --data, else the data the record was measured on."""
    data = opts.data or data_of(record)
    if data is None:
        raise InputError(
            f"{record.path}: the data it was measured on is not here;"
            " give --data (a DRIVE folder, a site folder or a folder of images) for the goldens"
        )
    return golden_sources(Path(data), opts.goldens)


def row_refusal(row: BenchRecord, target: Platform) -> str | None:
    """Why this row may not be packed for ``target`` (an engine no device installs, a precision ARM may
    not record), or None."""
    if why := engine_refusal(row.backend):
        return why
    if is_arm(target) and (why := arm_refusal(row.backend, row.precision or "fp32")):
        return f"{choice_key(row)} for {target.name}: {why}"
    return None


def write_row(
    dest: Path,
    model_dir: Path,
    row: BenchRecord,
    record: Record,
    sources: list[Path],
    opts: PackOptions,
    target: Platform,
) -> Packed:
    """One row's single bundle written into the (empty) folder ``dest``."""
    man = read_manifest(model_dir)
    engine, fmt = choose_engine(man, row.backend)
    if row.format and row.format != fmt:
        fmt = row.format  # what the bench ran (the engine's preferred format may have failed there)
    names = list(man.formats[fmt])
    verify_files(model_dir, man, names)
    # An ARM64 bundle tells its engine the precision it validated, never the engine's default: OpenVINO
    # runs f16 by default on ARM CPUs that have it, which the goldens were not made with.
    request = row.precision_requested or ((row.precision or "fp32") if is_arm(target) else None)
    src = Source(
        key=choice_key(row),
        variant=row.variant,
        precision=row.precision,
        request=request,
        threads=row.threads,
        validated_machine=record.machine or "x86_64",
        figures=lambda pred, images: _validated(row, record),
    )
    return _write(dest, model_dir, man, engine, fmt, names, src, sources, opts, target)


def adapted_refusal(a: Adapted, opts: PackOptions, target: Platform) -> str | None:
    """Why the adapted folder may not be packed as asked, or None: its speed is timed here, so the device
    must be this architecture; its figures are its own precision's; an INT8 build ships only through an
    engine it passed the site's check on."""
    if target.machine != here_platform().machine:
        return (
            f"{a.folder}: an adapted model's speed is timed here at pack time; pack it on a"
            f" {target.name} machine for a {target.name} device"
        )
    if opts.precision:
        return f"{a.folder}: the site's figures hold for the model's own precision; pack without --precision"
    return engine_refusal(opts.engine) or site_refusal(a, opts.engine)


def write_adapted(dest: Path, a: Adapted, sources: list[Path], opts: PackOptions, target: Platform) -> Packed:
    """An adapted folder's bundle written into the (empty) folder ``dest``: the site's figures, timed here."""
    man = read_manifest(a.folder)
    engine, fmt = choose_engine(man, opts.engine)
    names = list(man.formats[fmt])
    verify_files(a.folder, man, names)

    def figures(pred: Predictor, images: list) -> Validated:
        return adapted_validated(a, engine, time_here(pred, images), opts.threads)

    src = Source(
        key=f"{a.folder}/{engine}",
        variant=man.name,
        precision=None if a.int8 is not None else "fp32",  # the estimate is the float model's fp32
        request=None,
        threads=opts.threads,
        validated_machine=here_platform().machine,
        figures=figures,
        readme_note=int8_line(a.int8_check(engine)),
    )
    return _write(dest, a.folder, man, engine, fmt, names, src, sources, opts, target)


def publish(tmp: Path, out: Path) -> None:
    """The finished bundle renamed into place (replacing a bundle there only after check_out allowed it)."""
    if out.exists():
        shutil.rmtree(out)
    tmp.chmod(0o755)  # mkdtemp's 0700 would keep the device's user out
    tmp.rename(out)


def adapted_choice(choice: str, opts: PackOptions) -> Adapted | None:
    """The adapted model CHOICE names (a folder ``fundus-edge adapt`` wrote), or None for any other CHOICE."""
    folder = Path(choice)
    if not (folder / MANIFEST).is_file():
        return None
    a = adapted_of(folder)
    if a is not None and not opts.engine:
        raise InputError(f"{choice}: an adapted model folder as CHOICE needs --engine")
    if a is not None and opts.engine not in ENGINE_TABLE:
        raise InputError(f"--engine {opts.engine!r}: no such engine{nearest(opts.engine, ENGINE_TABLE)}")
    return a


def pack(choice: str, record: Record | None, opts: PackOptions, log: Callable[[str], None] = print) -> Packed:
    """CHOICE's bundle at ``opts.out``: a bench row's (``record``), or an adapted folder's, which needs no
    record (deploy/adapted.py; ``log`` says so in one line)."""
    target = get_platform(opts.platform)
    adapted = adapted_choice(choice, opts)
    if adapted is None and record is None:
        raise InputError(f"{choice}: not an adapted model folder, so it needs a bench record (--record)")
    if adapted is None and (why := record_refusal(record, target, opts.any_cpu, opts.any_arch)):
        raise InputError(why)
    out = Path(opts.out)
    check_out(out, opts.force)
    if adapted is not None:
        if why := adapted_refusal(adapted, opts, target):
            raise InputError(why)
        if opts.data is None and not Path(adapted.site).is_dir():
            raise InputError(
                f"{adapted.site}: the site {adapted.out / ADAPT_JSON} names is not here; give --data SITE"
                " for the goldens"
            )
        sources = golden_sources(Path(opts.data or adapted.site), opts.goldens)
        log(f"{choice}: an adapted model, no bench row: {adapted.line}; its speed is timed here now")
        write = lambda tmp: write_adapted(tmp, adapted, sources, opts, target)  # noqa: E731
    else:
        model_dir, row = resolve(choice, record, opts)
        if why := row_refusal(row, target):
            raise InputError(why)
        sources = sources_for(record, opts)
        write = lambda tmp: write_row(tmp, model_dir, row, record, sources, opts, target)  # noqa: E731
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        packed = write(tmp)
        publish(tmp, out)
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
    src: Source,
    sources: list[Path],
    opts: PackOptions,
    target: Platform,
) -> Packed:
    for n in names:
        shutil.copyfile(confined(model_dir, n, str(model_dir / MANIFEST)), tmp / n)
    write_manifest(tmp, replace(man, formats={fmt: names}, files={}), written=names)

    request = src.request

    def load() -> Predictor:
        return Predictor.load(tmp, backend=engine, threads=opts.threads, precision=request, fmt=fmt)

    pred = load()
    images = [_golden_image(s, opts.input_size) for s in sources]
    shapes = [[1, *pred.prepare(rgb, fov="auto")[0].shape] for rgb in images]
    static: dict = {}
    if opts.input_size and engine == "onnxruntime":
        static = {"onnx": _fix_static_shape(tmp, man, names, shapes, opts)}
        pred = load()
    if pred.precision != (src.precision or pred.precision):
        raise ModelError(
            f"{tmp}: {engine} runs {pred.precision} here, the figures of {src.key} hold for {src.precision}"
        )
    if is_arm(target) and (why := arm_refusal(engine, pred.precision)):
        raise InputError(f"{src.key} for {target.name}: {why}")
    goldens = _write_goldens(tmp / GOLDENS, sources, images, pred)

    (tmp / "requirements.txt").write_text(requirements_text(engine, target))
    b = Bundle(
        variant=src.variant,
        engine=engine,
        format=fmt,
        precision=pred.precision,
        precision_request=request,
        threads=src.threads,
        validated=src.figures(pred, images),
        goldens=tuple(goldens),
        files={},
        input_size=opts.input_size,
        network_inputs=shapes,
        static=static,
        created=time.strftime("%Y-%m-%d %H:%M"),
        fundus_edge_version=__version__,
        platform=target.name,
        machine=target.machine,
        validated_machine=src.validated_machine,
    )
    top = [MANIFEST, *names, "requirements.txt", "README.md"]
    (tmp / "README.md").write_text(_readme(b, man.name, top, src.readme_note))
    b = replace(b, files={n: sha256(tmp / n) for n in top})
    write_bundle(tmp, b)
    size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
    if size > MAX_BYTES:
        raise InputError(
            f"{src.key}: the bundle would be {size / 1e6:.2f} MB,"
            f" over the {MAX_BYTES / 1e6:g} MB budget for shipped bundles"
        )
    return Packed(tmp, b, size, sum(1 for p in tmp.rglob("*") if p.is_file()))
