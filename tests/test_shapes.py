"""Network input shapes: images of one camera share one shape (engines that build per shape, OpenVINO,
compile once), the likely shape is built at load, and the self-test times goldens without rebuilding."""

from __future__ import annotations

import numpy as np
import pytest
from fundus_edge.runtime.predictor import Predictor, ScaleOptions, crop_step, expected_hw


def _disc(h: int, w: int, cy: int, cx: int, r: int) -> np.ndarray:
    """A bright retina disc of radius r on a black frame."""
    yy, xx = np.mgrid[:h, :w]
    img = np.zeros((h, w, 3), np.uint8)
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    img[inside] = (150, 70, 40)
    return img


def test_box_slides_inside_instead_of_shrinking(tiny_model):
    p = Predictor.load(tiny_model, backend="onnxruntime", scale=ScaleOptions(rescale=False))
    k = p.manifest.pad_multiple
    centred = p.prepare(_disc(120, 130, 60, 62, 40))[0].shape
    # The same disc nearer the bottom right: its box, rounded up to the step, would cross the edges
    # (it used to be cut there, giving another shape).
    edge = p.prepare(_disc(120, 130, 70, 75, 40))[0].shape
    assert edge == centred
    assert centred[1] % crop_step(k) == 0 and centred[2] % crop_step(k) == 0
    # and the prediction still covers the whole disc at the image's size
    r = p.predict(_disc(120, 130, 70, 75, 40))
    assert r.prob.shape == (120, 130) and r.prob[119, 129] >= 0.0


def test_expected_hw_is_what_a_fov_at_training_scale_gives(tiny_model):
    p = Predictor.load(tiny_model, backend="onnxruntime")
    d = p.train_diameter
    assert d, "the tiny model records its FOV diameter"
    hw = expected_hw(p.manifest, p.scale)
    r, k, margin = int(d - 1) // 2, p.manifest.pad_multiple, p.scale.crop_margin
    side = r + margin + 20
    side += (-(side - r - margin)) % k  # the box's top-left corner falls on the grid: no alignment slop
    img = _disc(2 * side, 2 * side, side, side, r)
    assert tuple(p.prepare(img)[0].shape[-2:]) == hw
    assert expected_hw(p.manifest, ScaleOptions(crop_fov=False)) is None


def test_openvino_builds_the_expected_shape_at_load(tiny_model):
    pytest.importorskip("openvino")
    p = Predictor.load(tiny_model, backend="openvino")
    c = p.manifest
    hw = expected_hw(c, p.scale)
    assert [s[-2:] for s in p.engine.built_shapes] == [hw]


def test_selftest_times_each_golden_in_one_stretch():
    from fundus_edge.deploy.selftest import time_goldens

    seen: list[int] = []

    class Fake:
        def predict(self, img, fov=None):
            seen.append(img)
            return type("R", (), {"engine_ms": 1.0})()

    t = time_goldens(Fake(), [0, 1, 2], runs=10)
    assert t.runs == 10
    # one untimed call then 4 timed ones per golden, goldens never interleaved
    assert seen == [0] * 5 + [1] * 5 + [2] * 5


def test_a_fov_a_little_wider_keeps_the_shape_built_at_load(tiny_model):
    """A FOV whose margins, aligned to the network's grid, would spill past the built size keeps that size
    with a narrower margin (the image would otherwise bring a second shape, and a build)."""
    p = Predictor.load(tiny_model, backend="onnxruntime")
    hw = expected_hw(p.manifest, p.scale)
    r, k, margin = int(p.train_diameter - 1) // 2, p.manifest.pad_multiple, p.scale.crop_margin
    side = r + margin + 20
    side += (-(side - r - margin) - 1) % k  # the box's corner one pixel past the grid: k - 1 of slop
    x = p.prepare(_disc(2 * side, 2 * side, side, side, r))[0]
    assert tuple(x.shape[-2:]) == hw
    r = p.predict(_disc(2 * side, 2 * side, side, side, r))
    assert r.input_hw == hw
