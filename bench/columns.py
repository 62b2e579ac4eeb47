"""The one table of the bench's columns: every field of a ``BenchRecord`` once, in the one order every output
lists them, with its label, unit, format and the outputs that show it.

Outputs: ``md`` the Markdown report's table (results.md, the run pages), ``csv`` results.csv (every field, its
raw value, headed by the field's name so a spreadsheet or a script reads it back), ``html`` the table of
report.html, ``readme`` the Pareto-front table of the README and the run pages. A new record field gets a row
here (tests/test_columns.py fails until it has one), so no output lists its columns on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .records import BenchRecord

OUTPUTS = ("md", "csv", "html", "readme")


@dataclass(frozen=True)
class Column:
    field: str  # the BenchRecord field the column reads
    label: str
    unit: str | None = None  # appended to the label in a heading: "p50 ms"
    fmt: str | None = None  # str.format pattern of a number ("{:.1f}", "{:.0f} %"); None: the value as text
    outputs: frozenset[str] = frozenset({"csv"})
    doc: str = ""  # what the column means (docs/benchmark.md lists it)

    @property
    def heading(self) -> str:
        return f"{self.label} {self.unit}" if self.unit else self.label


def _c(field: str, label: str, unit=None, fmt=None, shown: str = "", doc: str = "") -> Column:
    return Column(field, label, unit, fmt, frozenset({"csv", *shown.split()}), doc)


ALL = "md html readme"
TABLE = "md html"
COLUMNS: tuple[Column, ...] = (
    _c("variant", "variant", shown=ALL, doc="the model variant (bench/variants.py)"),
    _c("backend", "engine", shown=ALL, doc="the engine; a shape row names its input shapes in brackets"),
    _c(
        "precision",
        "precision",
        shown=ALL,
        doc="what ran, read back from the engine; `(asked bf16)` where a request differed",
    ),
    _c("device", "device", shown=TABLE, doc="cpu, or gpu:... for an engine's GPU row"),
    _c("status", "status", shown=TABLE, doc="ok, export_failed, run_failed or wrong_output"),
    _c("params", "params", fmt="{:,}", shown="md", doc="trainable parameters"),
    _c("gflops", "GFLOP", fmt="{:.1f}", shown="md", doc="per image at 584x565 (2 x GMAC)"),
    _c("input_hw", "net input", shown=TABLE, doc="what the engine ran: the FOV's bounding box, padded"),
    _c("size_mb", "size", "MB", "{:.2f}", TABLE, doc="the model files on disk"),
    _c("load_ms", "load", "ms", "{:.0f}", "md", doc="loading the model into the engine"),
    _c(
        "p50_ms",
        "p50",
        "ms",
        "{:.1f}",
        ALL,
        doc="engine call only: the median of the timing rounds' medians; `(unsteady)` see below",
    ),
    _c("spread_pct", "spread", None, "{:.0f} %", TABLE, doc="how far the p50 may be off, %; see below"),
    _c("unsteady", "unsteady", shown="html", doc="the rounds' p50s differ by more than 20 %"),
    _c("p90_ms", "p90", "ms", "{:.1f}", TABLE, doc="engine call, the median of the rounds' p90s"),
    _c("p99_ms", "p99", "ms", "{:.1f}", TABLE, doc="from 100 runs or more (from 30: the slowest run)"),
    _c("e2e_p50_ms", "e2e p50", "ms", "{:.1f}", TABLE, doc="with preprocessing (CLAHE) and postprocessing"),
    _c(
        "throughput_ips",
        "throughput",
        "img/s",
        "{:.2f}",
        TABLE,
        doc="images per second at the batch in brackets (`b4`)",
    ),
    _c("peak_rss_mb", "peak RSS", "MB", "{:.0f}", TABLE, doc="the cell's process at its largest"),
    _c(
        "f1", "F1", fmt="{:.4f}", shown=ALL, doc="DRIVE test, FOV pixels pooled; (low-high) its 95 % interval"
    ),
    _c("f1_low", "F1 95 % CI low", fmt="{:.3f}", shown="html", doc="bootstrap over the test images"),
    _c("f1_high", "F1 95 % CI high", fmt="{:.3f}", shown="html"),
    _c("iou", "IoU", fmt="{:.4f}", shown=TABLE, doc="as F1, with its interval"),
    _c("iou_low", "IoU 95 % CI low", fmt="{:.3f}", shown="html"),
    _c("iou_high", "IoU 95 % CI high", fmt="{:.3f}", shown="html"),
    _c("auc", "AUC", fmt="{:.4f}", shown=ALL, doc="area under the ROC curve, FOV pixels; as F1"),
    _c("auc_low", "AUC 95 % CI low", fmt="{:.3f}", shown="html"),
    _c("auc_high", "AUC 95 % CI high", fmt="{:.3f}", shown="html"),
    _c(
        "agreement",
        "Dice vs ref",
        fmt="{:.4f}",
        shown=TABLE,
        doc="vessel Dice with the reference engine's masks",
    ),
    _c(
        "agreement_float",
        "Dice vs float",
        fmt="{:.4f}",
        shown=TABLE,
        doc="vessel Dice with the float model a quantized variant came from",
    ),
    _c(
        "biomarker_worst",
        "biomarker farthest out",
        shown=TABLE,
        doc="the vessel biomarker farthest from the float fp32 row relative to its tolerance",
    ),
    _c("biomarker_worst_pct", "its drift", "%", "{:.2f}", "html", doc="that biomarker's mean difference"),
    _c("biomarker_flag", "beyond tolerance", shown="html", doc="biomarkers past their tolerance"),
    _c("gflops_per_s", "GFLOP/s", fmt="{:.1f}", shown="md", doc="direct-convolution MACs at the net input"),
    _c("roofline_frac", "roofline", fmt="{:.2f}", shown="md", doc="GFLOP/s over the measured peak"),
    _c("shape", "input shapes", shown="html", doc="dynamic, static per input size, or static HxW"),
    # results.csv only (the reports list errors and notes under the table, one line per kind)
    _c("error", "error"),
    _c("note", "note"),
    _c("precision_requested", "precision asked"),
    _c("format", "format"),
    _c("threads", "threads"),
    _c("first_ms", "first call", "ms"),
    _c("mean_ms", "mean", "ms"),
    _c("std_ms", "std", "ms"),
    _c("batch_size", "batch"),
    _c("acc", "accuracy"),
    _c("se", "sensitivity"),
    _c("sp", "specificity"),
    _c("per_image_counts", "per-image TP, FP, FN, TN"),
    _c("timed_runs", "timed runs"),
    _c("rounds", "rounds"),
    _c("round_p50_ms", "round p50s", "ms"),
    _c("round_spread_pct", "round spread", "%"),
    _c("model_dir", "model folder"),
    _c("model_sha256", "manifest sha256"),
    _c("shape_requested", "shape asked"),
    _c("biomarker_ref", "biomarker reference"),
    _c("biomarker_mad_pct", "biomarker drifts", "%"),
)
BY_FIELD = {c.field: c for c in COLUMNS}


def columns(output: str) -> list[Column]:
    """The columns ``output`` shows, in the table's order."""
    if output not in OUTPUTS:
        raise ValueError(f"unknown output {output!r} (known: {', '.join(OUTPUTS)})")
    return [c for c in COLUMNS if output in c.outputs]


def headings(output: str) -> list[str]:
    """The header ``output`` writes: labels with their unit; results.csv: the field names."""
    return [c.field if output == "csv" else c.heading for c in columns(output)]


def unlisted() -> list[str]:
    """Record fields without a row here (tests/test_columns.py keeps this empty)."""
    return [f.name for f in fields(BenchRecord) if f.name not in BY_FIELD]


def doc_table() -> list[str]:
    """The columns the reports show, as docs/benchmark.md lists them (tests/test_columns.py keeps the page's
    copy equal to this)."""
    out = ["| heading | field | shown in | what it means |", "| --- | --- | --- | --- |"]
    for c in COLUMNS:
        shown = [o for o in OUTPUTS if o in c.outputs and o != "csv"]
        if shown:
            out.append(f"| {c.heading} | `{c.field}` | {', '.join(shown)} | {c.doc or '–'} |")
    return out
