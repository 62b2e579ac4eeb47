"""One FOV-mask matcher (runtime/fov.py: match_fov_file, match_key): predict --fov DIR, biomarkers --fov-dir
and site folders pair a mask file with its image by the same rule."""

from __future__ import annotations

from pathlib import Path

import pytest
from fundus_edge.measure.biomarker_files import match_fov_file as biomarker_fov
from fundus_edge.measure.site import read_site
from fundus_edge.runtime.batch import resolve_fov
from fundus_edge.runtime.errors import InputError
from fundus_edge.runtime.fov import match_fov_file, match_key

from .conftest import write_drive


def _touch(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(b"")
    return folder


def test_the_image_s_own_name_first_then_drive_s_mask_suffix(tmp_path):
    d = _touch(tmp_path / "mask", "01_test_mask.gif", "02_test_mask.gif", "03_test.png", "03_test_mask.png")
    assert match_fov_file(d, Path("in/01_test.tif")).name == "01_test_mask.gif"
    assert match_fov_file(d, Path("in/03_test.tif")).name == "03_test.png"  # its own stem before _mask
    assert match_fov_file(d, Path("in/01_TEST.tif")).name == "01_test_mask.gif"  # case is ignored


def test_the_one_file_of_the_same_leading_number_else_an_error_naming_the_image(tmp_path):
    d = _touch(tmp_path / "mask", "01_test_mask.gif", "02_test_mask.gif", "02_other.gif")
    assert match_fov_file(d, Path("labels/01_manual1.gif")).name == "01_test_mask.gif"
    with pytest.raises(InputError) as two:
        match_fov_file(d, Path("labels/02_manual1.gif"))
    msg = str(two.value)
    assert msg.startswith("labels/02_manual1.gif: no FOV mask for it in") and "\n" not in msg
    assert "2 files could be it: 02_other.gif, 02_test_mask.gif" in msg
    with pytest.raises(InputError, match=r"^labels/07_manual1.gif: no FOV mask for it in [^(]*$"):
        match_fov_file(d, Path("labels/07_manual1.gif"))


def test_only_image_files_are_masks(tmp_path):
    d = _touch(tmp_path / "mask", "01_test.txt", "01_test_mask.gif")
    (d / "01_test").mkdir()
    assert match_fov_file(d, Path("01_test.tif")).name == "01_test_mask.gif"


def test_predict_and_biomarkers_use_the_one_rule(tmp_path):
    d = _touch(tmp_path / "mask", "01_test_mask.gif", "02_test_mask.gif")
    # predict --fov DIR: the image's mask; auto / none and a mask file pass through
    assert resolve_fov(str(d), Path("01_test.tif")) == d / "01_test_mask.gif"
    assert resolve_fov("auto", Path("01_test.tif")) == "auto"
    assert resolve_fov(str(d / "02_test_mask.gif"), Path("x.tif")) == d / "02_test_mask.gif"
    # biomarkers: a predicted <stem>_mask.png is known by its image's stem; a manual label by its number
    assert biomarker_fov(Path("out/02_test_mask.png"), d).name == "02_test_mask.gif"
    assert biomarker_fov(Path("manual/01_manual1.gif"), d).name == "01_test_mask.gif"
    # a leading number the image does not have is no match, in both
    for call in (lambda: resolve_fov(str(d), Path("1_test.tif")), lambda: biomarker_fov(Path("7_a.png"), d)):
        with pytest.raises(InputError, match="no FOV mask for it"):
            call()


def test_a_site_pairs_its_fov_masks_as_the_matcher_does(tmp_path):
    root = write_drive(tmp_path / "drive", n_train=2, n_test=3) / "test"
    site = read_site(root)
    assert len(site.images) == 3 and all(s.fov is not None for s in site.images)
    for s in site.images:
        assert match_fov_file(site.folders["fov"], s.image) == s.fov
        assert match_key(s.name, s.fov.stem)
