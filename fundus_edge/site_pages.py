"""The site report's pages, report.md and report.html, from a SiteReport (fundus_edge/site_report.py).

The HTML page reuses the bench page's machinery (bench/html_report.py: its style, sortable-table script and
inlined PNGs; bench/report.py: the TP / FP / FN overlay colours) and an offline Plotly chart."""

from __future__ import annotations

import math
from pathlib import Path

from fundus_edge.bench.html_report import STYLE, TABLE_SCRIPT, esc, png_data
from fundus_edge.bench.report import FN_RGB, FP_RGB, TP_RGB
from fundus_edge.measure.biomarkers import BIOMARKERS

FIGURES = (("f1", "F1"), ("auc", "AUC"), ("iou", "IoU"), ("se", "Se"), ("sp", "Sp"))
COLOURS = (
    "green: true positive, magenta: false positive, blue: false negative"
    " (against the first observer, inside the FOV)"
)
BIOMARKER_NOTE = (
    "Per biomarker over the site's images (measure/biomarkers.py), against the first observer's labels:"
    " means, Pearson r, ICC(A,1), bias = mean(source - first) with 95 % limits of agreement, MARD %"
    " = 100 sum|source - first| / sum|first| (the measures of docs/biomarkers.md)."
)


def _f(x, spec: str) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return format(x, spec)


def _pooled_rows(report) -> list[tuple[str, list[str]]]:
    """(who, cells) of the pooled table: each figure with its 95 % interval."""
    rows = [("model", report.score.model)]
    if report.score.second is not None:
        rows.append(("second observer (human reference)", report.score.second))
    out = []
    for who, s in rows:
        cells = [s.intervals[k].text() if k in s.intervals else "n/a" for k, _ in FIGURES]
        out.append((who, cells))
    return out


def _per_image_rows(report) -> list[list[str]]:
    second = dict(report.score.second.per_image) if report.score.second else {}
    rows = []
    for name, m in report.score.model.per_image:
        s = second.get(name)
        rows.append(
            [name, f"{m.f1:.4f}", _f(m.auc, ".4f"), f"{m.iou:.4f}", f"{m.se:.4f}", f"{m.sp:.4f}"]
            + ([f"{s.f1:.4f}"] if second else [])
        )
    return rows


def _per_image_head(report) -> list[str]:
    return ["image", "F1", "AUC", "IoU", "Se", "Sp"] + (["second observer F1"] if report.score.second else [])


def _biomarker_rows(stats: dict) -> list[list[str]]:
    return [
        [
            b.name,
            b.unit,
            _f(stats[b.name]["mean"], ".4g"),
            _f(stats[b.name]["ref_mean"], ".4g"),
            _f(stats[b.name]["r"], ".3f"),
            _f(stats[b.name]["icc"], ".3f"),
            _f(stats[b.name]["bias"], "+.3g"),
            f"{_f(stats[b.name]['loa'][0], '+.3g')} to {_f(stats[b.name]['loa'][1], '+.3g')}",
            _f(stats[b.name]["mard"], ".1f"),
        ]
        for b in BIOMARKERS
    ]


BIOMARKER_HEAD = [
    "biomarker",
    "unit",
    "mean",
    "first observer mean",
    "Pearson r",
    "ICC(A,1)",
    "bias",
    "95 % limits of agreement",
    "MARD %",
]


def _biomarker_tables(report) -> list[tuple[str, list[list[str]]]]:
    out = []
    if report.score.biomarkers:
        out.append(("The model's masks against the first observer", _biomarker_rows(report.score.biomarkers)))
    if report.score.second_biomarkers:
        out.append(
            (
                "The second observer against the first (human reference)",
                _biomarker_rows(report.score.second_biomarkers),
            )
        )
    return out


def _facts(report) -> list[tuple[str, str]]:
    iv = report.score.model.intervals["f1"]
    return [
        ("model", report.source),
        ("site", f"{report.site_root} ({report.images} images)"),
        ("ran on", report.via),
        ("threshold", f"{report.threshold:.3f}"),
        ("field of view", report.fov_source),
        ("second observer", "yes" if report.has_second else "none in this site"),
        ("intervals", f"95 % percentile bootstrap over the {iv.n_images} images, {iv.resamples} resamples"),
        ("test-read split", report.split),
    ]


def _vs_second_line(report) -> str | None:
    c = report.score.vs_second.get("f1")
    if c is None:
        return None
    from .site_report import signed

    return f"Model minus second observer, paired over the same images: F1 {signed(c)}: {c.verdict}."


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "| " + " | ".join("---" for _ in head) + " |",
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
    ]


