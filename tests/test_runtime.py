import importlib.util
import warnings

import numpy as np
import pytest
import yaml
from fundus_edge.runtime.engines import installed_engines
from fundus_edge.runtime.errors import EngineUnavailable, InputError, IntegrityError, ModelError
from fundus_edge.runtime.manifest import read_manifest, write_manifest
from fundus_edge.runtime.predictor import Predictor, ScaleOptions

from .conftest import synthetic_fundus

ENGINES = ["paddle", "onnxruntime", "openvino"]


def test_manifest_round_trip(tiny_model):
    m = read_manifest(tiny_model)
    assert m.variant == "fp32" and set(m.formats) == {"pir", "legacy", "onnx"}
    assert m.model["params"] > 0 and m.model["gmac"] > 0 and m.pad_multiple == 4
    assert all(len(h) == 64 for h in m.files.values()) and set(m.files) == {
        f for fs in m.formats.values() for f in fs
    }
    write_manifest(tiny_model, m)
    assert read_manifest(tiny_model) == m


@pytest.mark.parametrize("engine", ENGINES)
def test_each_engine_runs(tiny_model, engine):
    p = Predictor.load(tiny_model, backend=engine, threads=1)
    rgb, _, _ = synthetic_fundus(7)
    r = p.predict(rgb)
    assert r.prob.shape == rgb.shape[:2] and r.mask.shape == rgb.shape[:2]
    assert 0.0 <= r.prob.min() and r.prob.max() <= 1.0
    assert p.device == "cpu" and p.precision == "fp32" and p.backend == engine


def test_engines_agree_with_each_other_and_training(tiny_model, tiny_run):
    from fundus_edge.train.checkpoint import load_network
    from fundus_edge.train.infer import predict_prob

    net, info = load_network(tiny_run / "best")
    probs = {}
    for i, seed in enumerate((8, 9)):
        rgb, _, _ = synthetic_fundus(seed, 90 + i * 7, 77)  # sizes not a multiple of the net's
        ref = predict_prob(net, rgb, info.config.preprocess, net.pad_multiple)
        for e in ENGINES:
            # the graph itself against training: no rescaling (tested in test_robustness), no FOV crop
            p = (
                Predictor.load(tiny_model, backend=e, scale=ScaleOptions(rescale=False, crop_fov=False))
                .predict(rgb)
                .prob
            )
            probs.setdefault(e, []).append(p)
            assert np.abs(p - ref).max() < 1e-3, e
            thr = info.threshold
            assert ((p >= thr) == (ref >= thr)).mean() >= 0.999, e


@pytest.mark.parametrize("shape", [(33, 47, 3), (64, 64), (50, 40, 4), (31, 29, 1)])
def test_odd_sizes_and_modes(tiny_model, shape):
    p = Predictor.load(tiny_model, backend="onnxruntime")
    img = np.random.default_rng(0).integers(0, 255, shape).astype(np.uint8)
    r = p.predict(img)
    assert r.mask.shape == shape[:2]


def test_sixteen_bit_and_bgr_give_same_result(tiny_model):
    p = Predictor.load(tiny_model, backend="onnxruntime")
    rgb, _, _ = synthetic_fundus(5)
    a = p.predict(rgb).prob
    np.testing.assert_allclose(p.predict(rgb[..., ::-1].copy(), order="bgr").prob, a, atol=1e-6)
    np.testing.assert_allclose(p.predict(rgb.astype(np.uint16) * 257).prob, a, atol=1e-6)


def test_batch_equals_single(tiny_model):
    p = Predictor.load(tiny_model, backend="onnxruntime")
    imgs = [synthetic_fundus(s)[0] for s in (1, 2)] + [synthetic_fundus(3, 40, 50)[0]]
    batch = p.predict_batch(imgs)
    for img, b in zip(imgs, batch, strict=False):
        np.testing.assert_allclose(b.prob, p.predict(img).prob, atol=1e-5)


def test_openvino_keeps_recent_shapes_compiled(tiny_model):
    """Alternating batch sizes (the bench) or tile shapes does not recompile each time; old shapes go."""
    p = Predictor.load(tiny_model, backend="openvino", threads=1)
    eng, compiled = p.engine, []

    class Counting:  # ov.Core's methods cannot be patched on the instance
        def __init__(self, core):
            self.core = core

        def compile_model(self, *args, **kw):
            compiled.append(1)
            return self.core.compile_model(*args, **kw)

    eng._core = Counting(eng._core)
    a, b = np.zeros((1, 4, 32, 40), np.float32), np.zeros((2, 4, 32, 40), np.float32)
    outs = [eng.run(x) for x in (a, b, a, b, a)]
    assert len(compiled) == 2 and outs[0].shape == (1, 1, 32, 40) and outs[1].shape == (2, 1, 32, 40)
    assert np.array_equal(outs[0], outs[2]) and np.array_equal(outs[1], outs[3])
    for w in (48, 56, 64, 72):
        eng.run(np.zeros((1, 4, 32, w), np.float32))
    assert len(eng.built_shapes) == 2 and (1, 4, 32, 40) not in eng.built_shapes
    eng.run(a)
    assert len(compiled) == 7


