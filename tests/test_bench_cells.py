"""The bench's cells one at a time (moved verbatim from tests/test_bench.py, issue #41): GPU rows and
probes, format fallback, slow and unscored models, frame timing, profiles and static-shape engines."""

import pytest
from fundus_edge.bench.runner import BenchConfig


def test_gpu_rows_planned_only_where_an_engine_has_a_gpu(tiny_model, monkeypatch, tmp_path):
    from fundus_edge.bench import runner

    cfg = BenchConfig(data=None, out=tmp_path, engines=("onnxruntime", "openvino"), bf16_rows=False)
    monkeypatch.setattr(runner, "gpu_engines", lambda names: ["onnxruntime"])
    keys = [c.key for c in runner.plan_cells({"fp32": tiny_model}, cfg)]
    assert keys == ["fp32/onnxruntime", "fp32/onnxruntime/gpu", "fp32/openvino"]
    off = BenchConfig(data=None, out=tmp_path, engines=("onnxruntime",), bf16_rows=False, gpu_rows=False)
    assert [c.key for c in runner.plan_cells({"fp32": tiny_model}, off)] == ["fp32/onnxruntime"]
    # A GPU cell either runs on the GPU or fails loudly: never a CPU timing under a GPU label.
    import numpy as np
    from fundus_edge.runtime.engines import gpu_engines

    np.savez(tmp_path / "one.npz", img_000=np.zeros((32, 32, 3), np.uint8))
    rec = _run_cell(
        {
            "variant": "fp32",
            "backend": "onnxruntime",
            "device": "gpu",
            "model_dir": str(tiny_model),
            "threads": 1,
            "batch": 1,
            "images": str(tmp_path / "one.npz"),
            "warmup": 0,
            "runs": 1,
            "min_runs": 1,
            "budget_s": 0,
            "save_mask": str(tmp_path / "m.npy"),
        }
    )
    if "onnxruntime" in gpu_engines(["onnxruntime"]):
        assert rec["device"].startswith("gpu")
    else:
        assert rec["status"] == "run_failed" and "gpu" in rec["error"]


def test_gpu_probe_that_fails_leaves_the_engine_out(monkeypatch):
    from fundus_edge.runtime import engines

    class Broken:
        @staticmethod
        def has_gpu():
            raise OSError("libcudart.so: cannot open shared object file")

    class Present:
        @staticmethod
        def has_gpu():
            return True

    monkeypatch.setattr(engines, "engine_class", lambda name: Broken if name == "paddle" else Present)
    assert engines.gpu_engines(["paddle", "onnxruntime"]) == ["onnxruntime"]


def _run_cell(spec: dict) -> dict:
    """run_cell on a spec written as a dict: the fields a test sets, CellSpec's defaults for the rest."""
    from fundus_edge.bench.cell import CellSpec, run_cell

    return run_cell(CellSpec.from_dict(spec))


def _cell_spec(model, tmp_path, backend: str, **kw) -> dict:
    """A one-image cell spec for run_cell on the tiny model (a synthetic fundus with label and FOV)."""
    import numpy as np

    from .conftest import synthetic_fundus

    rgb, label, fov = synthetic_fundus(3)
    np.savez(tmp_path / "imgs.npz", img_000=rgb, lab_000=label, fov_000=fov)
    return {
        "variant": "fp32",
        "backend": backend,
        "model_dir": str(model),
        "precision": None,
        "device": "cpu",
        "threads": 1,
        "warmup": 1,
        "budget_s": 1.0,
        "images": str(tmp_path / "imgs.npz"),
        "reference_mask": None,
        "save_mask": str(tmp_path / "m.npy"),
        **kw,
    }


def test_cell_falls_back_to_the_next_format_and_says_so(tiny_model, tmp_path, monkeypatch):
    """Paddle Inference fails on some PIR programs (the seed U-Net's bilinear up-sampling): the cell
    then runs the legacy program and the row names the format that ran and why."""
    from fundus_edge.runtime.engines.paddle import PaddleEngine

    real_run = PaddleEngine.run

    def run(self, x):
        if self.format == "pir":
            raise RuntimeError("ConvertPirAttribute2RuntimeAttribute not support ArrayAttribute")
        return real_run(self, x)

    monkeypatch.setattr(PaddleEngine, "run", run)
    spec = _cell_spec(tiny_model, tmp_path, "paddle", batch=1, runs=2, min_runs=1, accuracy=True)
    rec = _run_cell(spec)
    assert rec["status"] == "ok" and rec["format"] == "legacy" and rec["p50_ms"] > 0 and rec["f1"] is not None
    assert "pir failed" in rec["note"] and "ConvertPirAttribute" in rec["note"]
    # an engine failing on every format it reads is run_failed, with each format's error
    monkeypatch.setattr(PaddleEngine, "run", lambda self, x: (_ for _ in ()).throw(RuntimeError("boom")))
    rec = _run_cell(spec)
    assert (
        rec["status"] == "run_failed"
        and rec["error"].startswith("pir: ")
        and "; legacy: " in rec["error"]
        and rec["error"].count("boom") == 2
    )


def test_slow_model_rate_is_one_image_at_a_time(tiny_model, tmp_path):
    """Models slower than ``slow_ms`` per image skip the batch run; their rate is 1 / end-to-end time."""
    spec = _cell_spec(tiny_model, tmp_path, "onnxruntime", batch=4, runs=3, min_runs=3, accuracy=False)
    fast = _run_cell(spec)
    slow = _run_cell({**spec, "slow_ms": 0.0})
    assert fast["status"] == slow["status"] == "ok" and fast["batch_size"] == 4 and slow["batch_size"] == 1
    assert slow["throughput_ips"] <= 1000.0 / slow["p50_ms"] * 1.5  # one image at a time, pre/post included


