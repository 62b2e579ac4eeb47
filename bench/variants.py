"""The bench's model folders: variants built from the shipped default (build/models/<name>), shipped models
as they are, the imported seed U-Net and --models folders.

Missing ones are built one after another at the bench's thread count, the pruned fine-tune (the one long
build, 644 s of 794 on 2 AVX2 cores) included unless the shipped models/default-pruned matches
(``shipped_build``, as for the shipped INT8 folders, LiteRT's too: converting needs a venv of its own).
Two lanes of one thread would not finish sooner there: the fine-tune's step takes 1405 ms at one thread
against 1111 ms at two (`python -m fundus_edge.train.throughput --config default --crop 96 --batch-size
8`), +170 s, about what the other builds (150 s) would save by running beside it.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from fundus_edge.quantize.variants import (
    CONVERTER_INT8,
    DEFAULT_MODEL,
    ENGINE_QUANTIZERS,
    FP32,
    ROWS,
    SEED_UNET,
    Variant,
    derive,
    derived,
)
from fundus_edge.runtime.errors import FundusEdgeError, InputError, one_line


def seed_unet_dir(target: Path, force: bool = False) -> Path:
    """The seed tutorial's PaddleSeg U-Net (13.4 M), untrained (fixed seed), as a PaddleSeg user brings it:
    exported by PaddleSeg's own path (``WrappedModel`` + ``paddle.jit.save`` + deploy.yaml, legacy program so
    that paddle2onnx can convert it) and imported with ``import_paddleseg``."""
    from fundus_edge.runtime.manifest import is_model_dir

    if is_model_dir(target) and not force:
        return target
    from fundus_edge.export.child import run_child
    from fundus_edge.export.paddleseg import import_paddleseg

    export = target.with_name(target.name + ".paddleseg")
    shutil.rmtree(export, ignore_errors=True)
    export.mkdir(parents=True)
    run_child(
        "fundus_edge.export.paddleseg_unet",
        (export, "softmax"),
        pir=False,
        what="PaddleSeg export of the seed U-Net failed",
        error=InputError,
    )
    import_paddleseg(
        export, target, name=SEED_UNET.name, force=True, variant="untrained"
    )  # untrained: speed only, no F1
    shutil.rmtree(export, ignore_errors=True)
    return target


def derived_variant(shipped: Path, name: str) -> Variant | None:
    """The row of a name such as small-int8 or small-pruned-int8 whose model is a folder of ``shipped``."""
    from fundus_edge.runtime.manifest import is_model_dir

    return derived(name, lambda model: is_model_dir(shipped / model))


def recipe_row(name: str) -> Variant | None:
    """The row of one of the default's own variants (fp32, int8, ...: built by ``build_variants``)."""
    row = ROWS.get(name)
    return row if row is not None and row.source == DEFAULT_MODEL and row.recipe == name else None


def extra_variants(extra) -> dict[str, Path]:
    """--models folders that are model folders: variant name (the folder's name) -> folder."""
    from fundus_edge.runtime.manifest import check_model_dir

    out: dict[str, Path] = {}
    for d in extra:
        check_model_dir(d)  # refused here, before any build, as Predictor.load would refuse it
        name = Path(d).resolve().name
        if name in out and out[name] != Path(d):
            raise InputError(f"{d}: two model folders named {name!r}; rename one")
        out[name] = Path(d)
    return out


def _kind(cfg, name: str, extra: dict) -> str:
    """How ``name`` is found: 'variant' (built from the default), 'extra', 'seed', 'shipped', 'derived'."""
    from fundus_edge.runtime.manifest import is_model_dir

    if recipe_row(name) is not None:
        return "variant"
    if name in extra:
        return "extra"
    if name == SEED_UNET.name:
        return "seed"
    if is_model_dir(cfg.shipped / name):  # shipped as is (small, small-pruned)
        return "shipped"
    if derived_variant(cfg.shipped, name) is not None:
        return "derived"
    raise InputError(f"unknown variant {name!r}")


def build_one(cfg, name: str, kind: str) -> Path:
    """Build build/models/<name> (``kind`` as ``_kind`` says)."""
    from fundus_edge.quantize.pipeline import build_variants, quantize
    from fundus_edge.runtime.manifest import is_model_dir

    if kind == "seed":
        return seed_unet_dir(cfg.models_dir / name)
    row = recipe_row(name) if kind == "variant" else derived_variant(cfg.shipped, name)
    if not cfg.data and (row.prune is not None or row.int8 is not None):
        raise InputError(f"building {name} needs DATA (training images for fine-tuning and calibration)")
    if kind == "variant":
        default = cfg.shipped / row.source
        if not is_model_dir(default):
            raise InputError(f"{default}: no shipped default model")
        # A pruned INT8 recipe quantizes the pruned model the bench measures: the shipped build when it
        # matches (no fine-tune here), else build/models/pruned.
        flt = row.float_counterpart
        ship = shipped_build(cfg, flt, "variant")[0] if row.prune is not None and recipe_row(flt) else None
        build_variants(
            default,
            cfg.models_dir,
            cfg.data,
            finetune_iters=cfg.finetune_iters,
            only=(name,),
            progress=False,
            prebuilt={flt: ship} if ship is not None else None,
        )
    else:
        # <shipped model>-<variant>: that shipped model compressed like the default's variant of that
        # name, e.g. small-int8 (PTQ), small-pruned (same ratio and fine-tune as `pruned`).
        quantize(
            cfg.shipped / row.source,
            cfg.models_dir / name,
            cfg.data,
            finetune_iters=cfg.finetune_iters,
            force=True,
            progress=False,
            **row.quantize_args(),
        )
    return cfg.models_dir / name


