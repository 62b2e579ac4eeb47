"""Real cameras: camera perturbations, scale normalisation, tiling of large inputs, FOV fallbacks,
robustness training and perturbed evaluation, STARE and CHASE_DB1 layouts."""

import json
import tracemalloc
import warnings

import cv2
import numpy as np
import pytest
from fundus_edge.measure.camera import PERTURBATIONS, parse_perturbation, random_camera
from fundus_edge.runtime.errors import InputError
from fundus_edge.runtime.fov import find_fov, fov_diameter
from fundus_edge.runtime.manifest import read_manifest
from fundus_edge.runtime.predictor import Predictor, ScaleOptions
from fundus_edge.runtime.scale import run_tiled, scale_factor, tiles
from fundus_edge.train.data import detect_layout, discover, load_sample
from PIL import Image

from fundus_edge.cli import main

from .conftest import synthetic_fundus


# -- camera perturbations --------------------------------------------------------------------------
def test_named_perturbations_do_what_they_say():
    rgb, _, _ = synthetic_fundus(3, 80, 90)
    assert parse_perturbation("scale2").apply(rgb).shape == (160, 180, 3)
    assert parse_perturbation("scale0.5").apply(rgb).shape == (40, 45, 3)
    g = parse_perturbation("grey").apply(rgb)
    assert (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()
    dark = parse_perturbation("gamma1.6").apply(rgb)
    assert dark.mean() < rgb.mean() and parse_perturbation("gamma0.6").apply(rgb).mean() > rgb.mean()
    j30 = parse_perturbation("jpeg30").apply(rgb).astype(int)
    j90 = parse_perturbation("jpeg90").apply(rgb).astype(int)
    assert np.abs(j30 - rgb).mean() > np.abs(j90 - rgb).mean() > 0
    assert all(parse_perturbation(n).name == n for n in PERTURBATIONS)


@pytest.mark.parametrize("bad", ["jpeg", "jpeg0", "jpeg300", "blur2", "scale0", "gammaX"])
def test_bad_perturbation_names_are_clear_errors(bad):
    with pytest.raises(InputError, match="perturbation"):
        parse_perturbation(bad)


def test_random_camera_keeps_geometry_and_changes_pixels():
    rgb, _, _ = synthetic_fundus(4, 64, 64)
    rng = np.random.default_rng(0)
    outs = [random_camera(rgb, rng) for _ in range(8)]
    assert all(o.shape == rgb.shape and o.dtype == np.uint8 for o in outs)
    assert sum(not np.array_equal(o, rgb) for o in outs) >= 6


def test_chained_perturbation_applies_steps_in_order():
    from fundus_edge.measure.camera import jpeg, resize

    rgb, _, _ = synthetic_fundus(6, 64, 64)
    chain = parse_perturbation("scale2+jpeg30")
    assert chain.name == "scale2+jpeg30" and [p.name for p in chain.steps] == ["scale2", "jpeg30"]
    assert np.array_equal(chain.apply(rgb), jpeg(resize(rgb, 2.0), 30))
    with pytest.raises(InputError, match="fog"):
        parse_perturbation("scale2+fog")


def test_random_camera_jpeg_probability_and_quality_range():
    from fundus_edge.measure.camera import jpeg

    rgb, _, _ = synthetic_fundus(5, 64, 64)
    # Every other step off: with JPEG forced at quality 10 the result is the q10 encoding of what came before.
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    forced = random_camera(rgb, rng_a, jpeg_p=1.0, jpeg_quality=(10, 10))
    never = random_camera(rgb, rng_b, jpeg_p=0.0, jpeg_quality=(10, 10))
    assert np.array_equal(forced, jpeg(never, 10))


def test_camera_jpeg_quality_range_is_checked(tmp_path, tiny_config):
    from fundus_edge.train.trainer import Trainer

    cfg = tiny_config.with_overrides(
        augment={"camera": 0.5, "camera_copies": 1, "camera_jpeg_quality": (60, 20)}, optim={"iters": 1}
    )
    with pytest.raises(InputError, match="camera_jpeg_quality"):
        Trainer(cfg, tmp_path / "j", device="cpu", progress=False).fit()


# -- scale normalisation and tiling --------------------------------------------------------------
def test_scale_factor():
    assert scale_factor(1080, 540) == pytest.approx(0.5)
    assert scale_factor(270, 540) == pytest.approx(2.0)
    assert scale_factor(530, 540) == 1.0  # under 5 %: left alone
    assert scale_factor(1000, None) == 1.0 and scale_factor(0, 540) == 1.0


@pytest.mark.parametrize(
    "length,tile,overlap", [(100, 100, 10), (300, 128, 32), (257, 64, 16), (1000, 768, 96)]
)
def test_tiles_keep_every_pixel_once(length, tile, overlap):
    seen = np.zeros(length, int)
    for rs, re_, ks, ke in tiles(length, tile, overlap):
        assert 0 <= rs <= ks < ke <= re_ <= length and re_ - rs == min(tile, length)
        seen[ks:ke] += 1
    assert (seen == 1).all()


def test_run_tiled_equals_whole_run_for_a_pixelwise_function():
    x = np.random.default_rng(0).normal(size=(2, 300, 257)).astype(np.float32)
    run = lambda t: t[:, :1] * 3.0 + t[:, 1:2]  # noqa: E731 - pixelwise, so tiling changes nothing
    assert np.array_equal(run_tiled(x, run, 64, 16), run(x[None])[0, 0])


def test_manifest_records_training_scale(tiny_model, tiny_run):
    d = read_manifest(tiny_model).scale["fov_diameter_px"]
    assert 55 <= d <= 70  # synthetic discs are about 64 px across


def test_predictor_rescales_to_training_fov_and_maps_back(tiny_model):
    rgb, _, fov = synthetic_fundus(7)
    p = Predictor.load(tiny_model, backend="onnxruntime", threads=1)
    base = p.predict(rgb, fov=fov)
    big = cv2.resize(rgb, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    big_fov = cv2.resize(fov.astype(np.uint8), None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST).astype(bool)
    r = p.predict(big, fov=big_fov)
    assert r.scale == pytest.approx(p.train_diameter / fov_diameter(big_fov), rel=0.01) and r.scale < 0.4
    assert r.prob.shape == big.shape[:2] and r.mask.shape == big.shape[:2]
    back = cv2.resize(r.prob, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_AREA)
    # rescaled to the training scale, the big copy is segmented like the original
    assert np.abs(back - base.prob).mean() < 0.05
    off = Predictor.load(
        tiny_model, backend="onnxruntime", threads=1, scale=ScaleOptions(rescale=False)
    ).predict(big, fov=big_fov)
    assert off.scale == 1.0 and off.prob.shape == big.shape[:2]


def test_fov_is_estimated_for_scale_when_none_is_given(tiny_model):
    rgb, _, _ = synthetic_fundus(8)
    big = cv2.resize(rgb, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    r = Predictor.load(tiny_model, backend="onnxruntime", threads=1).predict(big)
    assert r.scale == pytest.approx(0.5, abs=0.08) and r.warning is None and r.fov is None


@pytest.mark.parametrize("image", ["black", "flat"])
def test_no_fov_warns_and_does_not_rescale(tiny_model, image):
    rgb = np.zeros((150, 140, 3), np.uint8) if image == "black" else np.full((150, 140, 3), 120, np.uint8)
    p = Predictor.load(tiny_model, backend="onnxruntime", threads=1)
    with pytest.warns(UserWarning, match="no field of view found"):
        r = p.predict(rgb, fov="auto")
    assert r.scale == 1.0 and r.prob.shape == (150, 140) and "not rescaled" in r.warning
    assert find_fov(rgb) is None


def test_fov_mask_of_another_size_is_a_one_line_error(tiny_model, tmp_path, capsys):
    rgb, _, fov = synthetic_fundus(9)
    img, mask = tmp_path / "a.png", tmp_path / "a_mask.png"
    cv2.imwrite(str(img), rgb[..., ::-1])
    cv2.imwrite(str(mask), np.zeros((10, 12), np.uint8))
    rc = main(
        [
            "predict",
            str(tiny_model),
            str(img),
            "--output",
            str(tmp_path / "out"),
            "--fov",
            str(mask),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and str(img) in err and str(mask) in err and "12x10" in err and "Traceback" not in err


def test_large_input_runs_in_tiles_no_larger_than_the_tile(tiny_model):
    """The network's activations are bounded by the tile: no engine call sees more than a tile, and the
    stitched result matches the whole-image run."""
    rgb, _, _ = synthetic_fundus(10, 300, 280)
    whole = Predictor.load(tiny_model, backend="onnxruntime", threads=1, scale=ScaleOptions(rescale=False))
    tiled = Predictor.load(
        tiny_model,
        backend="onnxruntime",
        threads=1,
        scale=ScaleOptions(rescale=False, max_side=128, tile=96, overlap=32),
    )
    shapes = []
    run = tiled.engine.run
    tiled.engine.run = lambda x: shapes.append(x.shape) or run(x)
    a, b = whole.predict(rgb), tiled.predict(rgb)
    assert len(shapes) > 4 and max(max(s[-2:]) for s in shapes) <= 96
    assert b.prob.shape == a.prob.shape
    assert np.abs(a.prob - b.prob).mean() < 0.01 and (a.mask == b.mask).mean() > 0.99


def test_4000x3000_camera_image_predicts(tiny_model):
    rgb, _, fov = synthetic_fundus(11, 750, 1000)
    rgb = cv2.resize(rgb, (4000, 3000), interpolation=cv2.INTER_LINEAR)
    p = Predictor.load(tiny_model, backend="onnxruntime", threads=1)
    tracemalloc.start()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the FOV must be found: no fallback warning
        r = p.predict(rgb)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert r.prob.shape == (3000, 4000) and r.mask.shape == (3000, 4000)
    assert r.scale < 0.05
    # numpy-side memory stays near a few copies of the input (36 MB), not a full-size network pass
    assert peak < 400e6


# -- robustness training and perturbed evaluation -------------------------------------------------
def test_camera_training_logs_perturbed_validation(tmp_path, tiny_config):
    from fundus_edge.train.checkpoint import read_checkpoint
    from fundus_edge.train.trainer import Trainer

    cfg = tiny_config.with_overrides(
        augment={"camera": 0.5, "camera_copies": 2},
        optim={"iters": 4, "val_every": 2, "val_perturb": ("jpeg30", "scale0.5"), "select": "robust"},
    )
    Trainer(cfg, tmp_path / "r", device="cpu", progress=False).fit()
    info = read_checkpoint(tmp_path / "r" / "best")
    assert {"val_f1_jpeg30", "val_f1_scale0.5", "val_f1_perturbed"} <= set(info.metrics)
    assert info.extra["scale"]["fov_diameter_px"] > 0
    log = (tmp_path / "r" / "log.csv").read_text().splitlines()
    assert log[0].endswith("val_f1_perturbed") and log[1].split(",")[-1] != ""


def test_evaluate_perturb_prints_a_table(tiny_model, drive_synth, capsys):
    rc = main(
        [
            "evaluate",
            str(tiny_model),
            "--data",
            str(drive_synth),
            "--perturb",
            "jpeg30,scale2,grey",
            "--backend",
            "onnxruntime",
            "--threads",
            "1",
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    rows = [
        line
        for line in out.splitlines()
        if line.startswith("| ") and not line.startswith("| perturbation") and "---" not in line
    ]
    assert [r.split("|")[1].strip() for r in rows] == ["clean", "jpeg30", "scale2", "grey"]
    import re

    assert rows[0].split("|")[3].strip() == "+0.0000 (reference)"  # the others: a paired interval each
    assert all(
        re.fullmatch(r"[+-]0\.\d{4} \(95 % CI [+-]0\.\d{4} to [+-]0\.\d{4}\)", r.split("|")[3].strip())
        for r in rows[1:]
    )


def test_evaluate_perturb_honours_threshold_override(tiny_model, drive_synth, capsys):
    """--threshold changes the perturbed scores too (it was once ignored there)."""
    f1 = {}
    for thr in ("0.05", "0.95"):
        assert (
            main(
                [
                    "evaluate",
                    str(tiny_model),
                    "--data",
                    str(drive_synth),
                    "--perturb",
                    "grey",
                    "--threshold",
                    thr,
                    "--backend",
                    "onnxruntime",
                    "--threads",
                    "1",
                    "--no-progress",
                ]
            )
            == 0
        )
        out = capsys.readouterr().out
        assert f"threshold {float(thr):.3f}" in out
        f1[thr] = [line.split("|")[2].strip() for line in out.splitlines() if line.startswith("| grey")][0]
    assert f1["0.05"] != f1["0.95"]


def test_evaluate_perturb_best_threshold_per_perturbation(tiny_model, drive_synth, capsys):
    """--best-threshold under --perturb sweeps each perturbation's own pooled F1 (it was once ignored
    there); the swept F1 is never below the F1 at the stored threshold, and JSON carries it too."""
    args = [
        "evaluate",
        str(tiny_model),
        "--data",
        str(drive_synth),
        "--perturb",
        "grey,scale0.5",
        "--best-threshold",
        "--backend",
        "onnxruntime",
        "--threads",
        "1",
        "--no-progress",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    rows = [
        line.split("|") for line in out.splitlines() if line.startswith(("| clean", "| grey", "| scale0.5"))
    ]
    assert len(rows) == 3
    for r in rows:
        thr, best = r[6].strip().rstrip(")").split(" (")
        assert 0.0 < float(thr) < 1.0 and float(best) >= float(r[2].split()[0]) - 1e-4
    assert "never ship them" in out  # the synthetic folder's default split is test
    assert main(args + ["--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert all(0.0 < row["best_threshold"]["threshold"] < 1.0 for row in rep["rows"])


def test_perturbation_biomarker_change_is_measured_against_the_clean_masks():
    from types import SimpleNamespace

    from fundus_edge.measure.robustness import score_perturbations

    rgb, label, fov = synthetic_fundus(7, 96, 96)
    samples = [SimpleNamespace(rgb=rgb, label=label, fov=fov, name="a")]

    def prob_fn(img, f):  # the label itself, except on a grey image: half its vessels (the top rows) lost
        out = label.astype(np.float32)
        if (img[..., 0] == img[..., 1]).all():
            out[: out.shape[0] // 2] = 0
        return out

    clean, grey, jpeg = score_perturbations(prob_fn, samples, ["grey", "jpeg90"], 0.5, biomarkers=True)
    kept = label.copy()
    kept[: label.shape[0] // 2] = False
    assert clean.biomarker_change["vessel_density"] == 0.0 and jpeg.biomarker_change["vessel_density"] == 0.0
    assert grey.biomarker_change["vessel_density"] == pytest.approx(100 * (1 - kept.sum() / label.sum()))
    assert score_perturbations(prob_fn, samples, ["grey"], 0.5)[1].biomarker_change is None  # only when asked


def test_evaluate_perturb_biomarkers_table_and_json(tiny_model, drive_synth, capsys):
    args = [
        "evaluate",
        str(tiny_model),
        "--data",
        str(drive_synth),
        "--perturb",
        "grey",
        "--biomarkers",
        "--backend",
        "onnxruntime",
        "--threads",
        "1",
        "--no-progress",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    from fundus_edge.measure.biomarkers import NAMES

    assert "biomarker change" in out and "| perturbation | " + " | ".join(NAMES) + " |" in out
    grey = [line for line in out.splitlines() if line.startswith("| grey")]
    assert (
        len(grey) == 2 and len(grey[1].strip("|").split("|")) == len(NAMES) + 1
    )  # F1 row, then one value per biomarker
    assert main(args + ["--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert set(rows[1]["biomarker_change_pct"]) >= {"vessel_density", "fractal_dimension"}
    assert (
        main(["evaluate", str(tiny_model), "--data", str(drive_synth), "--biomarkers", "--no-progress"]) == 2
    )
    assert "--perturb" in capsys.readouterr().err


def test_evaluate_perturb_bad_name(tiny_model, drive_synth, capsys):
    rc = main(
        ["evaluate", str(tiny_model), "--data", str(drive_synth), "--perturb", "jpeg30,fog", "--no-progress"]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "fog" in err and len(err.strip().splitlines()) == 1


# -- other data-set layouts -----------------------------------------------------------------------
def _stare(root, n=2):
    (root / "stare-images").mkdir(parents=True)
    (root / "labels-ah").mkdir()
    (root / "labels-vk").mkdir()
    for i in range(1, n + 1):
        rgb, lab, _ = synthetic_fundus(i, 70, 80)
        cv2.imwrite(str(root / "stare-images" / f"im{i:04d}.ppm"), rgb[..., ::-1])
        lab3 = np.repeat(lab.astype(np.uint8)[..., None] * 255, 3, axis=2)  # STARE labels are colour PPMs
        assert cv2.imwrite(str(root / "labels-ah" / f"im{i:04d}.ah.ppm"), lab3)
        assert cv2.imwrite(str(root / "labels-vk" / f"im{i:04d}.vk.ppm"), np.zeros_like(lab3))
    return root


def _chase(root, n=2):
    root.mkdir(parents=True)
    for i in range(1, n + 1):
        for eye in "LR":
            rgb, lab, _ = synthetic_fundus(10 * i + (eye == "R"), 70, 80)
            Image.fromarray(rgb).save(root / f"Image_{i:02d}{eye}.jpg", quality=95)
            Image.fromarray(lab.astype(np.uint8) * 255).save(root / f"Image_{i:02d}{eye}_1stHO.png")
            Image.fromarray(np.zeros_like(lab, np.uint8)).save(root / f"Image_{i:02d}{eye}_2ndHO.png")
    return root


def test_stare_layout(tmp_path):
    root = _stare(tmp_path / "STARE")
    assert detect_layout(root) == "stare"
    samples = discover(root)
    assert [s.name for s in samples] == ["im0001", "im0002"] and all(
        s.label.name.endswith(".ah.ppm") for s in samples
    )
    ls = load_sample(samples[0])
    assert ls.label.any() and ls.fov.any() and not ls.fov.all()  # FOV estimated from the image


def test_chase_layout(tmp_path):
    root = _chase(tmp_path / "CHASEDB1")
    assert detect_layout(root) == "chase"
    samples = discover(root, layout="chase")
    assert [s.name for s in samples] == ["Image_01L", "Image_01R", "Image_02L", "Image_02R"]
    assert all(s.label.name.endswith("_1stHO.png") for s in samples)
    assert load_sample(samples[1]).label.any()


def test_layout_errors_name_the_problem(tmp_path):
    root = _stare(tmp_path / "S")
    (root / "labels-ah" / "im0002.ah.ppm").unlink()
    with pytest.raises(InputError, match="im0002.ppm"):
        discover(root, layout="stare")
    c = _chase(tmp_path / "C", n=1)
    (c / "Image_01R_1stHO.png").unlink()
    with pytest.raises(InputError, match="Image_01R_1stHO.png"):
        discover(c, layout="chase")


def test_evaluate_on_stare_and_chase(tiny_model, tmp_path, capsys):
    for root in (_stare(tmp_path / "STARE"), _chase(tmp_path / "CHASE")):
        assert (
            main(
                [
                    "evaluate",
                    str(tiny_model),
                    "--data",
                    str(root),
                    "--backend",
                    "onnxruntime",
                    "--threads",
                    "1",
                    "--no-progress",
                ]
            )
            == 0
        )
        assert " F1 " in capsys.readouterr().out