def render_markdown(report, overlays: list[Path]) -> str:
    """report.md; ``overlays``: the worst images' PNGs, relative to the report folder, worst first."""
    L = [f"# Site report: {Path(report.source).name} on {Path(report.site_root).name}", ""]
    L += [f"- {k}: {v}" for k, v in _facts(report)] + [""]
    L += ["## Pooled figures (FOV pixels of every image)", ""]
    L += _md_table(["scored", *(h for _, h in FIGURES)], [[w, *c] for w, c in _pooled_rows(report)])
    line = _vs_second_line(report)
    L += [line, ""] if line else []
    L += ["## Per image", ""]
    L += _md_table(_per_image_head(report), _per_image_rows(report))
    L += [f"## The {len(overlays)} worst images by F1", "", f"Overlays: {COLOURS}.", ""]
    for w, p in zip(report.score.worst, overlays, strict=True):
        L += [f"![{w.name}]({p.as_posix()})", f"{w.name}: F1 {w.f1:.4f}", ""]
    tables = _biomarker_tables(report)
    if tables:
        L += ["## Biomarker agreement", "", BIOMARKER_NOTE, ""]
        for title, rows in tables:
            L += [f"### {title}", ""] + _md_table(BIOMARKER_HEAD, rows)
    return "\n".join(L).rstrip() + "\n"


def _html_table(head: list[str], rows: list[list[str]], table_id: str = "") -> str:
    h = "".join(f'<th data-col="{i}" title="click to sort">{esc(t)}</th>' for i, t in enumerate(head))
    body = "".join(
        "<tr>"
        + "".join(
            f'<td data-sort="{esc(c)}" class="{"num" if i else "txt"}">{esc(c)}</td>' for i, c in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    ident = f' id="{table_id}"' if table_id else ""
    return f"<table{ident}><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _chart(report) -> str:
    """Per-image F1 of the model (and the second observer): which images pull the pooled figure down."""
    import plotly.graph_objects as go

    names = [n for n, _ in report.score.model.per_image]
    fig = go.Figure(go.Bar(x=names, y=[m.f1 for _, m in report.score.model.per_image], name="model"))
    if report.score.second is not None:
        fig.add_trace(
            go.Bar(x=names, y=[m.f1 for _, m in report.score.second.per_image], name="second observer")
        )
    fig.update_layout(
        barmode="group", height=360, margin={"l": 50, "r": 20, "t": 30, "b": 80}, yaxis_title="F1 (per image)"
    )
    return fig.to_html(
        full_html=False, include_plotlyjs=True, config={"displaylogo": False, "responsive": True}
    )


def _overlay_figures(report, overlays: list[Path]) -> str:
    if not overlays:
        return "<p>No overlays asked for (--worst 0).</p>"
    sw = lambda c, t: f'<span class="sw" style="background: rgb{tuple(c)}"></span>{t}'  # noqa: E731
    legend = (
        f'<p class="legend">{sw(TP_RGB, "true positive")} {sw(FP_RGB, "false positive")}'
        f" {sw(FN_RGB, 'false negative')} (against the first observer, inside the FOV)</p>"
    )
    figs = "".join(
        f'<figure><img src="{png_data(p)}" alt="overlay of {esc(w.name)}">'
        f"<figcaption>{esc(w.name)}: F1 {w.f1:.4f}</figcaption></figure>"
        for w, p in zip(report.score.worst, overlays, strict=True)
    )
    return legend + f'<div class="overlays">{figs}</div>'


def render_html(report, overlays: list[Path]) -> str:
    """report.html, self-contained (Plotly and the overlay PNGs inlined); ``overlays``: readable paths."""
    title = f"Site report: {Path(report.source).name} on {Path(report.site_root).name}"
    facts = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in _facts(report))
    pooled = _html_table(["scored", *(h for _, h in FIGURES)], [[w, *c] for w, c in _pooled_rows(report)])
    line = _vs_second_line(report)
    bio = "".join(
        f'<h3>{esc(t)}</h3><div class="tablewrap">{_html_table(BIOMARKER_HEAD, rows)}</div>'
        for t, rows in _biomarker_tables(report)
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title><style>{STYLE}</style></head>
<body>
<h1>{esc(title)}</h1>
<dl>{facts}</dl>
<h2>Pooled figures (FOV pixels of every image)</h2>
<div class="tablewrap">{pooled}</div>
{f"<p>{esc(line)}</p>" if line else ""}
<h2>Per image</h2>
{_chart(report)}
<p>Click a heading to sort; type to filter.</p>
<input id="filter" type="search" placeholder="filter, e.g. im0001" aria-label="filter rows">
<div class="tablewrap">{_html_table(_per_image_head(report), _per_image_rows(report), "results")}</div>
<h2>The {len(overlays)} worst images by F1</h2>
{_overlay_figures(report, overlays)}
{f"<h2>Biomarker agreement</h2><p>{esc(BIOMARKER_NOTE)}</p>{bio}" if bio else ""}
<script>{TABLE_SCRIPT}</script>
</body></html>
"""