def _recorded_sources(record) -> list[tuple[str, str]]:
    """(path, manifest sha256) of every model folder a manifest's source record names, nested ones too."""
    found = []
    if isinstance(record, dict):
        if record.get("manifest_sha256") and record.get("path"):
            found.append((str(record["path"]), str(record["manifest_sha256"])))
        for v in record.values():
            found += _recorded_sources(v)
    elif isinstance(record, list):
        for v in record:
            found += _recorded_sources(v)
    return found


def stale_build(cfg, name: str, kind: str) -> str:
    """Why build/models/<name> no longer matches the shipped model it was built from ('' when it does, or
    when its manifest does not say): a shipped model replaced since would otherwise be benchmarked through
    the old model's INT8 or pruned files."""
    from fundus_edge.runtime.manifest import is_model_dir, manifest_sha256, read_manifest

    if kind == "variant":
        base = cfg.shipped / DEFAULT_MODEL
    elif kind == "derived":
        base = cfg.shipped / derived_variant(cfg.shipped, name).source
    else:
        return ""
    if not is_model_dir(base):
        return ""
    try:
        recorded = _recorded_sources(read_manifest(cfg.models_dir / name).source)
    except FundusEdgeError:
        return "its manifest is unreadable"
    now = manifest_sha256(base)
    for path, sha in recorded:
        if Path(path).name == base.name and sha != now:
            return f"built from an older {base} (manifest sha256 {sha[:12]}, now {now[:12]})"
    return ""


def quantizer_settings(quantizer: str) -> dict:
    """The quantization record's settings a bench build by ``quantizer`` (quantize's defaults) would write.
    LiteRT's: the engine alone. Its converter's options (calibration views, layers kept in float) are chosen
    per model on the training images and recorded in the shipped folder; a build here could not choose
    them, so they are the shipped folder's own, not a mismatch."""
    from fundus_edge.quantize.engine_ptq import NncfOptions, OrtOptions
    from fundus_edge.runtime.cpu import has_vnni

    if quantizer in CONVERTER_INT8:
        return {"engine": quantizer, "method": "ptq"}
    if quantizer == "nncf":
        o = NncfOptions()
        return {
            "engine": "openvino",
            "preset": o.preset,
            "fast_bias_correction": o.fast_bias_correction,
            "overflow_fix": o.overflow_fix,
            "accuracy_control": None,
        }
    o = OrtOptions()
    return {
        "engine": "onnxruntime",
        "format": o.quant_format,
        "weights": "int8" + (" per channel" if o.per_channel else ""),
        "calibrate_method": o.calibrate_method,
        "reduce_range": (not has_vnni()) if o.reduce_range is None else o.reduce_range,
    }


def pruning_settings(cfg, row: Variant, base: Path) -> dict:
    """The pruning record's settings a bench build of ``row`` from the float model folder ``base`` would
    write (quantize's fine-tune: ratio, iterations, fixed rate, the source's crop capped)."""
    from fundus_edge.quantize.pipeline import PRUNE_FINETUNE_LR, finetune_crop
    from fundus_edge.runtime.manifest import manifest_path, read_manifest
    from fundus_edge.train.config import config_from_dict

    conf = read_manifest(base).source.get("config")
    crop = config_from_dict(conf, str(manifest_path(base))).optim.crop if isinstance(conf, dict) else None
    return {
        "ratio": row.prune,
        "finetune_iters": cfg.finetune_iters,
        "finetune_lr": PRUNE_FINETUNE_LR,
        "finetune_crop": finetune_crop(crop) if crop is not None else None,
    }


