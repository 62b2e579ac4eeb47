"""``quantize --int8 litert``: LiteRT's full-integer INT8 of a float model folder, by the project's converter
(``fundus_edge.export.litert``: onnx2tf in a venv of its own, calibrated on the training images as the
runtime prepares them). Only the INT8 folder is written; the float folder is left as it is.

It is a quantizer like NNCF's or ONNX Runtime's, so ``quantize --variants`` and the bench build
``<model>-int8-litert`` through it when no matching shipped folder is there; a machine without the converter
venv gets the converter's one-line error saying how to make it.
"""

from __future__ import annotations

from pathlib import Path

from fundus_edge.runtime.errors import InputError

from .pipeline import QuantizeResult


def litert_int8(
    source: Path, out: Path, data, prune: float | None, calib_images: int | None, force: bool
) -> QuantizeResult:
    """Convert the float model folder ``source`` to a full-integer INT8 folder ``out``."""
    from fundus_edge.export.litert import convert
    from fundus_edge.runtime.manifest import is_model_dir, read_manifest

    if prune is not None:
        raise InputError(
            f"{source}: --int8 litert converts a float model folder as it is; prune it first "
            "(quantize --prune) and convert the pruned folder"
        )
    if not is_model_dir(source):
        raise InputError(f"{source}: --int8 litert needs a float model folder (model.onnx), not a checkpoint")
    # 20: every DRIVE training image, as the engines' own quantizers calibrate (quantize's default for them)
    res = convert(
        source, precisions=("int8",), data=data, int8_out=out, calib_images=calib_images or 20, force=force
    )
    man = read_manifest(res.int8_dir)
    params, gmac = man.model.get("params", 0), man.model.get("gmac", 0.0)
    size = sum(f.stat().st_size for f in res.int8_dir.iterdir() if f.is_file()) / 1e6
    return QuantizeResult(res.int8_dir, man.variant, params, params, gmac, gmac, round(size, 3))
