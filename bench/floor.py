"""Where a model's latency floor is: its work (MACs) and its memory traffic against this CPU's measured peaks.

    python -m fundus_edge.bench.floor models/s2d models/small --size 560 --threads 2 \\
        [--measured 'models/s2d=9.1,...']

For each model folder's ``model.onnx`` at a square input of ``--size`` pixels: multiply-accumulates of its
convolutions (from the ONNX graph with shapes inferred, so a transposed conv counts its real work), and an
estimate of the activation bytes that must cross memory: every tensor a convolution, transposed convolution,
pooling, concatenation or softmax produces is written once and read once by what consumes it (BatchNorm and
activations fuse into the conv in every engine here, so their outputs never reach memory), plus the input and
the weights once. Tensors are counted at the element size of the precision asked (fp32 4 bytes, bf16 2, int8
1). Caches hide some of that traffic for tensors smaller than the last-level cache share of two cores, so the
memory time is an upper estimate of what DRAM must carry, and the compute time a lower bound (direct MACs; a
Winograd 3x3 can beat it).

The peaks are measured here: compute by ``bench.machine.measure_peak`` (a large matrix product per precision)
and memory bandwidth by copying a 256 MiB array in as many threads as asked (numpy releases the GIL while it
copies). ``time_compute = 2 * MACs / peak`` and ``time_memory = bytes / bandwidth``; the larger is the floor
the model cannot beat on this CPU, and a measured latency far above both says neither bounds it (overheads,
poor kernel choice, layouts).
"""

from __future__ import annotations

import argparse
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ELEMENT_BYTES = {"fp32": 4, "bf16": 2, "int8": 1}
_MOVES = {"Conv", "ConvTranspose", "MaxPool", "Concat", "Softmax", "Resize", "DepthToSpace", "SpaceToDepth"}


@dataclass(frozen=True)
class Traffic:
    model: str
    macs: float  # multiply-accumulates
    activation_elems: float  # elements of the tensors that cross memory (written + read)
    weight_elems: float
    input_elems: float

    def bytes(self, precision: str) -> float:
        """Bytes moved at ``precision``: activations and weights at its element size, the fp32 input once."""
        e = ELEMENT_BYTES[precision]
        return self.activation_elems * e + self.weight_elems * e + self.input_elems * 4


def _dims(value_info) -> list[int]:
    return [d.dim_value for d in value_info.type.tensor_type.shape.dim]


def onnx_traffic(onnx_path: Path, size: int) -> Traffic:
    """MACs and memory traffic of an ONNX model at a 1 x C x size x size input."""
    import onnx

    model = onnx.load(str(onnx_path))
    g = model.graph
    inp = g.input[0]
    dims = inp.type.tensor_type.shape.dim
    for d, v in zip(dims, (1, None, size, size), strict=False):
        if v is not None:
            d.ClearField("dim_param")
            d.dim_value = v
    model = onnx.shape_inference.infer_shapes(model)
    g = model.graph
    shapes = {vi.name: _dims(vi) for vi in list(g.value_info) + list(g.input) + list(g.output)}
    inits = {t.name: list(t.dims) for t in g.initializer}
    # paddle2onnx stores weights as Constant nodes, not initializers.
    for node in g.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    inits[node.output[0]] = list(attr.t.dims)
    macs = acts = 0.0
    for node in g.node:
        if node.op_type in ("Conv", "ConvTranspose"):
            w = inits.get(node.input[1])
            src, dst = shapes.get(node.input[0]), shapes.get(node.output[0])
            if w and src and dst and all(src) and all(dst):
                k = float(np.prod(w[2:]))
                if node.op_type == "Conv":  # out pixels x out channels x (in channels per group) x k
                    macs += float(np.prod(dst)) * w[1] * k
                else:  # in pixels x in channels x out channels per group x k
                    macs += float(np.prod(src[2:])) * w[0] * w[1] * k
        if node.op_type in _MOVES:
            out = shapes.get(node.output[0])
            if out and all(out):
                acts += 2.0 * float(np.prod(out))  # written once, read once by its consumer
    weights = float(sum(np.prod(d) for d in inits.values()))
    return Traffic(onnx_path.parent.name, macs, acts, weights, float(np.prod(_dims(inp))))


def memory_bandwidth(threads: int, mib: int = 256, reps: int = 5) -> float:
    """Best GB/s of copying ``mib`` MiB (read + write counted) split over ``threads`` threads."""
    n = mib * (1 << 20) // 4
    src = np.ones(n, np.float32)
    dst = np.empty_like(src)
    parts = np.array_split(np.arange(n), threads)
    bounds = [(p[0], p[-1] + 1) for p in parts]

    def copy(lo: int, hi: int) -> None:
        np.copyto(dst[lo:hi], src[lo:hi])

    best = 0.0
    for _ in range(reps):
        ts = [threading.Thread(target=copy, args=b) for b in bounds]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        best = max(best, 2 * src.nbytes / (time.perf_counter() - t0) / 1e9)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="model folders with a model.onnx")
    ap.add_argument(
        "--size", type=int, default=560, help="square network input side (the bench's DRIVE FOV crop is 560)"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--measured",
        default="",
        help="'FOLDER:PRECISION=MS,...' measured p50s to set beside the floors (e.g. from the bench)",
    )
    a = ap.parse_args(argv)
    measured = {}
    for part in filter(None, (p.strip() for p in a.measured.split(","))):
        key, _, ms = part.partition("=")
        try:
            measured[key] = float(ms)
        except ValueError:
            ap.error(f"--measured: {part!r} is not FOLDER:PRECISION=MS")
    for folder in a.models:
        if not (Path(folder) / "model.onnx").is_file():
            ap.error(f"{folder}: no model.onnx (the floor reads the float ONNX graph)")
    from .machine import cpu_info, measure_peak

    peak = measure_peak(a.threads)
    bw = memory_bandwidth(a.threads)
    info = cpu_info()
    peaks = {"fp32": peak.get("fp32_gflops"), "bf16": peak.get("bf16_gflops"), "int8": peak.get("int8_gops")}
    print(
        f"CPU {info['cpu']}, flags {', '.join(info['isa_flags'])}; {a.threads} threads;"
        f" peaks FP32 {peaks['fp32']:.0f} GFLOP/s, "
        f"BF16 {peaks['bf16'] or 0:.0f}, INT8 {peaks['int8'] or 0:.0f} GOP/s; memory copy {bw:.1f} GB/s;"
        f" input {a.size}x{a.size}\n"
    )
    print(
        "| model | precision | GMAC | MB moved | compute floor ms | memory floor ms"
        " | measured ms | measured / floor |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for folder in a.models:
        t = onnx_traffic(Path(folder) / "model.onnx", a.size)
        for prec in ("fp32", "bf16", "int8"):
            pk = peaks[prec]
            tc = 2 * t.macs / (pk * 1e9) * 1e3 if pk else float("nan")
            tm = t.bytes(prec) / (bw * 1e9) * 1e3
            m = measured.get(f"{folder.rstrip('/')}:{prec}")
            ratio = f"{m / max(tc, tm):.1f}" if m else ""
            print(
                f"| {t.model} | {prec} | {t.macs / 1e9:.2f} | {t.bytes(prec) / 1e6:.1f} | {tc:.2f} | {tm:.2f}"
                f" | {m if m else ''} | {ratio} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