def shipped_build(cfg, name: str, kind: str) -> tuple[Path | None, str]:
    """The shipped folder that is this variant's build, <model>-int8-nncf / -int8-ort / -int8-litert or the
    default's default-pruned: (folder, ''); else (None, why not: '' when none is shipped). It must come from
    the shipped float model as it is now (its manifest's sha256) by the settings a build here would use
    (quantizer settings; pruning ratio and fine-tune), so the bench measures what it would otherwise
    build. The default's fp32 is the shipped default itself where it holds LiteRT files
    (``_shipped_float``)."""
    from fundus_edge.runtime.manifest import is_model_dir, manifest_sha256, read_manifest

    row = (
        recipe_row(name)
        if kind == "variant"
        else derived_variant(cfg.shipped, name)
        if kind in ("derived", "shipped")
        else None
    )
    if row is None:
        return None, ""
    if kind == "variant" and row.recipe == FP32:
        return _shipped_float(cfg, row), ""
    engine_int8 = row.int8 in ENGINE_QUANTIZERS + CONVERTER_INT8
    # Pruned: the default's own recipe only. A shipped pruned model asked for by its name (small-pruned) is
    # a model of its own (its card, its DRIVE test figure), benchmarked as shipped.
    if not engine_int8 and not (row.prune is not None and row.int8 is None and kind == "variant"):
        return None, ""
    base = cfg.shipped / row.source
    folder = cfg.shipped / derive(row.source, row.recipe).name  # the default's too: default-int8-nncf
    if not is_model_dir(folder) or not is_model_dir(base):
        return None, ""
    man = read_manifest(folder)
    source = man.source if isinstance(man.source, dict) else {}
    if engine_int8:
        verb, src = "quantized", source.get("float_model")
        want, record = quantizer_settings(row.int8), man.quantization or {}
    else:
        record = source.get("pruning") if isinstance(source.get("pruning"), dict) else {}
        verb, src = "pruned", record.get("source")
        want = pruning_settings(cfg, row, base)
    sha = src.get("manifest_sha256") if isinstance(src, dict) else None
    if sha != manifest_sha256(base):
        return None, f"{folder} was {verb} from another {base} (manifest sha256 {str(sha)[:12]})"
    got = {k: record.get(k) for k in want}
    if got != want:
        return (
            None,
            f"{folder} was {verb} with other settings"
            f" ({', '.join(f'{k} {got[k]}' for k in want if got[k] != want[k])})",
        )
    return folder, ""


def _shipped_float(cfg, row: Variant) -> Path | None:
    """The shipped default itself as the fp32 variant's build when it holds files a converter made (LiteRT's
    model.tflite): a re-export (``build_variants``) writes the same network from the same weights but only
    the formats export makes, so the fp32 variant would have no LiteRT row. None: export it as before."""
    from fundus_edge.runtime.formats import FORMATS
    from fundus_edge.runtime.manifest import is_model_dir, read_manifest

    base = cfg.shipped / row.source
    if not is_model_dir(base):
        return None
    converted = [f for f in read_manifest(base).formats if FORMATS.get(f) and FORMATS[f].made_by != "export"]
    return base if converted else None


def prepare_variants(cfg, progress: bool = True) -> tuple[dict, dict, dict]:
    """name -> model folder for the variants that exist or could be built; name -> error otherwise; and
    name -> seconds its build took."""
    from fundus_edge.runtime.manifest import is_model_dir

    dirs, errors, todo = {}, {}, []
    extra = extra_variants(cfg.extra)
    for name in tuple(cfg.variants) + tuple(n for n in extra if n not in cfg.variants):
        try:
            kind = _kind(cfg, name, extra)
        except FundusEdgeError as exc:
            errors[name] = one_line(exc)
            continue
        ship, why = shipped_build(cfg, name, kind)
        if ship is None and why and kind == "shipped":
            print(f"variant {name}: {why}; built into {cfg.models_dir / name} instead", flush=True)
            kind = "derived"
        elif ship is None and why:  # say why, e.g. the pruned fine-tune (minutes) is run after all
            print(f"variant {name}: {why}; {cfg.models_dir / name} instead", flush=True)
        if kind == "extra":
            dirs[name] = extra[name]
        elif ship is not None:
            dirs[name] = ship  # the shipped INT8 or pruned files: no quantizer or fine-tune, nothing rebuilt
        elif kind == "shipped":
            dirs[name] = cfg.shipped / name
        else:
            built = is_model_dir(cfg.models_dir / name)
            stale = stale_build(cfg, name, kind) if built else ""
            if built and not stale:
                dirs[name] = cfg.models_dir / name
            elif not cfg.build:
                errors[name] = (
                    f"InputError: {cfg.models_dir / name}: "
                    + (stale if stale else "not built")
                    + " (run without --no-build)"
                )
            else:
                if stale:
                    print(f"variant {name}: {stale}; rebuilding", flush=True)
                todo.append((name, kind))
    times = _build_all(cfg, todo, dirs, errors, progress) if todo else {}
    for name, err in errors.items():
        print(f"variant {name}: export failed: {err}", flush=True)
    order = list(cfg.variants) + list(extra)
    return dict(sorted(dirs.items(), key=lambda kv: order.index(kv[0]))), errors, times


def _build_all(cfg, todo: list[tuple[str, str]], dirs: dict, errors: dict, progress: bool) -> dict:
    from tqdm import tqdm

    times: dict[str, float] = {}
    for name, kind in tqdm(todo, desc="build", unit="model", disable=not progress):
        t0 = time.perf_counter()
        try:
            dirs[name] = build_one(cfg, name, kind)
        except Exception as exc:  # noqa: BLE001 - recorded, the sweep goes on
            errors[name] = one_line(exc)
            continue
        times[name] = round(time.perf_counter() - t0, 1)
    return times
