"""Where an engine spends one DRIVE image: time per operation type and kernel, from the engine's own
profiler (OpenVINO performance counters, ONNX Runtime's profiling JSON, oneDNN's verbose log for Paddle
Inference). Explains, for instance, why an INT8 file is no faster than FP32 on a CPU without VNNI.

    python -m fundus_edge.bench.profile models/default build/models/int8-nncf --backend openvino --data DRIVE
    python -m fundus_edge.bench.profile models/default build/models/int8 --backend paddle --data DRIVE
"""

from __future__ import annotations

import argparse
import collections
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from fundus_edge.runtime.engines.table import names, spec

# engine (the engine table's name) -> its profiler. Each engine's profiler is its own code (each engine has
# its own profiling interface); an engine of the table without one is told so (``profiler``).
PROFILERS: dict[str, Callable[[Path, np.ndarray, int, int], dict]] = {}


def _profiles(engine: str):
    """Register the decorated function as ``engine``'s profiler (``engine`` must be a row of the table)."""

    def add(fn):
        PROFILERS[spec(engine).name] = fn
        return fn

    return add


def profiler(engine: str) -> Callable[[Path, np.ndarray, int, int], dict]:
    """``engine``'s profiler; an engine of the table without one is a one-line error that names those with."""
    from fundus_edge.runtime.errors import EngineUnavailable

    spec(engine)  # an unknown name: the table's own error, with the nearest names
    if engine not in PROFILERS:
        raise EngineUnavailable(
            f"no profiler for engine {engine!r} (profilers: {', '.join(sorted(PROFILERS))})"
        )
    return PROFILERS[engine]


def _input(model: Path, data: str | None) -> np.ndarray:
    """The network input ``predict`` builds for DRIVE test image 01 (or a synthetic fundus-sized one)."""
    from fundus_edge.runtime.predictor import Predictor

    p = Predictor.load(model, backend="onnxruntime" if "onnx" in _formats(model) else "auto", precision=None)
    if data:
        from fundus_edge.train.data import discover, load_sample

        return p.prepare(load_sample(discover(data, split="test")[0]).rgb)[0][None]
    rng = np.random.default_rng(0)
    return p.prepare(rng.integers(0, 255, (584, 565, 3)).astype(np.uint8), fov="none")[0][None]


def _formats(model: Path) -> list[str]:
    from fundus_edge.runtime.manifest import read_manifest

    return list(read_manifest(model).formats)


@_profiles("openvino")
def profile_openvino(model: Path, x: np.ndarray, threads: int, runs: int) -> dict:
    import openvino as ov
    from fundus_edge.runtime.formats import formats_for
    from fundus_edge.runtime.manifest import read_manifest

    man = read_manifest(model)
    core = ov.Core()
    m = core.read_model(str(model / man.formats[formats_for("openvino", list(man.formats))[0]][0]))
    m.reshape({m.inputs[0].get_any_name(): list(x.shape)})
    c = core.compile_model(
        m,
        "CPU",
        {
            "INFERENCE_PRECISION_HINT": "f32",
            "PERF_COUNT": True,
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
        },
    )
    r = c.create_infer_request()
    for _ in range(3):
        r.infer({0: x})
    agg: dict = collections.defaultdict(float)
    for _ in range(runs):
        r.infer({0: x})
        for pi in r.profiling_info:
            if pi.status == pi.Status.EXECUTED:
                agg[(pi.node_type, pi.exec_type)] += pi.real_time.total_seconds() * 1e3 / runs
    return agg


@_profiles("onnxruntime")
def profile_onnxruntime(model: Path, x: np.ndarray, threads: int, runs: int) -> dict:
    import tempfile

    import onnxruntime as ort
    from fundus_edge.runtime.manifest import read_manifest

    man = read_manifest(model)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    so.enable_profiling = True
    so.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
    s = ort.InferenceSession(str(model / man.formats["onnx"][0]), so, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    for _ in range(3):
        s.run(None, {name: x})
    for _ in range(runs):
        s.run(None, {name: x})
    events = json.loads(Path(s.end_profiling()).read_text())
    node = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    agg: dict = collections.defaultdict(float)
    for e in node[-len(node) * runs // (runs + 3) :]:  # the timed runs, not the warm-up
        agg[
            (e["args"].get("op_name", "?"), e["args"].get("provider", "").replace("ExecutionProvider", ""))
        ] += e["dur"] / 1e3 / runs
    return agg


@_profiles("paddle")
def profile_paddle(model: Path, x: np.ndarray, threads: int, runs: int) -> dict:
    """Paddle Inference through our own engine (oneDNN, INT8 where the model is), in a child process with
    ONEDNN_VERBOSE=1: oneDNN logs every primitive it runs with its implementation (e.g. brg_conv_fwd:avx2 for
    f32, an int8 one for u8 sources) and time; Paddle's own profiler names ops, not kernels."""
    import tempfile

    from fundus_edge.export.child import failure_line, run_child
    from fundus_edge.runtime.threads import threads_env

    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "x.npy", x)
        r = run_child(
            "fundus_edge.bench.profile_child",
            (model, threads, runs, Path(tmp) / "x.npy"),
            env={"ONEDNN_VERBOSE": "1", **threads_env(threads)},
            check=False,
        )
    # The timed runs' log is what counts: a child that wrote it and then failed on exit still profiled.
    if "==timed==" not in r.stdout:
        raise RuntimeError(f"paddle profile child failed: {failure_line(r)}")
    agg: dict = collections.defaultdict(float)
    for line in r.stdout.split("==timed==", 1)[1].splitlines():
        f = line.split(",")
        if len(f) < 10 or f[2] != "primitive" or f[3] != "exec":
            continue
        src = next((t.split(":")[1] for t in f[8].split() if t.startswith("src:")), "?")
        agg[(f"{f[5]} ({src})", f[6])] += float(f[-1]) / runs
    return agg


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="model folders")
    ap.add_argument("--backend", default="openvino", choices=names(), help="an engine of the engine table")
    ap.add_argument("--data", help="DRIVE (test image 01); synthetic without it")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--top", type=int, default=8)
    a = ap.parse_args(argv)
    try:
        return _run(a)
    except Exception as exc:  # noqa: BLE001 - a diagnostic: one line, not a traceback
        from fundus_edge.runtime.errors import one_line

        print(f"profile: {one_line(exc)}")
        return 1


def _run(a) -> int:
    from fundus_edge.runtime.cpu import cpu_model_and_flags, isa_flags

    print(
        f"{a.backend}, {a.threads} threads, mean of {a.runs} runs; CPU {cpu_model_and_flags()[0]},"
        f" ISA flags {', '.join(isa_flags())}"
    )
    profile = profiler(a.backend)  # before any model is read: an engine without a profiler says so at once
    for m in map(Path, a.models):
        x = _input(m, a.data)
        agg = profile(m, x, a.threads, a.runs)
        print(
            f"\n{m} (input {'x'.join(map(str, x.shape))}): {sum(agg.values()):.1f} ms in operations\n\n"
            "| operation | kernel | ms |\n| --- | --- | --- |"
        )
        for (op, kernel), ms in sorted(agg.items(), key=lambda kv: -kv[1])[: a.top]:
            print(f"| {op} | {kernel} | {ms:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
