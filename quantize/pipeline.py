"""Model compression: PaddleSlim L1-norm filter pruning (+ fine-tuning with the project's trainer)
and INT8 post-training quantisation, each giving a model folder like any other."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fundus_edge.runtime.cpu import has_vnni
from fundus_edge.runtime.errors import InputError
from fundus_edge.runtime.formats import FORMATS

from .variants import CONVERTER_INT8, ENGINE_QUANTIZERS, INT8_METHODS, RECIPE_NAMES, RECIPES

PTQ_ALGOS = ("avg", "hist", "KL", "mse", "abs_max")
# conv2d_transpose stays float: OpenVINO ran PaddleSlim's quantised transposed convolutions with
# DRIVE F1 falling from 0.82 to 0.66 while ONNX Runtime was right (STACK.md).
DEFAULT_OPS = ("conv2d",)


@dataclass(frozen=True)
class QuantizeResult:
    model_dir: Path
    variant: str
    params_before: int
    params_after: int
    gmac_before: float
    gmac_after: float
    size_mb: float


@dataclass(frozen=True)
class _Build:
    """One build as quantize() resolved it, handed whole to the builder it picks (float, an engine's
    INT8, PaddleSlim's INT8) so that each takes what it needs by name."""

    source: Path  # the checkpoint or model folder asked for
    ckpt: Path  # what the build starts from: the pruned checkpoint, or the source itself
    out: Path
    work: Path  # scratch folder, removed when the build ends
    data: object  # the DRIVE folder: its training images only are read
    info: object  # the source's training record (config, threshold)
    before: dict  # the source's params and GMAC, for the result's before/after
    pruning: dict | None
    int8: str | None  # None (float), ptq, qat, nncf or ort
    algo: str
    ops: tuple
    finetune_iters: int
    calib_images: int
    nncf_options: object = None
    ort_options: object = None

    @property
    def variant(self) -> list[str]:
        """The variant's parts before the INT8 step names its own."""
        return ["pruned"] if self.pruning else []


# Fine-tuning rates are fixed, not a share of the source's: a source may itself be a low-rate fine-tune.
PRUNE_FINETUNE_LR = 1e-3  # half the from-scratch rate: pruning removes half the filters
# Fine-tuning crops are capped too: the shipped default's second stage used 128-px crops, which would make
# the pruned fine-tune 1.8x slower per step (and `make bench` from an empty build/ longer than 20 min).
FINETUNE_CROP_MAX = 96
QAT_LR = 2e-4


def finetune_crop(crop: int) -> int:
    """The crop a fine-tune (after pruning, or QAT) of a source trained on ``crop``-px crops uses."""
    return min(crop, FINETUNE_CROP_MAX)


def _slim(*args: str) -> None:
    from fundus_edge.export.child import run_child

    run_child("fundus_edge.quantize.slim_child", args, pir=False, what=f"PaddleSlim {args[0]} failed")


def prune_network(net, cfg, ratio: float):
    """Prune ``net``'s 3x3 convolutions by ``ratio`` of their filters; returns the pruned network."""
    from fundus_edge.train.checkpoint import load_state_reshaping
    from fundus_edge.train.config import dump_config

    with tempfile.TemporaryDirectory() as tmp:
        np.savez(Path(tmp) / "weights.npz", **{k: v.numpy() for k, v in net.state_dict().items()})
        (Path(tmp) / "config.yaml").write_text(dump_config(cfg))
        _slim("prune", tmp, str(ratio))
        with np.load(Path(tmp) / "weights.npz", allow_pickle=False) as w:
            load_state_reshaping(net, {k: w[k] for k in w.files})
    return net


def calibration_set(data: str | Path, cfg, pad_multiple: int, count: int) -> dict:
    """Preprocessed training images (train split only: never validation, never test)."""
    from fundus_edge.runtime.preprocess import pad_to_multiple, preprocess
    from fundus_edge.train.data import discover, load_sample, split_train_val

    samples = discover(data, split="train", layout=cfg.data.layout)
    train, _ = split_train_val(samples, cfg.data.val_count, cfg.data.split_seed)
    if not train or count < 1:
        raise InputError(f"{data}: empty calibration set (need at least one training image)")
    return {
        f"{i:03d}": pad_to_multiple(preprocess(load_sample(s).rgb, cfg.preprocess), pad_multiple)[0]
        for i, s in enumerate(train[:count])
    }


def _check_request(prune: float | None, int8: str | None, algo: str) -> None:
    if prune is None and int8 is None:
        raise InputError("nothing to do: give --prune RATIO and/or --int8 ptq")
    if prune is not None and not 0.0 < prune < 1.0:
        raise InputError(f"prune ratio {prune} must be in (0, 1)")
    if int8 not in (None, *INT8_METHODS):
        raise InputError(f"--int8 must be one of {', '.join(INT8_METHODS)}, got {int8!r}")
    if algo not in PTQ_ALGOS:
        raise InputError(f"unknown PTQ algorithm {algo!r}; choose from {', '.join(PTQ_ALGOS)}")


def _prune_and_finetune(
    net, info, source: Path, ratio: float, data, work: Path, finetune_iters: int, before: dict, progress: bool
) -> tuple[Path, dict]:
    """Prune ``net`` (loaded from ``source``) by ``ratio`` and fine-tune it in ``work``: the fine-tuned
    checkpoint and the pruning record its manifest keeps."""
    from fundus_edge.export.exporter import model_facts, source_record
    from fundus_edge.train.checkpoint import save_checkpoint
    from fundus_edge.train.trainer import Trainer

    prune_network(net, info.config, ratio)
    mid = model_facts(net, info)
    print(
        f"pruned {ratio:.0%} of 3x3 filters: {before['params']:,} -> {mid['params']:,} parameters, "
        f"{before['gmac']:.2f} -> {mid['gmac']:.2f} GMAC",
        flush=True,
    )
    save_checkpoint(
        work / "pruned",
        net,
        None,
        info.config,
        info.iteration,
        info.threshold,
        info.metrics,
        0.0,
        {"pruned_ratio": ratio},
    )
    cfg = _finetune_config(info, data, finetune_iters, PRUNE_FINETUNE_LR, validations=4)
    res = Trainer(cfg, work / "finetune", device="cpu", progress=progress, init_weights=work / "pruned").fit(
        force=True
    )
    kept = (
        f"best validation F1 {res.best_val_f1:.4f}"
        if res.best_val_f1 >= 0
        else "no validation split, latest weights kept"
    )
    print(f"fine-tuned {finetune_iters} iterations: {kept}", flush=True)
    # The fine-tune's folder is temporary: the manifest keeps what a model card needs.
    pruning = {
        "source": source_record(source),
        "ratio": ratio,
        "tool": "paddleslim L1NormFilterPruner",
        "params_before": before["params"],
        "gmac_before": before["gmac"],
        "finetune_iters": finetune_iters,
        "finetune_lr": PRUNE_FINETUNE_LR,
        "finetune_crop": cfg.optim.crop,
        "finetune_s": round(res.elapsed_s, 1),
    }
    return work / "finetune" / "best", pruning


def _paddle_ptq(
    ckpt: Path, net, qinfo, data, work: Path, out: Path, algo: str, ops, calib_images: int
) -> dict:
    """INT8 post-training quantisation of the legacy program of ``ckpt`` into ``out``; the quantization
    record."""
    from fundus_edge.export.exporter import export_checkpoint

    fp = work / "fp32"
    export_checkpoint(ckpt, fp, formats=("legacy",), force=True)
    calib = calibration_set(data, qinfo.config, net.pad_multiple, calib_images)
    np.savez(work / "calib.npz", **calib)
    print(f"PTQ ({algo}) on {len(calib)} training images, quantizing {', '.join(ops)}", flush=True)
    _slim("ptq", str(fp), str(work / "calib.npz"), str(out), algo, ",".join(ops))
    return {
        "method": "ptq",
        "algo": algo,
        "tool": "paddleslim.quant.quant_post_static",
        "calibration_images": len(calib),
    }


def _paddle_qat(net, qinfo, data, work: Path, out: Path, ops, finetune_iters: int) -> dict:
    """Quantization-aware fine-tuning of ``net`` (PaddleSlim, in a child process) into ``out``; the
    quantization record."""
    from fundus_edge.train.config import dump_config

    qat_dir = work / "qat"
    qat_dir.mkdir()
    np.savez(qat_dir / "weights.npz", **{k: v.numpy() for k, v in net.state_dict().items()})
    qcfg = _finetune_config(qinfo, data, finetune_iters, QAT_LR, validations=2)
    (qat_dir / "config.yaml").write_text(dump_config(qcfg))
    print(
        f"QAT: {finetune_iters} fine-tuning iterations with fake-quantized {', '.join(ops)}",
        flush=True,
    )
    _slim("qat", str(qat_dir), str(out), ",".join(ops))
    return {"method": "qat", "tool": "paddleslim.QAT (dygraph)", "finetune_iters": finetune_iters}


def _paddle_int8_onnx(out: Path, data, qinfo, pad_multiple: int, ops, quant: dict) -> None:
    """The QDQ ONNX file beside PaddleSlim's INT8 program in ``out``, checked on OpenVINO; adds what was
    done to the quantization record ``quant``."""
    from fundus_edge.export.builders import legacy_to_onnx

    from .engine_ptq import build_cpu_record

    legacy_to_onnx(out, deploy_backend="onnxruntime")
    n_unsigned = _unsigned_activations(out / FORMATS["onnx"].files[0])
    quant.update(
        {
            "weights": "int8 channel_wise_abs_max",
            "activations": "int8 (Paddle program); uint8 zero point 128 in the ONNX file (the same grid)",
            "quantized_ops": list(ops),
            "onnx": (
                "QDQ (paddle2onnx, deploy_backend onnxruntime; "
                f"{n_unsigned} activation Q/DQ pairs rewritten unsigned)"
            ),
        }
    )
    quant["openvino_guard"] = _openvino_guard(out, data, qinfo, pad_multiple)
    quant["built_on"] = build_cpu_record()  # the CPU the file was built and checked on


def _paddle_int8(b: _Build) -> QuantizeResult:
    """INT8 by PaddleSlim (``b.int8`` ptq or qat) from ``b.ckpt``: the INT8 legacy program and its QDQ ONNX
    file in ``out``."""
    from fundus_edge.export.exporter import dir_size_mb, finish_model_dir, model_facts, scrubbed_config
    from fundus_edge.train.checkpoint import load_source

    net, qinfo = load_source(b.ckpt)
    facts = model_facts(net, qinfo)
    if b.int8 == "ptq":
        quant = _paddle_ptq(b.ckpt, net, qinfo, b.data, b.work, b.out, b.algo, b.ops, b.calib_images)
    else:
        quant = _paddle_qat(net, qinfo, b.data, b.work, b.out, b.ops, b.finetune_iters)
    variant = "-".join([*b.variant, "int8"])
    _paddle_int8_onnx(b.out, b.data, qinfo, net.pad_multiple, b.ops, quant)
    finish_model_dir(
        b.out,
        qinfo,
        facts,
        {"legacy": list(FORMATS["legacy"].files), "onnx": list(FORMATS["onnx"].files)},
        b.info.config.name,
        variant,
        net.pad_multiple,
        quantization=quant,
        extra_source={
            "config": scrubbed_config(qinfo.config),
            **({"pruning": b.pruning} if b.pruning else {}),
        },
    )
    return QuantizeResult(
        b.out,
        variant,
        b.before["params"],
        facts["params"],
        b.before["gmac"],
        facts["gmac"],
        dir_size_mb(b.out),
    )


def _fresh_work_dir(out: Path, work: str | Path | None) -> Path:
    """An empty scratch folder (default: beside ``out``), removed when the build ends."""
    work = Path(work) if work else out.with_name(out.name + ".work")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    return work


def _finetune_config(info, data, iters: int, lr: float, validations: int):
    """The source's training config for a short fine-tune (after pruning, or QAT): no warm-up, clean
    selection, crops capped; a refit source has no validation split, so its threshold (one set at export
    included) is kept."""
    return info.config.with_overrides(
        optim={
            "iters": iters,
            "lr": lr,
            "crop": finetune_crop(info.config.optim.crop),
            "warmup": 0,
            "val_every": max(50, iters // validations),
            "val_perturb": (),
            "select": "clean",
            "threshold": info.threshold,
        },
        data={"root": str(data)},
    )


def quantize(
    source,
    out,
    data,
    prune: float | None = None,
    int8: str | None = None,
    algo: str = "avg",
    ops: tuple[str, ...] = DEFAULT_OPS,
    finetune_iters: int = 800,
    calib_images: int | None = None,
    force: bool = False,
    progress: bool = True,
    work: str | Path | None = None,
    nncf_options=None,
    ort_options=None,
) -> QuantizeResult:
    """Prune (``prune``: the share of 3x3 filters, then a fine-tune) and/or quantize (``int8``: ptq, qat,
    nncf or ort) the checkpoint or model folder ``source`` into the model folder ``out``, calibrating and
    fine-tuning on the training images of ``data`` only."""
    from fundus_edge.export.exporter import model_facts, prepare_out
    from fundus_edge.train.checkpoint import load_source

    _check_request(prune, int8, algo)
    if int8 in CONVERTER_INT8:  # LiteRT's converter on the float folder's ONNX file: no Paddle, no checkpoint
        from .litert_int8 import litert_int8

        return litert_int8(Path(source), Path(out), data, prune, calib_images, force)
    # PaddleSlim's PTQ on 8 images (its own tests); the engines' quantizers on 20 (STACK.md's measurement)
    if calib_images is None:
        calib_images = 20 if int8 in ENGINE_QUANTIZERS else 8
    source, out = Path(source), Path(out)
    if not source.exists():
        raise InputError(f"{source}: no such checkpoint or model folder")
    net, info = load_source(source)  # refuses an already-quantized model folder
    before = model_facts(net, info)
    prepare_out(out, force)
    work = _fresh_work_dir(out, work)
    try:
        if prune is not None:
            ckpt, pruning = _prune_and_finetune(
                net, info, source, prune, data, work, finetune_iters, before, progress
            )
        else:
            # an INT8 build of a pruned model folder keeps its record
            ckpt, pruning = source, _inherited_pruning(source)
        build = _Build(
            source,
            ckpt,
            out,
            work,
            data,
            info,
            before,
            pruning,
            int8,
            algo,
            tuple(ops),
            finetune_iters,
            calib_images,
            nncf_options,
            ort_options,
        )
        return _build(build)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _build(b: _Build) -> QuantizeResult:
    """The build asked for from ``b.ckpt`` (the pruned checkpoint, or the source itself): the float model,
    an engine's INT8 (NNCF, ONNX Runtime) or PaddleSlim's (PTQ, QAT)."""
    if b.int8 is None:
        return _float_build(b.ckpt, b.out, b.info, b.before, "-".join(b.variant), b.pruning)
    if b.int8 in ENGINE_QUANTIZERS:
        return _engine_int8(b)
    return _paddle_int8(b)


def _float_build(ckpt: Path, out: Path, info, before: dict, variant: str, pruning) -> QuantizeResult:
    """The pruned float model (no INT8): exported like any checkpoint, with its pruning record."""
    from fundus_edge.export.exporter import export_checkpoint

    r = export_checkpoint(ckpt, out, name=info.config.name, variant=variant, force=True, pruning=pruning)
    return QuantizeResult(out, variant, before["params"], r.params, before["gmac"], r.gmac, r.size_mb)


def _engine_int8(b: _Build) -> QuantizeResult:
    """INT8 by an engine's own quantizer (``b.int8``: nncf or ort) from the float ONNX of ``b.ckpt`` (the
    source itself when it is an unpruned model folder with ONNX)."""
    from fundus_edge.export.exporter import dir_size_mb, export_checkpoint, source_record
    from fundus_edge.runtime.manifest import is_model_dir, read_manifest

    from .engine_ptq import NncfOptions, OrtOptions, engine_int8

    float_dir = b.source
    if b.ckpt != b.source or not is_model_dir(b.source) or "onnx" not in read_manifest(b.source).formats:
        float_dir = b.work / "float"
        export_checkpoint(
            b.ckpt,
            float_dir,
            name=b.info.config.name,
            variant="-".join(b.variant) or "fp32",
            formats=("onnx",),
            force=True,
            pruning=b.pruning,
        )
    record = source_record(b.source)
    print(
        f"INT8 by {'NNCF (OpenVINO IR)' if b.int8 == 'nncf' else 'ONNX Runtime quantize_static'} "
        "on training images",
        flush=True,
    )
    engine_int8(
        float_dir,
        b.out,
        b.data,
        b.int8,
        b.nncf_options or NncfOptions(),
        b.ort_options or OrtOptions(),
        calib_images=b.calib_images,
        force=True,
        name=b.info.config.name,
        float_record=record,
    )
    man = read_manifest(b.out)
    return QuantizeResult(
        b.out,
        man.variant,
        b.before["params"],
        int(man.model.get("params", 0)),
        b.before["gmac"],
        float(man.model.get("gmac", 0.0)),
        dir_size_mb(b.out),
    )


def _unsigned_activations(onnx_path: Path) -> int:
    """paddle2onnx writes signed activation Q/DQ pairs that OpenVINO runs far from their semantics; the
    same grid written unsigned it runs as ONNX Runtime does (quantize/qdq.py)."""
    import onnx

    from .qdq import unsigned_activations

    m = onnx.load(str(onnx_path))
    n = unsigned_activations(m)
    onnx.checker.check_model(m)
    onnx.save(m, str(onnx_path))
    return n


def _inherited_pruning(source: Path) -> dict | None:
    """The pruning record of a model folder made by ``quantize --prune`` (None for checkpoints)."""
    from fundus_edge.runtime.manifest import is_model_dir, read_manifest

    return read_manifest(source).source.get("pruning") if is_model_dir(source) else None


def _openvino_guard(out: Path, data, info, pad_multiple: int) -> dict:
    """Check the QDQ ONNX file on OpenVINO against its exact semantics on two training images and
    leave in float the convolutions OpenVINO gets wrong on this CPU (quantize/openvino_guard.py)."""
    from .openvino_guard import guard

    images = list(calibration_set(data, info.config, pad_multiple, 2).values())
    r = guard(out / FORMATS["onnx"].files[0], images, info.threshold)
    if r.checked:
        changed = f"; left in float: {', '.join(r.float_convs)}" if r.float_convs else ""
        print(
            f"OpenVINO check: {r.disagreement_before:.1%} of vessel pixels differ from the QDQ reference "
            f"(tolerance {r.tolerance:.1%}){changed} -> {r.disagreement_after:.1%}, {r.note}",
            flush=True,
        )
    else:
        print(f"OpenVINO check: {r.note}", flush=True)
    return {**r.as_dict(), "cpu_vnni": has_vnni()}


def build_variants(
    source,
    out_root,
    data,
    finetune_iters: int = 800,
    algo: str = "avg",
    force: bool = False,
    only: tuple[str, ...] | None = None,
    progress: bool = True,
    prebuilt: dict[str, Path] | None = None,
) -> dict:
    """build/models/<recipe> for every row of ``variants.RECIPES`` (or ``only`` those) from one FP32
    model; existing ones are kept unless ``force``. A pruned INT8 recipe quantises the pruned model when it
    is built (no second fine-tune): ``prebuilt``'s folder for that recipe when given (the bench's shipped
    models/default-pruned), else out_root/<recipe>."""
    from fundus_edge.export.exporter import export_checkpoint
    from fundus_edge.runtime.manifest import is_model_dir

    out_root = Path(out_root)
    recipes = {r.name: r for r in RECIPES}
    done = {}
    for name in only or RECIPE_NAMES:
        row, target = recipes[name], out_root / name
        if is_model_dir(target) and not force:
            print(f"{target}: exists, kept (--force rebuilds)", flush=True)
            done[name] = target
            continue
        print(f"building {target}", flush=True)
        pruned = None
        if row.prune and row.float_counterpart:
            pruned = (prebuilt or {}).get(row.float_counterpart) or out_root / row.float_counterpart
        if row.prune is None and row.int8 is None:
            export_checkpoint(source, target, variant=name, force=True)
        elif pruned is not None and is_model_dir(pruned):
            # INT8 of the pruned model already built (no second fine-tune); the variant name comes from its
            # record.
            quantize(
                pruned,
                target,
                data,
                int8=row.int8,
                algo=algo,
                force=True,
                progress=progress,
            )
        else:
            quantize(
                source,
                target,
                data,
                finetune_iters=finetune_iters,
                algo=algo,
                force=True,
                progress=progress,
                **row.quantize_args(),
            )
        done[name] = target
    return done
