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
    from fundus_edge.bench.report import md_cell

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
    assert md_cell(rec, "f1", "{:.4f}") == f"{m.f1:.4f} ({iv['f1'].low:.3f}-{iv['f1'].high:.3f})"
    assert f"{m.f1:.4f} ({iv['f1'].low:.3f}-{iv['f1'].high:.3f})" in front_table([rec])[-1]
    # an older record without intervals keeps its plain figures
    old = BenchRecord("v", "openvino", p50_ms=5.0, f1=0.8, auc=0.9)
    assert md_cell(old, "f1", "{:.4f}") == "0.8000" and "| 0.8000 | 0.9000 |" in front_table([old])[-1]
    # one scored image: counts, no interval
    one = MetricAccumulator(per_image_auc=False)
    p, t = _images(n=1)[0]
    one.add(p, t, name="a")
    assert set(accuracy_intervals(one, one.pooled())) == {"per_image_counts"}


def _perturb_samples(n=8, size=48, seed=3):
    """n synthetic fundus-like samples: a label, a full FOV and an RGB image whose green channel carries the
    vessels with noise of varying strength (so images differ in difficulty)."""
    from types import SimpleNamespace

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = rng.random((size, size)) < 0.2
        green = np.where(label, 170, 90) + rng.normal(0, 30 + 8 * i, (size, size))
        rgb = np.stack([np.full((size, size), 120.0), green, np.full((size, size), 60.0)], -1)
        rgb = np.clip(rgb, 0, 255).astype(np.uint8)
        out.append(SimpleNamespace(rgb=rgb, label=label, fov=np.ones((size, size), bool), name=f"{i:02d}"))
    return out


def test_a_perturbations_drop_is_a_paired_interval_against_clean():
    from fundus_edge.measure.robustness import perturbed_cells, score_perturbations

    samples = _perturb_samples()
    rows = score_perturbations(lambda rgb, fov: rgb[..., 1] / 255.0, samples, ["jpeg30", "grey"], 0.5)
    clean, jpeg, grey = rows
    assert clean.drop is None and clean.intervals["f1"].value == clean.metrics.f1
    for r in (jpeg, grey):
        want = paired(clean.image_stats, r.image_stats, ("f1", "auc"))
        d = r.drop["f1"].diff
        assert (
            d.value == pytest.approx(r.metrics.f1 - clean.metrics.f1, abs=1e-12) == pytest.approx(r.delta_f1)
        )
        assert (d.low, d.high) == (want["f1"].diff.low, want["f1"].diff.high)
        assert r.intervals["f1"].low <= r.metrics.f1 <= r.intervals["f1"].high
        # the pairing matters: images differ in difficulty, so independent draws for the two rows (what an
        # unpaired comparison does) give a wider interval of the difference
        wa, wb = resample_weights(8, seed=0), resample_weights(8, seed=1)
        ind = from_counts(wb @ r.image_stats.counts)["f1"] - from_counts(wa @ clean.image_stats.counts)["f1"]
        lo, hi = np.percentile(ind, [2.5, 97.5])
        assert d.high - d.low < hi - lo
    # JPEG at quality 30 blurs the noisy green channel: a change, and the cells carry both intervals
    f1, delta, auc = perturbed_cells(jpeg)
    assert re.fullmatch(r"0\.\d{4} \(95 % CI 0\.\d{3}-[01]\.\d{3}\)", f1)
    assert re.fullmatch(r"[+-]0\.\d{4} \(95 % CI [+-]0\.\d{4} to [+-]0\.\d{4}\)", delta)
    assert perturbed_cells(clean)[1] == "+0.0000 (reference)"
    # a model that ignores the image loses nothing under any perturbation: a zero-width paired interval
    same = score_perturbations(lambda rgb, fov: samples[0].label * 0.9 + 0.05, samples, ["grey"], 0.5)
    assert (same[1].drop["f1"].diff.low, same[1].drop["f1"].diff.high) == (0.0, 0.0)


def test_a_perturbed_report_keeps_counts_only_and_they_give_the_same_intervals():
    from fundus_edge.measure.robustness import score_perturbations

    from fundus_edge.evaluate import PerturbReport

    rows = score_perturbations(lambda rgb, fov: rgb[..., 1] / 255.0, _perturb_samples(), ["jpeg30"], 0.5)
    d = PerturbReport("m", "d", "test", 8, 0.5, "x", True, tuple(rows)).to_dict(with_stats=True)
    row = d["rows"][1]
    assert set(row["image_stats"]) == {"names", "counts"}  # no histograms: kept small
    st = ImageStats.from_dict(row["image_stats"])
    again = paired(ImageStats.from_dict(d["rows"][0]["image_stats"]), st, ("f1",))["f1"].diff
    assert (row["drop"]["f1"]["low"], row["drop"]["f1"]["high"]) == (again.low, again.high)
    assert (
        "image_stats"
        not in PerturbReport("m", "d", "test", 8, 0.5, "x", True, tuple(rows)).to_dict()["rows"][0]
    )


def test_two_models_are_compared_under_each_perturbation_on_the_same_images(tmp_path, capsys):
    from fundus_edge.measure.robustness import main as robustness_main
    from fundus_edge.measure.robustness import score_perturbations

    from fundus_edge.evaluate import PerturbReport

    samples = _perturb_samples()
    files, scored = [], []
    for name, fn in (
        ("a", lambda rgb, fov: rgb[..., 1] / 255.0),
        ("b", lambda rgb, fov: rgb[..., 1] / 230.0),
    ):
        rows = score_perturbations(fn, samples, ["grey"], 0.5)
        rec = PerturbReport(name, "d", "test", 8, 0.5, "x", True, tuple(rows)).to_dict(with_stats=True)
        files.append(tmp_path / f"{name}.json")
        files[-1].write_text(json.dumps(rec))
        scored.append(rows)
    assert robustness_main([str(f) for f in files]) == 0
    out = capsys.readouterr().out.splitlines()
    c = paired(scored[0][1].image_stats, scored[1][1].image_stats, ("f1",))["f1"]
    assert out[1].startswith(f"grey: {c.text()}; drop B - drop A ") and out[0].startswith("clean: f1 ")
    from fundus_edge.measure.robustness import compare_drops

    d = compare_drops(*({r.perturbation: r.image_stats for r in rows} for rows in scored))["grey"]
    want = (scored[1][1].metrics.f1 - scored[1][0].metrics.f1) - (
        scored[0][1].metrics.f1 - scored[0][0].metrics.f1
    )
    assert d.value == pytest.approx(want) and d.low <= d.value <= d.high
    assert c.verdict in ("better", "worse")  # a brighter reading moves F1 on every image: the pair tells it
    files[0].write_text(json.dumps({"rows": [{"perturbation": "clean"}]}))
    assert robustness_main([str(f) for f in files]) == 2
    assert "not an `evaluate --perturb --per-image-out` file" in capsys.readouterr().err
