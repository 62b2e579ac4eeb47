"""Paddle Inference. oneDNN on CPU (about 7x faster than without here, STACK.md)."""
from __future__ import annotations

import numpy as np

from ..errors import EngineUnavailable
from .base import Engine


class PaddleEngine(Engine):
    name = "paddle"

    def load(self) -> None:
        import paddle
        from paddle import inference

        graph, params = (str(self.model_dir / f) for f in self.files)
        cfg = inference.Config(graph, params)
        cfg.disable_glog_info()
        if self.options.device == "gpu":
            if not (paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0):
                raise EngineUnavailable("paddle: --device gpu asked, but this Paddle build has no CUDA device")
            cfg.enable_use_gpu(256, 0)
            self.device = "gpu:0"
        else:
            cfg.disable_gpu()
            cfg.enable_mkldnn()
            if self.quantized:
                cfg.enable_mkldnn_int8()
            if self.options.threads:
                cfg.set_cpu_math_library_num_threads(int(self.options.threads))
            self.device = "cpu"
        cfg.switch_ir_optim(True)
        self._pred = inference.create_predictor(cfg)
        self._in = self._pred.get_input_handle(self._pred.get_input_names()[0])
        self._out = self._pred.get_output_handle(self._pred.get_output_names()[0])
        self.precision = "int8" if self.quantized else "fp32"

    def run(self, x: np.ndarray) -> np.ndarray:
        self._in.reshape(list(x.shape))
        self._in.copy_from_cpu(np.ascontiguousarray(x, np.float32))
        self._pred.run()
        return self._out.copy_to_cpu()

    def versions(self) -> dict:
        import paddle

        return {"paddle": paddle.__version__}


ENGINE = PaddleEngine
