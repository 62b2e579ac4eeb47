import numpy as np
from fundus_edge.runtime.fov import estimate_fov
from fundus_edge.runtime.images import to_rgb_uint8
from fundus_edge.runtime.preprocess import PreprocessConfig, pad_to_multiple, preprocess

from .conftest import synthetic_fundus


def test_preprocess_channels_and_range():
    rgb, _, _ = synthetic_fundus(1)
    x = preprocess(rgb, PreprocessConfig())
    assert x.shape == (4, 72, 68) and x.dtype == np.float32
    assert -1.0 <= x.min() and x.max() <= 1.0
    # channel 0..2 are the scaled RGB planes
    np.testing.assert_allclose(x[0], rgb[..., 0] / 127.5 - 1.0, atol=1e-6)
    assert preprocess(rgb, PreprocessConfig(channels="rgb")).shape[0] == 3
    assert preprocess(rgb, PreprocessConfig(channels="clahe_g")).shape[0] == 1


def test_pad_and_crop_back():
    x = np.random.rand(4, 61, 70).astype(np.float32)
    p, (h, w) = pad_to_multiple(x, 16)
    assert p.shape == (4, 64, 80) and (h, w) == (61, 70)
    np.testing.assert_array_equal(p[:, :h, :w], x)


def test_image_modes():
    rgb, _, _ = synthetic_fundus(2)
    bgr = rgb[..., ::-1]
    np.testing.assert_array_equal(to_rgb_uint8(bgr, "bgr"), rgb)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    np.testing.assert_array_equal(to_rgb_uint8(rgba), rgb)
    grey = to_rgb_uint8(rgb[..., 1])
    assert grey.shape == rgb.shape and (grey[..., 0] == grey[..., 2]).all()
    sixteen = to_rgb_uint8(rgb.astype(np.uint16) * 257)
    np.testing.assert_array_equal(sixteen, rgb)
    f = to_rgb_uint8(rgb.astype(np.float32) / 255.0)
    assert np.abs(f.astype(int) - rgb).max() <= 1


def test_estimated_fov_matches_disc():
    rgb, _, fov = synthetic_fundus(3, 200, 220)
    est = estimate_fov(rgb)
    assert (est == fov).mean() > 0.97


def test_fov_on_a_crop_without_frame_is_everything():
    rgb = np.full((50, 50, 3), 120, np.uint8)
    assert estimate_fov(rgb).all()


def test_runtime_uses_training_preprocessing(tiny_model):
    """The Predictor prepares input with the very function training uses."""
    from fundus_edge.runtime.predictor import Predictor, ScaleOptions

    rgb, _, _ = synthetic_fundus(4)
    p = Predictor.load(tiny_model, backend="onnxruntime", scale=ScaleOptions(rescale=False, crop_fov=False))
    x, hw = p.prepare(rgb)
    whole = preprocess(rgb, p.manifest.preprocess)
    ref, _ = pad_to_multiple(whole, p.manifest.pad_multiple)
    np.testing.assert_array_equal(x, ref)
    assert hw == rgb.shape[:2]
    # Cropped to the FOV's box, the input is a window of the same preprocessed image (CLAHE ran on all of it).
    rgb = synthetic_fundus(4, 72, 120)[0]  # a wide frame: the FOV's box is narrower
    whole = preprocess(rgb, p.manifest.preprocess)
    crop, (h, w) = Predictor.load(
        tiny_model, backend="onnxruntime", scale=ScaleOptions(rescale=False)
    ).prepare(rgb)
    assert w < rgb.shape[1]
    hits = [
        (top, left)
        for top in range(rgb.shape[0] - h + 1)
        for left in range(rgb.shape[1] - w + 1)
        if np.array_equal(crop[:, :h, :w], whole[:, top : top + h, left : left + w])
    ]
    assert len(hits) == 1
