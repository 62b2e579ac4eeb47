import csv

import pytest
import yaml

from fundus_edge.runtime.errors import InputError
from fundus_edge.train.checkpoint import read_checkpoint
from fundus_edge.train.config import dump_config, load_config
from fundus_edge.train.model import build_model, count_macs, count_params
from fundus_edge.train.trainer import Trainer


def test_model_sizes():
    net = build_model(base=16, depth=3)
    assert count_params(net) == 482_898  # the 0.48 M reference size
    assert count_macs(net, 4, 584, 568) == pytest.approx(11.79e9, rel=0.01)
    assert build_model(base=8, depth=3).pad_multiple == 8


def test_config_round_trip(tmp_path, tiny_config):
    p = tmp_path / "c.yaml"
    p.write_text(dump_config(tiny_config))
    assert load_config(p) == tiny_config
    p.write_text("optim: {bogus: 1}\n")
    with pytest.raises(InputError, match="bogus"):
        load_config(p)


def test_training_writes_checkpoints_and_log(tiny_run, tiny_config):
    best, last = read_checkpoint(tiny_run / "best"), read_checkpoint(tiny_run / "last")
    assert last.iteration == tiny_config.optim.iters
    assert 0.0 < best.threshold < 1.0 and "val_f1" in best.metrics and best.metrics["val_auc"] is not None
    assert best.config == tiny_config
    rows = list(csv.DictReader(open(tiny_run / "log.csv")))
    assert [int(r["iteration"]) for r in rows] == [6, 12]
    # The network learns something even in 12 steps on synthetic vessels.
    assert best.metrics["val_f1"] > 0.2


def test_resume_continues_and_refuses_overwrite(tmp_path, tiny_config):
    out = tmp_path / "run"
    Trainer(tiny_config.with_overrides(optim={"iters": 6}), out, device="cpu", progress=False).fit()
    assert read_checkpoint(out / "last").iteration == 6
    with pytest.raises(InputError, match="not empty"):
        Trainer(tiny_config, out, device="cpu", progress=False).fit()
    r = Trainer(tiny_config, out, device="cpu", progress=False).fit(resume=True)
    assert read_checkpoint(out / "last").iteration == 12 and r.iterations == 12
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [int(r["iteration"]) for r in rows] == [6, 12]


def test_gpu_request_without_cuda_is_clear(tmp_path, tiny_config):
    import paddle

    if paddle.device.is_compiled_with_cuda():
        pytest.skip("this Paddle has CUDA")
    with pytest.raises(InputError, match="CUDA"):
        Trainer(tiny_config, tmp_path / "g", device="gpu", progress=False).fit()


def test_refit_without_validation_keeps_final_weights_and_given_threshold(tmp_path, tiny_config):
    """--val-count 0: every training image is trained on; no checkpoint selection; the threshold is
    the configured one; resume works the same; the result exports like any checkpoint."""
    from fundus_edge.export.exporter import export_checkpoint
    from fundus_edge.runtime.manifest import read_manifest

    cfg = tiny_config.with_overrides(data={"val_count": 0}, optim={"iters": 6, "threshold": 0.37})
    out = tmp_path / "refit"
    Trainer(cfg, out, device="cpu", progress=False).fit()
    r = Trainer(cfg.with_overrides(optim={"iters": 12}), out, device="cpu", progress=False).fit(resume=True)
    best, last = read_checkpoint(out / "best"), read_checkpoint(out / "last")
    assert best.iteration == last.iteration == 12 == r.best_iteration
    assert best.threshold == pytest.approx(0.37) and best.metrics == {} and best.extra["refit"] is True
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [int(x["iteration"]) for x in rows] == [6, 12] and all(x["val_f1"] == "" for x in rows)
    export_checkpoint(out / "best", tmp_path / "m", formats=("onnx",))
    assert read_manifest(tmp_path / "m").threshold == pytest.approx(0.37)


def test_distillation_trains_from_a_teacher_and_refuses_a_mismatched_one(tmp_path, tiny_run, tiny_config):
    import numpy as np
    import paddle

    from fundus_edge.train.losses import distill_loss

    t = paddle.to_tensor(np.random.default_rng(0).normal(size=(2, 2, 8, 8)).astype("float32"))
    assert float(distill_loss(t, t)) == pytest.approx(0.0, abs=1e-6)  # a student equal to its teacher pays nothing
    assert float(distill_loss(-t, t)) > 0.1
    cfg = tiny_config.with_overrides(optim={"iters": 6, "teacher": str(tiny_run / "best"), "distill_weight": 1.0})
    r = Trainer(cfg, tmp_path / "d", device="cpu", progress=False).fit()
    assert r.iterations == 6 and read_checkpoint(tmp_path / "d" / "last").config.optim.teacher == str(tiny_run / "best")
    other = cfg.with_overrides(preprocess={"channels": "rgb"})
    with pytest.raises(InputError, match="preprocessing"):
        Trainer(other, tmp_path / "e", device="cpu", progress=False).fit()
    with pytest.raises(InputError, match="teacher"):
        Trainer(tiny_config.with_overrides(optim={"distill_weight": 1.0}), tmp_path / "f", device="cpu", progress=False).fit()
