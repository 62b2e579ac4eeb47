"""Bootstrap intervals over images (measure/intervals.py): the per-image sufficient statistics reproduce
what pooling the pixels of a resample gives, the paired comparison says "better" only when its interval
excludes 0, and `evaluate` prints and writes them."""

import json
import re

import numpy as np
import pytest
from fundus_edge.measure.intervals import (
    ImageStats,
    auc_from_hist,
    bootstrap,
    from_counts,
    histograms,
    load_stats,
    main,
    paired,
    point,
    record_intervals,
    resample_weights,
)
from fundus_edge.measure.metrics import MetricAccumulator, confusion, roc_auc
from fundus_edge.runtime.errors import InputError


def _images(n=8, size=400, shift=0.0, seed=1):
    """n synthetic (prob, truth) images of varying difficulty; ``shift`` moves vessel scores up."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        truth = rng.random(size) < 0.15 + 0.02 * i
        noise = 0.25 + 0.03 * i
        prob = np.clip(np.where(truth, 0.65 + shift, 0.3) + rng.normal(0, noise, size), 0, 1)
        out.append((prob, truth))
    return out


def _stats(images, threshold=0.5):
    acc = MetricAccumulator(threshold=threshold, per_image_auc=False)
    for k, (p, t) in enumerate(images):
        acc.add(p, t, name=f"{k:02d}")
    return acc


def test_resampled_sums_equal_pooling_the_resampled_pixels():
    images = _images()
    acc = _stats(images)
    stats = acc.image_stats()
    w = resample_weights(stats.n, resamples=5, seed=3)
    for row in w:
        # the resample as pixels: each image repeated as often as it was drawn
        picked = [k for k in range(stats.n) for _ in range(row[k])]
        p = np.concatenate([images[k][0] for k in picked])
        t = np.concatenate([images[k][1] for k in picked])
        tp, fp, fn, tn = confusion(p >= 0.5, t)
        direct = from_counts(np.array([tp, fp, fn, tn]))
        weighted = from_counts(row @ stats.counts)
        for k in ("f1", "iou", "se", "sp"):
            assert weighted[k] == pytest.approx(float(direct[k]), abs=1e-12)
        assert float(auc_from_hist(row @ stats.pos_hist, row @ stats.neg_hist)) == pytest.approx(
            roc_auc(p, t), abs=2e-3
        )


def test_histogram_auc_is_the_auc_of_the_binned_scores_and_close_to_the_exact_one():
    from sklearn.metrics import roc_auc_score

    p, t = _images(n=1, size=5000)[0]
    pos, neg = histograms(p, t, bins=64)
    # the same bins as scores: ties within a bin count half, exactly as roc_auc_score counts them
    z = np.clip(np.log(np.clip(p, 1e-12, 1 - 1e-12)) - np.log1p(-np.clip(p, 1e-12, 1 - 1e-12)), -12, 12)
    binned = np.clip(((z + 12) / 24 * 64).astype(int), 0, 63)
    assert float(auc_from_hist(pos, neg)) == pytest.approx(roc_auc_score(t, binned), abs=1e-12)
    assert float(auc_from_hist(*histograms(p, t))) == pytest.approx(roc_auc_score(t, p), abs=5e-4)


def test_intervals_hold_the_exact_pooled_figures_and_are_reproducible():
    acc = _stats(_images())
    m = acc.pooled()
    iv = acc.intervals(m)
    assert iv["f1"].value == m.f1 and iv["auc"].value == m.auc and iv["iou"].value == m.iou
    for k in ("f1", "iou", "se", "sp", "auc"):
        assert iv[k].low < iv[k].value < iv[k].high and iv[k].n_images == 8 and iv[k].resamples == 2000
    again = acc.intervals(m)
    assert (again["f1"].low, again["f1"].high) == (iv["f1"].low, iv["f1"].high)  # a fixed seed
    other = acc.intervals(m, seed=7)
    assert (other["f1"].low, other["f1"].high) != (iv["f1"].low, iv["f1"].high)
    assert re.fullmatch(r"0\.\d{4} \(95 % CI 0\.\d{3}-0\.\d{3}\)", iv["f1"].text())


def test_identical_images_give_a_zero_width_interval():
    counts = np.tile(np.array([[30, 5, 7, 300]]), (6, 1))
    iv = bootstrap(ImageStats(tuple("abcdef"), counts))
    assert iv["f1"].low == pytest.approx(iv["f1"].value) == pytest.approx(iv["f1"].high)
    assert iv["f1"].value == pytest.approx(60 / 72)


def test_paired_says_better_only_when_the_interval_excludes_zero():
    a = _stats(_images()).image_stats()
    b = _stats(_images(shift=0.15)).image_stats()  # the same truths, vessels scored higher on every image
    c = paired(a, b)
    assert c["f1"].verdict == "better" and c["f1"].diff.low > 0
    assert c["f1"].diff.value == pytest.approx(point(b)["f1"] - point(a)["f1"])
    assert paired(b, a)["f1"].verdict == "worse"
    same = paired(a, a)["f1"]
    assert same.verdict == "not distinguishable" and same.diff.low == same.diff.high == 0.0
    # a difference smaller than its image-to-image spread: each model's F1 moves with the image draw, the
    # paired difference does not claim it
    noisy = _stats(_images(seed=2, shift=0.005)).image_stats()
    assert paired(a, ImageStats(a.names, noisy.counts, noisy.pos_hist, noisy.neg_hist))["f1"].verdict == (
        "not distinguishable"
    )
    with pytest.raises(InputError, match="same images"):
        paired(a, ImageStats(tuple(reversed(a.names)), a.counts, a.pos_hist, a.neg_hist))


def test_one_image_is_refused_and_bad_stats_are_one_line_errors(tmp_path):
    with pytest.raises(InputError, match="at least 2 images"):
        bootstrap(ImageStats(("a",), np.array([[1, 1, 1, 1]])))
    with pytest.raises(InputError, match="expected \\(2, 4\\)"):
        ImageStats(("a", "b"), np.zeros((3, 4), np.int64))
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    with pytest.raises(InputError, match="x.json: no 'image_stats'"):
        load_stats(bad)


def test_evaluate_prints_intervals_and_writes_reusable_per_image_statistics(
    tiny_model, drive_synth, tmp_path, capsys
):
    from fundus_edge.cli import main as cli

    out = tmp_path / "stats" / "tiny.json"
    args = [
        "evaluate",
        str(tiny_model),
        "--data",
        str(drive_synth),
        "--no-progress",
        "--per-image-out",
        str(out),
    ]
    assert cli(args) == 0
    text = capsys.readouterr().out
    m = re.search(r"F1 (0\.\d{4}) \(95 % CI (0\.\d{3})-(0\.\d{3})\)", text)
    assert m and "AUC " in text and "IoU " in text and "2000 resamples" in text
    stats, rec = load_stats(out)
    assert stats.n == rec["images"] == 2 and stats.pos_hist.shape == (2, 1024)
    again = record_intervals(rec, stats)
    assert f"{again['f1'].value:.4f}" == m.group(1) and f"{again['f1'].low:.3f}" == m.group(2)
    assert rec["intervals"]["f1"]["high"] == again["f1"].high
    # nothing the user made is overwritten without --force
    before = out.read_text()
    out.write_text("mine")
    assert cli(args) != 0
    assert "exists (pass --force to overwrite)" in capsys.readouterr().err and out.read_text() == "mine"
    assert cli([*args, "--force"]) == 0 and out.read_text() == before
    capsys.readouterr()
    # the comparison tool reads two such files without the images
    assert main([str(out), str(out)]) == 0
    cmp = capsys.readouterr().out
    assert "f1 " in cmp and "+0.0000" in cmp and "not distinguishable" in cmp
    json.loads(out.read_text())  # one JSON document


def test_a_bench_cell_keeps_per_image_counts_and_its_rows_show_the_interval():
    from fundus_edge.bench.cell import accuracy_intervals
    from fundus_edge.bench.history import front_table
    from fundus_edge.bench.records import BenchRecord
    from fundus_edge.bench.report import _md_cell

    acc = _stats(_images())
    m = acc.pooled()
    fields = accuracy_intervals(acc, m)
    iv = acc.intervals(m)
    assert (
        fields["per_image_counts"] == [list(c) for c in acc.per_image_counts]
        and len(fields["per_image_counts"]) == 8
    )
    assert (fields["f1_low"], fields["f1_high"], fields["auc_low"]) == (
        iv["f1"].low,
        iv["f1"].high,
        iv["auc"].low,
    )
    rec = BenchRecord.from_dict(
        json.loads(
            json.dumps(
                {"variant": "v", "backend": "openvino", "p50_ms": 5.0, "f1": m.f1, "auc": m.auc, **fields}
            )
        )
    )
    assert rec.per_image_counts[0] == tuple(acc.per_image_counts[0])
    assert _md_cell(rec, "f1", "{:.4f}") == f"{m.f1:.4f} ({iv['f1'].low:.3f}-{iv['f1'].high:.3f})"
    assert f"{m.f1:.4f} ({iv['f1'].low:.3f}-{iv['f1'].high:.3f})" in front_table([rec])[-1]
    # an older record without intervals keeps its plain figures
    old = BenchRecord("v", "openvino", p50_ms=5.0, f1=0.8, auc=0.9)
    assert _md_cell(old, "f1", "{:.4f}") == "0.8000" and "| 0.8000 | 0.9000 |" in front_table([old])[-1]
    # one scored image: counts, no interval
    one = MetricAccumulator(per_image_auc=False)
    p, t = _images(n=1)[0]
    one.add(p, t, name="a")
    assert set(accuracy_intervals(one, one.pooled())) == {"per_image_counts"}
