"""bench/html_report.py: report.html from a bench record, self-contained, tolerant of fields it does not
know."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fundus_edge.bench.records import BenchRecord
from fundus_edge.runtime.errors import InputError
from fundus_edge.runtime.images import write_png

from tests.conftest import synthetic_fundus

pytest.importorskip("plotly", reason="plotly (the report's chart) is not installed")

from fundus_edge.bench.html_report import write_report  # noqa: E402
from fundus_edge.bench.report import agreement_overlay  # noqa: E402

META = {
    "date": "2026-12-04 12:00",
    "machine": {"cpu": "Test CPU", "cores": 2, "isa_flags": ["avx2", "avx512_vnni"]},
    "threads": 2,
    "image_size": "584x565",
    "images": "synthetic",
    "peak": {"method": "matmul", "fp32_gflops": 90.0, "bf16_gflops": 300.0, "int8_gops": 700.0},
    "versions": {"onnxruntime": "1.0"},
    "wall_s": 120.0,
    "guards": ["openvino int8: 3 convolutions kept in float"],
}


UNSTEADY_NOTE = (
    "unsteady: round p50s 30.1-41.0 ms differ by 31 % of the median (limit 20 %);"
    " the machine's speed drifted, compare this row with care"
)


def make_record(folder: Path) -> Path:
    """A results.json with the sweep's shapes: scored rows on two engines, an untimed failure, a fast wrong
    row, the seed U-Net (no F1), a field this report does not know; and overlay PNGs beside it."""
    rows = [
        BenchRecord("small", "onnxruntime", "fp32", p50_ms=120.0, f1=0.824, iou=0.70, auc=0.98),
        BenchRecord("small", "openvino", "bf16", p50_ms=35.0, f1=0.8249, iou=0.70, auc=0.98, agreement=0.998),
        BenchRecord("small-pruned", "openvino", "fp32", p50_ms=25.0, f1=0.816, iou=0.69, auc=0.975),
        BenchRecord("default", "onnxruntime", "fp32", p50_ms=400.0, f1=0.83, iou=0.71, auc=0.981),
        BenchRecord(
            "small-int8",
            "onnxruntime",
            "int8",
            status="wrong_output",
            p50_ms=10.0,
            f1=0.70,
            error="vessel Dice 0.910 with the reference engine's masks",
        ),
        BenchRecord("fp32", "paddle", status="run_failed", error="EngineRunError: boom"),
        BenchRecord("seed-unet", "onnxruntime", "fp32", p50_ms=1800.0),
    ]
    results = [r.to_dict() for r in rows]
    results[0]["energy_mj"] = 41.5  # a field a newer sweep may add
    # the timing rounds' guard, with the note the run writes beside another note (bench/runner.py)
    results[1].update(spread_pct=31.0, unsteady=True, note="pir failed (boom); ran onnx; " + UNSTEADY_NOTE)
    path = folder / "results.json"
    path.write_text(json.dumps({"meta": META, "results": results}))
    rgb, lab, fov = synthetic_fundus(1, 120, 110)
    for v in ("small", "small-pruned", "default", "seed-unet"):
        write_png(folder / f"overlay_{v}.png", agreement_overlay(rgb, lab, lab, fov))
    return path


def test_report_is_self_contained_with_every_part(tmp_path):
    out = write_report(make_record(tmp_path))
    assert out == tmp_path / "report.html"
    page = out.read_text()
    assert not re.search(r"<(script|img|link)[^>]+(src|href)=\"?https?:", page), "the page must open offline"
    assert "Plotly.newPlot(" in page  # the chart, drawn by the inlined library
    assert page.count("<tr class=") == 7
    # the front of (p50, F1) over scored ok rows: small-pruned 25 ms, small bf16 35 ms, default 400 ms
    starred = re.findall(r'<tr class="front[^"]*"><td data-sort="([^"]+)"', page)
    assert sorted(starred) == ["default", "small", "small-pruned"]
    # overlays of the front's variants only, inline
    assert page.count('<img src="data:image/png;base64,') == 3 and "overlay of seed-unet" not in page
    assert "true positive" in page and "false negative" in page
    assert "not measured" in page  # the seed row, at the F1 its tutorial reported
    assert "energy_mj" in page and "41.5000" in page  # unknown field: an extra column
    assert (
        "openvino int8: 3 convolutions kept in float" in page
        and "EngineRunError: boom" in page
        and "vessel Dice 0.910" in page
    )
    assert "small / openvino bf16: round p50s 30.1-41.0 ms differ by 31 % of the median" in page
    assert "small / openvino bf16: pir failed (boom); ran onnx</li>" in page
    assert "avx512_vnni" in page and "INT8 700.0 GOP/s" in page


def test_report_from_the_cli_and_bad_records(tmp_path, capsys):
    from fundus_edge.cli import main

    rec = make_record(tmp_path)
    assert main(["bench", "--report", str(rec)]) == 0
    assert (tmp_path / "report.html").is_file() and "report.html" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="bad.json: not a bench record"):
        write_report(bad)
    bad.write_text(json.dumps({"rows": []}))
    with pytest.raises(InputError, match="no 'results' list"):
        write_report(bad)
    assert main(["bench", "--report", str(tmp_path / "missing.json")]) == 2


def test_report_without_scored_rows(tmp_path):
    (tmp_path / "results.json").write_text(
        json.dumps(
            {
                "meta": {},
                "results": [BenchRecord("x", "onnxruntime", status="run_failed", error="E: e").to_dict()],
            }
        )
    )
    page = write_report(tmp_path / "results.json").read_text()
    assert "no scored rows" in page and "No overlays" in page


def test_report_leads_with_the_answer_and_lists_each_note_once(tmp_path):
    page = write_report(make_record(tmp_path)).read_text()
    order = [
        page.index('<section id="machine"><dl><dt>CPU</dt><dd>Test CPU'),
        page.index('<section id="targets">'),
        page.index('id="chart"'),
        page.index('<table id="front">'),
        page.index('<table id="results">'),
        page.index('<section id="notes">'),
    ]
    assert order == sorted(order), "machine, targets, chart, the front's rows, then the table and the notes"
    assert "Fastest row with F1 &gt;= 0.82: small-pruned" not in page  # 0.816 is short of it
    assert "Fastest row with F1 &gt;= 0.82: small on openvino (bf16), p50 35.0 ms" in page
    # each note once, under its kind; the table holds no note or error cell
    assert page.count("round p50s 30.1-41.0") == 1 and page.count("pir failed (boom)") == 1
    assert page.count("EngineRunError: boom") == 1
    notes = page[page.index('<section id="notes">') :]
    assert re.findall(r"<summary>([^<]*)</summary>", notes) == [
        "1 checks the sweep recorded",
        "2 of 7 cells not ok (wrong_output: the agreement checks failed)",
        "1 of 7 rows unsteady: the machine&#x27;s speed drifted during the run, so their p50s are not steady"
        " figures; compare them with care",
        "1 of 7 rows with a note",
    ]
    # the table scrolls in its own frame, the variant column fixed
    assert re.search(r"\.tablewrap \{[^}]*overflow-x: auto", page)
    assert re.search(r"\.tablewrap td:first-child \{[^}]*position: sticky; left: 0", page)
