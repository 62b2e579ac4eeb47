"""The shipped models still segment vessels (a broken export cannot ship silently)."""

from pathlib import Path

import pytest
from fundus_edge.measure.metrics import MetricAccumulator
from fundus_edge.runtime.manifest import read_manifest
from fundus_edge.runtime.predictor import Predictor
from fundus_edge.train.data import discover, load_sample

MODELS = Path(__file__).resolve().parents[1] / "models"


@pytest.mark.drive
@pytest.mark.parametrize("name", ["default", "small", "small-pruned", "wnet", "wnet-small"])
def test_shipped_model_segments_vessels(name, drive_root):
    if not (MODELS / name / "manifest.yaml").is_file():
        pytest.fail(f"models/{name} is not shipped")
    p = Predictor.load(MODELS / name, backend="onnxruntime")
    acc = MetricAccumulator(threshold=p.threshold)
    for s in discover(drive_root, "test")[:3]:
        ls = load_sample(s)
        acc.add(p.predict(ls.rgb).prob, ls.label, ls.fov, ls.name)
    m = acc.pooled()
    # Chance level for ~12 % vessel pixels is F1 ~0.2; the shipped models score ~0.8.
    assert m.f1 > 0.75 and m.auc > 0.95, m


@pytest.mark.parametrize("name", ["default", "small", "small-pruned", "wnet", "wnet-small"])
def test_shipped_model_is_small_and_intact(name):
    d = MODELS / name
    if not (d / "manifest.yaml").is_file():
        pytest.fail(f"models/{name} is not shipped")
    total = sum(f.stat().st_size for f in d.iterdir() if f.is_file())
    assert total <= 5 * 1024 * 1024
    man = read_manifest(d)
    assert (d / "MODEL_CARD.md").is_file()
    Predictor.load(d, backend="onnxruntime")  # checks every sha256
    assert man.model["params"] <= 500_000


@pytest.mark.drive
def test_engines_agree_on_drive(drive_root):
    """Paddle Inference, ONNX Runtime and OpenVINO (FP32) on DRIVE test images with the shipped
    default model: >= 99.9 % of mask pixels equal and probabilities within 1e-3."""
    d = MODELS / "default"
    if not (d / "manifest.yaml").is_file():
        pytest.fail("models/default is not shipped")
    preds = {
        e: Predictor.load(d, backend=e, threads=2, precision="fp32")
        for e in ("paddle", "onnxruntime", "openvino")
    }
    for s in discover(drive_root, "test")[:2]:
        rgb = load_sample(s).rgb
        out = {e: p.predict(rgb) for e, p in preds.items()}
        ref = out["onnxruntime"]
        for e, r in out.items():
            assert preds[e].precision == "fp32"
            assert float(abs(r.prob - ref.prob).max()) < 1e-3, e
            assert (r.mask == ref.mask).mean() >= 0.999, e
