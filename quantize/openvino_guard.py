"""Check a QDQ INT8 ONNX file on OpenVINO's CPU plugin against the file's own semantics, on the CPU
that builds it, and report (or, as a last resort, mend) a disagreement.

The cause of the disagreement found before (small model's PaddleSlim file: F1 0.81 on ONNX Runtime, 0.69 on
OpenVINO; 39 % of vessel pixels differing from the exact Q/DQ semantics) was paddle2onnx's signed int8
activation Q/DQ pairs with zero point 0: written unsigned on the same grid (quantize/qdq.py, done when the
file is built), OpenVINO differs on 5 % on an AVX2 CPU, exactly as ONNX Runtime's own INT8 kernels do
(``python -m fundus_edge.quantize.probe``; docs/findings/precision-and-int8.md). 16-bit saturation of
u8 x s8 pairs without VNNI shows in single-layer synthetic tests but was not the cause on the real models.

The check stays for every INT8 file: compare OpenVINO with the QDQ graph's exact semantics (ONNX Runtime,
graph optimisations off) on calibration images; while they disagree by more than 1.5 x ONNX Runtime's own
INT8 kernels do, leave in float the convolution whose float weights make them agree best, and record it.
No library checks one engine's int8 result against another's, hence this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class GuardResult:
    checked: bool  # False when OpenVINO or ONNX Runtime is not installed
    tolerance: float | None = (
        None  # allowed disagreement: 1.5 x ONNX Runtime's own (its int8 kernels round too)
    )
    disagreement_before: float | None = None  # share of reference vessel pixels whose mask differs
    disagreement_after: float | None = None
    float_convs: tuple[str, ...] = field(default_factory=tuple)
    note: str = ""

    def as_dict(self) -> dict:
        return {
            "checked": self.checked,
            "tolerance": self.tolerance,
            "disagreement_before": self.disagreement_before,
            "disagreement_after": self.disagreement_after,
            "float_convs": list(self.float_convs),
            "note": self.note,
        }


def _producers(model) -> dict:
    return {o: n for n in model.graph.node for o in n.output}


def quantized_convs(model) -> list[str]:
    """Names of Conv nodes whose weights come through QuantizeLinear -> DequantizeLinear."""
    prod = _producers(model)
    names = []
    for n in model.graph.node:
        if n.op_type != "Conv" or len(n.input) < 2:
            continue
        dq = prod.get(n.input[1])
        if (
            dq is not None
            and dq.op_type == "DequantizeLinear"
            and (q := prod.get(dq.input[0])) is not None
            and q.op_type == "QuantizeLinear"
        ):
            names.append(n.name)
    return names


def float_weights(model, conv_names) -> None:
    """Feed these convolutions their float weights (skipping the weight Q/DQ pair), in place; Q/DQ
    nodes left without consumers are removed."""
    prod = _producers(model)
    wanted = set(conv_names)
    for n in model.graph.node:
        if n.op_type == "Conv" and n.name in wanted:
            dq = prod[n.input[1]]
            n.input[1] = prod[dq.input[0]].input[0]
    while True:  # drop nodes whose outputs nobody reads any more
        used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
        dead = [
            n
            for n in model.graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear", "Constant")
            and not any(o in used for o in n.output)
        ]
        if not dead:
            return
        for n in dead:
            model.graph.node.remove(n)


def _with_float(model, conv: str):
    """A copy of ``model`` with one more convolution in float."""
    m = type(model).FromString(model.SerializeToString())
    float_weights(m, [conv])
    return m


def vessel_prob(out: np.ndarray) -> np.ndarray:
    return out[:, -1] if out.ndim == 4 else out


def disagreement(ref: list[np.ndarray], got: list[np.ndarray], threshold: float) -> float:
    """Mask pixels that differ, as a share of the reference's vessel pixels."""
    diff = sum(
        int(np.count_nonzero((r > threshold) != (g > threshold))) for r, g in zip(ref, got, strict=False)
    )
    vessels = sum(int(np.count_nonzero(r > threshold)) for r in ref)
    return diff / max(vessels, 1)


def guard(
    onnx_path,
    images: list[np.ndarray],
    threshold: float,
    min_tol: float = 0.02,
    max_float: int = 4,
    threads: int | None = None,
) -> GuardResult:
    """Check ``onnx_path`` (QDQ INT8) on OpenVINO against its exact QDQ semantics on ``images``
    (preprocessed CHW float32); rewrite the file with up to ``max_float`` convolutions in float while
    the disagreement exceeds the tolerance: 1.5 times ONNX Runtime's own int8 disagreement with the
    same reference (at least ``min_tol``). Returns what was measured and changed."""
    try:
        import onnx
        import onnxruntime as ort
        import openvino as ov
    except ImportError as exc:
        return GuardResult(False, note=f"not checked: {exc.name} not installed")

    model = onnx.load(str(onnx_path))
    so = ort.SessionOptions()
    so.log_severity_level = (
        3  # paddle2onnx leaves unused constants, which ONNX Runtime lists one warning each
    )
    so.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )  # run Q, DQ and float ops as written
    if threads:
        so.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    ref = [vessel_prob(sess.run(None, {name: x[None]})[0]) for x in images]
    fast_so = ort.SessionOptions()
    fast_so.log_severity_level = 3
    fast = ort.InferenceSession(
        model.SerializeToString(), fast_so, providers=["CPUExecutionProvider"]
    )  # int8 kernels
    tol = max(
        min_tol,
        1.5 * disagreement(ref, [vessel_prob(fast.run(None, {name: x[None]})[0]) for x in images], threshold),
    )
    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32"} | (
        {"INFERENCE_NUM_THREADS": int(threads)} if threads else {}
    )

    def score(m) -> float:
        compiled = core.compile_model(core.read_model(m.SerializeToString(), b""), "CPU", config)
        return disagreement(ref, [vessel_prob(compiled(x[None])[0]) for x in images], threshold)

    before = score(model)
    kept: list[str] = []
    current = before
    if current > tol:
        # Rank each convolution by how well the model agrees with it alone in float, then add them in
        # that order while it helps (one trial per layer, not a trial per layer per step).
        trials = {}
        for conv in quantized_convs(model):
            trials[conv] = score(_with_float(model, conv))
        for conv in sorted(trials, key=trials.get)[:max_float]:
            m = _with_float(model, conv)
            value = score(m)
            if value >= current:
                break
            model, current = m, value
            kept.append(conv)
            if current <= tol:
                break
    if kept:
        onnx.checker.check_model(model)
        onnx.save(model, str(onnx_path))
    note = (
        "agrees"
        if current <= tol
        else f"still disagrees ({current:.1%} of vessel pixels) after {len(kept)} float layers"
    )
    return GuardResult(True, tol, before, current, tuple(kept), note)
