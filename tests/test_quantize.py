import numpy as np
import pytest
from fundus_edge.quantize.pipeline import quantize
from fundus_edge.runtime.errors import InputError, ModelError
from fundus_edge.runtime.manifest import read_manifest
from fundus_edge.runtime.predictor import Predictor

from .conftest import synthetic_fundus

ENGINES = ["paddle", "onnxruntime", "openvino"]


@pytest.fixture(scope="module")
def pruned_int8(tiny_model, drive_synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "pruned-int8"
    r = quantize(
        tiny_model, out, drive_synth, prune=0.5, int8="ptq", finetune_iters=6, calib_images=2, progress=False
    )
    return out, r


def test_prune_and_int8_combine(pruned_int8, tiny_model):
    out, r = pruned_int8
    assert r.params_after < 0.6 * r.params_before and r.gmac_after < r.gmac_before
    m = read_manifest(out)
    assert m.variant == "pruned-int8" and m.quantization["method"] == "ptq"
    assert set(m.formats) == {"legacy", "onnx"}
    assert (
        m.source["pruning"]["ratio"] == 0.5
        and m.source["pruning"]["finetune_iters"] == 6
        and m.source["pruning"]["params_before"] == r.params_before
    )
    assert (
        m.quantization["built_on"]["vnni"] in (True, False, None)
        and "isa_flags" in m.quantization["built_on"]
    )
    g = m.quantization["openvino_guard"]  # the OpenVINO agreement check ran and says what it did
    assert (
        g["checked"]
        and 0.0 <= g["disagreement_after"] <= g["disagreement_before"]
        and isinstance(g["float_convs"], list)
    )


@pytest.fixture(scope="module")
def plain_int8(tiny_model, drive_synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "int8"
    quantize(tiny_model, out, drive_synth, int8="ptq", calib_images=4, progress=False)
    return out


# What each engine reports for PaddleSlim's INT8 file on the CPU (OpenVINO: int8 with its float layers'
# precision).
INT8_PRECISION = {"paddle": "int8", "onnxruntime": "int8", "openvino": "int8+fp32"}
# Largest mean |INT8 - FP32| of the vessel probability on a synthetic image, inside the FOV. Measured
# 0.004-0.02 on the tiny test model; a wrong kernel or a misplaced scale gives 0.1 and more.
INT8_MAX_MEAN_ABS = 0.05


@pytest.mark.parametrize("engine", ENGINES)
def test_int8_runs_on_every_engine_close_to_its_fp32_model(plain_int8, tiny_model, engine):
    p = Predictor.load(plain_int8, backend=engine)
    rgb, _, fov = synthetic_fundus(11)
    prob = p.predict(rgb).prob
    assert prob.shape == rgb.shape[:2] and p.precision == INT8_PRECISION[engine]
    ref = Predictor.load(tiny_model, backend="onnxruntime").predict(rgb).prob
    assert float(np.abs(prob - ref)[fov].mean()) < INT8_MAX_MEAN_ABS, p.precision


def test_bad_arguments(tiny_model, drive_synth, tmp_path, pruned_int8):
    with pytest.raises(InputError, match=r"\(0, 1\)"):
        quantize(tiny_model, tmp_path / "a", drive_synth, prune=1.5)
    with pytest.raises(InputError, match="nothing to do"):
        quantize(tiny_model, tmp_path / "b", drive_synth)
    with pytest.raises(ModelError, match="already quantized"):
        quantize(pruned_int8[0], tmp_path / "c", drive_synth, int8="ptq")
    with pytest.raises(ModelError):
        quantize(tmp_path, tmp_path / "d", drive_synth, int8="ptq")
    with pytest.raises(InputError, match="empty calibration"):
        quantize(tiny_model, tmp_path / "e", drive_synth, int8="ptq", calib_images=0)
    assert not (tmp_path / "e").exists()


def test_qat_gives_an_int8_model(tiny_model, drive_synth, tmp_path):
    from fundus_edge.runtime.errors import EngineUnavailable

    out = tmp_path / "qat"
    r = quantize(tiny_model, out, drive_synth, int8="qat", finetune_iters=4, progress=False)
    m = read_manifest(out)
    assert r.variant == "int8" and m.quantization["method"] == "qat" and set(m.formats) == {"legacy", "onnx"}
    rgb, _, _ = synthetic_fundus(12)
    for e in ("onnxruntime", "openvino"):
        p = Predictor.load(out, backend=e)
        assert p.predict(rgb).prob.shape == rgb.shape[:2] and p.precision in ("int8", "int8+fp32")
    # Paddle's oneDNN INT8 pass rejects QAT programs: that is an error, not a quiet run on float kernels ...
    with pytest.raises(EngineUnavailable, match="int8-sim"):
        Predictor.load(out, backend="paddle")
    # ... which run only when asked for, and say so.
    p = Predictor.load(out, backend="paddle", precision="int8-sim")
    assert p.precision == "int8-sim" and p.predict(rgb).prob.shape == rgb.shape[:2]


def test_pruned_model_gets_a_card_from_its_manifest(tiny_model, drive_synth, tmp_path):
    """A pruned model's fine-tune folder is temporary; its card is written from the manifest alone."""
    from fundus_edge.modelcard import main as card

    out = tmp_path / "small-pruned"
    quantize(tiny_model, out, drive_synth, prune=0.5, finetune_iters=4, progress=False)
    assert card(["--model", str(out), "--data", str(drive_synth), "--threads", "1"]) == 0
    text = (out / "MODEL_CARD.md").read_text()
    assert (
        "# Model card: `small-pruned`" in text
        and "50% of the filters" in text
        and "Fine-tune: 4 iterations" in text
    )
    assert "## DRIVE test" in text and "| onnxruntime | fp32 |" in text and "--prune 0.5" in text
    assert "CPU: " in text and "ISA flags" in text  # latency figures name the CPU they came from


def test_int8_of_a_pruned_model_folder_keeps_its_pruning_record(tiny_model, drive_synth, tmp_path):
    """`quantize PRUNED --int8 ptq` (how the bench builds pruned-int8) names the variant and carries
    the pruning record, which lives only in the pruned folder's manifest."""
    pruned = tmp_path / "pruned"
    quantize(tiny_model, pruned, drive_synth, prune=0.5, finetune_iters=4, progress=False)
    r = quantize(pruned, tmp_path / "pruned-int8", drive_synth, int8="ptq", calib_images=2, progress=False)
    m = read_manifest(tmp_path / "pruned-int8")
    assert r.variant == m.variant == "pruned-int8"
    assert (
        m.source["pruning"] == read_manifest(pruned).source["pruning"] and m.source["pruning"]["ratio"] == 0.5
    )
    plain = quantize(tiny_model, tmp_path / "int8", drive_synth, int8="ptq", calib_images=2, progress=False)
    assert plain.variant == "int8" and "pruning" not in read_manifest(tmp_path / "int8").source


def _strings(x):
    if isinstance(x, dict):
        for v in x.values():
            yield from _strings(v)
    elif isinstance(x, list):
        for v in x:
            yield from _strings(v)
    elif isinstance(x, str):
        yield x


def test_manifests_record_sources_without_machine_paths(pruned_int8, tiny_model):
    """A model folder built from another (as the bench builds its variants) names its source by name,
    variant and manifest sha256; no absolute path, no temporary work folder, no data root."""
    import yaml
    from fundus_edge.runtime.manifest import sha256

    out, _ = pruned_int8
    d = yaml.safe_load((out / "manifest.yaml").read_text())
    src = d["source"]["pruning"]["source"]
    assert (src["name"], src["manifest_sha256"]) == (
        read_manifest(tiny_model).name,
        sha256(tiny_model / "manifest.yaml"),
    )
    assert src["path"] is None  # outside the working directory: not recorded
    assert "root" not in d["source"]["config"]["data"]
    bad = [s for s in _strings(d) if s.startswith("/") or ".work" in s]
    assert not bad, bad


def test_shipped_configs_and_models_carry_no_data_root():
    from pathlib import Path

    import yaml
    from fundus_edge.train.config import CONFIG_DIR

    for f in CONFIG_DIR.glob("*.yaml"):
        assert "root" not in (yaml.safe_load(f.read_text()).get("data") or {}), f
    for m in (Path(__file__).resolve().parents[1] / "models").glob("*/manifest.yaml"):
        d = yaml.safe_load(m.read_text())
        assert "root" not in d["source"]["config"]["data"] and not [
            s for s in _strings(d) if s.startswith("/") or ".work" in s
        ], m


def test_pruning_a_refit_keeps_the_threshold_it_shipped_with(tiny_config, tmp_path):
    """A refit has no validation split to choose a threshold after the pruned fine-tune: the pruned model
    keeps its source's, also one that replaced the checkpoint's at export (models/wnet)."""
    from fundus_edge.export.exporter import export_checkpoint
    from fundus_edge.train.trainer import Trainer

    cfg = tiny_config.with_overrides(data={"val_count": 0}, optim={"iters": 4})
    Trainer(cfg, tmp_path / "run", device="cpu", progress=False).fit()
    export_checkpoint(tmp_path / "run" / "best", tmp_path / "m", formats=("pir", "onnx"), threshold=0.33)
    quantize(tmp_path / "m", tmp_path / "p", cfg.data.root, prune=0.5, finetune_iters=4, progress=False)
    assert read_manifest(tmp_path / "p").threshold == pytest.approx(0.33)
