"""Paddle Inference. oneDNN on CPU (about 7x faster than without here, STACK.md)."""

from __future__ import annotations

import numpy as np

from ..errors import EngineUnavailable
from .base import Engine


class PaddleEngine(Engine):
    name = "paddle"

    @staticmethod
    def has_gpu() -> bool:
        import paddle

        return bool(paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0)

    def _predictor(self, int8: bool):
        import paddle
        from paddle import inference

        graph, params = (str(self.model_dir / f) for f in self.files)
        cfg = inference.Config(graph, params)
        cfg.disable_glog_info()
        if self.options.device == "gpu":
            if not (paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0):
                raise EngineUnavailable(
                    "paddle: --device gpu asked, but this Paddle build has no CUDA device"
                )
            cfg.enable_use_gpu(256, 0)
        else:
            cfg.disable_gpu()
            if self.onednn:
                cfg.enable_mkldnn()
            else:
                cfg.disable_mkldnn()  # Paddle 3 turns it on for CPU by default
            if int8:
                cfg.enable_mkldnn_int8()
            if self.options.threads:
                cfg.set_cpu_math_library_num_threads(int(self.options.threads))
        cfg.switch_ir_optim(True)
        if self.options.device != "gpu" and self._manifest.model.get("act") == "leaky":
            # Paddle 3.3.1's oneDNN conv + leaky_relu fusion on PIR programs crashes the process
            # (segfault building FusedConv2dOp's alpha attribute, docs/findings/paddle-toolchain.md):
            # run them unfused.
            cfg.delete_pass("conv_activation_onednn_fuse_pass")
        pred = inference.create_predictor(cfg)
        return (
            pred,
            pred.get_input_handle(pred.get_input_names()[0]),
            pred.get_output_handle(pred.get_output_names()[0]),
        )

    def load(self) -> None:
        from ..manifest import read_manifest

        if self.options.static_hw:
            # Nothing to gain on the CPU: the input is reshaped per call and oneDNN caches its primitives per
            # shape already; a fixed-shape engine is TensorRT's (GPU), not part of this runtime.
            raise EngineUnavailable(
                "paddle: no static input shape on the CPU (Paddle Inference reshapes its input per call; "
                "fixed shapes pay off only in its TensorRT engine on a GPU)"
            )
        self._manifest = read_manifest(self.model_dir)
        # oneDNN kernels unless the model's manifest says this program cannot run on them (found at import).
        self.onednn = self._manifest.engines.get("paddle", {}).get("onednn", True) is not False
        asked = self.options.precision
        allowed = ("int8", "int8-sim") if self.quantized else ("fp32",)
        if asked is not None and asked not in allowed:
            raise EngineUnavailable(
                f"paddle: precision {asked!r} cannot be honoured "
                f"for this {'INT8' if self.quantized else 'float'} model "
                f"(paddle runs {' or '.join(allowed)}; OpenVINO takes bf16 and fp16)"
            )
        self.device = "gpu:0" if self.options.device == "gpu" else "cpu"
        if not self.quantized:
            self._pred, self._in, self._out = self._predictor(False)
            self.precision = "fp32"
            return
        if asked == "int8-sim":
            # The quantize/dequantize graph on float kernels: INT8 numerics at float speed, only when asked.
            self._pred, self._in, self._out = self._predictor(False)
            self.precision = "int8-sim"
            return
        if self.options.device == "gpu":
            raise EngineUnavailable(
                "paddle: INT8 on the GPU is not supported here; "
                "ask precision int8-sim to run the Q/DQ graph on float kernels"
            )
        # oneDNN INT8 runs PaddleSlim's PTQ programs, but its pass fails on QAT programs ("could not
        # create a primitive descriptor for a concat primitive", Paddle 3.3.1). Probe it once; a failure
        # is an error, never a quiet fall-back to float kernels (precision int8-sim asks for those).
        try:
            self._pred, self._in, self._out = self._predictor(True)
            self.run(np.zeros((1, int(self._manifest.preprocess.in_channels), 32, 32), np.float32))
        except (RuntimeError, ValueError) as exc:
            text = str(exc).strip()
            why = text.splitlines()[-1][:200] if text else type(exc).__name__
            raise EngineUnavailable(
                f"paddle: oneDNN INT8 cannot run this program ({why}); "
                "precision int8-sim runs its Q/DQ graph on float kernels"
            ) from None
        self.precision = "int8"

    def run(self, x: np.ndarray) -> np.ndarray:
        self._in.reshape(list(x.shape))
        self._in.copy_from_cpu(np.ascontiguousarray(x, np.float32))
        self._pred.run()
        return self._out.copy_to_cpu()

    def versions(self) -> dict:
        import paddle

        return {
            "paddle": paddle.__version__,
            **(
                {}
                if getattr(self, "onednn", True)
                else {"onednn": "off (the model's manifest: engines.paddle)"}
            ),
        }


ENGINE = PaddleEngine
