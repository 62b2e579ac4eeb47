"""ONNX Runtime: CPU, or CUDA / TensorRT providers when asked for and present."""

from __future__ import annotations

import numpy as np

from ..errors import EngineUnavailable
from .base import Engine

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"

    @staticmethod
    def has_gpu() -> bool:
        import onnxruntime as ort

        return any(p in ort.get_available_providers() for p in GPU_PROVIDERS)

    def load(self) -> None:
        import onnxruntime as ort

        if self.options.precision not in (None, "fp32", "int8"):
            raise EngineUnavailable(
                f"onnxruntime: precision {self.options.precision!r} cannot be honoured "
                "(it runs the file's own precision: "
                f"{'int8' if self.quantized else 'fp32'}; OpenVINO takes bf16 and fp16)"
            )
        if (
            self.options.precision == "int8"
            and not self.quantized
            or self.options.precision == "fp32"
            and self.quantized
        ):
            raise EngineUnavailable(
                f"onnxruntime: precision {self.options.precision!r} asked, "
                f"but the model file is {'int8' if self.quantized else 'fp32'}"
            )

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        if self.options.threads:
            so.intra_op_num_threads = int(self.options.threads)
            so.inter_op_num_threads = 1
        available = ort.get_available_providers()
        if self.options.device == "gpu":
            wanted = [p for p in GPU_PROVIDERS if p in available]
            if not wanted:
                raise EngineUnavailable(
                    "onnxruntime: --device gpu asked, but no GPU provider is available "
                    f"({', '.join(available)}); install onnxruntime-gpu"
                )
            providers = wanted
        else:
            providers = ["CPUExecutionProvider"]
        path = str(self.model_dir / self.files[0])
        if self.options.static_hw:
            # Fixed input dims: the input's symbolic dims (named by the exporter, e.g. DynamicDimension.0)
            # set to 1 x H x W, so the optimizer folds the shape arithmetic and the memory plan is made once.
            probe = ort.SessionOptions()
            probe.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            probe.log_severity_level = 3
            dims = (
                ort.InferenceSession(path, sess_options=probe, providers=["CPUExecutionProvider"])
                .get_inputs()[0]
                .shape
            )
            for name, value in zip(dims, (1, None, *self.options.static_hw), strict=False):
                if isinstance(name, str) and value is not None:
                    so.add_free_dimension_override_by_name(name, int(value))
            self.shape = f"static {self.options.static_hw[0]}x{self.options.static_hw[1]} (batch 1)"
        self._sess = ort.InferenceSession(path, sess_options=so, providers=providers)
        used = self._sess.get_providers()[0]
        if self.options.device == "gpu" and used not in GPU_PROVIDERS:
            # A GPU provider that fails to start leaves ONNX Runtime on the CPU without an error.
            raise EngineUnavailable(
                f"onnxruntime: --device gpu asked, but the session runs on {used} "
                "(the GPU provider did not start)"
            )
        self.device = {
            "CPUExecutionProvider": "cpu",
            "CUDAExecutionProvider": "gpu:cuda",
            "TensorrtExecutionProvider": "gpu:tensorrt",
        }.get(used, used)
        self._input = self._sess.get_inputs()[0].name
        self.precision = "int8" if self.quantized else "fp32"

    def run(self, x: np.ndarray) -> np.ndarray:
        if self.options.static_hw:
            h, w = x.shape[-2:]
            return self._sess.run(None, {self._input: np.ascontiguousarray(self._to_static(x), np.float32)})[
                0
            ][..., :h, :w]
        return self._sess.run(None, {self._input: np.ascontiguousarray(x, np.float32)})[0]

    def versions(self) -> dict:
        import onnxruntime as ort

        return {"onnxruntime": ort.__version__}


ENGINE = OnnxRuntimeEngine
