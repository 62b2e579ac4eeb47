"""bench/columns.py: the one column table. Each output (Markdown, CSV, HTML, the README's front) is built from
a small synthetic record and its header compared with the table's headings for that output; every record
field has a row; engine labels and markers come from the engine table."""

from __future__ import annotations

import csv
import html
import json
import re
from pathlib import Path

import pytest
from fundus_edge.bench.columns import COLUMNS, OUTPUTS, columns, headings, unlisted
from fundus_edge.bench.records import BenchRecord
from fundus_edge.runtime.engines.table import ENGINE_TABLE

ROOT = Path(__file__).resolve().parents[1]
META = {
    "date": "2026-12-05 09:00",
    "machine": {"cpu": "Test CPU", "cores": 2, "isa_flags": ["avx2"]},
    "threads": 2,
    "image_size": "584x565",
    "images": "synthetic",
    "peak": {"method": "matmul", "fp32_gflops": 90.0},
}
RECORDS = [
    BenchRecord("fp32", "openvino", "fp32", p50_ms=60.0, f1=0.8223, f1_low=0.813, f1_high=0.831, auc=0.979),
    BenchRecord("fp32", "litert", "fp32", p50_ms=44.4, f1=0.8221, auc=0.9788, unsteady=True, spread_pct=31.0),
    BenchRecord(
        "small", "openvino", "bf16", p50_ms=15.0, f1=0.8160, auc=0.976, batch_size=4, throughput_ips=9.5
    ),
    BenchRecord("int8", "paddle", status="run_failed", error="EngineRunError: boom"),
]


def test_every_record_field_has_one_row_and_each_output_some_columns():
    assert unlisted() == []
    names = [c.field for c in COLUMNS]
    assert len(names) == len(set(names))
    for out in OUTPUTS:
        assert columns(out)[0].field == "variant"
    assert headings("csv") == names  # results.csv: every field, by its name, in the table's order
    with pytest.raises(ValueError, match="unknown output 'pdf'"):
        columns("pdf")


def test_markdown_header_is_the_tables(tmp_path):
    from fundus_edge.bench.report import markdown

    lines = markdown(RECORDS, META).splitlines()
    head = next(line for line in lines if line.startswith("| variant |"))
    assert head == "| " + " | ".join(headings("md")) + " |"
    row = lines[lines.index(head) + 2]
    assert row.count(" | ") == len(columns("md")) - 1
    assert "| 0.8223 (0.813-0.831) |" in row  # F1 with its interval


def test_csv_header_is_the_tables(tmp_path):
    from fundus_edge.bench.report import write_csv

    write_csv(tmp_path / "results.csv", RECORDS)
    with open(tmp_path / "results.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == headings("csv") and len(rows) == 1 + len(RECORDS)
    back = dict(zip(rows[0], rows[2], strict=True))
    assert back["backend"] == "litert" and float(back["f1"]) == 0.8221


def _record_file(folder: Path) -> Path:
    path = folder / "results.json"
    path.write_text(json.dumps({"meta": META, "results": [r.to_dict() for r in RECORDS]}))
    return path


def test_html_header_is_the_tables(tmp_path):
    pytest.importorskip("plotly", reason="plotly (the report's chart) is not installed")
    from fundus_edge.bench.html_report import write_report

    page = write_report(_record_file(tmp_path)).read_text()
    thead = re.search(r'<table id="results"><thead><tr>(.*?)</tr></thead>', page).group(1)
    assert [html.unescape(h) for h in re.findall(r"<th[^>]*>(.*?)</th>", thead)] == headings("html")
    front = re.search(r'<table id="front"><thead><tr>(.*?)</tr></thead>', page).group(1)
    assert [html.unescape(h) for h in re.findall(r"<th[^>]*>(.*?)</th>", front)] == headings("readme")


def test_readme_front_header_is_the_tables_and_litert_has_a_column(tmp_path):
    from fundus_edge.readme_tables import render

    text = (
        "<!-- generated: shipped-models -->\n<!-- /generated -->\n"
        "<!-- generated: bench-summary -->\n<!-- /generated -->\n"
    )
    out = render(text, ROOT / "models", _record_file(tmp_path)).splitlines()
    assert "| " + " | ".join(headings("readme")) + " |" in out
    models = next(line for line in out if line.startswith("| model |"))
    cells = [c.strip() for c in models.strip("|").split("|")]
    litert = cells.index(ENGINE_TABLE["litert"].label)
    default = next(line for line in out if line.startswith("| `default` |"))
    assert [c.strip() for c in default.strip("|").split("|")][litert] == "44.4 ms"
    small = next(line for line in out if line.startswith("| `small` |"))
    assert [c.strip() for c in small.strip("|").split("|")][litert] == "–"  # no litert row for small


def test_engine_markers_come_from_the_engine_table():
    pytest.importorskip("plotly", reason="plotly (the report's chart) is not installed")
    from fundus_edge.bench.html_report import marker_symbol

    for name, e in ENGINE_TABLE.items():
        assert marker_symbol({"backend": name, "precision": "fp32"}) == e.marker
        assert marker_symbol({"backend": name, "precision": "int8"}) == e.marker + "-open"


def test_the_same_record_renders_the_same_f1_as_its_committed_page():
    """The newest committed run page was written before the column table: each row's F1 cell is the same."""
    from fundus_edge.bench.history import latest_record, load_record
    from fundus_edge.bench.report import md_table

    record = latest_record()
    page = record.with_suffix(".md").read_text().splitlines()
    records, _ = load_record(record)

    def f1s(lines: list[str]) -> list[str]:
        head = next(
            i for i, line in enumerate(lines) if line.startswith("| variant | engine | precision | device")
        )
        at = [c.strip() for c in lines[head].strip("|").split("|")].index("F1")
        rows = [line for line in lines[head + 2 :] if line.startswith("| ")]
        return [[c.strip() for c in line.strip("|").split("|")][at] for line in rows]

    old = f1s(page)
    assert len(old) == len(records) and old == f1s(md_table(records))


def test_docs_list_the_tables_columns():
    """docs/benchmark.md's column list is doc_table()'s output: it names each column as the reports do."""
    from fundus_edge.bench.columns import doc_table

    page = (ROOT / "docs" / "benchmark.md").read_text()
    assert "\n".join(doc_table()) in page
