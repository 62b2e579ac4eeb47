"""INT8 by each engine's own quantizer, beside PaddleSlim's cross-engine QDQ file.

- ``nncf``: OpenVINO's NNCF post-training quantization of the OpenVINO model read from the float
  ``model.onnx``, saved as OpenVINO IR (``model.xml`` / ``model.bin``), read by OpenVINO only. NNCF places
  its FakeQuantize nodes where OpenVINO's CPU plugin has int8 kernels and fuses the rest, which a QDQ file
  made for another engine cannot count on.
- ``ort``: ONNX Runtime's ``quantize_static`` (QDQ, u8 activations, s8 weights, per channel) on the same
  ``model.onnx``, after ONNX Runtime's ``quant_pre_process``; read by ONNX Runtime (and OpenVINO, which
  the bench then checks like any other cell).

Both calibrate on training images prepared exactly as ``Predictor.predict`` prepares them (rescaled to
the training FOV, cropped to the FOV's box, padded): never validation or test images. NNCF's accuracy
control scores pooled FOV F1 on training images too.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fundus_edge.runtime.cpu import cpu_model_and_flags, has_vnni, isa_flags
from fundus_edge.runtime.errors import InputError, ModelError
from fundus_edge.runtime.formats import FORMATS

from .variants import ENGINE_QUANTIZERS

NNCF_PRESETS = ("performance", "mixed")


@dataclass(frozen=True)
class NncfOptions:
    preset: str = "performance"  # performance (symmetric) | mixed (asymmetric activations)
    fast_bias_correction: bool = True
    overflow_fix: str = (
        "auto"  # auto (NNCF's default: on where the CPU lacks VNNI) | enable | disable | first_layer_only
    )
    accuracy_control: bool = False  # nncf.quantize_with_accuracy_control against pooled F1 on training images
    max_drop: float = 0.005  # accuracy control: the largest F1 drop allowed
    subset_size: int = 300


@dataclass(frozen=True)
class OrtOptions:
    per_channel: bool = True
    reduce_range: bool | None = None  # None: 7-bit weights where the CPU lacks VNNI (ONNX Runtime's advice)
    quant_format: str = "qdq"  # qdq | qoperator
    calibrate_method: str = "minmax"  # minmax | entropy | percentile


def _training_samples(model_dir: Path, data, count: int):
    """Training images (with labels and FOV masks) of the split the model was trained on."""
    from fundus_edge.train.data import load_sample, model_training_split

    return [load_sample(s) for s in model_training_split(model_dir, data)[:count]]


def calibration_inputs(model_dir: Path, samples) -> list[np.ndarray]:
    """1xCxHxW network inputs as ``predict`` builds them (the runtime's own preprocessing)."""
    from fundus_edge.runtime.predictor import Predictor

    p = Predictor.load(model_dir, backend="onnxruntime", threads=None)
    return [p.prepare(s.rgb, fov=s.fov)[0][None] for s in samples]


def _float_source(source: Path) -> Path:
    from fundus_edge.runtime.manifest import read_manifest, verify_files

    man = read_manifest(source)
    if man.quantization:
        raise ModelError(
            f"{source}: already quantized ({man.quantization.get('method')}); give an FP32 model folder"
        )
    if "onnx" not in man.formats:
        raise ModelError(f"{source}: no ONNX file to quantize (export with --formats onnx)")
    verify_files(source, man, man.formats["onnx"])
    return source / man.formats["onnx"][0]


class _CompiledEngine:
    """A compiled OpenVINO model behind the Predictor's engine interface (accuracy control scores
    candidate models through the runtime's own pre- and postprocessing)."""

    name, device, format = "openvino", "cpu", "ir"

    def __init__(self, compiled):
        self.compiled = compiled
        self.request = compiled.create_infer_request()

    def run(self, x: np.ndarray) -> np.ndarray:
        self.request.infer({0: np.ascontiguousarray(x, np.float32)})
        return self.request.get_output_tensor(0).data.copy()


def _f1_fn(model_dir: Path):
    """validation_fn(compiled_model, samples) -> pooled FOV F1 at the model's threshold."""
    from fundus_edge.measure.metrics import MetricAccumulator
    from fundus_edge.runtime.manifest import read_manifest
    from fundus_edge.runtime.predictor import Predictor

    man = read_manifest(model_dir)

    def f1(compiled, samples) -> float:
        p = Predictor(model_dir, man, _CompiledEngine(compiled))
        acc = MetricAccumulator(threshold=p.threshold, per_image_auc=False)
        for s in samples:
            acc.add(p.predict(s.rgb, fov=s.fov).prob, s.label, s.fov, s.name)
        return float(acc.pooled().f1)

    return f1


def nncf_quantize(
    source: Path, out: Path, data, options: NncfOptions = NncfOptions(), calib_images: int = 20
) -> dict:
    """Write OpenVINO IR INT8 files into ``out``; returns the manifest's quantization record."""
    import nncf
    import openvino as ov

    if options.preset not in NNCF_PRESETS:
        raise InputError(f"unknown NNCF preset {options.preset!r}; choose from {', '.join(NNCF_PRESETS)}")
    fixes = {
        "enable": nncf.OverflowFix.ENABLE,
        "disable": nncf.OverflowFix.DISABLE,
        "first_layer_only": nncf.OverflowFix.FIRST_LAYER,
    }
    if options.overflow_fix not in ("auto", *fixes):
        raise InputError(f"unknown overflow fix {options.overflow_fix!r}; choose auto, {', '.join(fixes)}")
    onnx_path = _float_source(source)
    t0 = time.perf_counter()
    samples = _training_samples(source, data, calib_images)
    inputs = calibration_inputs(source, samples)
    model = ov.Core().read_model(str(onnx_path))
    preset = (
        nncf.QuantizationPreset.PERFORMANCE
        if options.preset == "performance"
        else nncf.QuantizationPreset.MIXED
    )
    adv = nncf.AdvancedQuantizationParameters(
        **({} if options.overflow_fix == "auto" else {"overflow_fix": fixes[options.overflow_fix]})
    )
    kw = dict(
        preset=preset,
        subset_size=min(options.subset_size, len(inputs)),
        fast_bias_correction=options.fast_bias_correction,
    )
    record = {
        "method": "ptq",
        "tool": f"nncf.quantize (nncf {nncf.__version__})",
        "engine": "openvino",
        "calibration_images": len(inputs),
        "preset": options.preset,
        "fast_bias_correction": options.fast_bias_correction,
        "overflow_fix": options.overflow_fix,
    }
    if options.accuracy_control:
        qmodel = nncf.quantize_with_accuracy_control(
            model,
            nncf.Dataset(inputs),
            nncf.Dataset(samples),
            validation_fn=_f1_fn(source),
            max_drop=options.max_drop,
            drop_type=nncf.DropType.ABSOLUTE,
            advanced_quantization_parameters=adv,
            **kw,
        )
        record.update(
            accuracy_control={
                "metric": "pooled FOV F1 on the calibration (training) images",
                "max_drop": options.max_drop,
            }
        )
    else:
        qmodel = nncf.quantize(model, nncf.Dataset(inputs), advanced_parameters=adv, **kw)
    xml, _ = FORMATS["ir"].files
    ov.save_model(qmodel, str(out / xml), compress_to_fp16=False)
    record.update(
        seconds=round(time.perf_counter() - t0, 1),
        fake_quantize_nodes=sum(op.get_type_name() == "FakeQuantize" for op in qmodel.get_ops()),
    )
    return record


def ort_quantize(
    source: Path, out: Path, data, options: OrtOptions = OrtOptions(), calib_images: int = 20
) -> dict:
    """Write an ONNX Runtime INT8 ``model.onnx`` into ``out``; returns the quantization record."""
    import onnxruntime
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }
    if options.calibrate_method not in methods:
        raise InputError(
            f"unknown calibration method {options.calibrate_method!r}; choose from {', '.join(methods)}"
        )
    if options.quant_format not in ("qdq", "qoperator"):
        raise InputError(f"unknown ONNX Runtime format {options.quant_format!r}; choose qdq or qoperator")
    onnx_path = _float_source(source)
    t0 = time.perf_counter()
    inputs = calibration_inputs(source, _training_samples(source, data, calib_images))
    reduce_range = (not has_vnni()) if options.reduce_range is None else options.reduce_range

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(inputs)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"image": x}

    target = out / FORMATS["onnx"].files[0]
    pre = out / "pre.onnx"
    try:
        # Shape inference and graph clean-up first (ONNX Runtime's advice); the symbolic shape pass
        # fails on the dynamic-H/W graphs paddle2onnx writes and is not needed for convolutions.
        quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(target),
            Reader(),
            quant_format=QuantFormat.QDQ if options.quant_format == "qdq" else QuantFormat.QOperator,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=options.per_channel,
            reduce_range=reduce_range,
            calibrate_method=methods[options.calibrate_method],
        )
    finally:
        pre.unlink(missing_ok=True)
        for f in out.glob("*.onnx.data"):
            f.unlink()
    return {
        "method": "ptq",
        "tool": f"onnxruntime.quantization.quantize_static (onnxruntime {onnxruntime.__version__})",
        "engine": "onnxruntime",
        "calibration_images": len(inputs),
        "format": options.quant_format,
        "activations": "uint8",
        "weights": "int8" + (" per channel" if options.per_channel else ""),
        "reduce_range": reduce_range,
        "calibrate_method": options.calibrate_method,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def build_cpu_record() -> dict:
    """What the INT8 file was built and checked on (kernels differ with and without VNNI)."""
    return {"cpu": cpu_model_and_flags()[0], "vnni": has_vnni(), "isa_flags": isa_flags()}


def engine_int8(
    source,
    out,
    data,
    quantizer: str,
    nncf_options: NncfOptions = NncfOptions(),
    ort_options: OrtOptions = OrtOptions(),
    calib_images: int = 20,
    force: bool = False,
    name: str | None = None,
    float_record: dict | None = None,
) -> Path:
    """A model folder whose INT8 file an engine's own quantizer made from ``source``'s float ONNX."""
    from fundus_edge.export.exporter import prepare_out
    from fundus_edge.runtime.manifest import Manifest, is_model_dir, read_manifest, write_manifest

    source, out = Path(source), Path(out)
    if quantizer not in ENGINE_QUANTIZERS:
        raise InputError(f"unknown engine quantizer {quantizer!r}; choose {' or '.join(ENGINE_QUANTIZERS)}")
    if not is_model_dir(source):
        raise InputError(
            f"{source}: {quantizer} quantizes an exported model folder (fundus-edge export first)"
        )
    man = read_manifest(source)
    _float_source(source)
    prepare_out(out, force)
    try:
        if quantizer == "nncf":
            quant = nncf_quantize(source, out, data, nncf_options, calib_images)
            formats = {"ir": list(FORMATS["ir"].files)}
        else:
            quant = ort_quantize(source, out, data, ort_options, calib_images)
            formats = {"onnx": list(FORMATS["onnx"].files)}
        quant["built_on"] = build_cpu_record()
        variant = "-".join(
            v for v in (man.variant if man.variant not in ("fp32", "") else "", f"int8-{quantizer}") if v
        )
        src = dict(man.source)
        if float_record is None:
            from fundus_edge.export.exporter import source_record

            float_record = source_record(source)
        src["float_model"] = float_record
        write_manifest(
            out,
            Manifest(
                **{
                    **{k: getattr(man, k) for k in Manifest.__dataclass_fields__},
                    "name": name or man.name,
                    "variant": variant,
                    "formats": formats,
                    "files": {},
                    "quantization": quant,
                    "source": src,
                    "validated": {},  # the float files' checks are not these
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                }
            ),
        )
        return out
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
