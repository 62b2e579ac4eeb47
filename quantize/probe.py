"""Where OpenVINO parts from a QDQ INT8 file's own semantics: end-to-end disagreement under rewrites that
each test one cause. A diagnostic, run on purpose:

    python -m fundus_edge.quantize.probe build/models/small-int8/model.onnx models/small --data DRIVE

Each line: the rewrite, how many Q/DQ pairs it changed, and the share of reference vessel pixels whose
mask differs (two training images) between (a) OpenVINO and the rewritten file's exact semantics (ONNX
Runtime with graph optimisations off), (b) ONNX Runtime's INT8 kernels and the same, (c) the rewritten
file's exact semantics and the original's (0 when the rewrite is exact).
"""

from __future__ import annotations

import argparse


def _copy(model):
    return type(model).FromString(model.SerializeToString())


def bypass(model, pick):
    """A copy without the activation Q/DQ pairs ``pick(q, producer_op)`` chooses (readers take the Q's
    input)."""
    from .qdq import activation_pairs

    m = _copy(model)
    prod = {o: n for n in m.graph.node for o in n.output}
    k = 0
    for q, dqs in activation_pairs(m):
        src = prod.get(q.input[0])
        if not pick(q, src.op_type if src is not None else "input"):
            continue
        for dq in dqs:
            for n in m.graph.node:
                n.input[:] = [q.input[0] if i == dq.output[0] else i for i in n.input]
            m.graph.node.remove(dq)
        m.graph.node.remove(q)
        k += 1
    return m, k


def probe(onnx_path, images: list, threshold: float) -> list[dict]:
    import onnx
    import onnxruntime as ort
    import openvino as ov

    from .openvino_guard import disagreement, vessel_prob
    from .qdq import unsigned_activations

    core = ov.Core()

    def ort_run(m, optimised: bool):
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.graph_optimization_level = (
            ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            if optimised
            else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        )
        s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        return [vessel_prob(s.run(None, {s.get_inputs()[0].name: x[None]})[0]) for x in images]

    def ov_run(m):
        c = core.compile_model(
            core.read_model(m.SerializeToString(), b""), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
        )
        return [vessel_prob(c(x[None])[0]) for x in images]

    base = onnx.load(str(onnx_path))
    ref = ort_run(base, False)
    unsigned = _copy(base)
    n_u = unsigned_activations(unsigned)
    no_out, n_o = bypass(base, lambda q, src: src == "Conv")
    both = _copy(no_out)
    n_b = unsigned_activations(both)
    weights_only, n_w = bypass(base, lambda q, src: True)
    rows = []
    for name, m, k in (
        ("as written (signed int8 activations, zero point 0)", base, 0),
        ("activations uint8, zero point 128 (the same grid)", unsigned, n_u),
        ("without the Q/DQ on convolution outputs", no_out, n_o),
        ("both", both, n_b),
        ("weights only (no activation Q/DQ)", weights_only, n_w),
    ):
        exact = ort_run(m, False)
        rows.append(
            {
                "rewrite": name,
                "pairs_changed": k,
                "openvino_vs_exact": disagreement(exact, ov_run(m), threshold),
                "onnxruntime_int8_vs_exact": disagreement(exact, ort_run(m, True), threshold),
                "exact_vs_original": disagreement(ref, exact, threshold),
            }
        )
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("onnx", help="a QDQ INT8 ONNX file")
    ap.add_argument(
        "source", help="the float model folder or checkpoint it came from (preprocessing, threshold)"
    )
    ap.add_argument("--data", required=True, help="DRIVE (two training images are used)")
    a = ap.parse_args(argv)
    from fundus_edge.runtime.cpu import cpu_model_and_flags, has_vnni
    from fundus_edge.train.checkpoint import load_source

    from .pipeline import calibration_set

    net, info = load_source(a.source)
    images = list(calibration_set(a.data, info.config, net.pad_multiple, 2).values())
    cpu, flags = cpu_model_and_flags()
    print(f"{a.onnx}; CPU {cpu}, VNNI {has_vnni()}, AVX-512 {'avx512f' in flags}")
    print(
        "| rewrite | pairs | OpenVINO vs exact | ONNX Runtime INT8 vs exact | exact vs original |\n"
        "| --- | --- | --- | --- | --- |"
    )
    for r in probe(a.onnx, images, info.threshold):
        print(
            f"| {r['rewrite']} | {r['pairs_changed']} | {r['openvino_vs_exact']:.1%} "
            f"| {r['onnxruntime_int8_vs_exact']:.1%} | {r['exact_vs_original']:.1%} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
