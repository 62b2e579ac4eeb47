"""The bench's sweep and its reports: records, reports, vessel Dice, INT8 rows held to their float model,
biomarker drift, HTML, ledger rows and shape rows (the cells one at a time: test_bench_cells.py; timing
rounds and the headline: test_bench_timing.py)."""

import json
import re
import tempfile

import pytest
from fundus_edge.bench.records import BenchRecord
from fundus_edge.bench.report import markdown, pareto_front
from fundus_edge.bench.runner import BenchConfig
from fundus_edge.bench.sweep import run_bench


def test_pareto_front():
    pts = [(10, 0.80), (5, 0.79), (20, 0.82), (12, 0.79), (30, 0.81)]
    assert pareto_front(pts) == [1, 0, 2]


def test_roofline_counts_the_pixels_the_network_ran():
    from fundus_edge.bench.sweep import pixel_ratio

    model = {"gmac_at": "584x565 (padded to 584x568)"}
    assert pixel_ratio("560x560", model) == pytest.approx(560 * 560 / (584 * 568))
    assert pixel_ratio("584x568", model) == 1.0
    assert pixel_ratio(None, model) == 1.0 and pixel_ratio("560x560", {}) == 1.0


def test_markdown_reports_failures_and_requested_precision():
    recs = [
        BenchRecord("fp32", "openvino", precision="fp32", precision_requested="bf16", p50_ms=10.0, f1=0.8),
        BenchRecord("int8", "*", status="export_failed", error="boom"),
    ]
    meta = {
        "machine": {"cpu": "X", "cores": 2, "isa_flags": ["avx2"]},
        "threads": 2,
        "images": "d",
        "image_size": "584x565",
        "date": "t",
        "peak": {},
    }
    md = markdown(recs, meta)
    assert "fp32 (asked bf16)" in md and "int8 / *: export_failed: boom" in md


