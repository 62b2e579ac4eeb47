"""The adapted model a site ships (fundus_edge/adapt_ship.py, fundus_edge/adapt_card.py): INT8 recalibrated
and validated on the site's images, refused when the guard fails, cards with the site's hashes."""

from __future__ import annotations

import json

import pytest
from fundus_edge.runtime.errors import InputError

from .test_site import write_stare


@pytest.fixture(scope="module")
def adapted(tmp_path_factory, tiny_model):
    """A tiny model adapted to a 4-image STARE-like site (2 folds, a few iterations), shipped by run_adapt."""
    from fundus_edge.train.adapt import AdaptRecipe

    from fundus_edge.adapt import run_adapt

    root = tmp_path_factory.mktemp("ship")
    site, out = write_stare(root / "site", n=4, second=False), root / "adapt"
    recipe = AdaptRecipe(iters=3, warmup=1, batch_size=2, crop=32)
    run_adapt(tiny_model, site, out, folds=2, curve=(0,), recipe=recipe, progress=False, log=lambda *a: None)
    return site, out


def test_run_adapt_ships_int8_validated_on_the_site_or_refused(adapted):
    from fundus_edge.runtime.manifest import read_manifest, sha256

    site, out = adapted
    ship = json.loads((out / "ship.json").read_text())
    assert {c["quantizer"] for c in ship["int8"]} == {"nncf", "ort"}
    for c in ship["int8"]:
        folder = out / f"model-int8-{c['quantizer']}"
        assert c["images"] == 4 and c["calibration_images"] == 4  # every site image, no DRIVE image
        ok = abs(c["f1"] - c["f1_float"]) <= 0.005 and c["dice"] >= 0.98
        assert c["passed"] == ok and folder.is_dir() == ok  # a failed guard writes nothing
        if ok:
            man = read_manifest(folder)
            v = man.validated[c["engine"]]["int8"]
            assert v["passed"] and "trained on (4; not held out)" in v["images"]
            assert man.source["float_model"]["manifest_sha256"] == sha256(out / "model" / "manifest.yaml")
            assert "site's images" in man.quantization["calibration"]
            assert (folder / "MODEL_CARD.md").is_file()
    assert not list(out.glob(".model-int8-*"))  # no half-built folder left


def test_card_records_hashes_estimate_gain_and_rule(adapted):
    from fundus_edge.adapt_card import site_digest

    site, out = adapted
    adapt = json.loads((out / "adapt.json").read_text())
    card = (out / "model" / "MODEL_CARD.md").read_text()
    for name, digest in adapt["site_files"].items():
        assert f"| `{name}` | `{digest}` |" in card
    assert site_digest(adapt["site_files"]) in card
    assert "2-fold cross-validated (held-out folds pooled); folds " in card
    assert "gain, paired over the same images | " in card and "n/a" not in card.split("gain, paired")[1][:40]
    assert f"threshold {adapt['final']['threshold']}, chosen on the site's images" in card
    assert "3 iterations of 2 random 32 px crops" in card and "CPU time on" in card
    assert "| 0 | " in card and " | 1 of 1 |" in card  # the zero-shot point, its one pass done


def test_rerun_keeps_builds_and_changed_site_is_refused(adapted, tmp_path):
    import shutil

    from fundus_edge.adapt_ship import ship

    site, out = adapted
    built = {p: p.stat().st_mtime_ns for p in out.glob("model-int8-*/manifest.yaml")}
    ship(out, site, log=lambda *a: None)
    assert {p: p.stat().st_mtime_ns for p in out.glob("model-int8-*/manifest.yaml")} == built
    other = shutil.copytree(site, tmp_path / "site")
    lab = other / "labels-ah" / "im0002.ah.pgm"
    lab.write_bytes(lab.read_bytes()[:-1] + bytes([lab.read_bytes()[-1] ^ 1]))
    with pytest.raises(InputError) as err:
        ship(out, other, log=lambda *a: None)
    assert "labels-ah/im0002.ah.pgm" in str(err.value) and "\n" not in str(err.value)


def test_failed_guard_is_refused_not_written(adapted, tmp_path, monkeypatch):
    import shutil

    import fundus_edge.bench.sweep as sweep

    from fundus_edge.adapt_ship import ship, site_guard

    assert (
        not site_guard(0.80, 0.806, 0.99)[0]
        and not site_guard(0.80, 0.80, 0.979)[0]
        and site_guard(0.8, 0.8, 0.99)[0]
    )
    site, out = adapted
    copy = shutil.copytree(out, tmp_path / "adapt", ignore=shutil.ignore_patterns("model-int8-*"))
    monkeypatch.setattr(sweep, "MIN_AGREEMENT_FLOAT", 1.01)  # no build can reach it
    rec = ship(copy, site, quantizers=("ort",), log=lambda *a: None)
    (c,) = rec["int8"]
    assert not c["passed"] and c["folder"] is None and c["reason"].startswith("refused: vessel Dice")
    assert not (copy / "model-int8-ort").exists()
    assert "refused: vessel Dice" in (copy / "model" / "MODEL_CARD.md").read_text()


def test_rerun_adding_a_curve_point_keeps_the_final_model(adapted, tmp_path):
    """A rerun of the same adaptation that only adds a learning-curve point fine-tunes that point's folds
    and keeps the final model (not trained or exported again); the curve gains the point."""
    import shutil

    from fundus_edge.train.adapt import AdaptRecipe

    from fundus_edge.adapt import run_adapt

    site, out = adapted
    out = shutil.copytree(out, tmp_path / "adapt")
    before = json.loads((out / "adapt.json").read_text())
    stamp = (out / "model" / "manifest.yaml").stat().st_mtime_ns
    said = []
    recipe = AdaptRecipe(iters=3, warmup=1, batch_size=2, crop=32)
    rep = run_adapt(
        before["model"], site, out, folds=2, curve=(0, 1), recipe=recipe, progress=False, log=said.append
    )
    assert [p["n_images"] for p in rep.curve] == [0, 1]
    assert sorted(p.name for p in (out / "folds").glob("n1-*")) == ["n1-fold0.json", "n1-fold1.json"]
    assert rep.final == before["final"] and any("final model kept" in s for s in said)
    assert (out / "model" / "manifest.yaml").stat().st_mtime_ns == stamp
    # another --keep data set makes another final model: not taken for this one
    from fundus_edge.adapt import saved_final

    assert saved_final(out, rep) == before["final"]
    assert saved_final(out, rep, keep=site) is None
