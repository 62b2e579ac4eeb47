"""PaddleSeg interoperability, both ways.

``import_paddleseg``: a PaddleSeg export (``deploy.yaml`` + a PIR ``model.json`` or legacy ``model.pdmodel``
with ``model.pdiparams``, as PaddleSeg's ``export.py`` writes it) -> one of our model folders: the program as
given (PIR or legacy) with a vessel-probability output added where PaddleSeg's gives a label map (argmax)
or logits, ONNX through paddle2onnx, and a manifest whose preprocessing is rebuilt from PaddleSeg's
transforms. ``write_paddleseg_deploy``: the other way, a PaddleSeg-convention program and ``deploy.yaml``
beside our own, for PaddleSeg's ``deploy/python/infer.py`` and FastDeploy's PaddleSeg loader.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import yaml
from fundus_edge.runtime.errors import InputError, ModelError
from fundus_edge.runtime.formats import FORMATS
from fundus_edge.runtime.manifest import Manifest, confined, read_manifest, sha256, write_manifest
from fundus_edge.runtime.preprocess import PreprocessConfig

from fundus_edge import __version__

from .child import run_child
from .exporter import GMAC_AT, ExportResult, dir_size_mb, portable_path, prepare_out

DEPLOY = "deploy.yaml"


@dataclass(frozen=True)
class PaddleSegExport:
    folder: Path
    program: Path  # model.json (PIR) or model.pdmodel (legacy)
    params: Path
    fmt: str  # pir | legacy
    transforms: tuple[dict, ...]
    output_op: str | None  # what deploy.yaml says (argmax / softmax / none), checked against the graph
    deploy: dict


def read_export(folder: str | Path) -> PaddleSegExport:
    folder = Path(folder)
    path = folder / DEPLOY
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    if not path.is_file():
        raise InputError(f"{folder}: no {DEPLOY} (not a PaddleSeg export)")
    confined(folder, DEPLOY, str(folder))
    try:
        d = yaml.safe_load(path.read_text())
        dep = d["Deploy"]
        names = dep["model"], dep["params"]
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise InputError(
            f"{path}: not a PaddleSeg deploy file"
            f" (needs Deploy.model and Deploy.params: {exc.__class__.__name__} {exc})"
        ) from None
    # Plain files of the export folder only (no '..', absolute path or symlink), as in our own model folders.
    program, params = (confined(folder, n, str(path)) for n in names)
    for p in (program, params):
        if not p.is_file():
            raise InputError(f"{path}: names {p.name}, which is not in {folder}")
    # Paddle loads the program's prefix: <stem>.pdiparams is what it reads
    if params.name != program.stem + ".pdiparams":
        raise InputError(
            f"{path}: params {params.name} is not {program.stem}.pdiparams,"
            f" the file Paddle reads beside {program.name}"
        )
    fmt = {".json": "pir", ".pdmodel": "legacy"}.get(program.suffix)
    if fmt is None:
        raise InputError(f"{program}: neither a PIR program (.json) nor a legacy one (.pdmodel)")
    return PaddleSegExport(
        folder, program, params, fmt, tuple(dep.get("transforms") or ()), dep.get("output_op"), dep
    )


def preprocess_from_transforms(transforms: tuple[dict, ...], where: str) -> PreprocessConfig:
    """PaddleSeg's deploy transforms -> our preprocessing. PaddleSeg reads images with OpenCV and turns them
    to RGB (``Compose(to_rgb=True)``, as ``DeployConfig`` builds it), then applies the list; Normalize is
    x / 255 - mean, / std per channel. A transform that changes geometry or colour otherwise cannot be
    rebuilt by the runtime (which sizes inputs by their FOV) and is refused by name."""
    mean, std = (0.5,) * 3, (0.5,) * 3
    seen = False
    for t in transforms:
        kind = t.get("type") if isinstance(t, dict) else None
        if kind == "Normalize":
            if seen:
                raise InputError(f"{where}: two Normalize transforms; the runtime rebuilds one")
            seen = True
            mean = tuple(float(v) for v in t.get("mean", (0.5,)))
            std = tuple(float(v) for v in t.get("std", (0.5,)))
            if len(mean) == 1:
                mean *= 3
            if len(std) == 1:
                std *= 3
            if len(mean) != 3 or len(std) != 3 or 0.0 in std:
                raise InputError(
                    f"{where}: Normalize needs 1 or 3 values of mean and std (std non-zero),"
                    f" got mean {list(mean)} std {list(std)}"
                )
        else:
            raise InputError(
                f"{where}: transform {kind!r} cannot be reproduced by the fundus-edge runtime"
                " (supported: Normalize; inputs are resized by their field of view, not by a fixed size)"
            )
    if not seen:  # Compose alone: raw 0..255 floats
        return PreprocessConfig(channels="rgb", scale=1.0, offset=0.0)
    return PreprocessConfig(
        channels="rgb",
        scale=tuple(1.0 / (255.0 * s) for s in std),
        offset=tuple(-m / s for m, s in zip(mean, std, strict=False)),
    )


def _json_lines(text: str) -> list[str]:
    return [ln for ln in text.strip().splitlines() if ln.startswith("{")]


def _convert_program(ps: PaddleSegExport, out_prefix: Path, vessel_class: int) -> dict:
    """The export's program with a vessel-probability output, saved at ``out_prefix`` by ``paddleseg_child``
    (PIR on for a PIR program, off for a legacy one): the facts it found (its JSON line)."""
    r = run_child(
        "fundus_edge.export.paddleseg_child",
        (ps.program.with_suffix(""), out_prefix, vessel_class),
        pir=ps.fmt == "pir",
        what=str(ps.program),
        ok=lambda r: bool(_json_lines(r.stdout)),
    )
    return json.loads(_json_lines(r.stdout)[-1])


def onnx_facts(path: Path, in_channels: int, multiple: int) -> dict:
    """Parameters and GMAC of an ONNX graph at DRIVE's size (padded to ``multiple``), counted from the graph
    because an imported model has no network object to count on. Written by hand: no package we pin counts
    multiply-accumulates of an ONNX graph. Convolutions (and transposed ones) and matrix products; None
    when a shape cannot be inferred."""
    import numpy as np
    import onnx
    from onnx import shape_inference

    m = onnx.load(str(path))
    bn_stats = set()
    for n in m.graph.node:
        if n.op_type == "BatchNormalization":
            bn_stats.update(n.input[3:5])  # running mean / variance are not parameters
    # Weights are initializers, or Constant nodes (paddle2onnx writes them so).
    tensors = {t.name: t for t in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    tensors[n.output[0]] = a.t
    params = int(
        sum(
            int(np.prod(t.dims))
            for k, t in tensors.items()
            if k not in bn_stats and t.data_type == onnx.TensorProto.FLOAT and len(t.dims)
        )
    )
    h, w = (-(-GMAC_AT[0] // multiple) * multiple, -(-GMAC_AT[1] // multiple) * multiple)
    inp = m.graph.input[0].type.tensor_type.shape
    for d, v in zip(inp.dim, (1, in_channels, h, w), strict=False):
        d.ClearField("dim_param")
        d.dim_value = v
    try:
        inferred = shape_inference.infer_shapes(m, data_prop=True)
    except Exception:  # noqa: BLE001
        return {"params": params, "gmac": None}
    shapes = {
        vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
        for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input)
    }
    inits = {k: tuple(t.dims) for k, t in tensors.items()}
    macs = 0
    for n in inferred.graph.node:
        if n.op_type not in ("Conv", "ConvTranspose", "MatMul", "Gemm"):
            continue
        wshape = inits.get(n.input[1]) or shapes.get(n.input[1])
        src, dst = shapes.get(n.input[0]), shapes.get(n.output[0])
        if not wshape or not src or not dst or 0 in src or 0 in dst:
            return {"params": params, "gmac": None}
        if n.op_type == "Conv":
            macs += int(np.prod(dst)) * int(np.prod(wshape[1:]))  # out elements x (in/groups x kh x kw)
        elif n.op_type == "ConvTranspose":
            macs += int(np.prod(src)) * int(np.prod(wshape[1:]))  # in elements x (out/groups x kh x kw)
        else:
            macs += int(np.prod(dst)) * int(src[-1])
    return {
        "params": params,
        "gmac": round(macs / 1e9, 3),
        "gmac_at": f"{GMAC_AT[0]}x{GMAC_AT[1]} (padded to {h}x{w})",
    }


def _to_onnx(model: Path, params: Path, target: Path, opset: int) -> str | None:
    """paddle2onnx in a child process: on an operator it cannot convert it aborts the whole process
    (SIGABRT; e.g. ENet's unpool), and paddle2onnx 1.3.1 parses no PIR program of Paddle 3.3 (nor does 2.1.0
    here). Returns why no ONNX was made, or None."""
    if model.suffix == ".json":
        return (
            "paddle2onnx 1.3.1 cannot read PIR programs (Paddle 3.3, PIR v4);"
            " export the PaddleSeg model as a legacy .pdmodel for ONNX Runtime and OpenVINO"
        )
    r = run_child("fundus_edge.export.onnx_child", (model, params, target, opset), check=False)
    if r.returncode == 0 and target.is_file() and target.stat().st_size:
        return None
    target.unlink(missing_ok=True)
    text = r.stdout + r.stderr
    why = [
        ln.strip()
        for ln in text.splitlines()
        if "not supported yet" in ln or "ModelError" in ln or "[ERROR]" in ln
    ]
    return f"paddle2onnx failed: {why[0][:300] if why else 'exit ' + str(r.returncode)}"


def _check_program(ps: PaddleSegExport, info: dict, pre: PreprocessConfig) -> None:
    """Refuse a converted program that does not fit its deploy.yaml (channels, output) or ran at no size."""
    if info["in_channels"] != pre.in_channels:
        raise ModelError(
            f"{ps.program}: takes {info['in_channels']} input channels;"
            f" PaddleSeg's transforms give {pre.in_channels} (RGB)"
        )
    if info["pad_multiple"] is None:
        raise ModelError(f"{ps.program}: ran at no input size tried ({'; '.join(info['tried'])})")
    if ps.output_op and ps.output_op != "none" and not info["output"].startswith(ps.output_op):
        raise ModelError(
            f"{ps.folder / DEPLOY}: says output_op {ps.output_op},"
            f" but the program's output is {info['output']}"
        )


def _import_source(
    ps: PaddleSegExport, info: dict, vessel_class: int, threshold: float | None, onnx_error: str | None
) -> dict:
    """The manifest's source record of an imported export: the files it came from (sha256) and what the
    import found and chose."""
    return {
        "paddleseg_export": {
            "path": portable_path(ps.folder),
            "deploy_sha256": sha256(ps.folder / DEPLOY),
            "program_sha256": sha256(ps.program),
            "params_sha256": sha256(ps.params),
            "format": ps.fmt,
        },
        "output_op": info["output"],
        "classes": info["classes"],
        "vessel_class": vessel_class,
        "transforms": [dict(t) for t in ps.transforms],
        "threshold_from": "given" if threshold is not None else "0.5 (two-class argmax)",
        **({"onnx_not_made": onnx_error} if onnx_error else {}),
    }


def _import_manifest(
    name: str,
    variant: str,
    pre: PreprocessConfig,
    threshold: float,
    info: dict,
    formats: dict,
    facts: dict,
    source: dict,
) -> Manifest:
    return Manifest(
        name=name,
        variant=variant,
        preprocess=pre,
        threshold=threshold,
        pad_multiple=int(info["pad_multiple"]),
        formats=formats,
        files={},
        input={
            "name": info["input_name"],
            "layout": "NCHW",
            "dtype": "float32",
            "channel_order": "RGB",
            "dynamic": ["batch", "height", "width"],
        },
        model=facts,
        source=source,
        engines=(
            {
                "paddle": {
                    "onednn": False,
                    "why": f"Paddle Inference with oneDNN fails on this program: {info['onednn_error']}",
                }
            }
            if info.get("onednn_error")
            else {}
        ),
        created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        fundus_edge_version=__version__,
    )


def import_paddleseg(
    export_dir: str | Path,
    out: str | Path,
    name: str | None = None,
    threshold: float | None = None,
    vessel_class: int = 1,
    force: bool = False,
    opset: int = 13,
    variant: str = "imported",
) -> ExportResult:
    """A PaddleSeg export -> a model folder (its own format, ONNX, manifest). The threshold is ``threshold``,
    else 0.5 (the decision of a two-class argmax); ``set_threshold`` replaces it with one chosen on training
    images."""
    ps = read_export(export_dir)
    pre = preprocess_from_transforms(ps.transforms, str(ps.folder / DEPLOY))
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise InputError(f"threshold {threshold} must be in (0, 1)")
    out = Path(out)
    prepare_out(out, force)
    try:
        ours = "pir" if ps.fmt == "pir" else "legacy"
        stem = Path(FORMATS[ours].files[0]).stem
        info = _convert_program(ps, out / stem, vessel_class)
        _check_program(ps, info, pre)
        formats = {ours: list(FORMATS[ours].files)}
        onnx_error = _to_onnx(
            out / FORMATS[ours].files[0], out / FORMATS[ours].files[1], out / FORMATS["onnx"].files[0], opset
        )
        if onnx_error is None:
            formats["onnx"] = list(FORMATS["onnx"].files)
        info_file = out / f"{stem}.pdiparams.info"
        if info_file.exists():
            info_file.unlink()  # a pickle no engine needs
        facts = {
            "arch": f"paddleseg ({ps.deploy.get('model_name') or Path(ps.folder).name})",
            "imported_from": "paddleseg",
            **(
                onnx_facts(out / FORMATS["onnx"].files[0], pre.in_channels, info["pad_multiple"])
                if onnx_error is None
                else {"params": None, "gmac": None}
            ),
        }
        source = _import_source(ps, info, vessel_class, threshold, onnx_error)
        man = _import_manifest(
            name or out.name,
            variant,
            pre,
            float(threshold if threshold is not None else 0.5),
            info,
            formats,
            facts,
            source,
        )
        write_manifest(out, man)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return ExportResult(out, tuple(formats), facts["params"] or 0, facts.get("gmac") or 0.0, dir_size_mb(out))


def set_threshold(model_dir: str | Path, threshold: float, how: str) -> None:
    """Store a new threshold in a model folder's manifest, saying how it was chosen."""
    man = read_manifest(model_dir)
    write_manifest(
        model_dir, replace(man, threshold=float(threshold), source={**man.source, "threshold_from": how})
    )


