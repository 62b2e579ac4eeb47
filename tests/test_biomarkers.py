"""Vessel biomarkers: each formula pinned on a synthetic mask whose answer is known in closed form, the
comparison of two sets, and the two commands (``biomarkers``, ``predict --biomarkers``)."""

import csv
import json
import math

import cv2
import numpy as np
import pytest
from fundus_edge.measure.biomarker_files import match_fov_file
from fundus_edge.measure.biomarkers import (
    NAMES,
    beyond_tolerance,
    box_counting_dimension,
    compare_biomarkers,
    compute_biomarkers,
)
from fundus_edge.runtime.errors import InputError
from PIL import Image

from fundus_edge.cli import main

from .conftest import synthetic_fundus


def _bar(width: int, length: int = 301, size: int = 400) -> np.ndarray:
    m = np.zeros((size, size), bool)
    top = size // 2 - width // 2
    m[top : top + width, 50 : 50 + length] = True
    return m


def test_straight_line_has_tortuosity_one_and_no_curvature():
    b = compute_biomarkers(_bar(1))
    assert b.tortuosity_distance == pytest.approx(1.0, abs=1e-12)
    assert b.tortuosity_curvature == pytest.approx(0.0, abs=1e-9)
    assert b.skeleton_length_px == pytest.approx(300.0)  # 301 pixels, 300 unit steps
    assert (b.end_points, b.branch_points, b.segments) == (2, 0, 1)


def test_diagonal_line_has_tortuosity_one():
    m = np.eye(300, dtype=bool)
    b = compute_biomarkers(m)
    assert b.tortuosity_distance == pytest.approx(1.0, abs=1e-12)
    assert b.skeleton_length_px == pytest.approx(299 * math.sqrt(2))


def test_semicircle_tortuosities_match_closed_form():
    # arc / chord of a half circle is pi/2; its curvature 1/r, i.e. D/r radians per FOV diameter.
    r, size = 120, 400
    m = np.zeros((size, size), np.uint8)
    cv2.ellipse(m, (200, 200), (r, r), 0, 0, 180, 1, thickness=1)
    b = compute_biomarkers(m.astype(bool))
    assert b.segments == 1
    assert b.tortuosity_distance == pytest.approx(math.pi / 2, rel=0.03)
    assert b.tortuosity_curvature == pytest.approx(size / r, rel=0.05)


@pytest.mark.parametrize("w", [1, 3, 5, 7])
def test_line_of_width_w_has_width_w(w):
    b = compute_biomarkers(_bar(w))
    assert b.width_median_px == pytest.approx(w)
    assert b.width_mean_px == pytest.approx(w, rel=0.02)  # the skeleton's ends sit nearer the bar's end caps
    assert b.width_mean_d == pytest.approx(b.width_mean_px / 400)


def test_filled_square_has_box_dimension_two_and_a_line_one():
    full = np.ones((512, 512), bool)
    assert box_counting_dimension(full, 512) == pytest.approx(2.0, abs=1e-9)
    quarter = np.zeros((512, 512), bool)
    quarter[:256, :256] = True
    assert compute_biomarkers(quarter).fractal_dimension == pytest.approx(2.0, abs=1e-9)
    line = np.zeros((512, 512), bool)
    line[100, :] = True
    assert compute_biomarkers(line).fractal_dimension == pytest.approx(1.0, abs=1e-9)


def test_density_counts_only_the_fov_and_areas_are_per_fov():
    fov = np.zeros((100, 100), bool)
    fov[:, :50] = True  # D = 100 (the bounding box's longer side), A = 5000 = 0.5 D^2
    mask = np.zeros((100, 100), bool)
    mask[:, 20:45] = True  # 2500 px inside
    mask[:, 60:] = True  # outside: ignored
    b = compute_biomarkers(mask, fov)
    assert (b.fov_area_px, b.fov_diameter_px) == (5000, 100.0)
    assert b.vessel_density == pytest.approx(0.5)


def test_t_junction_counts_one_branch_point_and_three_ends():
    m = np.zeros((200, 200), bool)
    m[50, 20:181] = True
    m[50:180, 100] = True
    b = compute_biomarkers(m)
    assert (b.branch_points, b.end_points) == (1, 3)
    assert b.branch_density == pytest.approx(1 / (200 * 200 / 200**2))  # one per frame of D^2
    # length per FOV area in FOV diameters: L D / A
    assert b.length_density == pytest.approx(b.skeleton_length_px * 200 / 200**2)


def test_normalised_biomarkers_survive_a_2x_resize():
    yy, xx = np.mgrid[:300, :300]
    fov = (yy - 150) ** 2 + (xx - 150) ** 2 < 140**2
    m = np.zeros((300, 300), np.uint8)
    cv2.ellipse(m, (150, 150), (90, 90), 0, 0, 180, 1, thickness=3)
    cv2.line(m, (40, 150), (260, 150), 1, thickness=5)
    small = compute_biomarkers(m.astype(bool), fov)
    big_m = cv2.resize(m, (600, 600), interpolation=cv2.INTER_NEAREST).astype(bool)
    big_f = cv2.resize(fov.astype(np.uint8), (600, 600), interpolation=cv2.INTER_NEAREST).astype(bool)
    big = compute_biomarkers(big_m, big_f)
    for name in ("vessel_density", "length_density", "tortuosity_distance", "branch_density", "end_density"):
        assert getattr(big, name) == pytest.approx(getattr(small, name), rel=0.05), name
    # The least stable: where the arc meets the line, the thicker copy's skeleton turns differently
    # (9 % here).
    assert big.tortuosity_curvature == pytest.approx(small.tortuosity_curvature, rel=0.15)
    assert big.width_mean_d == pytest.approx(
        small.width_mean_d, rel=0.15
    )  # 2d - 1 reads a doubled width w as 2w +- 1


