"""What machine the numbers come from, and its measured compute peak (for the roofline column)."""

from __future__ import annotations

import os
import platform
import time
from importlib import metadata

import numpy as np
from fundus_edge.runtime.cpu import cpu_identity, cpu_model_and_flags, isa_flags
from fundus_edge.runtime.engines.table import ENGINE_TABLE


def cpu_info() -> dict:
    """The record's ``machine``: the CPU's name and flags, and what tells two CPUs of one name apart (vendor,
    family / model / stepping, generation; runtime.cpu.CpuIdentity)."""
    model, _ = cpu_model_and_flags()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "isa_flags": isa_flags(),
        **cpu_identity().record_fields(),
        "machine": platform.machine(),
        "python": platform.python_version(),
    }


def versions() -> dict:
    """The version of each distribution a figure depends on (None: not installed): fundus-edge, every
    engine's (the engine table's ``versions``, in its order), numpy and OpenCV."""
    engines = [pkg for e in ENGINE_TABLE.values() for pkg in e.versions]
    out = {}
    for pkg in dict.fromkeys(["fundus-edge", *engines, "numpy", "opencv-python-headless"]):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _best_rate(fn, flop: float, reps: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return flop / best / 1e9


PROBE_SHAPE = (1, 16, 256, 256)  # the probe network's input: a folded retina's first level, smaller
PROBE_METHOD = (
    "a fixed 3-conv network (16-32-32-16 channels, 3x3, 1x16x256x256 input) through OpenVINO FP32,"
    " median of its calls over the rows' window"
)


class SpeedProbe:
    """The machine's speed now, in ms: a fixed small convolutional network through OpenVINO (the engine and
    kernels most rows use; a numpy matrix product tracked the VM's drift between two runs at 6 % where the
    rows moved 10 %), median of its calls over ``window_s`` (the rows' own window: a 0.25 s probe ranged
    36 % over a run where the rows' rounds ranged 10-25 %) on ``threads`` threads. Compiled once.
    Taken between the bench's rounds, its range over a run is how far the VM's speed moved while the rows
    were timed; against the machine's earlier runs, how far this run's machine was from its usual speed
    (the start-of-run peak, a best of 5, sees neither: a VM that slows for minutes still has fast moments)."""

    def __init__(self, threads: int, window_s: float = 1.0):
        import openvino as ov

        try:
            from openvino import opset13 as ops
        except ImportError:  # older layouts
            import openvino.runtime.opset13 as ops  # type: ignore[no-redef]

        rng = np.random.default_rng(0)
        x = ops.parameter(list(PROBE_SHAPE), np.float32, name="x")
        y = x
        for cin, cout in ((16, 32), (32, 32), (32, 16)):
            w = ops.constant((rng.standard_normal((cout, cin, 3, 3)) * 0.1).astype(np.float32))
            y = ops.relu(ops.convolution(y, w, [1, 1], [1, 1], [1, 1], [1, 1]))
        model = ov.Model([y], [x])
        compiled = ov.Core().compile_model(
            model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads}
        )
        self._req = compiled.create_infer_request()
        self._x = rng.standard_normal(PROBE_SHAPE).astype(np.float32)
        self.window_s = window_s

    def __call__(self) -> float:
        self._req.infer({0: self._x})
        ts: list[float] = []
        end = time.perf_counter() + self.window_s
        while time.perf_counter() < end or len(ts) < 5:
            t = time.perf_counter()
            self._req.infer({0: self._x})
            ts.append((time.perf_counter() - t) * 1e3)
        return float(np.median(ts))


def measure_peak(threads: int, n: int = 2048) -> dict:
    """GFLOP/s of an n x n matrix product on ``threads`` threads: FP32 through numpy's BLAS and
    FP32 / BF16 / INT8 through OpenVINO (the engine that can use AVX-512 BF16, VNNI and AMX). Best of 5.
    INT8 is the product as NNCF's models have it (unsigned 8-bit activations from a FakeQuantize, signed
    8-bit weights with a dequantizing scale), which OpenVINO runs as a u8 x s8 FullyConnected."""
    flop = 2.0 * n**3
    res = {
        "method": f"{n}x{n} matrix product, best of 5, {threads} threads",
        "fp32_gflops": None,
        "bf16_gflops": None,
        "int8_gops": None,
        "numpy_fp32_gflops": None,
    }
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    try:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(threads):
            res["numpy_fp32_gflops"] = round(_best_rate(lambda: a @ a, flop), 1)
    except ImportError:
        pass
    try:
        import openvino as ov
        import openvino.runtime.opset13 as ops  # noqa: F401
    except ImportError:
        try:
            import openvino as ov
            from openvino import opset13 as ops  # type: ignore[no-redef]
        except ImportError:
            return res
    try:
        p = ops.parameter([n, n], np.float32, name="x")
        w = ops.constant(a)
        model = ov.Model([ops.matmul(p, w, False, False)], [p])
        core = ov.Core()
        for key, hint in (("fp32_gflops", "f32"), ("bf16_gflops", "bf16")):
            c = core.compile_model(
                model, "CPU", {"INFERENCE_PRECISION_HINT": hint, "INFERENCE_NUM_THREADS": threads}
            )
            req = c.create_infer_request()
            res[key] = round(_best_rate(lambda req=req: req.infer({0: a}), flop), 1)
        lo, hi = (ops.constant(np.float32(v)) for v in (0.0, 4.0))
        x = ops.fake_quantize(p, lo, hi, lo, hi, 256)
        wq = ops.constant(np.random.default_rng(1).integers(-127, 128, (n, n)).astype(np.int8))
        w = ops.multiply(ops.convert(wq, "f32"), ops.constant(np.full((1, n), 0.01, np.float32)))
        c = core.compile_model(
            ov.Model([ops.matmul(x, w, False, False)], [p]),
            "CPU",
            {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads},
        )
        ran = {
            str(o.get_rt_info()["runtimePrecision"].astype(str))
            for o in c.get_runtime_model().get_ordered_ops()
            if o.get_rt_info()["layerType"].astype(str) in ("FullyConnected", "MatMul")
        }
        if ran & {"u8", "i8"}:  # an integer product ran; otherwise there is no INT8 peak to report
            req = c.create_infer_request()
            xa = np.abs(a)
            res["int8_gops"] = round(_best_rate(lambda: req.infer({0: xa}), flop), 1)
    except Exception as exc:  # noqa: BLE001 - a peak we cannot measure is reported as missing
        res["error"] = f"{exc.__class__.__name__}: {exc}"[:200]
    return res
