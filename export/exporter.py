"""Checkpoint -> model folder: Paddle PIR, legacy program, ONNX, and the manifest."""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

from fundus_edge import __version__
from fundus_edge.runtime.errors import InputError, ModelError
from fundus_edge.runtime.formats import FORMATS
from fundus_edge.runtime.manifest import Manifest, write_manifest

from . import builders

# GMAC are reported at DRIVE's size; the network sees it padded to its multiple.
GMAC_AT = (584, 565)


@dataclass(frozen=True)
class ExportResult:
    model_dir: Path
    formats: tuple[str, ...]
    params: int
    gmac: float
    size_mb: float


def prepare_out(out: Path, force: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not force:
            raise InputError(f"{out}: output folder exists and is not empty (use --force to overwrite)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def model_facts(net, info) -> dict:
    from fundus_edge.train.model import count_macs, count_params

    m = info.config.model
    mult = net.pad_multiple
    h, w = (-(-GMAC_AT[0] // mult) * mult, -(-GMAC_AT[1] // mult) * mult)
    macs = count_macs(net, info.config.preprocess.in_channels, h, w)
    return {"arch": m.arch, "base": m.base, "depth": m.depth, "act": m.act, "residual": m.residual, "bridge": m.bridge, "params": count_params(net), "gmac": round(macs / 1e9, 3), "gmac_at": f"{GMAC_AT[0]}x{GMAC_AT[1]} (padded to {h}x{w})"}


def dir_size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 1e6


def finish_model_dir(out: Path, info, facts: dict, formats: dict, name: str, variant: str, quantization: dict | None = None, extra_source: dict | None = None) -> Path:
    """Write the manifest of a model folder whose format files are in place."""
    source = {"checkpoint": str(info.path), "iteration": info.iteration, "validation": info.metrics, **(extra_source or {})}
    man = Manifest(
        name=name,
        variant=variant,
        preprocess=info.config.preprocess,
        threshold=float(info.threshold),
        pad_multiple=int(2 ** info.config.model.depth) if info.config.model.arch in ("vessel-unet", "wnet") else 16,
        formats=formats,
        files={},
        model=facts,
        quantization=quantization,
        source=source,
        scale=dict(info.extra.get("scale", {})),
        created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        fundus_edge_version=__version__,
    )
    return write_manifest(out, man)


def export_checkpoint(checkpoint: str | Path, out: str | Path, name: str | None = None, variant: str = "fp32", formats: tuple[str, ...] = ("pir", "legacy", "onnx"), force: bool = False, opset: int = 13, pruning: dict | None = None, threshold: float | None = None) -> ExportResult:
    """Export a checkpoint to ``formats`` with its manifest; ``pruning`` (from the quantize step) is
    recorded under the manifest's source, and so is a ``threshold`` that replaces the checkpoint's."""
    import yaml

    from fundus_edge.train.checkpoint import load_source
    from fundus_edge.train.config import dump_config

    out = Path(out)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise InputError(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}")
    legacy_only_for_onnx = "onnx" in formats and "legacy" not in formats
    if legacy_only_for_onnx:
        formats = tuple(formats) + ("legacy",)  # ONNX is converted from the legacy program
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise InputError(f"threshold {threshold} must be in (0, 1)")
    net, info = load_source(checkpoint)
    prepare_out(out, force)
    facts = model_facts(net, info)
    done = {}
    source = {"config": yaml.safe_load(dump_config(info.config)), **({"pruning": pruning} if pruning else {})}
    if threshold is not None:
        source["threshold_replaced"] = float(info.threshold)
        info = replace(info, threshold=float(threshold))
    try:
        if "pir" in formats:
            builders.save_pir(net, out, info.config.preprocess.in_channels)
            done["pir"] = list(FORMATS["pir"].files)
            source["param_order"] = builders.saved_param_order(net, out / Path(FORMATS["pir"].files[0]).stem)
        if "legacy" in formats:
            builders.save_legacy(net, info.config, out)
            done["legacy"] = list(FORMATS["legacy"].files)
        if "onnx" in formats:
            builders.legacy_to_onnx(out, opset)
            done["onnx"] = list(FORMATS["onnx"].files)
        if legacy_only_for_onnx:
            for f in done.pop("legacy"):
                (out / f).unlink()
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # no half-written model folder left behind
        raise
    finish_model_dir(out, info, facts, done, name or info.config.name, variant, extra_source=source)
    return ExportResult(out, tuple(done), facts["params"], facts["gmac"], dir_size_mb(out))
