"""LiteRT (TensorFlow Lite's runtime, the one Android ships; the ``ai-edge-litert`` wheel): ``.tflite`` files
converted from a model's ONNX file by ``fundus_edge.export.litert``.

The interpreter runs on the CPU through XNNPACK, LiteRT's default delegate, with ``num_threads`` passed to
it (XNNPACK's thread pool takes the interpreter's count). The files are converted at one input size
(1 x H x W x C, NHWC, onnx2tf's layout); another size is set with ``resize_tensor_input`` and kept until the
next size, as OpenVINO builds per shape. A full-integer INT8 file takes int8 input and gives int8 output:
this engine quantizes the float input and dequantizes the probabilities with the file's own scale and zero
point, so the Predictor sees the same N x C x H x W float32 in, N x 1 x H x W float32 out as from any engine.

Precision is the file's: fp32, int8 (int8+fp32 where the converter kept some layers in float), or fp16
weights, which XNNPACK dequantizes to fp32 when it loads them (LiteRT's Python interpreter enables no fp16
arithmetic, and x86 has none): such a file runs in fp32 and is reported as ``fp16-as-fp32``. A precision
the file cannot run is refused, as ONNX Runtime refuses one.
"""

from __future__ import annotations

import numpy as np

from ..errors import EngineUnavailable, ModelError
from .base import Engine

_INT_TYPES = (np.int8, np.uint8)


