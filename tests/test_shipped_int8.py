"""The shipped INT8 folders (models/<float>-int8-nncf, -int8-ort): small, intact, validated on training
images against the shipped float model they were made from, run at their own precision by auto; the bench
uses them instead of rebuilding only when they match the float model and the quantizer's settings."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from fundus_edge.runtime.engines import installed_engines
from fundus_edge.runtime.manifest import read_manifest, sha256, write_manifest
from fundus_edge.runtime.precision import passed
from fundus_edge.runtime.predictor import Predictor

MODELS = Path(__file__).resolve().parents[1] / "models"
SHIPPED = ["default-int8-nncf", "default-int8-ort", "wnet-int8-nncf", "wnet-int8-ort"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_int8_is_small_intact_validated_and_runs_its_own_precision(name):
    d = MODELS / name
    if not (d / "manifest.yaml").is_file():
        pytest.fail(f"models/{name} is not shipped")
    assert sum(f.stat().st_size for f in d.iterdir() if f.is_file()) <= 5 * 1024 * 1024
    assert (d / "MODEL_CARD.md").is_file()
    man = read_manifest(d)
    engine = man.quantization["engine"]
    src = man.source["float_model"]
    assert (
        sha256(MODELS / Path(src["path"]).name / "manifest.yaml") == src["manifest_sha256"]
    )  # made from the float model shipped now
    assert (
        passed(man.validated[engine]["int8"], man)
        and man.validated[engine]["int8"]["images"] == "DRIVE training (20)"
    )
    assert set(man.validated) == {engine}  # the float model's own checks are not carried over
    if engine not in installed_engines():
        pytest.skip(f"{engine} not installed")
    p = Predictor.load(d, backend=engine, threads=1)  # checks every sha256
    assert p.precision in ("int8", "int8+fp32") and p.precision_choice.precision is None


def _int8_folder(tiny_model, root: Path, quant: dict, float_sha: str) -> Path:
    d = shutil.copytree(tiny_model, root / "default-int8-nncf")
    man = read_manifest(d)
    write_manifest(
        d,
        replace(
            man,
            variant="int8-nncf",
            quantization=quant,
            source={
                **man.source,
                "float_model": {"name": "default", "manifest_sha256": float_sha, "path": "models/default"},
            },
        ),
    )
    return d


def test_the_bench_uses_a_shipped_int8_folder_only_when_it_matches(tiny_model, tmp_path):
    from fundus_edge.bench.variants import quantizer_settings, shipped_build

    shipped = tmp_path / "models"
    shipped.mkdir()
    base = shutil.copytree(tiny_model, shipped / "default")
    cfg = SimpleNamespace(shipped=shipped, models_dir=tmp_path / "build")
    settings = {"method": "ptq", **quantizer_settings("nncf")}
    folder = _int8_folder(tiny_model, shipped, settings, sha256(base / "manifest.yaml"))
    assert shipped_build(cfg, "int8-nncf", "variant") == (folder, "")
    assert shipped_build(cfg, "int8-ort", "variant") == (None, "")  # none shipped
    shutil.rmtree(folder)
    _int8_folder(tiny_model, shipped, {**settings, "preset": "mixed"}, sha256(base / "manifest.yaml"))
    got, why = shipped_build(cfg, "int8-nncf", "variant")
    assert got is None and "other settings (preset mixed)" in why
    shutil.rmtree(shipped / "default-int8-nncf")
    _int8_folder(tiny_model, shipped, settings, "f" * 64)
    got, why = shipped_build(cfg, "int8-nncf", "variant")
    assert got is None and "quantized from another" in why and "ffffffffffff" in why
