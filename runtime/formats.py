"""The one table of model formats. Its order is the order of preference: an engine reads the first format
of a model folder that lists it. Export builds the rows it makes (``made_by`` "export", one builder each
in ``fundus_edge.export.builders.BUILDERS``, after the formats it ``needs``); engine choice and the
benchmark's cells read ``engines``. A new format is one row here and one builder."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelFormat:
    name: str
    files: tuple[str, ...]  # relative to the model folder; the first is the graph
    engines: tuple[str, ...]  # engines that read it
    description: str
    # export (fundus-edge export) | quantize (an engine's own INT8 quantizer) | export.litert (its converter)
    made_by: str = "export"
    needs: tuple[str, ...] = ()  # formats export builds first (ONNX is converted from the legacy program)
    # The graph may keep tensors in files it names itself (ONNX external data); a manifest lists them after
    # ``files`` so they are confined and hashed like the rest (runtime.manifest checks the two agree).
    external_data: bool = False


FORMATS: dict[str, ModelFormat] = {
    f.name: f
    for f in (
        ModelFormat(
            "ir", ("model.xml", "model.bin"), ("openvino",), "OpenVINO IR (NNCF INT8)", made_by="quantize"
        ),
        ModelFormat(
            "pir",
            ("model.json", "model.pdiparams"),
            ("paddle",),
            "Paddle Inference, PIR program (Paddle >= 3)",
        ),
        ModelFormat(
            "onnx",
            ("model.onnx",),
            ("onnxruntime", "openvino"),
            "ONNX via paddle2onnx, dynamic batch/height/width",
            needs=("legacy",),
            external_data=True,
        ),
        ModelFormat(
            "legacy",
            ("legacy.pdmodel", "legacy.pdiparams"),
            ("paddle", "openvino"),
            "Paddle legacy program (PaddleSlim PTQ, OpenVINO's Paddle front end)",
        ),
        # LiteRT files converted from the ONNX file (python -m fundus_edge.export.litert, in a converter venv
        # of its own): NHWC, converted at one input size (the engine resizes). fp32 and fp16 weights sit in
        # the float model's folder; full-integer INT8 is a folder of its own (own weights and quantization).
        ModelFormat(
            "tflite",
            ("model.tflite",),
            ("litert",),
            "LiteRT fp32 (onnx2tf from the ONNX file)",
            made_by="export.litert",
        ),
        ModelFormat(
            "tflite-int8",
            ("model_int8.tflite",),
            ("litert",),
            "LiteRT full-integer INT8: int8 input and output, calibrated on training images",
            made_by="export.litert",
        ),
        ModelFormat(
            "tflite-fp16",
            ("model_fp16.tflite",),
            ("litert",),
            "LiteRT fp16 weights (half the file; XNNPACK computes them in fp32)",
            made_by="export.litert",
        ),
        # For PaddleSeg's deploy path, not our engines: a label-map program and its deploy.yaml
        # (export --paddleseg).
        ModelFormat(
            "paddleseg",
            ("paddleseg.json", "paddleseg.pdiparams", "deploy.yaml"),
            (),
            "PaddleSeg deploy: int32 label map (output_op argmax) + deploy.yaml",
            made_by="export --paddleseg",
            needs=("pir",),
        ),
    )
}


def formats_for(engine: str, available: list[str] | tuple[str, ...]) -> list[str]:
    """The formats of ``available`` that ``engine`` reads (a row naming it, or the engine table's ``reads``
    for an engine added there), most preferred first."""
    from .engines.table import ENGINE_TABLE

    spec = ENGINE_TABLE.get(engine)
    reads = spec.reads if spec is not None else ()
    return [
        name for name, f in FORMATS.items() if (engine in f.engines or name in reads) and name in available
    ]


def build_order(wanted: list[str] | tuple[str, ...]) -> list[str]:
    """The exportable formats to build for ``wanted``, each after the ones it needs."""
    order: list[str] = []

    def add(name: str) -> None:
        for dep in FORMATS[name].needs:
            add(dep)
        if name not in order:
            order.append(name)

    for name in FORMATS:
        if name in wanted:
            add(name)
    return order
