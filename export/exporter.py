"""Checkpoint -> model folder: Paddle PIR, legacy program, ONNX, and the manifest."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

from fundus_edge.runtime.errors import InputError
from fundus_edge.runtime.formats import FORMATS, build_order
from fundus_edge.runtime.manifest import Manifest, write_manifest

from fundus_edge import __version__

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
    return {
        "arch": m.arch,
        "base": m.base,
        "depth": m.depth,
        "act": m.act,
        "residual": m.residual,
        "bridge": m.bridge,
        **({"s2d": m.s2d, "refine": m.refine} if m.s2d > 1 else {}),
        "params": count_params(net),
        "gmac": round(macs / 1e9, 3),
        "gmac_at": f"{GMAC_AT[0]}x{GMAC_AT[1]} (padded to {h}x{w})",
    }


def scrubbed_config(cfg) -> dict:
    """The training config as a manifest records it: without the data root (a path on the machine that
    trained, which means nothing where the model runs)."""
    import yaml
    from fundus_edge.train.config import dump_config

    d = yaml.safe_load(dump_config(cfg))
    d.get("data", {}).pop("root", None)
    return d


def portable_path(path) -> str | None:
    """A path worth recording: relative to the working directory (the repository, when run from it) and
    not a temporary work folder; None otherwise (machine paths do not travel with a model)."""
    p = Path(path)
    if p.is_absolute():
        try:
            p = p.resolve().relative_to(Path.cwd().resolve())
        except ValueError:
            return None
    if any(part.endswith((".work", ".tmp", ".ckpt")) for part in p.parts) or ".." in p.parts:
        return None
    return p.as_posix()


def source_record(path) -> dict:
    """Where a model came from: a model folder by name, variant and manifest hash; a checkpoint by its
    portable path and iteration."""
    from fundus_edge.runtime.manifest import is_model_dir, manifest_sha256, read_manifest

    p = Path(path)
    if is_model_dir(p):
        man = read_manifest(p)
        return {
            "name": man.name,
            "variant": man.variant,
            "manifest_sha256": manifest_sha256(p),
            "path": portable_path(p),
        }
    return {"checkpoint": portable_path(p)}


def dir_size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 1e6


def finish_model_dir(
    out: Path,
    info,
    facts: dict,
    formats: dict,
    name: str,
    variant: str,
    pad_multiple: int,
    quantization: dict | None = None,
    extra_source: dict | None = None,
) -> Path:
    """Write the manifest of a model folder whose format files are in place."""
    origin = (
        {"model": source_record(info.path)}
        if info.extra.get("from_model_dir")
        else {"checkpoint": portable_path(info.path)}
    )
    source = {**origin, "iteration": info.iteration, "validation": info.metrics, **(extra_source or {})}
    man = Manifest(
        name=name,
        variant=variant,
        preprocess=info.config.preprocess,
        threshold=float(info.threshold),
        pad_multiple=int(pad_multiple),  # the network's own (2 ** depth for our U-Nets, 16 for PaddleSeg's)
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


def export_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    name: str | None = None,
    variant: str = "fp32",
    formats: tuple[str, ...] = ("pir", "legacy", "onnx"),
    force: bool = False,
    opset: int = 13,
    pruning: dict | None = None,
    threshold: float | None = None,
) -> ExportResult:
    """Export a checkpoint to ``formats`` with its manifest; ``pruning`` (from the quantize step) is
    recorded under the manifest's source, and so is a ``threshold`` that replaces the checkpoint's."""
    from fundus_edge.train.checkpoint import load_source

    out = Path(out)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise InputError(
            f"unknown format(s) {', '.join(unknown)};"
            f" choose from {', '.join(f for f, r in FORMATS.items() if r.made_by == 'export')}"
        )
    not_exported = [f for f in formats if FORMATS[f].made_by != "export"]
    if not_exported:
        raise InputError(
            f"format(s) {', '.join(not_exported)} are made by `fundus-edge quantize`"
            " (an engine's INT8 quantizer), not by export"
        )
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise InputError(f"threshold {threshold} must be in (0, 1)")
    net, info = load_source(checkpoint)
    prepare_out(out, force)
    facts = model_facts(net, info)
    done = {}
    source = {"config": scrubbed_config(info.config), **({"pruning": pruning} if pruning else {})}
    if threshold is not None:
        source["threshold_replaced"] = float(info.threshold)
        info = replace(info, threshold=float(threshold))
    try:
        for fmt in build_order(formats):
            builders.BUILDERS[fmt](net, info.config, out, opset)
            done[fmt] = list(FORMATS[fmt].files)
            if fmt == "pir":
                source["param_order"] = builders.saved_param_order(
                    net, out / Path(FORMATS["pir"].files[0]).stem
                )
        for fmt in [f for f in done if f not in formats]:  # built only because another format needed it
            for f in done.pop(fmt):
                (out / f).unlink()
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # no half-written model folder left behind
        raise
    finish_model_dir(
        out, info, facts, done, name or info.config.name, variant, net.pad_multiple, extra_source=source
    )
    return ExportResult(out, tuple(done), facts["params"], facts["gmac"], dir_size_mb(out))