def write_paddleseg_deploy(model_dir: str | Path) -> Path:
    """Beside our PIR program, PaddleSeg's: ``paddleseg.json`` (the same network ending in an int32 label map,
    prob >= the manifest's threshold: PaddleSeg's ``output_op: argmax`` convention) and ``deploy.yaml``
    (model, params, transforms, input_shape, output_op, output_dtype, as PaddleSeg's export.py writes them).
    The transform is ``FundusEdgePreprocess`` (``fundus_edge.export.paddleseg_transforms``, which PaddleSeg
    needs imported): PaddleSeg's own transforms cannot make the CLAHE channel or pad to the network's
    multiple. The manifest gains a ``paddleseg`` format (no engine of ours reads it) with the files'
    sha256."""
    model_dir = Path(model_dir)
    man = read_manifest(model_dir)
    if "pir" not in man.formats or man.quantization is not None:
        raise InputError(
            f"{model_dir}: --paddleseg needs a float model with the PIR program (export --formats pir,...)"
        )
    files = FORMATS["paddleseg"].files
    src = model_dir / Path(FORMATS["pir"].files[0]).stem
    run_child(
        "fundus_edge.export.paddleseg_child",
        ("--labels", src, model_dir / Path(files[0]).stem, repr(float(man.threshold))),
        pir=True,
        what=f"{model_dir}: PaddleSeg program not written",
        ok=lambda r: all((model_dir / f).is_file() for f in files[:2]),
    )
    transform = {
        "type": "FundusEdgePreprocess",
        **man.preprocess.to_dict(),
        "pad_multiple": int(man.pad_multiple),
    }
    deploy = {
        "Deploy": {
            "model": files[0],
            "params": files[1],
            "transforms": [transform],
            "input_shape": [-1, man.preprocess.in_channels, -1, -1],
            "output_op": "argmax",
            "output_dtype": "int32",
        },
        # Ours, ignored by PaddleSeg: what the label map means and where it came from.
        "fundus_edge": {
            "model": man.name,
            "variant": man.variant,
            "threshold": float(man.threshold),
            "labels": {0: "background", 1: "vessel"},
            "transforms_module": "fundus_edge.export.paddleseg_transforms",
        },
    }
    (model_dir / files[2]).write_text(yaml.safe_dump(deploy, sort_keys=False))
    write_manifest(model_dir, replace(man, formats={**man.formats, "paddleseg": list(files)}), written=files)
    return model_dir / files[2]
