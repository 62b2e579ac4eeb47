"""INT8 by the engines' own quantizers (NNCF for OpenVINO, quantize_static for ONNX Runtime), and the
rewrite that makes PaddleSlim's QDQ file run on OpenVINO as its Q/DQ semantics say."""

import numpy as np
import onnx
import pytest
from fundus_edge.quantize.engine_ptq import NncfOptions, OrtOptions
from fundus_edge.quantize.pipeline import quantize
from fundus_edge.quantize.qdq import activation_pairs, unsigned_activations
from fundus_edge.runtime.cpu import has_vnni
from fundus_edge.runtime.errors import EngineUnavailable, InputError
from fundus_edge.runtime.manifest import read_manifest, sha256
from fundus_edge.runtime.predictor import Predictor

from .conftest import synthetic_fundus
from .test_quantize import INT8_MAX_MEAN_ABS


def _fp32_prob(model, rgb):
    return Predictor.load(model, backend="onnxruntime").predict(rgb).prob


@pytest.fixture(scope="module")
def nncf_model(tiny_model, drive_synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("nncf") / "int8-nncf"
    r = quantize(tiny_model, out, drive_synth, int8="nncf", calib_images=4, progress=False)
    return out, r


def test_nncf_variant_is_openvino_ir_recorded_and_close_to_fp32(nncf_model, tiny_model):
    out, r = nncf_model
    m = read_manifest(out)
    assert (
        r.variant == m.variant == "int8-nncf"
        and set(m.formats) == {"ir"}
        and m.formats["ir"] == ["model.xml", "model.bin"]
    )
    q = m.quantization
    assert (
        q["tool"].startswith("nncf.quantize")
        and q["engine"] == "openvino"
        and q["calibration_images"] == 4
        and q["fake_quantize_nodes"] > 0
    )
    assert q["built_on"]["vnni"] == has_vnni() and "isa_flags" in q["built_on"]
    # Provenance: the float model by name and manifest hash, never a machine path.
    fm = m.source["float_model"]
    assert (fm["name"], fm["variant"], fm["manifest_sha256"]) == (
        read_manifest(tiny_model).name,
        "fp32",
        sha256(tiny_model / "manifest.yaml"),
    )
    assert fm["path"] is None  # a temporary folder outside the working directory is not recorded
    p = Predictor.load(out, backend="openvino")
    rgb, _, fov = synthetic_fundus(13)
    prob = p.predict(rgb).prob
    assert p.format == "ir" and p.precision == "int8+fp32"
    assert float(np.abs(prob - _fp32_prob(tiny_model, rgb))[fov].mean()) < INT8_MAX_MEAN_ABS
    with pytest.raises(EngineUnavailable, match="reads none"):
        Predictor.load(out, backend="onnxruntime")


def test_ort_variant_records_reduce_range_and_runs_int8(tiny_model, drive_synth, tmp_path):
    out = tmp_path / "int8-ort"
    r = quantize(
        tiny_model,
        out,
        drive_synth,
        int8="ort",
        calib_images=3,
        progress=False,
        ort_options=OrtOptions(reduce_range=None),
    )
    m = read_manifest(out)
    assert r.variant == "int8-ort" and set(m.formats) == {"onnx"}
    assert (
        m.quantization["reduce_range"] == (not has_vnni()) and m.quantization["weights"] == "int8 per channel"
    )
    g = onnx.load(str(out / "model.onnx"))
    assert (
        any(n.op_type == "QuantizeLinear" for n in g.graph.node)
        and not list(out.glob("*.data"))
        and not (out / "pre.onnx").exists()
    )
    p = Predictor.load(out, backend="onnxruntime")
    rgb, _, fov = synthetic_fundus(14)
    assert p.precision == "int8"
    assert float(np.abs(p.predict(rgb).prob - _fp32_prob(tiny_model, rgb))[fov].mean()) < INT8_MAX_MEAN_ABS


def test_engine_quantizers_refuse_bad_options_and_quantized_sources(
    tiny_model, drive_synth, nncf_model, tmp_path
):
    with pytest.raises(InputError, match="preset"):
        quantize(
            tiny_model,
            tmp_path / "a",
            drive_synth,
            int8="nncf",
            nncf_options=NncfOptions(preset="fastest"),
            progress=False,
        )
    assert not (tmp_path / "a").exists()
    with pytest.raises(Exception, match="already quantized"):
        quantize(nncf_model[0], tmp_path / "b", drive_synth, int8="ort", progress=False)


def test_paddleslim_qdq_file_is_written_with_unsigned_activations_on_the_same_grid(
    tiny_model, drive_synth, tmp_path
):
    """The INT8 build rewrites paddle2onnx's signed activation Q/DQ pairs as uint8 / zero point 128: the
    file's exact semantics must not move, and no signed activation pair may be left."""
    import onnxruntime as ort

    out = tmp_path / "int8"
    quantize(tiny_model, out, drive_synth, int8="ptq", calib_images=2, progress=False)
    rewritten = onnx.load(str(out / "model.onnx"))
    pairs = activation_pairs(rewritten)
    assert pairs
    consts = {n.output[0]: n for n in rewritten.graph.node if n.op_type == "Constant"}
    for q, dqs in pairs:
        for n in (q, *dqs):
            assert onnx.numpy_helper.to_array(consts[n.input[2]].attribute[0].t).dtype == np.uint8
    assert "rewritten unsigned" in read_manifest(out).quantization["onnx"]

    # The same rewrite on a signed copy: exact Q/DQ semantics (no graph optimisation) are unchanged.
    signed = type(rewritten).FromString(rewritten.SerializeToString())
    made = {}
    for q, dqs in activation_pairs(signed):  # back to int8 zero point 0
        for n in (q, *dqs):
            if n.input[2] not in made:
                made[n.input[2]] = n.input[2] + "_s8"
                signed.graph.node.insert(
                    0,
                    onnx.helper.make_node(
                        "Constant",
                        [],
                        [made[n.input[2]]],
                        value=onnx.numpy_helper.from_array(np.array(0, np.int8)),
                    ),
                )
            n.input[2] = made[n.input[2]]
    again = type(signed).FromString(signed.SerializeToString())
    assert unsigned_activations(again) == len(pairs)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    x = np.random.default_rng(0).uniform(-1, 1, (1, 4, 32, 32)).astype(np.float32)
    run = lambda m: ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(
        None, {"image": x}
    )[0]  # noqa: E731
    np.testing.assert_array_equal(run(signed), run(again))
