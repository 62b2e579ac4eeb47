"""The OpenVINO INT8 check: Q/DQ surgery on ONNX graphs and the agreement measure."""

import numpy as np
import onnx
import onnxruntime as ort
from fundus_edge.quantize.openvino_guard import disagreement, float_weights, guard, quantized_convs
from onnx import TensorProto, helper, numpy_helper


def _qdq_convs(tmp_path, channels=(4, 8, 8)):
    """x -> [Q/DQ -> Conv(3x3, Q/DQ weights) -> Relu] per layer -> Conv 1x1 -> Softmax (2 classes)."""
    rng = np.random.default_rng(0)
    C = lambda n, a: helper.make_node("Constant", [], [n], value=numpy_helper.from_array(np.asarray(a), n))  # noqa: E731
    nodes, x, floats = [], "x", {}
    for i, (ci, co) in enumerate(zip(channels[:-1], channels[1:], strict=False)):
        w = rng.normal(0, 0.3, (co, ci, 3, 3)).astype(np.float32)
        floats[f"conv{i}"] = w
        sw = (np.abs(w).reshape(co, -1).max(1) / 127).astype(np.float32)
        nodes += [
            C(f"w{i}", w),
            C(f"sw{i}", sw),
            C(f"zw{i}", np.zeros(co, np.int8)),
            C(f"sa{i}", np.float32(0.05)),
            C(f"za{i}", np.int8(0)),
            helper.make_node("QuantizeLinear", [x, f"sa{i}", f"za{i}"], [f"xq{i}"]),
            helper.make_node("DequantizeLinear", [f"xq{i}", f"sa{i}", f"za{i}"], [f"xd{i}"]),
            helper.make_node("QuantizeLinear", [f"w{i}", f"sw{i}", f"zw{i}"], [f"wq{i}"], axis=0),
            helper.make_node("DequantizeLinear", [f"wq{i}", f"sw{i}", f"zw{i}"], [f"wd{i}"], axis=0),
            helper.make_node("Conv", [f"xd{i}", f"wd{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
        ]
        x = f"r{i}"
    nodes += [
        C("wh", rng.normal(0, 0.3, (2, channels[-1], 1, 1)).astype(np.float32)),
        helper.make_node("Conv", [x, "wh"], ["h"], name="head"),
        helper.make_node("Softmax", ["h"], ["prob"], axis=1),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels[0], "h", "w"])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 2, "h", "w"])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    path = tmp_path / "q.onnx"
    onnx.save(m, str(path))
    return path, floats


def _run(model_or_path, x):
    data = (
        model_or_path.SerializeToString()
        if isinstance(model_or_path, onnx.ModelProto)
        else str(model_or_path)
    )
    s = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0]


def test_float_weights_bypasses_exactly_the_weight_qdq(tmp_path):
    path, floats = _qdq_convs(tmp_path)
    m = onnx.load(str(path))
    assert quantized_convs(m) == ["conv0", "conv1"]
    float_weights(m, ["conv1"])
    onnx.checker.check_model(m)
    assert quantized_convs(m) == ["conv0"]
    # the float conv now reads the float constant and the unused weight Q/DQ nodes are gone
    conv1 = next(n for n in m.graph.node if n.name == "conv1")
    assert conv1.input[1] == "w1" and not any(n.output[0] in ("wq1", "wd1") for n in m.graph.node)
    x = np.random.default_rng(1).uniform(-1, 1, (1, 4, 16, 16)).astype(np.float32)
    before, after = _run(path, x), _run(m, x)
    assert before.shape == after.shape and not np.allclose(before, after)  # weights really changed precision
    assert np.abs(before - after).max() < 0.2  # ... and only by int8 rounding


def test_disagreement_counts_differing_mask_pixels_per_reference_vessel_pixel():
    ref = [np.array([[0.9, 0.8, 0.1, 0.1]])]
    assert disagreement(ref, ref, 0.5) == 0.0
    assert disagreement(ref, [np.array([[0.9, 0.2, 0.7, 0.1]])], 0.5) == 1.0  # 2 differ / 2 vessel pixels
    assert disagreement(ref, [np.array([[0.9, 0.8, 0.1, 0.6]])], 0.5) == 0.5


def test_guard_measures_and_never_makes_agreement_worse(tmp_path):
    path, _ = _qdq_convs(tmp_path)
    x = [np.random.default_rng(i).uniform(-1, 1, (4, 32, 32)).astype(np.float32) for i in range(2)]
    r = guard(path, x, threshold=0.5, min_tol=0.0)
    assert r.checked and 0.0 <= r.disagreement_after <= r.disagreement_before
    assert set(r.float_convs) <= {"conv0", "conv1"}
    assert quantized_convs(onnx.load(str(path))) == [c for c in ("conv0", "conv1") if c not in r.float_convs]


def test_guard_finds_and_mends_an_injected_openvino_fault(tmp_path, monkeypatch):
    """The repair path: OpenVINO is handed a copy whose conv0 weight scale is negated after quantization
    (a wrong weight only OpenVINO sees); the guard must find the disagreement, leave conv0 in float (which
    bypasses the faulty Q/DQ), and record it."""
    import openvino as ov

    path, _ = _qdq_convs(tmp_path)
    real = ov.Core.read_model

    def faulty(self, model, weights=None, *a, **kw):
        if isinstance(model, (bytes, bytearray)):
            m = onnx.load_from_string(bytes(model))
            for n in m.graph.node:
                if (
                    n.op_type == "DequantizeLinear" and n.input[0] == "wq0"
                ):  # conv0's weight DQ, if still there
                    m.graph.node.insert(
                        0,
                        helper.make_node(
                            "Constant",
                            [],
                            ["sw0_bad"],
                            value=numpy_helper.from_array(
                                -numpy_helper.to_array(
                                    next(c for c in m.graph.node if c.output[0] == "sw0").attribute[0].t
                                ),
                                "sw0_bad",
                            ),
                        ),
                    )
                    n.input[1] = "sw0_bad"
                    break
            model = m.SerializeToString()
        return real(self, model, weights, *a, **kw)

    monkeypatch.setattr(ov.Core, "read_model", faulty)
    x = [np.random.default_rng(i).uniform(-1, 1, (4, 32, 32)).astype(np.float32) for i in range(2)]
    r = guard(path, x, threshold=0.5, min_tol=0.05)
    assert r.checked and r.disagreement_before > 0.3  # the fault is found ...
    assert (
        r.float_convs[0] == "conv0" and r.disagreement_after <= r.tolerance and r.note == "agrees"
    )  # ... mended first where it is, and recorded
    assert "conv0" not in quantized_convs(onnx.load(str(path)))
