"""Heavy checks, run on purpose (`make test-all DATA=DRIVE`, or `pytest -m slow`): a real training run on
DRIVE and a benchmark sweep on DRIVE through every installed engine. Minutes each on 2 cores."""

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.drive]


def test_real_drive_training_beats_calling_everything_a_vessel(drive_root, tmp_path):
    from fundus_edge.train.config import resolve_config
    from fundus_edge.train.data import discover, load_sample, split_train_val
    from fundus_edge.train.trainer import Trainer

    cfg = resolve_config("small").with_overrides(
        data={"root": str(drive_root)}, optim={"iters": 200, "val_every": 100, "warmup": 20}
    )
    r = Trainer(cfg, tmp_path / "run", device="cpu", progress=False).fit()
    _, val = split_train_val(discover(drive_root, split="train"), cfg.data.val_count, cfg.data.split_seed)
    samples = [load_sample(s) for s in val]
    share = sum(int(s.label[s.fov].sum()) for s in samples) / sum(int(s.fov.sum()) for s in samples)
    everywhere = 2 * share / (1 + share)  # ~0.23 on DRIVE
    assert r.best_val_f1 > everywhere + 0.3, (r.best_val_f1, everywhere)  # 200 steps reach ~0.7


def test_benchmark_sweep_on_drive(drive_root, tmp_path):
    from fundus_edge.bench.runner import BenchConfig
    from fundus_edge.bench.sweep import run_bench

    cfg = BenchConfig(
        data=str(drive_root),
        out=tmp_path / "out",
        quick=True,
        models_dir=tmp_path / "models",
        variants=("small", "small-int8", "small-int8-nncf"),
    )
    recs, meta = run_bench(cfg, progress=False)
    ok = [r for r in recs if r.status == "ok"]
    assert len(ok) == len(recs) and len(recs) >= 5, [(r.variant, r.backend, r.status, r.error) for r in recs]
    assert all(r.f1 > 0.78 for r in ok)  # 3 DRIVE test images; the small model scores ~0.82 on them
    assert all(r.agreement_float is not None and r.agreement_float > 0.95 for r in ok if "int8" in r.variant)
    assert (tmp_path / "out" / "fastest_vs_most_accurate.png").is_file() and meta["machine"][
        "isa_flags"
    ] is not None
