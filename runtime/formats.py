"""The one table of model formats. Export builds each row, engine detection reads it, and the
benchmark takes its engine columns from it. Adding a format is one row here and one builder in
``fundus_edge.export.builders``."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelFormat:
    name: str
    files: tuple[str, ...]  # relative to the model folder; the first is the graph
    engines: tuple[str, ...]  # engines that read it, in order of preference for that engine
    description: str


FORMATS: dict[str, ModelFormat] = {
    f.name: f
    for f in (
        ModelFormat("pir", ("model.json", "model.pdiparams"), ("paddle",), "Paddle Inference, PIR program (Paddle >= 3)"),
        ModelFormat("legacy", ("legacy.pdmodel", "legacy.pdiparams"), ("paddle", "openvino"), "Paddle legacy program (PaddleSlim PTQ, OpenVINO's Paddle front end)"),
        ModelFormat("onnx", ("model.onnx",), ("onnxruntime", "openvino"), "ONNX via paddle2onnx, dynamic batch/height/width"),
        ModelFormat("ir", ("model.xml", "model.bin"), ("openvino",), "OpenVINO IR (NNCF INT8)"),
    )
}

# Which format each engine prefers when several are present.
ENGINE_FORMATS: dict[str, tuple[str, ...]] = {
    "paddle": ("pir", "legacy"),
    "onnxruntime": ("onnx",),
    "openvino": ("ir", "onnx", "legacy"),
}


def formats_for(engine: str, available: list[str] | tuple[str, ...]) -> list[str]:
    return [f for f in ENGINE_FORMATS.get(engine, ()) if f in available]
