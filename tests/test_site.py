"""Site folders (measure/site.py) and site adaptation (train/adapt.py, fundus_edge/adapt.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fundus_edge.measure.site import match_key, read_site
from fundus_edge.runtime.errors import InputError
from PIL import Image

from .conftest import synthetic_fundus, write_drive


def write_stare(root, n=4, second=True):
    """STARE as distributed: images/imNNNN.ppm, labels-ah/imNNNN.ah.pgm, labels-vk/ .pgm and .ppm mixed."""
    for d in ("images", "labels-ah", "labels-vk"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        rgb, lab, _ = synthetic_fundus(100 + i)
        Image.fromarray(rgb).save(root / "images" / f"im{i:04d}.ppm")
        Image.fromarray(lab.astype(np.uint8) * 255).save(root / "labels-ah" / f"im{i:04d}.ah.pgm")
        if second:
            suffix = "ppm" if i % 2 else "pgm"
            img = Image.fromarray(lab.astype(np.uint8) * 255)
            (img.convert("RGB") if suffix == "ppm" else img).save(
                root / "labels-vk" / f"im{i:04d}.vk.{suffix}"
            )
    return root


def test_match_key_rules():
    assert match_key("im0001", "im0001.ah")
    assert match_key("21_training", "21_manual1") and match_key("21_training", "21_training_mask")
    assert match_key("a", "a")
    assert not match_key("im0001", "im00012.ah")
    assert not match_key("21_training", "2_manual1")


def test_drive_and_stare_read_as_distributed(tmp_path):
    drive = write_drive(tmp_path / "DRIVE", n_train=3, n_test=2)
    (drive / "test" / "2nd_manual").mkdir()
    for n in (1, 2):
        rgb, lab, _ = synthetic_fundus(n)
        Image.fromarray(lab.astype(np.uint8) * 255).convert("P").save(
            drive / "test" / "2nd_manual" / f"{n:02d}_manual2.gif"
        )
    test = read_site(drive)  # the root reads as its test split
    assert [s.name for s in test.images] == ["01_test", "02_test"]
    assert test.labelled and test.has_second and test.fov_source == "files"
    assert test.images[0].label.name == "01_manual1.gif" and test.images[0].fov.name == "01_test_mask.gif"
    train = read_site(drive, "train")
    assert len(train.images) == 3 and not train.has_second
    stare = read_site(write_stare(tmp_path / "STARE"))
    assert [s.label.name for s in stare.images][:2] == ["im0001.ah.pgm", "im0002.ah.pgm"]
    assert stare.has_second and stare.images[0].second.name == "im0001.vk.ppm"
    assert stare.fov_source.startswith("derived")


@pytest.mark.parametrize("case", ["orphan", "missing_label", "no_labels", "duplicate"])
def test_unmatched_files_are_one_error_that_names_them(tmp_path, case):
    root = write_stare(tmp_path / "S", n=3, second=False)
    if case == "orphan":
        (root / "labels-ah" / "im0009.ah.pgm").write_bytes(
            (root / "labels-ah" / "im0001.ah.pgm").read_bytes()
        )
        expect = "im0009.ah.pgm (without an image)"
    elif case == "missing_label":
        (root / "labels-ah" / "im0002.ah.pgm").unlink()
        expect = "no labels file for im0002.ppm"
    elif case == "no_labels":
        for p in (root / "labels-ah").iterdir():
            p.unlink()
        (root / "labels-ah").rmdir()
        expect = "no labels folder"
    else:
        (root / "images" / "im0001.png").write_bytes((root / "images" / "im0001.ppm").read_bytes())
        expect = "two images share a name"
    with pytest.raises(InputError) as err:
        read_site(root)
    assert "\n" not in str(err.value) and expect in str(err.value)


def test_unlabelled_folder_reads_for_calibration(tmp_path):
    root = write_stare(tmp_path / "S", n=2, second=False)
    for p in (root / "labels-ah").iterdir():
        p.unlink()
    (root / "labels-ah").rmdir()
    site = read_site(root, require_labels=False)
    assert len(site.images) == 2 and not site.labelled


def test_folds_cover_every_image_once_and_subsets_nest():
    from fundus_edge.train.adapt import folds, subset

    names = [f"im{i:04d}" for i in range(20)]
    f = folds(names, 4)
    assert sorted(i for fold in f for i in fold) == list(range(20)) and {len(x) for x in f} == {5}
    # the order the names are listed in does not matter: folds go by name
    rev = names[::-1]
    assert [sorted(rev[i] for i in x) for x in folds(rev, 4)] == [sorted(names[i] for i in x) for x in f]
    train = [i for fold in f[1:] for i in fold]
    s2, s5 = subset(train, 2, 0, 0), subset(train, 5, 0, 0)
    assert set(s2) <= set(s5) <= set(train) and len(s5) == 5
    with pytest.raises(InputError):
        folds(names, 1)


def test_adapt_runs_folds_never_scoring_a_training_image_and_resumes(tmp_path, tiny_model):
    """A tiny model adapted to a tiny STARE-like site: every fold's held-out images are disjoint from its
    training images, the pooled estimate covers each image once, and a rerun reuses the saved folds."""
    from fundus_edge.train.adapt import AdaptRecipe

    from fundus_edge.adapt import run_adapt

    site = write_stare(tmp_path / "site", n=6, second=False)
    out = tmp_path / "adapt"
    recipe = AdaptRecipe(iters=3, warmup=1, batch_size=2, crop=32)
    r = run_adapt(
        tiny_model,
        site,
        out,
        folds=3,
        curve=(0, 2),
        recipe=recipe,
        final=True,
        progress=False,
        log=lambda *a: None,
    )
    assert r.images == 6 and r.zero_shot["f1"]["n_images"] == 6 and r.cross_validated["f1"]["n_images"] == 6
    assert [p["n_images"] for p in r.curve] == [0, 2]
    for f in (out / "folds").glob("*.json"):
        d = json.loads(f.read_text())
        assert not set(d["train"]) & set(d["held_out"])
    assert r.final and (out / "model" / "manifest.yaml").is_file() and len(r.site_files) == 12
    saved = {p.name: p.stat().st_mtime_ns for p in (out / "folds").iterdir()}
    r2 = run_adapt(
        tiny_model,
        site,
        out,
        folds=3,
        curve=(0, 2),
        recipe=recipe,
        final=False,
        progress=False,
        log=lambda *a: None,
    )
    assert {p.name: p.stat().st_mtime_ns for p in (out / "folds").iterdir()} == saved
    assert r2.cross_validated == r.cross_validated