def _quantize(x: np.ndarray, scale: float, zero: int, dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    return np.clip(np.rint(x / scale) + zero, info.min, info.max).astype(dtype)


class LiteRtEngine(Engine):
    name = "litert"

    def load(self) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        if self.options.device != "cpu":
            raise EngineUnavailable(
                "litert: --device gpu cannot be honoured (the ai-edge-litert wheel runs on the CPU here)"
            )
        path = self.model_dir / self.files[0]
        self.threads = int(self.options.threads) if self.options.threads else None
        try:
            # OpResolverType.AUTO: the built-in kernels with LiteRT's default delegate, XNNPACK, applied.
            self._interp = Interpreter(
                model_path=str(path),
                num_threads=self.threads,
                experimental_op_resolver_type=OpResolverType.AUTO,
            )
        except ValueError as exc:
            raise ModelError(
                f"{path}: not a LiteRT model LiteRT can load ({str(exc).strip()[:200]})"
            ) from None
        inp = self._interp.get_input_details()[0]
        out = self._interp.get_output_details()[0]
        self._in_index, self._out_index = inp["index"], out["index"]
        self._in_dtype, self._out_dtype = inp["dtype"], out["dtype"]
        self._in_q, self._out_q = inp["quantization"], out["quantization"]
        shape = [int(v) for v in inp["shape"]]
        if len(shape) != 4:
            raise ModelError(f"{path}: input of rank {len(shape)}; a 4-D image input is expected")
        # onnx2tf writes NHWC (1 x H x W x C, C a few channels); a file kept in NCHW is read as such.
        self.layout = "NHWC" if shape[3] < shape[1] else "NCHW"
        # The output's own: a graph onnx2tf could not turn whole (NCHW islands) may still end in NCHW.
        self._out_nhwc = int(out["shape"][-1]) == 1 and int(out["shape"][1]) != 1
        self.weights = self._weight_type()
        self.precision = self._check_precision(path)
        self._hw = self._shape_hw(shape)
        self._batch = shape[0]
        if self.options.static_hw:
            self._resize(1, *self.options.static_hw)
            self.shape = f"static {self.options.static_hw[0]}x{self.options.static_hw[1]} (batch 1)"
        else:
            if self.options.first_hw:
                self._resize(1, *self.options.first_hw)
            self.shape = "static per input size"
        self._interp.allocate_tensors()
        self.delegated = self._delegated()

    def _weight_type(self) -> str:
        """fp16 when the file stores float16 constants (onnx2tf's float16 file), else the input's type."""
        types = {np.dtype(t["dtype"]) for t in self._interp.get_tensor_details()}
        if np.dtype(np.float16) in types:
            return "fp16"
        return "int8" if np.dtype(np.int8) in types else "fp32"

    def _check_precision(self, path) -> str:
        """The precision that runs, checked against the one asked: fp32, int8, or fp16-as-fp32 (an fp16-weight
        file, computed in fp32, so fp32 is honoured and fp16 is not)."""
        if self._in_dtype in _INT_TYPES:
            # int8 in and out (full-integer), or int8 in and float out (layers kept in float at the end)
            if not self._in_q[0] or (self._out_dtype in _INT_TYPES and not self._out_q[0]):
                raise ModelError(
                    f"{path}: integer input or output without its scale; "
                    "convert with fundus_edge.export.litert (full-integer INT8)"
                )
            # int8+fp32: some layers kept in float inside (the converter's --float-layers / --float-ops), as
            # OpenVINO reports an NNCF model whose float layers run beside its int8 ones
            own = "int8+fp32" if self._has_op("DEQUANTIZE") else "int8"
            honoured = (None, "int8")
        elif self.weights == "fp16":
            own, honoured = "fp16-as-fp32", (None, "fp32")
        else:
            own, honoured = "fp32", (None, "fp32")
        asked = self.options.precision
        if asked in honoured:
            return own
        if asked == "fp16" and own == "fp16-as-fp32":
            raise EngineUnavailable(
                "litert: precision 'fp16' cannot be honoured: XNNPACK dequantizes this file's fp16 weights "
                "to fp32 and computes in fp32 here (ask fp32, or none)"
            )
        raise EngineUnavailable(
            f"litert: precision {asked!r} cannot be honoured (it runs the file's own precision: {own}; "
            "fp32, fp16-weight and INT8 files are formats of their own: tflite, tflite-fp16, tflite-int8)"
        )

    def _has_op(self, name: str) -> bool:
        try:
            ops = self._interp._get_ops_details()  # noqa: SLF001 - the only way the Python API shows ops
        except AttributeError:
            return False
        return any(op.get("op_name") == name for op in ops)

    def _shape_hw(self, shape) -> tuple[int, int]:
        return (shape[1], shape[2]) if self.layout == "NHWC" else (shape[2], shape[3])

    def _resize(self, n: int, h: int, w: int) -> None:
        if (n, h, w) == (self._batch, *self._hw):
            return
        c = int(self._interp.get_input_details()[0]["shape"][3 if self.layout == "NHWC" else 1])
        self._interp.resize_tensor_input(
            self._in_index, [n, h, w, c] if self.layout == "NHWC" else [n, c, h, w], strict=False
        )
        self._interp.allocate_tensors()
        self._batch, self._hw = n, (h, w)

    def _delegated(self) -> int:
        """How many pieces XNNPACK took (0: none, the built-in kernels run it all; 1: the whole graph). A
        delegated piece stands in the execution plan as one DELEGATE op after the nodes it replaces."""
        try:
            ops = self._interp._get_ops_details()  # noqa: SLF001 - the only way the Python API shows it
        except AttributeError:
            return 0
        return sum(op.get("op_name") == "DELEGATE" for op in ops)

    def run(self, x: np.ndarray) -> np.ndarray:
        if self.options.static_hw:
            h, w = x.shape[-2:]
            return self._run(self._to_static(x))[..., :h, :w]
        return self._run(x)

    def _run(self, x: np.ndarray) -> np.ndarray:
        n, _, h, w = x.shape
        if not self.options.static_hw:
            self._resize(n, h, w)
        t = np.transpose(x, (0, 2, 3, 1)) if self.layout == "NHWC" else x
        if self._in_dtype in _INT_TYPES:
            t = _quantize(t, float(self._in_q[0]), int(self._in_q[1]), self._in_dtype)
        self._interp.set_tensor(self._in_index, np.ascontiguousarray(t, self._in_dtype))
        self._interp.invoke()
        y = self._interp.get_tensor(self._out_index)
        if self._out_dtype in _INT_TYPES:
            y = (y.astype(np.float32) - int(self._out_q[1])) * np.float32(self._out_q[0])
        y = y.astype(np.float32, copy=False)
        return np.ascontiguousarray(np.transpose(y, (0, 3, 1, 2)) if self._out_nhwc else y)

    def versions(self) -> dict:
        from importlib.metadata import version

        return {"ai-edge-litert": version("ai-edge-litert")}


ENGINE = LiteRtEngine
