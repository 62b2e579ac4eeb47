"""The shipped models/default-pruned: the bench's `pruned` build (PaddleSlim pruning of models/default and
its 800-iteration fine-tune, 12 of `make bench`'s 14 build minutes), used instead of building it, and
quantized for `pruned-int8`, only while it matches the shipped default and the bench's pruning settings."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from fundus_edge.bench.runner import BenchConfig
from fundus_edge.runtime.manifest import read_manifest, sha256, write_manifest

MODELS = Path(__file__).resolve().parents[1] / "models"
SHIPPED = MODELS / "default-pruned"


def test_shipped_default_pruned_is_small_intact_and_the_bench_uses_it():
    from fundus_edge.bench.variants import shipped_build
    from fundus_edge.runtime.predictor import Predictor

    if not (SHIPPED / "manifest.yaml").is_file():
        pytest.fail("models/default-pruned is not shipped")
    assert sum(f.stat().st_size for f in SHIPPED.iterdir() if f.is_file()) <= 5 * 1024 * 1024
    man = read_manifest(SHIPPED)
    assert (man.name, man.variant, set(man.formats)) == ("default", "pruned", {"pir", "onnx"})
    assert man.source["pruning"]["source"]["manifest_sha256"] == sha256(MODELS / "default" / "manifest.yaml")
    # `make bench` as shipped: the pruned row is this folder, no fine-tune
    assert shipped_build(BenchConfig(data=None, out=Path("unused"), shipped=MODELS), "pruned", "variant") == (
        SHIPPED,
        "",
    )
    Predictor.load(SHIPPED, backend="onnxruntime", threads=1)  # checks every sha256


def test_the_card_is_what_modelcard_writes_from_the_manifest_and_the_ledger():
    """Regenerate with `python -m fundus_edge.modelcard --model models/default-pruned --pruned-build` when
    this fails (a ledger row of lineage default or default-pruned, or a new models/default)."""
    from fundus_edge.measure.ledger import REPO_LEDGER

    from fundus_edge.modelcard import pruned_build_card

    text = (SHIPPED / "MODEL_CARD.md").read_text()
    assert text == "\n".join(pruned_build_card(SHIPPED, REPO_LEDGER)) + "\n"
    assert "pruned 50%" in text and "fine-tuned 800 iterations on the DRIVE training images" in text
    assert "**0.8164**" in text and "its lineage `default` has" in text


def _pruned_folder(tiny_model, shipped: Path, base_sha: str, **settings) -> Path:
    """A stand-in for models/default-pruned: the tiny model with a pruning record as quantize writes it."""
    from fundus_edge.quantize.pipeline import PRUNE_FINETUNE_LR, finetune_crop

    d = shutil.copytree(tiny_model, shipped / "default-pruned")
    man = read_manifest(d)
    pruning = {
        "source": {
            "name": "default",
            "variant": "fp32",
            "manifest_sha256": base_sha,
            "path": "models/default",
        },
        "ratio": 0.5,
        "tool": "paddleslim L1NormFilterPruner",
        "finetune_iters": 800,
        "finetune_lr": PRUNE_FINETUNE_LR,
        "finetune_crop": finetune_crop(man.source["config"]["optim"]["crop"]),
        "finetune_s": 714.5,
        **settings,
    }
    write_manifest(d, replace(man, variant="pruned", source={**man.source, "pruning": pruning}))
    return d


@pytest.fixture
def shipped(tiny_model, tmp_path):
    d = tmp_path / "models"
    shutil.copytree(tiny_model, d / "default")
    return d


def test_the_bench_uses_the_shipped_pruned_folder_only_when_it_matches(tiny_model, shipped, tmp_path):
    from fundus_edge.bench.variants import shipped_build

    cfg = BenchConfig(data=None, out=tmp_path / "out", models_dir=tmp_path / "build", shipped=shipped)
    base_sha = sha256(shipped / "default" / "manifest.yaml")
    assert shipped_build(cfg, "pruned", "variant") == (None, "")  # none shipped
    folder = _pruned_folder(tiny_model, shipped, base_sha)
    assert shipped_build(cfg, "pruned", "variant") == (folder, "")
    # asked for by its own name it is a shipped model, benchmarked as it is (like small-pruned)
    assert shipped_build(cfg, "default-pruned", "shipped") == (None, "")
    got, why = shipped_build(replace(cfg, finetune_iters=400), "pruned", "variant")
    assert got is None and why == f"{folder} was pruned with other settings (finetune_iters 800)"
    shutil.rmtree(folder)
    _pruned_folder(tiny_model, shipped, base_sha, ratio=0.3, finetune_lr=0.01)
    got, why = shipped_build(cfg, "pruned", "variant")
    assert got is None and "other settings (ratio 0.3, finetune_lr 0.01)" in why
    shutil.rmtree(folder)
    _pruned_folder(tiny_model, shipped, "f" * 64)  # made from a default replaced since
    got, why = shipped_build(cfg, "pruned", "variant")
    assert got is None and "pruned from another" in why and "ffffffffffff" in why


def test_prepare_variants_takes_the_match_and_says_why_it_builds_otherwise(
    tiny_model, shipped, tmp_path, capsys
):
    from fundus_edge.bench.variants import prepare_variants

    cfg = BenchConfig(
        data=None,
        out=tmp_path / "out",
        models_dir=tmp_path / "build",
        shipped=shipped,
        variants=("pruned",),
        build=False,
    )
    folder = _pruned_folder(tiny_model, shipped, sha256(shipped / "default" / "manifest.yaml"))
    dirs, errors, times = prepare_variants(cfg, progress=False)
    assert (dirs, errors, times) == ({"pruned": folder}, {}, {})
    dirs, errors, _ = prepare_variants(replace(cfg, finetune_iters=400), progress=False)
    assert not dirs and "not built" in errors["pruned"]
    assert "variant pruned: " + f"{folder} was pruned with other settings" in capsys.readouterr().out


@pytest.mark.parametrize("matches", [True, False])
def test_pruned_int8_quantizes_the_shipped_pruned_folder_when_the_bench_uses_it(
    tiny_model, shipped, tmp_path, monkeypatch, matches
):
    """No second fine-tune: PTQ of the pruned model the bench measures (build/models/pruned otherwise, or
    prune + fine-tune + PTQ in one go when that is not built either)."""
    from fundus_edge.bench.variants import build_one
    from fundus_edge.quantize import pipeline

    calls = []
    monkeypatch.setattr(
        pipeline, "quantize", lambda source, out, data, **kw: calls.append((Path(source), kw))
    )
    cfg = BenchConfig(data="DATA", out=tmp_path / "out", models_dir=tmp_path / "build", shipped=shipped)
    base_sha = sha256(shipped / "default" / "manifest.yaml")
    folder = _pruned_folder(tiny_model, shipped, base_sha if matches else "f" * 64)
    build_one(cfg, "pruned-int8", "variant")
    ((source, kw),) = calls
    if matches:
        assert source == folder and kw["int8"] == "ptq" and "prune" not in kw
    else:
        assert source == shipped / "default" and kw["prune"] == 0.5 and kw["int8"] == "ptq"