def test_frame_timing_compares_crop_on_and_off(tiny_model):
    from fundus_edge.bench.frames import camera_frame, time_frames

    from .conftest import synthetic_fundus

    rgb = synthetic_fundus(3, 72, 68)[0]
    frame = camera_frame(rgb, (160, 120))
    assert frame.shape == (120, 160, 3) and not frame[:, :10].any()  # black sides of the 4:3 canvas
    rows = time_frames(tiny_model, {"frame": frame}, "onnxruntime", 1, 1)
    by = {r["crop"]: r for r in rows}
    assert by[True]["engine_ms"] > 0 and by[False]["e2e_ms"] >= by[False]["engine_ms"]
    assert (
        int(by[True]["input"].split("x")[1]) < int(by[False]["input"].split("x")[1])
        and 0.9 < by[True]["mask_agreement"] <= 1.0
    )


def test_slow_unscored_model_compares_its_first_image_only(tiny_model, tmp_path):
    import numpy as np
    from fundus_edge.bench.cell import load_masks

    from .conftest import synthetic_fundus

    arrays = {}
    for i in range(3):
        rgb, label, fov = synthetic_fundus(20 + i)
        arrays.update({f"img_{i:03d}": rgb, f"lab_{i:03d}": label, f"fov_{i:03d}": fov})
    np.savez(tmp_path / "three.npz", **arrays)
    spec = {
        **_cell_spec(tiny_model, tmp_path, "onnxruntime", batch=1, runs=2, min_runs=2),
        "images": str(tmp_path / "three.npz"),
        "slow_ms": 0.0,
    }
    for accuracy, n in ((False, 1), (True, 3)):
        out = tmp_path / f"m{accuracy}.npz"
        rec = _run_cell({**spec, "accuracy": accuracy, "save_mask": str(out)})
        assert rec["status"] == "ok" and len(load_masks(str(out))) == n
        assert (rec.get("f1") is not None) == accuracy
    # A reference cell fast enough to keep all three masks, then a slow cell that keeps one: they are
    # compared on the image both kept (the seed U-Net on an AVX-512 CPU: ONNX Runtime under 2 s, Paddle over).
    ref = tmp_path / "ref.npz"
    assert (
        _run_cell(
            {**spec, "accuracy": False, "slow_ms": 1e9, "runs": 3, "min_runs": 3, "save_mask": str(ref)}
        )["status"]
        == "ok"
        and len(load_masks(str(ref))) == 3
    )
    rec = _run_cell({**spec, "accuracy": False, "reference_mask": str(ref)})
    assert rec["status"] == "ok" and rec["agreement"] == 1.0
    # a scored cell whose reference holds other images is still an error
    rec = _run_cell(
        {
            **spec,
            "images": _cell_spec(tiny_model, tmp_path, "onnxruntime")["images"],
            "accuracy": True,
            "reference_mask": str(ref),
        }
    )
    assert rec["status"] == "run_failed" and "reference masks do not match" in rec["error"]


def test_paddle_profile_names_onednn_kernels(tiny_model):
    """bench.profile --backend paddle: oneDNN's verbose log of the timed runs, per primitive and kernel."""
    import numpy as np
    from fundus_edge.bench.profile import profile_paddle

    x = np.zeros((1, 4, 32, 32), np.float32)
    agg = profile_paddle(tiny_model, x, threads=1, runs=2)
    convs = {k: v for k, v in agg.items() if k[0].startswith("convolution (f32)")}
    assert convs and all(v > 0 for v in convs.values()) and all(k[1] for k in convs)


def test_static_engine_pads_smaller_inputs_and_refuses_larger(tiny_model):
    import numpy as np
    from fundus_edge.runtime.errors import InputError
    from fundus_edge.runtime.predictor import Predictor

    from .conftest import synthetic_fundus

    rgb = synthetic_fundus(5)[0]
    dyn = Predictor.load(tiny_model, backend="onnxruntime", threads=1, precision=None)
    x, _ = dyn.prepare(rgb)
    h, w = x.shape[-2:]
    for backend in ("onnxruntime", "openvino"):
        st = Predictor.load(
            tiny_model, backend=backend, threads=1, precision=None, shapes={"static_hw": (h, w + 16)}
        )
        a, b = dyn.predict(rgb), st.predict(rgb)
        assert st.engine.shape == f"static {h}x{w + 16} (batch 1)" and b.prob.shape == a.prob.shape
        assert np.mean(a.mask == b.mask) > 0.95  # the padding only touches the border's receptive field
        with pytest.raises(InputError, match=rf"built for a static 1x\d+x{h}x{w + 16} input"):
            st.engine.run(np.zeros((1, x.shape[0], h + 8, w), np.float32))
    ovd = Predictor.load(
        tiny_model, backend="openvino", threads=1, precision=None, shapes={"dynamic_shape": True}
    )
    assert ovd.engine.shape == "dynamic" and np.array_equal(
        ovd.predict(rgb).mask,
        Predictor.load(tiny_model, backend="openvino", threads=1, precision=None).predict(rgb).mask,
    )
    from fundus_edge.runtime.errors import EngineUnavailable

    with pytest.raises(EngineUnavailable, match="paddle: no static input shape"):
        Predictor.load(tiny_model, backend="paddle", threads=1, precision=None, shapes={"static_hw": (h, w)})
