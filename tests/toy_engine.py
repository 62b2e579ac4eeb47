"""A toy engine for tests/test_engine_table.py: the whole of what adding an engine takes, one module (its
``ENGINE``) and one row (``TOY``, given to ``runtime.engines.table.register``).

It reads a model folder's ONNX file with the ``onnx`` package (the graph's input name) and runs it through
ONNX Runtime's CPU provider: small enough to read, real enough that its outputs can be checked against the
project's own ONNX Runtime engine.
"""

from __future__ import annotations

import numpy as np
from fundus_edge.runtime.engines.base import Engine
from fundus_edge.runtime.engines.table import EngineSpec, PrecisionNeed
from fundus_edge.runtime.errors import EngineUnavailable


class ToyEngine(Engine):
    name = "toy"

    def load(self) -> None:
        import onnx
        import onnxruntime as ort

        if self.options.precision not in (None, "fp32"):
            raise EngineUnavailable(
                f"toy: precision {self.options.precision!r} cannot be honoured (fp32 only)"
            )
        path = str(self.model_dir / self.files[0])
        self._input = onnx.load(path, load_external_data=False).graph.input[0].name
        so = ort.SessionOptions()
        if self.options.threads:
            so.intra_op_num_threads = int(self.options.threads)
        self._sess = ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._sess.run(None, {self._input: np.ascontiguousarray(x, np.float32)})[0]


ENGINE = ToyEngine

TOY = EngineSpec(
    name="toy",
    label="Toy (ONNX through onnx + ONNX Runtime)",
    module="tests.toy_engine",  # a dotted path: the registry imports it as given
    import_name="onnxruntime",
    pip="onnxruntime",
    extra="",
    marker="x",
    mpl_marker="x",
    precisions={
        "fp32": PrecisionNeed(arm_checked=True),
        # a reduced precision it could be asked for, behind a flag no CPU has
        "fp16": PrecisionNeed(x86=("toy_fp16",), arm=None, asked=True),
    },
    options="SessionOptions: intra_op_num_threads = threads",
    shape_row="static",
    auto_rank=-1,  # ahead of every built-in engine, so backend "auto" picks it
    versions=("onnxruntime", "onnx"),
    reads=("onnx",),
)
