"""Full-resolution input (issue 43): reduced JPEG decoding, masks at the input's size that keep vessel
widths, the pixel cap on the declared size, and the stand-in maker. No timing is asserted here (the
8 MP figures are `python -m fundus_edge.bench.fullres time`, docs/cameras.md)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from fundus_edge.measure.site import read_site
from fundus_edge.measure.standin import StandIn, make_standin
from fundus_edge.runtime.errors import InputError
from fundus_edge.runtime.images import (
    ImageTooLarge,
    header,
    jpeg_reduction,
    read_binary,
    read_decoded,
    read_image,
)
from fundus_edge.runtime.scale import DEFAULT_UPSAMPLE, scale_factor, upsample_box, upsample_prob

from tests.conftest import write_drive

MODEL = Path(__file__).resolve().parents[1] / "models" / "s2d-fast"  # FOV diameter 540


def _frame(w: int, h: int, diameter: int) -> np.ndarray:
    """A black frame with a reddish disc of ``diameter`` and a few dark vessels across it."""
    rgb = np.zeros((h, w, 3), np.uint8)
    cv2.circle(rgb, (w // 2, h // 2), diameter // 2, (170, 80, 40), -1)
    for k in range(5):
        y = h // 2 - diameter // 3 + k * diameter // 6
        cv2.line(rgb, (w // 2 - diameter // 3, y), (w // 2 + diameter // 3, y + 40), (90, 35, 20), 6)
    return rgb


def _jpeg(path: Path, rgb: np.ndarray, quality: int = 90) -> Path:
    assert cv2.imwrite(str(path), rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return path


def test_reduction_is_the_largest_that_keeps_the_network_scale():
    assert jpeg_reduction(2336, 540) == 4  # 8 MP: 584 px left, 1/8 would give 292
    assert jpeg_reduction(4000, 540) == 4  # 500 px at 1/8 is below 540
    assert jpeg_reduction(4400, 540) == 8
    assert jpeg_reduction(1100, 540) == 2
    assert jpeg_reduction(1000, 540) == 1  # less than twice the scale: read whole
    assert jpeg_reduction(4000, None) == 1


def test_reduced_decode_picks_its_factor_from_the_header(tmp_path):
    rgb = _frame(3504, 2336, 2160)
    f = _jpeg(tmp_path / "big.jpg", rgb)
    assert header(f, str(f)) == (3504, 2336, "JPEG")
    dec = read_decoded(f, need=540)
    assert dec.reduction == 4 and dec.full_hw == (2336, 3504) and dec.rgb.shape == (584, 876, 3)
    # the reduced decode is the image, smaller: close to averaging the full decode over 4 x 4 blocks
    full = read_image(f)
    area = cv2.resize(full, (876, 584), interpolation=cv2.INTER_AREA)
    assert np.abs(area.astype(int) - dec.rgb.astype(int)).mean() < 2.0
    # other formats are read whole (and resized once, by the Predictor)
    p = tmp_path / "big.png"
    cv2.imwrite(str(p), rgb[..., ::-1])
    assert read_decoded(p, need=540).reduction == 1


def test_cap_applies_to_the_declared_size_not_the_reduced_one(tmp_path):
    f = _jpeg(tmp_path / "big.jpg", _frame(3504, 2336, 2160))
    with pytest.raises(ImageTooLarge, match=r"3504 x 2336.*--max-pixels"):
        read_decoded(f, need=540, max_pixels=2_000_000)  # the reduced decode (0.5 MP) would fit
    assert read_decoded(f, need=540, max_pixels=9_000_000).reduction == 4


def test_scale_factor_snaps_to_exact_reductions():
    assert scale_factor(4 * 538, 540) == 0.25  # 4x DRIVE: whole 4 x 4 blocks, the native grid
    assert scale_factor(2 * 545, 540) == 0.5
    assert scale_factor(3 * 600, 540) == pytest.approx(0.3)  # 10 % off 1/3: resized exactly
    assert scale_factor(530, 540) == 1.0


def _diagonal_vessel(n: int = 160, sigma: float = 1.1) -> np.ndarray:
    """A network-scale probability map of one diagonal vessel, a soft (Gaussian) profile as a model gives."""
    yy, xx = np.mgrid[:n, :n].astype(np.float32)
    dist = np.abs(yy - 0.6 * xx - 20) / np.sqrt(1 + 0.36)
    return (0.95 * np.exp(-0.5 * (dist / sigma) ** 2) + 0.02).astype(np.float32)


def _width(mask: np.ndarray) -> float:
    """Mean width across the vessel in the mask's own pixels: area over length (columns 20 % to 80 % of the
    image, away from its ends)."""
    n = mask.shape[1]
    cols = slice(n // 5, 4 * n // 5)
    return float(mask[:, cols].sum()) / ((cols.stop - cols.start) * np.sqrt(1 + 0.36))


@pytest.mark.parametrize("sigma", [0.6, 1.1, 1.5])
def test_default_upsampling_keeps_a_vessels_width_within_a_pixel_at_4x(sigma):
    t = 0.441
    p = _diagonal_vessel(sigma=sigma)
    net = _width(p >= t)
    up = upsample_prob(p, (4 * p.shape[0], 4 * p.shape[1]), DEFAULT_UPSAMPLE, t)
    full = _width(up >= t)
    assert 1 < net < 5  # thin vessels, 1.5-4 network pixels across
    assert abs(full - 4 * net) <= 1.0, (full, 4 * net)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_mask_upsampling_thresholds_to_the_enlarged_network_mask(scale):
    t = 0.441
    p = _diagonal_vessel(64)
    shape = (scale * 64, scale * 64)
    up = upsample_prob(p, shape, "mask", t)
    enlarged = cv2.resize((p >= t).astype(np.float32), shape[::-1], interpolation=cv2.INTER_LINEAR) >= 0.5
    assert up.dtype == np.float32 and up.shape == shape
    assert np.array_equal(up >= t, enlarged)
    assert 0.0 <= float(up.min()) and float(up.max()) <= 1.0


def test_unknown_upsampling_is_a_one_line_error():
    from fundus_edge.runtime.predictor import ScaleOptions

    with pytest.raises(InputError, match="unknown upsampling 'lanczos'"):
        upsample_prob(np.zeros((4, 4), np.float32), (8, 8), "lanczos", 0.5)
    with pytest.raises(InputError, match="unknown upsampling 'lanczos'; nearest: .*; list them all with"):
        ScaleOptions(upsample="lanczos")


@pytest.fixture(scope="module")
def predictor():
    from fundus_edge.runtime.predictor import Predictor

    return Predictor.load(MODEL, backend="onnxruntime", threads=1, precision=None)


def test_full_resolution_mask_has_the_inputs_size(predictor, tmp_path):
    f = _jpeg(tmp_path / "big.jpg", _frame(3504, 2336, 2160))
    r = predictor.predict(f, fov="auto")
    assert r.mask.shape == r.prob.shape == r.fov.shape == (2336, 3504)
    assert r.input_hw[0] <= 600 and r.scale == 1.0  # decoded at 1/4: the FOV is already at the scale
    # a FOV mask file at the input's size is accepted and used at that size
    fov = np.zeros((2336, 3504), np.uint8)
    cv2.circle(fov, (1752, 1168), 1080, 255, -1)
    cv2.imwrite(str(tmp_path / "fov.png"), fov)
    r2 = predictor.predict(f, fov=tmp_path / "fov.png")
    assert r2.mask.shape == (2336, 3504) and not r2.mask[fov == 0].any()
    # the whole decode gives the same mask but for a few edge pixels
    from fundus_edge.runtime.predictor import Predictor, ScaleOptions

    whole = Predictor.load(
        MODEL, backend="onnxruntime", threads=1, precision=None, scale=ScaleOptions(reduced_decode=False)
    )
    r3 = whole.predict(f, fov=tmp_path / "fov.png")
    assert r3.mask.shape == r2.mask.shape and (r3.mask != r2.mask).mean() < 0.01


def test_a_fov_smaller_than_the_frame_is_decoded_again_larger(predictor, tmp_path):
    # 2400 px frame: the header promises 1/4 (600 px), but the disc is 1100 px: 275 px at 1/4
    f = _jpeg(tmp_path / "small-disc.jpg", _frame(2400, 2400, 1100))
    r = predictor.predict(f, fov="auto")
    assert r.mask.shape == (2400, 2400)
    assert r.scale == 1.0  # decoded again at 1/2: 550 px, the training scale, not 275 px enlarged 2x


def test_predict_refuses_an_image_over_the_cap_by_its_header(predictor, tmp_path):
    f = _jpeg(tmp_path / "big.jpg", _frame(3504, 2336, 2160))
    with pytest.raises(ImageTooLarge, match="big.jpg"):
        predictor.predict(f, fov="auto", max_pixels=4_000_000)


def test_standin_enlarges_images_and_labels(tmp_path):
    root = write_drive(tmp_path / "drive", n_train=1, n_test=2)
    out = tmp_path / "x4"
    assert make_standin(root, out, StandIn(4, blur=0.8, jpeg=92)) == 2
    site = read_site(out)
    src = read_site(root, "test")
    assert site.labelled and [s.name for s in site.images] == [s.name for s in src.images]
    img = read_image(site.images[0].image)
    assert site.images[0].image.suffix == ".jpg"
    lab = cv2.imread(str(site.images[0].label), cv2.IMREAD_UNCHANGED)
    lab0 = read_binary(src.images[0].label)
    h, w = read_image(src.images[0].image).shape[:2]
    assert img.shape[:2] == (4 * h, 4 * w) and lab.shape == (4 * h, 4 * w)
    assert set(np.unique(lab)) <= {0, 255}  # nearest: still binary
    assert np.array_equal(lab[::4, ::4] > 0, lab0) and np.array_equal(lab[3::4, 3::4] > 0, lab0)
    with pytest.raises(InputError, match="--force"):
        make_standin(root, out, StandIn(4))
    with pytest.raises(InputError, match="--scale"):
        StandIn(0)


@pytest.mark.parametrize("method", ["mask", "linear", "nearest"])
def test_enlarging_the_fov_box_alone_gives_the_whole_maps_values(method):
    rng = np.random.default_rng(1)
    for box in [(10, 50, 20, 70), (0, 60, 0, 80), (3, 57, 3, 77)]:
        p = np.zeros((60, 80), np.float32)
        t, b, left, r = box
        # values about the threshold: vessels' edges inside the box, and the box's own edge where it is high
        p[t:b, left:r] = cv2.GaussianBlur(rng.random((b - t, r - left)).astype(np.float32), (0, 0), 1) * 0.9
        for s in (2, 4):
            part = upsample_box(p, (60 * s, 80 * s), box, method, 0.441)
            whole = upsample_prob(p, (60 * s, 80 * s), method, 0.441)
            np.testing.assert_allclose(part, whole, atol=1e-6)
            assert np.array_equal(part >= 0.441, whole >= 0.441)


def test_predict_files_writes_full_size_masks_of_a_reduced_decode(predictor, tmp_path):
    from fundus_edge.runtime.batch import predict_files

    f = _jpeg(tmp_path / "big.jpg", _frame(3504, 2336, 2160))
    [o] = predict_files(predictor, [f], tmp_path / "out", save_prob=True, progress=False)
    assert o.error is None
    for kind in ("mask", "prob"):
        assert cv2.imread(str(tmp_path / "out" / f"big_{kind}.png"), cv2.IMREAD_UNCHANGED).shape == (
            2336,
            3504,
        )
    [o] = predict_files(predictor, [f], tmp_path / "out2", progress=False, max_pixels=4_000_000)
    assert o.error and "big.jpg" in o.error and "--max-pixels" in o.error and "\n" not in o.error


def test_standin_cli_refuses_to_write_over_a_folder_in_one_line(tmp_path, capsys):
    from fundus_edge.measure.standin import main

    root = write_drive(tmp_path / "drive", n_train=1, n_test=1)
    out = tmp_path / "x2"
    assert main(["--data", str(root), "--scale", "2", "--out", str(out)]) == 0
    assert len(list((out / "images").iterdir())) == 1 and (out / "mask").is_dir()
    assert main(["--data", str(root), "--scale", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "--force" in err and "\n" not in err