def test_empty_mask_gives_zeros_and_undefined_values():
    b = compute_biomarkers(np.zeros((50, 50), bool))
    assert b.vessel_density == 0 and b.skeleton_length_px == 0 and b.branch_points == 0
    d = b.to_dict()
    assert d["width_mean_px"] is None and d["tortuosity_distance"] is None and d["fractal_dimension"] is None
    json.dumps(d)  # NaN never reaches JSON


def test_bad_shapes_and_empty_fov_are_input_errors():
    with pytest.raises(InputError, match="FOV mask is 4x3"):
        compute_biomarkers(np.zeros((5, 5)), np.ones((3, 4)))
    with pytest.raises(InputError, match="empty"):
        compute_biomarkers(np.ones((5, 5)), np.zeros((5, 5)))


def test_compare_is_mean_absolute_difference_over_mean_reference():
    got = compare_biomarkers(
        [{"a": 1.0, "b": None}, {"a": 3.0, "b": 2.0}],
        [{"a": 2.0, "b": 4.0}, {"a": 2.0, "b": 4.0}],
        names=("a", "b", "c"),
    )
    assert got == {"a": pytest.approx(50.0), "b": pytest.approx(50.0), "c": None}
    assert beyond_tolerance(got, {"a": 60.0, "b": 10.0}) == ["b"]
    with pytest.raises(ValueError):
        compare_biomarkers([{}], [])


def test_biomarkers_command_on_drive_like_names(tmp_path, capsys):
    masks, fovs = tmp_path / "manual", tmp_path / "mask"
    masks.mkdir()
    fovs.mkdir()
    for n in (1, 2):
        _, label, fov = synthetic_fundus(n, 90, 90)
        Image.fromarray(label.astype(np.uint8) * 255).convert("P").save(masks / f"{n:02d}_manual1.gif")
        Image.fromarray(fov.astype(np.uint8) * 255).convert("P").save(fovs / f"{n:02d}_test_mask.gif")
    assert match_fov_file(masks / "01_manual1.gif", fovs).name == "01_test_mask.gif"
    out = tmp_path / "b.csv"
    assert main(["biomarkers", str(masks), "--fov-dir", str(fovs), "-o", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["file"] for r in rows] == ["01_manual1.gif", "02_manual1.gif"] and rows[0][
        "fov"
    ] == "01_test_mask.gif"
    _, label, fov = synthetic_fundus(1, 90, 90)
    assert float(rows[0]["vessel_density"]) == pytest.approx(
        compute_biomarkers(label, fov).vessel_density, rel=1e-5
    )
    assert set(NAMES) <= set(rows[0])
    # nothing overwritten without --force; a missing FOV is one line naming the mask
    assert main(["biomarkers", str(masks), "--fov-dir", str(fovs), "-o", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    (fovs / "02_test_mask.gif").unlink()
    assert main(["biomarkers", str(masks), "--fov-dir", str(fovs), "-o", str(out), "--force"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "02_manual1.gif" in err and "no FOV mask" in err


def test_predict_biomarkers_writes_json_and_adds_csv_rows(tiny_model, tmp_path, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    for i in range(2):
        Image.fromarray(synthetic_fundus(i, 80, 70)[0]).save(inp / f"img{i}.png")
    out = tmp_path / "out"
    opts = ["--output", str(out), "--backend", "onnxruntime", "--no-progress", "--biomarkers"]
    assert main(["predict", str(tiny_model), str(inp / "img0.png")] + opts) == 0
    assert main(["predict", str(tiny_model), str(inp / "img1.png")] + opts) == 0  # a second run adds its row
    rows = list(csv.DictReader((out / "biomarkers.csv").open()))
    assert [r["file"] for r in rows] == ["img0.png", "img1.png"]
    data = json.loads((out / "img1_biomarkers.json").read_text())
    mask = np.array(Image.open(out / "img1_mask.png")) > 0
    assert data["vessel_density"] is not None and set(NAMES) <= set(data)
    assert data["fov_area_px"] >= np.count_nonzero(
        mask
    )  # the predicted mask lies inside the FOV it is measured in
    # the JSON is an output like the mask: not overwritten without --force
    assert main(["predict", str(tiny_model), str(inp / "img1.png")] + opts) == 1
    assert "--force" in capsys.readouterr().err


def test_icc_is_one_for_identical_ratings_and_penalises_a_constant_bias():
    from fundus_edge.measure.validate_biomarkers import icc_a1

    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert icc_a1(x, x) == pytest.approx(1.0)
    # y = x + 1: perfectly correlated, but absolute agreement drops: MSR 5, MSC 2.5, MSE 0
    # -> 5 / (5 + 2 * 2.5 / 5) = 5/6
    assert icc_a1(x, x + 1.0) == pytest.approx(5 / 6)