def test_fov_mask_and_mismatch(tiny_model):
    p = Predictor.load(tiny_model, backend="onnxruntime")
    rgb, _, fov = synthetic_fundus(6)
    r = p.predict(rgb, fov=fov)
    assert not r.mask[~fov].any()
    assert p.predict(rgb, fov="auto").fov is not None
    with pytest.raises(InputError, match="FOV mask is"):
        p.predict(rgb, fov=fov[:-1])


def _wide_frame(seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic fundus on a black canvas twice as wide: a camera frame with a lot of frame."""
    rgb, _, fov = synthetic_fundus(seed, 72, 68)
    canvas, cfov = np.zeros((72, 136, 3), np.uint8), np.zeros((72, 136), bool)
    canvas[:, 34:102], cfov[:, 34:102] = rgb, fov
    return canvas, cfov


@pytest.mark.parametrize("rescale", [False, True])
def test_network_runs_on_the_fov_box_only(tiny_model, rescale):
    """The FOV crop shrinks the network input, leaves the prediction inside the FOV as it was (the
    whole frame is preprocessed before cropping) and is background outside its box."""
    rgb, fov = _wide_frame()
    full = Predictor.load(
        tiny_model, backend="onnxruntime", scale=ScaleOptions(rescale=rescale, crop_fov=False)
    ).predict(rgb, fov=fov)
    crop = Predictor.load(tiny_model, backend="onnxruntime", scale=ScaleOptions(rescale=rescale)).predict(
        rgb, fov=fov
    )
    assert crop.prob.shape == full.prob.shape == rgb.shape[:2]
    assert crop.input_hw[1] < full.input_hw[1] and crop.input_hw[1] % 16 == 0
    assert (crop.mask == full.mask)[fov].mean() > 0.99
    assert np.corrcoef(crop.prob[fov], full.prob[fov])[0, 1] > 0.99
    if not rescale:  # the box: FOV columns plus 8 px, its left edge on the network's multiple
        k, cols = (
            Predictor.load(tiny_model, backend="onnxruntime").manifest.pad_multiple,
            np.flatnonzero(fov.any(axis=0)),
        )
        left = (cols[0] - 8) // k * k
        assert left + crop.input_hw[1] >= cols[-1] + 8
        assert (
            not crop.prob[:, :left].any()
            and not crop.prob[:, left + crop.input_hw[1] :].any()
            and crop.prob[:, left : left + 4].any()
        )


def test_batch_of_fov_crops_shares_one_box(tiny_model):
    """Two frames whose FOVs sit 20 px apart crop to one shared (union) box and run as one batch."""
    a, fa = _wide_frame(7)
    b, fb = np.roll(a, 20, axis=1), np.roll(fa, 20, axis=1)
    p = Predictor.load(tiny_model, backend="onnxruntime", scale=ScaleOptions(rescale=False))
    singles = [p.predict(a, fov=fa), p.predict(b, fov=fb)]
    calls = []
    run = p.engine.run
    p.engine.run = lambda x: calls.append(x.shape) or run(x)
    batch = p.predict_batch([a, b], fovs=[fa, fb])
    assert len(calls) == 1 and calls[0][0] == 2 and batch[0].input_hw == batch[1].input_hw
    assert batch[0].input_hw[1] < 136  # still narrower than the frame
    for s, r, f in zip(singles, batch, (fa, fb), strict=False):
        assert (s.mask == r.mask)[f].mean() > 0.99


def test_fov_crop_without_a_findable_fov_runs_the_whole_frame(tiny_model):
    p = Predictor.load(tiny_model, backend="onnxruntime", scale=ScaleOptions(rescale=False))
    flat = np.full(
        (40, 56, 3), 120, np.uint8
    )  # no dark frame: nothing to crop, and no warning with rescale off
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = p.predict(flat)
    assert r.input_hw == (40, 56) and r.prob.shape == (40, 56)


def test_sha256_tampering_is_refused(tiny_model, tmp_path):
    import shutil

    m = tmp_path / "m"
    shutil.copytree(tiny_model, m)
    onnx = m / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[-10] ^= 0xFF
    onnx.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="sha256"):
        Predictor.load(m, backend="onnxruntime")
    # the other formats are untouched and still load
    Predictor.load(m, backend="paddle")


def test_unknown_schema_and_pickles_are_refused(tiny_model, tmp_path):
    import shutil

    m = tmp_path / "m"
    shutil.copytree(tiny_model, m)
    d = yaml.safe_load((m / "manifest.yaml").read_text())
    d["schema_version"] = 99
    (m / "manifest.yaml").write_text(yaml.safe_dump(d))
    with pytest.raises(ModelError, match="schema version 99"):
        Predictor.load(m)
    d["schema_version"] = 1
    (m / "evil.pdparams").write_bytes(b"\x80\x04pickle")
    d["formats"]["pir"] = ["model.json", "evil.pdparams"]
    d["files"]["evil.pdparams"] = "0" * 64
    (m / "manifest.yaml").write_text(yaml.safe_dump(d))
    with pytest.raises(IntegrityError, match="pickled"):
        Predictor.load(m, backend="paddle")


def test_missing_engine_is_a_clear_error(tiny_model, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a)
    )
    with pytest.raises(EngineUnavailable, match="not installed.*installed engines: onnxruntime, paddle"):
        Predictor.load(tiny_model, backend="openvino")
    assert "openvino" not in installed_engines()
    with pytest.raises(EngineUnavailable, match="unknown engine"):
        Predictor.load(tiny_model, backend="tflite")


def test_gpu_request_without_a_gpu_provider_fails(tiny_model, monkeypatch):
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(EngineUnavailable, match="no GPU provider"):
        Predictor.load(tiny_model, backend="onnxruntime", device="gpu")


def test_gpu_provider_that_falls_back_to_cpu_fails(tiny_model, monkeypatch):
    """ONNX Runtime starts on the CPU without an error when a GPU provider fails to start: the engine reads
    back the providers the session really uses and refuses the GPU request."""
    import onnxruntime as ort

    real = ort.InferenceSession

    class FallsBack(real):
        def __init__(self, path, sess_options=None, providers=None, **kw):
            super().__init__(path, sess_options=sess_options, providers=["CPUExecutionProvider"], **kw)

    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    monkeypatch.setattr(ort, "InferenceSession", FallsBack)
    with pytest.raises(EngineUnavailable, match="runs on CPUExecutionProvider"):
        Predictor.load(tiny_model, backend="onnxruntime", device="gpu")


@pytest.mark.parametrize("engine", ["onnxruntime", "paddle"])
def test_precision_an_engine_cannot_honour_is_an_error(tiny_model, engine):
    with pytest.raises(EngineUnavailable, match="bf16"):
        Predictor.load(tiny_model, backend=engine, precision="bf16")
    assert Predictor.load(tiny_model, backend=engine, precision="fp32").precision == "fp32"


def test_not_a_model_folder(tmp_path):
    with pytest.raises(ModelError, match="no manifest.yaml"):
        Predictor.load(tmp_path)


def test_runtime_imports_no_training_stack():
    """fundus_edge.runtime must import with numpy, OpenCV and PyYAML alone."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('paddle', 'paddleseg', 'paddleslim', 'paddle2onnx', 'onnx',\n"
        "                                  'onnxruntime', 'openvino', 'sklearn'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import fundus_edge.runtime.predictor, fundus_edge.runtime.batch, fundus_edge.runtime.manifest\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_export_subset_of_formats(tiny_run, tmp_path):
    from fundus_edge.export.exporter import export_checkpoint

    r = export_checkpoint(tiny_run / "best", tmp_path / "m", formats=("pir", "onnx"))
    assert r.formats == ("pir", "onnx")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "manifest.yaml",
        "model.json",
        "model.onnx",
        "model.pdiparams",
    ]
    # a shipped-style folder (no legacy) still rebuilds every format, legacy included
    r2 = export_checkpoint(tmp_path / "m", tmp_path / "m2")
    assert r2.formats == ("pir", "legacy", "onnx")


def test_cpu_flags_read_from_cpuinfo(tmp_path):
    from fundus_edge.runtime.cpu import cpu_model_and_flags, has_vnni

    core = "processor\t: {}\nmodel name\t: Test CPU {}\nflags\t\t: fpu avx2 fma {}\n\n"
    (tmp_path / "vnni").write_text(core.format(0, "A", "avx512_vnni") + core.format(1, "B", ""))
    (tmp_path / "plain").write_text(core.format(0, "A", ""))
    assert cpu_model_and_flags(str(tmp_path / "vnni")) == (
        "Test CPU A",
        frozenset({"fpu", "avx2", "fma", "avx512_vnni"}),
    )
    assert has_vnni(str(tmp_path / "vnni")) is True and has_vnni(str(tmp_path / "plain")) is False
    assert has_vnni(str(tmp_path / "missing")) is None