@pytest.fixture(scope="module")
def tiny_bench(tiny_model, drive_synth, tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    shipped = root / "shipped"
    shipped.mkdir()
    (shipped / "default").symlink_to(tiny_model)
    import shutil

    from fundus_edge.measure.ledger import LEDGER_ENV, REPO_LEDGER

    mine = shutil.copytree(tiny_model, root / "elsewhere" / "mine")  # a model folder given with --models
    cfg = BenchConfig(
        data=str(drive_synth),
        out=root / "out",
        quick=True,
        models_dir=root / "models",
        shipped=shipped,
        variants=("fp32", "int8", "int8-nncf", "default-int8", "default-pruned", "nonexistent"),
        finetune_iters=4,
        extra=(mine,),
        shape_variant="fp32",
    )
    committed = REPO_LEDGER.read_bytes() if REPO_LEDGER.is_file() else None
    # A module fixture runs before conftest's per-test scratch ledger: this one is its own.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(LEDGER_ENV, str(root / "test-reads.csv"))
        recs, meta = run_bench(cfg, progress=False, command="fundus-edge bench (tiny)")
    assert (REPO_LEDGER.read_bytes() if REPO_LEDGER.is_file() else None) == committed, (
        "the bench wrote the committed ledger"
    )
    assert not (root / "test-reads.csv").exists(), "the bench wrote the ledger $FUNDUS_EDGE_LEDGER names"
    meta["_ledger"] = root / "out" / "test-reads.csv"  # the run's own reads, beside its record (issue 42)
    return root / "out", recs, meta


def test_sweep_records_every_cell(tiny_bench):
    out, recs, meta = tiny_bench
    by = {
        (r.variant, r.backend, r.precision_requested): r for r in recs if not r.shape_requested
    }  # shape rows: their own test
    for e in ("onnxruntime", "openvino", "paddle"):
        r = by[("fp32", e, None)]
        assert r.status == "ok", r.error
        assert (
            r.p50_ms > 0
            and r.p90_ms >= r.p50_ms
            and r.f1 is not None
            and r.auc is not None
            and r.peak_rss_mb > 0
        )
        assert r.params > 0 and r.gflops > 0 and r.size_mb > 0 and r.gflops_per_s > 0
        h, w = map(int, r.input_hw.split("x"))  # the synthetic DRIVE images are 72x68
        assert 0 < h <= 72 and 0 < w <= 72
    from fundus_edge.runtime.cpu import has_bf16

    assert (("fp32", "openvino", "bf16") in by) == has_bf16()
    assert by[("int8", "onnxruntime", None)].precision == "int8"
    # <shipped model>-int8: PTQ of that shipped model, built by the sweep like the default's variants
    assert (
        by[("default-int8", "onnxruntime", None)].status == "ok"
        and by[("default-int8", "onnxruntime", None)].precision == "int8"
    )
    # <shipped model>-pruned: that shipped model pruned and fine-tuned like `pruned`
    pr = by[("default-pruned", "onnxruntime", None)]
    assert (
        pr.status == "ok" and pr.precision == "fp32" and pr.params < by[("fp32", "onnxruntime", None)].params
    )
    # FP32 engines agree: same F1 through every engine
    f1s = {round(by[("fp32", e, None)].f1, 3) for e in ("onnxruntime", "openvino", "paddle")}
    assert len(f1s) == 1
    assert by[("nonexistent", "*", None)].status == "export_failed"
    # --models DIR: a model folder of its own, benchmarked beside the variants on every engine, same columns
    for e in ("onnxruntime", "openvino", "paddle"):
        r = by[("mine", e, None)]
        assert r.status == "ok" and round(r.f1, 3) in f1s and r.gflops > 0
    assert meta["machine"]["cores"] >= 1 and meta["versions"]["onnxruntime"]
    # Every quantized cell is checked against its float model (vessel Dice over every test image).
    nncf = by[("int8-nncf", "openvino", None)]
    assert (
        nncf.format == "ir"
        and nncf.precision == "int8+fp32"
        and nncf.agreement_float is not None
        and nncf.agreement is None
    )
    assert ("int8-nncf", "onnxruntime", None) not in by  # ONNX Runtime reads no OpenVINO IR
    for e in ("onnxruntime", "openvino", "paddle"):
        assert (
            by[("int8", e, None)].agreement_float is not None
            and by[("fp32", e, None)].agreement_float is None
        )
    # The size column is the files the engine read: the ONNX file alone is smaller than the whole folder.
    assert (
        by[("fp32", "onnxruntime", None)].size_mb
        < by[("fp32", "paddle", None)].size_mb + by[("fp32", "onnxruntime", None)].size_mb
    )
    # p99 from a handful of runs would be the slowest run: not reported
    assert all(r.p99_ms is None for r in recs if r.timed_runs and r.timed_runs < 100)
    # Scored cells time the accuracy pass (every test image once, then in turn for the window) and later
    # rounds at least min(images, 5) calls within the window.
    _, _, meta = tiny_bench
    n_test = int(re.match(r"DRIVE test \((\d+) images", meta["images"])[1])
    least = n_test + min(n_test, 5) * (meta["rounds"] - 1)
    assert all(r.timed_runs >= least for r in recs if r.status == "ok" and r.f1 is not None)
    # The machine's speed was probed before round 1, after it and after round 2.
    probe = meta["speed_probe"]
    assert len(probe["ms"]) >= 3 and all(v > 0 for v in probe["ms"]) and probe["spread_pct"] is not None
    assert "OpenVINO" in probe["method"] and probe["reference_runs"] >= 0
    # --quick times in two rounds, the accuracy pass the first: every ok row has both rounds' p50s.
    assert meta["rounds"] == 2 and len(meta["round_s"]) == 1
    for r in (r for r in recs if r.status == "ok"):
        assert (
            r.rounds == 2
            and len(r.round_p50_ms) == 2
            and r.spread_pct is not None
            and r.unsteady == (r.round_spread_pct > 20)
            and r.spread_pct >= r.round_spread_pct
        )
        assert min(r.round_p50_ms) <= r.p50_ms <= max(r.round_p50_ms)
    # Each build was timed; the one that could not be made is an error, not a build.
    assert set(meta["build_s"]) == {"fp32", "int8", "int8-nncf", "default-int8", "default-pruned"} and all(
        s > 0 for s in meta["build_s"].values()
    )
    assert meta["build_wall_s"] <= meta["wall_s"] and len(meta["cell_s"]) == len(
        [r for r in recs if r.backend != "*"]
    )


def test_a_build_from_a_replaced_shipped_model_is_stale(tiny_model, tmp_path):
    """build/models/<name> records the manifest hash of the shipped model it came from; once that model is
    replaced (same folder, new manifest) the sweep must not bench the old build."""
    import shutil

    import yaml
    from fundus_edge.bench.variants import stale_build
    from fundus_edge.runtime.manifest import sha256

    shipped, built = tmp_path / "shipped", tmp_path / "models"
    shutil.copytree(tiny_model, shipped / "small")
    shutil.copytree(tiny_model, built / "small-int8")
    cfg = BenchConfig(data=None, out=tmp_path / "out", models_dir=built, shipped=shipped)

    def record(sha):
        m = built / "small-int8" / "manifest.yaml"
        d = yaml.safe_load(m.read_text())
        d["source"]["model"] = {
            "name": "small",
            "variant": "fp32",
            "manifest_sha256": sha,
            "path": "models/small",
        }
        m.write_text(yaml.safe_dump(d, sort_keys=False))

    record(sha256(shipped / "small" / "manifest.yaml"))
    assert stale_build(cfg, "small-int8", "derived") == ""
    record("0" * 64)
    assert "built from an older" in stale_build(cfg, "small-int8", "derived")
    assert stale_build(cfg, "seed-unet", "seed") == ""


def test_sweep_writes_reports(tiny_bench):
    out, recs, _ = tiny_bench
    data = json.loads((out / "results.json").read_text())
    assert len(data["results"]) == len(recs) and "peak" in data["meta"]
    assert (out / "results.csv").read_text().startswith("variant,backend")
    assert (
        "| variant |" in (out / "results.md").read_text()
        and "cells" in (out / "results.md").read_text().split("| variant |")[0]
    )
    assert (out / "pareto.png").stat().st_size > 1000
    assert list(out.glob("overlay_*.png")) and (out / "fastest_vs_most_accurate.png").stat().st_size > 1000


def test_vessel_dice_catches_a_cell_that_misses_a_sixth_of_the_vessels():
    import numpy as np
    from fundus_edge.bench.cell import vessel_dice
    from fundus_edge.bench.sweep import MIN_AGREEMENT

    rng = np.random.default_rng(0)
    ref = [rng.random((60, 60)) < 0.12 for _ in range(3)]  # ~12 % vessels, as in DRIVE
    missing = []
    for m in ref:
        m2 = m.copy()
        idx = np.flatnonzero(m2)
        m2.flat[idx[: len(idx) // 6]] = False
        missing.append(m2)
    no_fov = [None] * len(ref)
    assert vessel_dice(ref, ref, no_fov) == 1.0
    all_pixels = np.mean([(a == b).mean() for a, b in zip(ref, missing, strict=False)])
    assert all_pixels >= 0.975  # the old check (all pixels of one image, >= 0.98) sat on its edge
    assert vessel_dice(ref, missing, no_fov) < MIN_AGREEMENT


def test_vessel_dice_counts_only_pixels_inside_the_fov():
    """Spurious pixels in the dark ring outside the FOV are scored nowhere else, so they do not count."""
    import numpy as np
    from fundus_edge.bench.cell import vessel_dice

    rng = np.random.default_rng(1)
    fov = np.zeros((60, 60), bool)
    fov[10:50, 10:50] = True
    ref = (rng.random((60, 60)) < 0.12) & fov
    ring = ref.copy()
    ring[:5, :] = True  # 300 spurious vessel pixels outside the FOV
    assert vessel_dice([ref], [ring], [fov]) == 1.0
    assert vessel_dice([ref], [ring], [None]) < 0.9
    inside = ref.copy()
    inside[20:25, 20:40] = ~inside[20:25, 20:40]  # a disagreement inside the FOV still counts
    assert vessel_dice([ref], [inside], [fov]) < 1.0
    with pytest.raises(ValueError):
        vessel_dice([ref], [ref], [fov[:30]])


def test_finalize_marks_disagreeing_cells_wrong(tiny_model):
    from fundus_edge.bench.sweep import finalize

    base = {"backend": "openvino", "status": "ok", "p50_ms": 5.0, "input_hw": "64x64"}
    raw = [
        {**base, "variant": "fp32", "backend": "onnxruntime", "f1": 0.80},
        {**base, "variant": "fp32", "f1": 0.80, "agreement": 0.90},  # engines disagree
        {**base, "variant": "int8-nncf", "f1": 0.797, "agreement_float": 0.99},  # fine
        {**base, "variant": "int8-ort", "f1": 0.70, "agreement_float": 0.99},  # F1 far below fp32's
        {**base, "variant": "int8", "f1": 0.795, "agreement_float": 0.80},
    ]  # masks far from the float model's
    dirs = {v: tiny_model for v in ("fp32", "int8-nncf", "int8-ort", "int8")}
    st = [r.status for r in finalize(raw, dirs, {}, {"fp32_gflops": 100.0})]
    assert st == ["ok", "wrong_output", "ok", "wrong_output", "wrong_output"]


def test_int8_rows_are_held_to_their_float_model_as_the_project_ships_them(tiny_model):
    """An INT8 row more than 0.005 F1 below its float model's reference row, or with a vessel Dice
    against the float model's masks below 0.98, is wrong_output, and the row says why."""
    from fundus_edge.bench.sweep import finalize

    base = {"backend": "openvino", "status": "ok", "p50_ms": 5.0, "input_hw": "64x64"}
    raw = [
        {**base, "variant": "small", "f1": 0.8160},
        {**base, "variant": "wnet", "f1": 0.8160},
        {
            **base,
            "variant": "small-int8",
            "f1": 0.8115,
            "agreement_float": 0.985,
        },  # -0.0045, Dice 0.985: ok
        {
            **base,
            "variant": "small-int8-nncf",
            "f1": 0.8105,
            "agreement_float": 0.985,
        },  # -0.0055: too far below
        {
            **base,
            "variant": "small-int8-ort",
            "f1": 0.8158,
            "agreement_float": 0.979,
        },  # masks too far from the float model's
        {**base, "variant": "wnet-int8-nncf", "f1": 0.8100, "agreement_float": 0.970},
    ]  # both, both reasons
    dirs = {v["variant"]: tiny_model for v in raw}
    recs = finalize(raw, dirs, {}, {})
    assert [r.status for r in recs] == ["ok", "ok", "ok", "wrong_output", "wrong_output", "wrong_output"]
    assert "F1 0.8105 vs 0.8160 for the float model (-0.0055" in recs[3].error and "Dice" not in recs[3].error
    assert (
        "vessel Dice 0.9790 with the float model's masks (inside the FOV" in recs[4].error
        and "F1" not in recs[4].error
    )
    assert "Dice 0.9700" in recs[5].error and "F1 0.8100" in recs[5].error


def test_agreement_overlay_colours_tp_fp_fn():
    import numpy as np
    from fundus_edge.bench.report import FN_RGB, FP_RGB, TP_RGB, agreement_overlay

    rgb = np.zeros((1, 4, 3), np.uint8)
    pred, lab = np.array([[1, 1, 0, 0]], bool), np.array([[1, 0, 1, 0]], bool)
    out = agreement_overlay(rgb, pred, lab, None)
    assert [int(np.argmax(out[0, i])) for i in range(3)] == [
        int(np.argmax(c)) for c in (TP_RGB, FP_RGB, FN_RGB)
    ]
    assert out[0, 3].sum() == 0


# -- issue 31: biomarker drift per cell; issue 30: report.html; issue 32: ledger rows;
# -- issue 33: static vs dynamic shapes --
def _vessel_masks(n: int = 2, size: int = 160):
    """(masks, fovs): a few thick curves inside a disc, so every biomarker is defined."""
    import cv2
    import numpy as np

    yy, xx = np.mgrid[:size, :size]
    fov = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 2 - 4) ** 2
    masks = []
    for k in range(n):
        m = np.zeros((size, size), np.uint8)
        rng = np.random.default_rng(k)
        for _ in range(5):
            pts = (np.cumsum(rng.normal(0, 14, (8, 2)), axis=0) + size / 2).astype(np.int32)
            cv2.polylines(m, [pts], False, 1, thickness=int(rng.integers(2, 4)))
        masks.append(m.astype(bool) & fov)
    return masks, [fov] * n


def test_biomarker_drift_flags_a_changed_mask_and_reuses_identical_ones(tmp_path):
    import cv2
    import numpy as np
    from fundus_edge.bench.biomarker_drift import add_drift
    from fundus_edge.bench.cell import save_masks
    from fundus_edge.measure.tolerance import TOLERANCE_PCT

    masks, fovs = _vessel_masks()
    np.savez(tmp_path / "images.npz", **{f"fov_{i:03d}": f for i, f in enumerate(fovs)})
    fat = [
        cv2.dilate(m.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & f
        for m, f in zip(masks, fovs, strict=False)
    ]  # every vessel 2 px wider

    def cell(key, variant, ms, precision, **kw):
        save_masks(str(tmp_path / f"{key.replace('/', '_')}.npz"), ms)
        return {
            "_key": key,
            "variant": variant,
            "status": "ok",
            "f1": 0.8,
            "precision": precision,
            "_masks": str(tmp_path / f"{key.replace('/', '_')}.npz"),
            **kw,
        }

    raw = [
        cell("small/onnxruntime", "small", masks, "fp32", _is_ref=True),
        cell(
            "small/openvino", "small", masks, "fp32"
        ),  # the same masks: nothing moves, nothing computed twice
        cell(
            "small-int8/onnxruntime", "small-int8", fat, "int8", _is_ref=True
        ),  # compared with its float model, not itself
        cell("other/onnxruntime", "other", fat, "fp32", _is_ref=True),
    ]  # its own reference: no row to compare
    cost = add_drift(raw, tmp_path / "images.npz", workers=1)
    ref, same, q, other = raw
    assert cost == {"images": 4, "reused": 2, "cells": 2}
    assert "biomarker_mad_pct" not in ref and "biomarker_mad_pct" not in other
    assert (
        same["biomarker_ref"] == "small/onnxruntime"
        and set(same["biomarker_mad_pct"].values()) == {0.0}
        and same["biomarker_flag"] == []
    )
    assert q["biomarker_ref"] == "small/onnxruntime"
    # Wider vessels: density and widths move far past a quarter of the inter-observer difference.
    density = (
        100
        * sum(abs(int(a.sum()) - int(b.sum())) for a, b in zip(fat, masks, strict=False))
        / sum(int(b.sum()) for b in masks)
    )
    assert q["biomarker_mad_pct"]["vessel_density"] == pytest.approx(density, rel=1e-3)
    assert {"vessel_density", "width_mean_px"} <= set(q["biomarker_flag"])
    assert all(q["biomarker_mad_pct"][n] > TOLERANCE_PCT[n] for n in q["biomarker_flag"])
    worst = q["biomarker_worst"]
    assert q["biomarker_worst_pct"] == q["biomarker_mad_pct"][worst]
    assert q["biomarker_mad_pct"][worst] / TOLERANCE_PCT[worst] == max(
        v / TOLERANCE_PCT[n] for n, v in q["biomarker_mad_pct"].items()
    )
    # A float model's bf16 row is compared with its own fp32 reference; a reference that is not fp32 is none.
    raw[0]["precision"] = "bf16"
    for r in raw[1:]:
        r.pop("biomarker_ref", None)
    assert add_drift(raw, tmp_path / "images.npz", workers=1)["cells"] == 0


def test_markdown_and_html_mark_rows_beyond_biomarker_tolerance(tmp_path):
    pytest.importorskip("plotly")
    from fundus_edge.bench.html_report import write_report
    from fundus_edge.bench.report import write_json

    recs = [
        BenchRecord("small", "onnxruntime", "fp32", p50_ms=10.0, f1=0.82),
        BenchRecord(
            "small-int8",
            "onnxruntime",
            "int8",
            p50_ms=5.0,
            f1=0.81,
            biomarker_ref="small/onnxruntime",
            biomarker_mad_pct={"vessel_density": 3.5, "width_mean_px": 0.4},
            biomarker_worst="vessel_density",
            biomarker_worst_pct=3.5,
            biomarker_flag=("vessel_density",),
        ),
        BenchRecord(
            "small",
            "openvino",
            "bf16",
            p50_ms=8.0,
            f1=0.82,
            biomarker_ref="small/onnxruntime",
            biomarker_mad_pct={"vessel_density": 0.1},
            biomarker_worst="vessel_density",
            biomarker_worst_pct=0.1,
            biomarker_flag=(),
        ),
    ]
    meta = {
        "machine": {"cpu": "X", "cores": 2, "isa_flags": []},
        "threads": 2,
        "images": "d",
        "image_size": "584x565",
        "date": "t",
        "peak": {},
    }
    md = markdown(recs, meta)
    assert "| vessel_density 3.5 % **beyond tol.** |" in md and "| vessel_density 0.1 % |" in md
    assert (
        "small-int8 / onnxruntime int8: biomarkers beyond tolerance against small/onnxruntime: "
        "vessel_density 3.50 % (tolerance 2.47)" in md
    )
    write_json(tmp_path / "results.json", recs, meta)
    page = write_report(tmp_path / "results.json").read_text()
    rows = re.findall(r'<tr class="([^"]*)">', page)
    assert ["biomarker-beyond" in c for c in rows] == [False, True, False]
    assert (
        "small-int8 / onnxruntime int8: biomarkers beyond tolerance against small/onnxruntime: "
        "vessel_density 3.50 %" in page
    )


def test_bench_writes_report_html_ledger_rows_and_biomarker_drift(tiny_bench):
    from fundus_edge.measure.ledger import count_lineage, identify, read_ledger

    out, recs, meta = tiny_bench
    page = (out / "report.html").read_text()
    assert page.count("<tr class=") == len(recs) and "biomarker farthest out" in page and "unsteady" in page
    # One report row per scored variant, its reference engine's F1; reports are not counted as reads.
    rows = read_ledger(meta["_ledger"])
    scored = {
        r.variant for r in recs if r.f1 is not None and r.status in ("ok", "wrong_output")
    }  # a wrong row read the images too
    assert sorted(r.note.split(":")[0] for r in rows) == sorted(f"bench variant {v}" for v in scored)
    for row in rows:
        v = row.note.split(":")[0].removeprefix("bench variant ")
        first = next(
            r for r in sorted(recs, key=lambda r: r.status != "ok") if r.variant == v and r.f1 is not None
        )
        assert (
            row.why == "report"
            and row.f1 == f"{first.f1:.4f}"
            and row.command == "fundus-edge bench (tiny)"
            and row.data.endswith(" test")
        )
        assert (
            f"from {first.backend} {first.precision}" in row.note
            and row.weights_sha256 == identify(row.scored.replace("$TMPDIR", tempfile.gettempdir()))[1]
        )
    assert count_lineage(rows, rows[0].lineage).reads == 0
    # Biomarker drift: every scored row but a float model's reference row is compared with that reference.
    by = {(r.variant, r.backend, r.precision_requested, r.shape_requested): r for r in recs}
    assert by[("fp32", "onnxruntime", None, None)].biomarker_mad_pct is None
    for key in (
        ("fp32", "openvino", None, None),
        ("fp32", "paddle", None, None),
        ("int8", "onnxruntime", None, None),
        ("int8-nncf", "openvino", None, None),
    ):
        r = by[key]
        assert (
            r.biomarker_ref == "fp32/onnxruntime" and r.biomarker_mad_pct and r.biomarker_flag is not None
        ), key
    assert (
        meta["biomarker_masks"]["cells"] >= 4
        and meta["biomarker_s"] >= 0
        and "biomarker drift" in (out / "results.md").read_text()
    )


def test_static_and_dynamic_shape_rows(tiny_bench):
    out, recs, meta = tiny_bench
    rows = {r.backend: r for r in recs if r.shape_requested}
    own = {
        r.backend: r
        for r in recs
        if r.variant == "fp32" and not r.shape_requested and not r.precision_requested
    }
    assert set(rows) == {"onnxruntime", "openvino"} and all(
        r.variant == "fp32" and r.status == "ok" for r in rows.values()
    )
    h, w = map(int, own["onnxruntime"].input_hw.split("x"))
    assert rows["onnxruntime"].shape == f"static {h}x{w} (batch 1)" and own["onnxruntime"].shape == "dynamic"
    assert rows["openvino"].shape == "dynamic" and own["openvino"].shape == "static per input size"
    assert rows["onnxruntime"].throughput_ips is None  # batch 1 only
    assert all(r.agreement is not None and r.agreement > 0.95 for r in rows.values())
    assert "paddle" in meta["shape_rows"]["skipped"] and meta["shape_rows"]["rows"] == {
        "onnxruntime": "static",
        "openvino": "dynamic",
    }
    md = (out / "results.md").read_text()
    assert (
        "onnxruntime (static" in md
        and "Static against dynamic input shapes" in md
        and "paddle skipped:" in md
    )


def test_bench_ledger_rows_only_with_labels(tiny_model, tmp_path):
    from fundus_edge.bench.ledger_rows import record_test_reads
    from fundus_edge.measure.ledger import ledger_path, read_ledger

    recs = [
        BenchRecord("small", "paddle", "fp32", status="run_failed"),
        BenchRecord("small", "openvino", "fp32", f1=0.8123, auc=0.97),
        BenchRecord("small", "onnxruntime", "fp32", f1=0.8124, auc=0.971),
        BenchRecord("seed-unet", "onnxruntime", "fp32", p50_ms=9.0),
    ]
    dirs = {"small": tiny_model, "seed-unet": tiny_model}
    assert record_test_reads(recs, dirs, "/data/DRIVE", has_labels=False, command="c") == []
    assert not ledger_path().exists()
    rows = record_test_reads(recs, dirs, "/data/DRIVE", has_labels=True, command="c")
    assert read_ledger(ledger_path()) == rows and len(rows) == 1  # the unscored seed U-Net is no read
    assert (
        rows[0].f1 == "0.8123"
        and rows[0].auc == "0.9700"
        and "engines scored: openvino fp32, onnxruntime fp32" in rows[0].note
    )
    assert "docs/test-reads.csv" not in str(ledger_path())  # conftest: a scratch ledger
