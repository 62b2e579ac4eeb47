"""OpenVINO. Reads ONNX (or Paddle's legacy program) directly.

Its CPU plugin runs FP32 models in bf16 by default on CPUs with AVX-512 BF16 (STACK.md), so we
always set INFERENCE_PRECISION_HINT (fp32 unless another precision is asked) and read back what the
compiled model actually uses. Asked for bf16 or fp16 on a device without it, the plugin would quietly run
f32, so such a request is refused, as ONNX Runtime and Paddle refuse what they cannot honour. Models are
compiled per input shape (static shapes run faster than a dynamic compile here); the last two shapes are
kept.
"""

from __future__ import annotations

import numpy as np

from ..errors import EngineUnavailable, nearest
from .base import Engine

_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
# The OPTIMIZATION_CAPABILITIES entry a device must list to compute a reduced precision natively.
_NEEDS = {"bf16": "BF16", "fp16": "FP16"}
# Compiled shapes kept: batch 1 and batch 4 of one size alternate without recompiling (each compile of a
# DRIVE-sized U-Net takes 0.3-0.6 s). Each one holds its own activation memory (about 140 MB for the
# default model at 560x560: four kept raised the bench's peak RSS from 0.7 to 1.1 GB), so only two.
_KEEP_SHAPES = 2


def capabilities(core, device: str) -> set[str]:
    """What the device's plugin computes natively: OPTIMIZATION_CAPABILITIES (e.g. FP32, BF16, FP16, INT8)."""
    return {str(c).upper() for c in core.get_property(device, "OPTIMIZATION_CAPABILITIES")}


def _precision_name(t) -> str:
    """OpenVINO element type (prints as <type: 'float32'>, 'bf16', ...) -> fp32 / bf16 / fp16."""
    s = getattr(t, "type_name", None) or str(t)
    s = s.lower()
    for key, name in (
        ("bf16", "bf16"),
        ("f16", "fp16"),
        ("float16", "fp16"),
        ("f32", "fp32"),
        ("float32", "fp32"),
    ):
        if key in s:
            return name
    return s


class OpenVinoEngine(Engine):
    name = "openvino"

    @staticmethod
    def has_gpu() -> bool:
        import openvino as ov

        return "GPU" in ov.Core().available_devices

    def load(self) -> None:
        import openvino as ov

        self._core = ov.Core()
        want = "GPU" if self.options.device == "gpu" else "CPU"
        if want not in self._core.available_devices:
            raise EngineUnavailable(
                f"openvino: device {want} not available ({', '.join(self._core.available_devices)})"
            )
        self._device = want
        precision = self.options.precision or "fp32"
        if precision not in _HINTS:
            raise EngineUnavailable(f"openvino: no precision {precision!r}{nearest(precision, _HINTS)}")
        if precision in _NEEDS and _NEEDS[precision] not in (have := capabilities(self._core, want)):
            raise EngineUnavailable(
                f"openvino: precision {precision} cannot be honoured: {want} lacks {_NEEDS[precision]} "
                f"(its capabilities: {', '.join(sorted(have))})"
            )
        self._model = self._core.read_model(str(self.model_dir / self.files[0]))
        self._config = {"INFERENCE_PRECISION_HINT": _HINTS[precision], "PERFORMANCE_HINT": "LATENCY"}
        if self.options.threads and want == "CPU":
            self._config["INFERENCE_NUM_THREADS"] = int(self.options.threads)
        self._compiled: dict[tuple, tuple] = {}  # shape -> (compiled model, infer request), oldest first
        self.device = want.lower()
        self.precision = precision
        # Compile once now so load time includes compilation and the real precision is known.
        channels = self._model.inputs[0].get_partial_shape()[1].get_length()
        if self.options.dynamic_shape:
            self._compile(None)  # the model's own dynamic dims: one compiled model for every size
            self.shape = "dynamic"
        elif self.options.static_hw:
            self._compile((1, channels, *self.options.static_hw))
            self.shape = f"static {self.options.static_hw[0]}x{self.options.static_hw[1]} (batch 1)"
        else:
            # first_hw: the Predictor's expected shape, built now; its first inference (which allocates the
            # buffers) is Predictor.prime's, also at load.
            self._compile((1, channels, *(self.options.first_hw or (64, 64))))
            self.shape = "static per input size"
        ran = self.precision.removeprefix("int8+")
        if (
            self.options.precision and ran != precision
        ):  # the capability said yes, the compiled model says otherwise
            raise EngineUnavailable(
                f"openvino: precision {precision} asked, but {want} compiled the model in {ran}"
            )

    @property
    def built_shapes(self) -> list[tuple | None]:
        """The input shapes compiled and kept (None: the dynamic build), oldest first."""
        return list(self._compiled)

    def _compile(self, shape: tuple):
        """The compiled model and infer request for one input shape, most recently used kept last."""
        hit = self._compiled.pop(shape, None)
        if hit is None:
            m = self._model.clone()
            if shape is not None:  # None: compiled as read, dynamic
                m.reshape({m.inputs[0].get_any_name(): list(shape)})
            c = self._core.compile_model(m, self._device, self._config)
            hit = (c, c.create_infer_request())
            base = _precision_name(c.get_property("INFERENCE_PRECISION_HINT"))
            self.precision = f"int8+{base}" if self.quantized else base
            while len(self._compiled) >= _KEEP_SHAPES:
                self._compiled.pop(next(iter(self._compiled)))
        self._compiled[shape] = hit
        return hit

    def run(self, x: np.ndarray) -> np.ndarray:
        if self.options.dynamic_shape:
            _, req = self._compiled[None]
        elif self.options.static_hw:
            h, w = x.shape[-2:]
            x = self._to_static(x)
            _, req = self._compiled[tuple(x.shape)]
            req.infer({0: np.ascontiguousarray(x, np.float32)})
            return req.get_output_tensor(0).data[..., :h, :w].copy()
        else:
            _, req = self._compile(tuple(x.shape))
        req.infer({0: np.ascontiguousarray(x, np.float32)})
        return req.get_output_tensor(0).data.copy()

    def versions(self) -> dict:
        import openvino as ov

        return {"openvino": ov.__version__}


ENGINE = OpenVinoEngine
