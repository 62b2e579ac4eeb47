"""The site report: `fundus-edge evaluate MODEL|BUNDLE --data SITE` (fundus_edge/site_report.py,
measure/site_score.py, fundus_edge/site_pages.py) on a tiny synthetic STARE-like site."""

from __future__ import annotations

import csv
import json
import os

import cv2
import numpy as np
import pytest
from fundus_edge.measure.intervals import ImageStats, bootstrap
from fundus_edge.measure.metrics import confusion
from fundus_edge.runtime.fov import estimate_fov
from fundus_edge.runtime.images import read_binary, read_image
from fundus_edge.runtime.predictor import Predictor
from PIL import Image

from fundus_edge.cli import main

from .test_deploy import opts, row, write_record
from .test_site import write_stare


def _f1(counts) -> float:
    tp, fp, fn, _ = np.sum(counts, axis=0)
    return 2 * tp / (2 * tp + fp + fn)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """STARE as distributed (no FOV masks), 4 images; the second observer is the first one's label thinned
    where it is thick (an erosion), so the human reference is below 1 and computable here."""
    root = write_stare(tmp_path_factory.mktemp("site") / "STARE", n=4, second=False)
    (root / "labels-vk").mkdir(exist_ok=True)
    for p in sorted((root / "labels-ah").iterdir()):
        lab = read_binary(p)
        thin = cv2.erode(lab.astype(np.uint8), np.ones((2, 2), np.uint8)).astype(bool)
        Image.fromarray(thin.astype(np.uint8) * 255).save(root / "labels-vk" / p.name.replace(".ah.", ".vk."))
    return root


def _cases(site):
    for img in sorted((site / "images").iterdir()):
        rgb = read_image(img)
        lab = read_binary(site / "labels-ah" / f"{img.stem}.ah.pgm")
        sec = read_binary(site / "labels-vk" / f"{img.stem}.vk.pgm")
        yield img.stem, rgb, lab, sec, estimate_fov(rgb)


def _evaluate(tiny_model, site, report, *extra):
    return main(
        ["evaluate", str(tiny_model), "--data", str(site), "--report", str(report), "--threads", "1"]
        + ["--no-progress", *extra]
    )


def test_site_report_prints_intervals_and_the_second_observer(tiny_model, site, tmp_path, capsys):
    assert _evaluate(tiny_model, site, tmp_path / "rep") == 0
    out = capsys.readouterr().out
    # The figures, recomputed here: the model through the same Predictor, the observer from the files.
    pred = Predictor.load(tiny_model, threads=1, precision=None)
    model, human = [], []
    for _, rgb, lab, sec, fov in _cases(site):
        model.append(confusion(pred.predict(rgb, fov=fov).prob >= pred.threshold, lab, fov))
        human.append(confusion(sec, lab, fov))
    assert f"F1 {_f1(model):.4f} (95 % CI " in out
    assert f"second observer against the first (human reference): F1 {_f1(human):.4f} (95 % CI " in out
    assert 0.5 < _f1(human) < 1.0  # the thinned labels: a reference that is not the labels themselves
    for fig in ("AUC", "IoU", "Se", "Sp"):
        assert f"  {fig} 0." in out or f"  {fig} 1." in out
    assert "FOV derived from each image" in out and "model - second observer: F1" in out
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert rep["split"] == "all" and rep["images"] == 4
    assert rep["model"]["pooled"]["f1"] == pytest.approx(_f1(model))


def test_report_files_hold_the_tables_overlays_and_statistics(tiny_model, site, tmp_path):
    folder = tmp_path / "rep"
    assert _evaluate(tiny_model, site, folder, "--worst", "2") == 0
    overlays = sorted((folder / "overlays").iterdir())
    assert [p.name.split("-")[:2] for p in overlays] == [["worst", "1"], ["worst", "2"]]
    rep = json.loads((folder / "report.json").read_text())
    f1s = {n: m["f1"] for n, m in rep["model"]["per_image"].items()}
    worst = sorted(f1s, key=f1s.get)[:2]
    assert [w["name"] for w in rep["worst"]] == worst
    # Each overlay is its image's size, with the TP / FP / FN colours drawn on it.
    img = read_image(site / "images" / f"{worst[0]}.ppm")
    ov = read_image(overlays[0])
    assert ov.shape == img.shape and not np.array_equal(ov, img)
    # The per-image statistics give back the printed intervals (a paired comparison can be made later).
    stats = ImageStats.from_dict(rep["model"]["image_stats"])
    again = bootstrap(stats, {"f1": rep["model"]["pooled"]["f1"]})
    assert again["f1"].low == pytest.approx(rep["model"]["intervals"]["f1"]["low"])
    assert rep["second_observer"]["intervals"]["f1"]["n_images"] == 4
    assert set(rep["biomarkers"]["model_vs_first"]) >= {"vessel_density", "fractal_dimension"}
    assert rep["biomarkers"]["second_vs_first"]["vessel_density"]["mard"] > 0
    md = (folder / "report.md").read_text()
    assert "## Per image" in md and all(f"| {n} |" in md for n in f1s)
    assert "magenta: false positive" in md and "](overlays/worst-1-" in md
    assert "### The second observer against the first (human reference)" in md
    page = (folder / "report.html").read_text()
    assert page.count('<img src="data:image/png;base64,') == 2 and "Plotly" in page and 'id="results"' in page


def test_held_out_read_goes_to_the_ledger_and_a_report_is_not_overwritten(tiny_model, site, tmp_path, capsys):
    folder = tmp_path / "rep"
    assert _evaluate(tiny_model, site, folder, "--why", "report") == 0
    with open(os.environ["FUNDUS_EDGE_LEDGER"]) as fh:
        rows = list(csv.DictReader(fh))
    from fundus_edge.measure.ledger import portable

    assert (
        rows[-1]["data"] == portable(f"{site} all") and rows[-1]["why"] == "report"
    )  # as the ledger names it
    assert (
        rows[-1]["f1"] == f"{json.loads((folder / 'report.json').read_text())['model']['pooled']['f1']:.4f}"
    )
    capsys.readouterr()
    assert _evaluate(tiny_model, site, folder) == 2
    err = capsys.readouterr().err.strip()
    assert "exists (pass --force to overwrite)" in err and len(err.splitlines()) == 1
    with open(os.environ["FUNDUS_EDGE_LEDGER"]) as fh:
        assert len(list(csv.DictReader(fh))) == len(rows)  # refused before reading: no second read
    assert _evaluate(tiny_model, site, folder, "--force") == 0


def test_unlabelled_and_unmatched_sites_are_one_line(tiny_model, site, tmp_path, capsys):
    bare = tmp_path / "bare"
    (bare / "images").mkdir(parents=True)
    for p in (site / "images").iterdir():
        (bare / "images" / p.name).write_bytes(p.read_bytes())
    assert _evaluate(tiny_model, bare, tmp_path / "r1") == 2
    err = capsys.readouterr().err.strip()
    assert "no labels: a site without labels serves for calibration, not scoring" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "r1").exists()
    extra = tmp_path / "extra"
    write_stare(extra, n=2, second=False)
    (extra / "labels-ah" / "im0009.ah.pgm").write_bytes((extra / "labels-ah" / "im0001.ah.pgm").read_bytes())
    assert _evaluate(tiny_model, extra, tmp_path / "r2") == 2
    err = capsys.readouterr().err.strip()
    assert "files that do not pair up: labels im0009.ah.pgm (without an image)" in err
    assert len(err.splitlines()) == 1


def test_a_site_folder_gets_the_report_by_default(tiny_model, site, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["evaluate", str(tiny_model), "--data", str(site), "--no-progress", "--worst", "0", "--json"]
    assert main(args) == 0
    folder = tmp_path / "build" / "site-report" / f"{tiny_model.name}-STARE"
    assert (folder / "report.md").is_file() and not any((folder / "overlays").iterdir())
    printed = json.loads(capsys.readouterr().out)
    assert printed["report"] == str(folder.relative_to(tmp_path)) and "image_stats" not in printed["model"]
    assert set(printed["second_observer"]["intervals"]) == {"f1", "iou", "se", "sp"}  # a label has no AUC


def test_drive_root_asks_for_the_report_and_has_no_second_observer(tiny_model, drive_synth, tmp_path, capsys):
    assert main(["evaluate", str(tiny_model), "--data", str(drive_synth), "--no-progress"]) == 0
    assert "second observer" not in capsys.readouterr().out  # DRIVE's plain evaluation, as before
    assert _evaluate(tiny_model, drive_synth, tmp_path / "rep") == 0
    out = capsys.readouterr().out
    assert "FOV mask files" in out and "second observer: none in this site" in out
    assert json.loads((tmp_path / "rep" / "report.json").read_text())["split"] == "test"
    args = ["evaluate", str(tiny_model), "--data", str(drive_synth), "--precision", "fp32", "--no-progress"]
    assert main(args) == 2  # the plain evaluation runs the model's own precision: said, not ignored
    err = capsys.readouterr().err.strip()
    assert "--precision is an option of the site report" in err and len(err.splitlines()) == 1


def test_a_bundle_runs_its_own_engine(tiny_model, drive_synth, site, tmp_path, capsys):
    from fundus_edge.deploy.pack import pack
    from fundus_edge.deploy.pick import read_record

    rec = read_record(write_record(tmp_path / "results.json", [row("onnxruntime", 40.0, 0.85)], drive_synth))
    bundle = pack("tiny/onnxruntime", rec, opts(tmp_path, tiny_model)).folder
    # auto would pick OpenVINO for the bundle's ONNX file; the bundle says ONNX Runtime
    if Predictor.load(bundle, threads=1).backend == "onnxruntime":
        pytest.skip("OpenVINO not installed: auto and the bundle would run the same engine")
    capsys.readouterr()
    assert _evaluate(bundle, site, tmp_path / "rep") == 0
    out = capsys.readouterr().out
    assert "via onnxruntime (cpu, fp32), the bundle's engine and precision" in out
    assert _evaluate(bundle, site, tmp_path / "rep2", "--backend", "openvino") == 2
    err = capsys.readouterr().err.strip()
    assert "a bundle runs onnxruntime; --backend openvino conflicts with it" in err
    assert len(err.splitlines()) == 1
