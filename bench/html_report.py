"""``report.html``: one self-contained page from a bench record (results.json) and the overlays beside it.

Offline by construction: Plotly's JavaScript, the table's few lines of script and the overlay PNGs are
inlined. The page reads the record only; fields it does not know become extra table columns, so a newer
record still renders."""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import fields
from pathlib import Path

from fundus_edge.runtime.cpu import identity_of
from fundus_edge.runtime.engines.table import ENGINE_TABLE
from fundus_edge.runtime.errors import InputError

from .columns import columns, headings
from .records import BenchRecord
from .report import FN_RGB, FP_RGB, SEED_REPORTED_F1, TP_RGB, headline, md_cell, pareto_front

# Free text: cut to one line in the table, the whole of it in the cell's title (rows keep one height).
_LONG = {"biomarker_flag"}
_KNOWN = {f.name for f in fields(BenchRecord)}
# The run's "unsteady" note (bench/runner.py) inside a record's note: the Notes list each row's once, under
# its kind.
_UNSTEADY = re.compile(
    r"(?:^|; )unsteady: (round p50s [^;]*?)(?:; the machine's speed drifted, compare this row with care)?"
    r"(?=; |$)"
)


def _esc(v) -> str:
    return html.escape(str(v), quote=True)


def _cell(v, fmt: str | None) -> tuple[str, str]:
    """(shown text, sort key): numbers sort as numbers, missing values last."""
    if v is None or v == "":
        return "–", ""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return (fmt.format(v) if fmt else str(v)), repr(float(v))
    if isinstance(v, bool):
        return ("yes" if v else "no"), str(int(v))
    if isinstance(v, (list, tuple)):  # biomarker_flag: names; [] computed and none beyond
        return (", ".join(map(str, v)) or "none"), ", ".join(map(str, v))
    return str(v), str(v)


def _row_name(r: dict) -> str:
    dev = r.get("device")
    shape = f" [{r.get('shape') or r.get('shape_requested')}]" if r.get("shape_requested") else ""
    return (
        f"{r.get('variant')} / {r.get('backend')} {r.get('precision') or ''}".rstrip()
        + (f" ({dev})" if dev and dev != "cpu" else "")
        + shape
    )


def _extra_columns(rows: list[dict]) -> list[tuple[str, str, str | None]]:
    """Scalar fields the record has but this page does not name: shown as they are."""
    shown = {c.field for c in columns("html")}
    extra: list[tuple[str, str, str | None]] = []
    for r in rows:
        for k, v in r.items():
            if (
                k not in shown
                and k not in _KNOWN
                and (v is None or isinstance(v, (str, int, float, bool)))
                and k not in [e[0] for e in extra]
            ):
                extra.append((k, k, "{:.4f}" if isinstance(v, float) else None))
    return extra


def _table(rows: list[dict], front: set[int]) -> str:
    cols = [(c.field, c.heading, c.fmt) for c in columns("html")] + _extra_columns(rows)
    head = "".join(
        f'<th data-col="{i}" title="click to sort">{_esc(h)}</th>' for i, (_, h, _) in enumerate(cols)
    )
    body = []
    for i, r in enumerate(rows):
        cells = []
        for k, _, d in cols:
            text, key = _cell(r.get(k), d)
            kind = (
                "long"
                if k in _LONG
                else "txt"
                if d is None and not isinstance(r.get(k), (int, float))
                else "num"
            )
            tip = f' title="{_esc(text)}"' if k in _LONG and key else ""
            # every biomarker's drift on hover
            if k == "biomarker_worst" and isinstance(r.get("biomarker_mad_pct"), dict):
                drift = ", ".join(f"{n} {v:.2f} %" for n, v in r["biomarker_mad_pct"].items())
                tip = f' title="{_esc(drift)} (against {_esc(r.get("biomarker_ref"))})"'
            cells.append(f'<td data-sort="{_esc(key)}" class="{kind}"{tip}>{_esc(text)}</td>')
        beyond = "biomarker-beyond" if r.get("biomarker_flag") else ""
        cls = " ".join(
            c for c in ("front" if i in front else "", f"status-{_esc(r.get('status', 'ok'))}", beyond) if c
        )
        body.append(f'<tr class="{cls}">{"".join(cells)}</tr>')
    return f'<table id="results"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def marker_symbol(r: dict) -> str:
    """The engine's marker (the engine table's), hollow for a reduced precision (int8, bf16, fp16)."""
    e = ENGINE_TABLE.get(r.get("backend"))
    return (e.marker if e else "x") + (
        "-open" if any(p in (r.get("precision") or "") for p in ("int8", "bf16", "fp16")) else ""
    )


def _variant_traces(scored: list[dict]) -> list:
    """One trace of markers per variant; hover names the row."""
    import plotly.graph_objects as go

    traces = []
    for variant in dict.fromkeys(r["variant"] for r in scored):
        rs = [r for r in scored if r["variant"] == variant]
        traces.append(
            go.Scatter(
                x=[r["p50_ms"] for r in rs],
                y=[r["f1"] for r in rs],
                mode="markers",
                name=variant,
                marker={"size": 11, "symbol": [marker_symbol(r) for r in rs], "line": {"width": 2}},
                text=[_row_name(r) for r in rs],
                hovertemplate="%{text}<br>p50 %{x:.1f} ms<br>F1 %{y:.4f}<extra></extra>",
            )
        )
    return traces


def _front_trace(front: list[dict]):
    import plotly.graph_objects as go

    return go.Scatter(
        x=[r["p50_ms"] for r in front],
        y=[r["f1"] for r in front],
        mode="lines+markers",
        name="Pareto front",
        line={"dash": "dash", "color": "black", "width": 1},
        marker={"symbol": "circle-open", "size": 20, "color": "black"},
        hoverinfo="skip",
    )


def _seed_trace(s: dict):
    """The seed U-Net at its measured latency and the F1 its tutorial reported, marked as not measured."""
    import plotly.graph_objects as go

    return go.Scatter(
        x=[s["p50_ms"]],
        y=[SEED_REPORTED_F1],
        mode="markers+text",
        name="seed U-Net (F1 reported, not measured)",
        marker={"symbol": "star", "size": 16, "color": "grey"},
        text=["seed U-Net: F1 reported, not measured"],
        textposition="top left",
        hovertemplate=f"{_esc(_row_name(s))}<br>p50 %{{x:.1f}} ms (measured)"
        "<br>F1 %{y:.3f} as its tutorial reported (not measured)<extra></extra>",
    )


def _engine_markers() -> str:
    return ", ".join(f"{e.marker} {e.label}" for e in ENGINE_TABLE.values())


def _chart_layout(fig, meta: dict) -> None:
    m = meta.get("machine") or {}
    fig.update_layout(
        title={
            "text": f"speed vs accuracy: {_esc(identity_of(m).short)}, {meta.get('threads', '?')} threads",
            "x": 0.01,
        },
        xaxis={
            "type": "log",
            "title": f"p50 latency per {meta.get('image_size', '')} image, ms (engine only, log scale)",
        },
        yaxis={"title": "F1 on DRIVE test (FOV pixels pooled)"},
        legend={"title": {"text": f"variant (hollow: int8 / bf16 / fp16; marker: {_engine_markers()})"}},
        height=560,
        margin={"l": 70, "r": 20, "t": 60, "b": 60},
        template="plotly_white",
    )


def _chart(rows: list[dict], front_idx: list[int], meta: dict) -> str:
    """Plotly scatter (p50, log) against F1: hover names the row; the Pareto front drawn; the seed U-Net at
    its measured latency and the F1 its tutorial reported, marked as not measured."""
    import plotly.graph_objects as go

    fig = go.Figure()
    scored = [
        r
        for r in rows
        if r.get("status") == "ok"
        and r.get("p50_ms")
        and r.get("f1") is not None
        and r.get("variant") != "seed-unet"
    ]
    for trace in _variant_traces(scored):
        fig.add_trace(trace)
    front = [rows[i] for i in front_idx]
    if front:
        fig.add_trace(_front_trace(front))
    seeds = sorted(
        (r for r in rows if r.get("variant") == "seed-unet" and r.get("status") == "ok" and r.get("p50_ms")),
        key=lambda r: r["p50_ms"],
    )
    if seeds:
        fig.add_trace(_seed_trace(seeds[0]))
    _chart_layout(fig, meta)
    if not scored and not seeds:
        fig.add_annotation(
            text="no scored rows (no labels, or every cell failed)",
            showarrow=False,
            x=0.5,
            y=0.5,
            xref="paper",
            yref="paper",
        )
    return fig.to_html(
        full_html=False,
        include_plotlyjs=True,
        div_id="chart",
        config={"displaylogo": False, "responsive": True},
    )


def _png_data(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _overlays(rows: list[dict], front_idx: list[int], folder: Path) -> str:
    """The sweep's overlay_<variant>.png (its variant's fastest ok row) for each variant on the front."""
    figs = []
    for v in dict.fromkeys(rows[i]["variant"] for i in front_idx):
        p = folder / f"overlay_{v}.png"
        if p.is_file():
            figs.append(
                f'<figure><img src="{_png_data(p)}" alt="overlay of {_esc(v)}">'
                f"<figcaption>{_esc(v)} (its fastest ok row)</figcaption></figure>"
            )
    if not figs:
        return "<p>No overlays beside the record for the rows on the front.</p>"
    sw = lambda c, t: f'<span class="sw" style="background: rgb{tuple(c)}"></span>{t}'  # noqa: E731
    legend = (
        f'<p class="legend">{sw(TP_RGB, "true positive")} {sw(FP_RGB, "false positive")}'
        f" {sw(FN_RGB, 'false negative')} (against the manual label, inside the FOV;"
        " without labels: predicted vessels in green)</p>"
    )
    return legend + '<div class="overlays">' + "".join(figs) + "</div>"


def _fold(summary: str, items: list[str]) -> str:
    """One line per kind of note; its rows once, folded under it."""
    lis = "".join(f"<li>{_esc(t)}</li>" for t in items)
    return f"<li><details><summary>{_esc(summary)}</summary><ul>{lis}</ul></details></li>"


def _sweep_checks(meta: dict) -> list[str]:
    """Whatever the record's meta holds under guards / warnings."""
    items: list[str] = []
    for key in ("guards", "warnings"):
        g = meta.get(key)
        if isinstance(g, dict):
            items += [f"{k}: {v}" for k, v in g.items()]
        elif isinstance(g, (list, tuple)):
            items += [g_ if isinstance(g_, str) else json.dumps(g_) for g_ in g]
        elif g:
            items.append(str(g))
    return items


def _unsteady(r: dict) -> str:
    """The row's own words for its rounds (the run's note), else its spread."""
    m = _UNSTEADY.search(r.get("note") or "")
    return m.group(1) if m else f"the p50s of its timing rounds spread {r.get('spread_pct') or 0:.0f} %"


def _notes(rows: list[dict], meta: dict) -> str:
    """The sweep's checks and the rows' notes grouped by kind: one line each, the rows folded under it; a
    row's unsteady note under "unsteady" only, its other notes under "note"."""
    n = len(rows)
    kinds: list[tuple[str, list[str]]] = []
    checks = _sweep_checks(meta)
    kinds.append((f"{len(checks)} checks the sweep recorded", checks))
    bad = [r for r in rows if r.get("status") not in (None, "ok")]
    kinds.append(
        (
            f"{len(bad)} of {n} cells not ok (wrong_output: the agreement checks failed)",
            [f"{_row_name(r)}: {r.get('status')}: {r.get('error')}" for r in bad],
        )
    )
    shaky = [r for r in rows if r.get("unsteady")]
    kinds.append(
        (
            f"{len(shaky)} of {n} rows unsteady: the machine's speed drifted during the run, "
            "so their p50s are not steady figures; compare them with care",
            [f"{_row_name(r)}: {_unsteady(r)}" for r in shaky],
        )
    )
    other = [(r, _UNSTEADY.sub("", r.get("note") or "").strip("; ")) for r in rows]
    other = [(r, t) for r, t in other if t]
    kinds.append((f"{len(other)} of {n} rows with a note", [f"{_row_name(r)}: {t}" for r, t in other]))
    beyond = [r for r in rows if r.get("biomarker_flag")]
    kinds.append(
        (
            f"{len(beyond)} of {n} rows move a vessel biomarker beyond its tolerance",
            [
                f"{_row_name(r)}: biomarkers beyond tolerance against {r.get('biomarker_ref')}: "
                + ", ".join(
                    f"{b} {(r.get('biomarker_mad_pct') or {}).get(b, float('nan')):.2f} %"
                    for b in r["biomarker_flag"]
                )
                for r in beyond
            ],
        )
    )
    kinds = [(summary, items) for summary, items in kinds if items]
    if not kinds:
        return "<p>None: every cell ran and passed the agreement checks.</p>"
    return '<ul class="notes">' + "".join(_fold(s, items) for s, items in kinds) + "</ul>"


def _records(rows: list[dict]) -> list[BenchRecord | None]:
    """Each row as a record (None where a row is not one): the targets and the front's table read records."""
    out: list[BenchRecord | None] = []
    for r in rows:
        try:
            out.append(BenchRecord.from_dict(r))
        except (TypeError, ValueError):
            out.append(None)
    return out


def _targets(records: list[BenchRecord | None]) -> str:
    lines = headline([r for r in records if r is not None])
    if not lines:
        return "<p>No timed ok rows to hold against the targets.</p>"
    return "<ul>" + "".join(f"<li>{_esc(t.removeprefix('- '))}</li>" for t in lines) + "</ul>"


def _front_rows(records: list[BenchRecord | None], front_idx: list[int]) -> str:
    """The front's rows, fastest first, with the column table's readme columns (the README's front)."""
    front = [records[i] for i in front_idx if records[i] is not None]
    if not front:
        return ""
    cols = columns("readme")
    head = "".join(f"<th>{_esc(h)}</th>" for h in headings("readme"))
    body = "".join(
        "<tr>" + "".join(f"<td>{_esc(md_cell(r, c.field, c.fmt))}</td>" for c in cols) + "</tr>"
        for r in front
    )
    return f'<table id="front"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _header(meta: dict) -> str:
    m = meta.get("machine") or {}
    peak = meta.get("peak") or {}
    flags = ", ".join(m.get("isa_flags") or []) or "none of interest"
    facts = [
        ("CPU", f"{identity_of(m).title}, {m.get('cores', '?')} cores"),
        ("ISA flags", flags),
        ("threads", meta.get("threads")),
        (
            "measured peaks",
            f"FP32 {peak.get('fp32_gflops')} GFLOP/s, BF16 {peak.get('bf16_gflops')} GFLOP/s,"
            f" INT8 {peak.get('int8_gops')} GOP/s ({peak.get('method', 'n/a')})",
        ),
        ("date", meta.get("date")),
        ("images", meta.get("images")),
        ("timing", meta.get("timing")),
        ("timing rounds", meta.get("rounds")),
        ("wall", f"{meta['wall_s'] / 60:.1f} min" if isinstance(meta.get("wall_s"), (int, float)) else None),
        ("versions", ", ".join(f"{k} {v}" for k, v in (meta.get("versions") or {}).items())),
    ]
    return (
        "<dl>"
        + "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in facts if v not in (None, ""))
        + "</dl>"
    )


_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.25rem; color: #1d2430; }
h1 { font-size: 1.45rem; margin: 0 0 .5rem; } h2 { font-size: 1.15rem; margin: 1.5rem 0 .5rem; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: 0; }
dt { font-weight: 600; } dd { margin: 0; }
#filter { font: inherit; padding: .3rem .5rem; width: 22rem; max-width: 100%; margin-bottom: .5rem; }
/* the table scrolls inside its own frame; its heading row and the variant column stay in view */
.tablewrap { overflow-x: auto; overflow-y: auto; max-height: 80vh; border: 1px solid #e3e6ea; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border-bottom: 1px solid #e3e6ea; padding: .25rem .5rem; text-align: right; white-space: nowrap; }
th { background: #f2f4f7; cursor: pointer; position: sticky; top: 0; z-index: 2; user-select: none; }
.tablewrap td:first-child { position: sticky; left: 0; z-index: 1; background: #fff; }
.tablewrap th:first-child { left: 0; z-index: 3; }
th.asc::after { content: " ▲"; } th.desc::after { content: " ▼"; }
td.txt { text-align: left; }
/* rows keep one height: long text is cut, the whole of it in the cell's title */
td.long { text-align: left; max-width: 16rem; overflow: hidden; text-overflow: ellipsis; color: #555; }
#front th { cursor: default; position: static; } #front td { text-align: left; }
.notes details summary { cursor: pointer; } .notes details ul { margin: .25rem 0 .5rem; }
tr.biomarker-beyond td:nth-child(-n+3) { box-shadow: inset 0 -2px 0 #d08a00; }
tr.biomarker-beyond td.long, tr.biomarker-beyond td[title] { color: #8a5a00; font-weight: 600; }
tr.front td:first-child { font-weight: 700; }
tr.front td:first-child::before { content: "★ "; color: #c77700; }
tr.status-wrong_output td, tr.status-run_failed td, tr.status-export_failed td { background: #fff1f1; }
.legend .sw {
  display: inline-block; width: .9em; height: .9em; margin: 0 .3em 0 .8em; vertical-align: -.1em;
  border: 1px solid #888;
}
.overlays { display: flex; flex-wrap: wrap; gap: 1rem; }
.overlays figure { margin: 0; } .overlays img { width: 420px; max-width: 100%; border: 1px solid #ccd; }
"""

# Sorting and filtering the table: a few lines of plain DOM code (no library does less).
_SCRIPT = """
(function () {
  const table = document.getElementById("results"), body = table.tBodies[0];
  const heads = Array.from(table.tHead.rows[0].cells);
  heads.forEach((th, col) => th.addEventListener("click", () => {
    const dir = th.classList.contains("asc") ? -1 : 1;
    heads.forEach((h) => h.classList.remove("asc", "desc"));
    th.classList.add(dir === 1 ? "asc" : "desc");
    const key = (tr) => tr.cells[col].dataset.sort;
    const rows = Array.from(body.rows).sort((a, b) => {
      const x = key(a), y = key(b);
      if (x === "" || y === "") return (x === "") - (y === "");  // missing values last either way
      const nx = Number(x), ny = Number(y);
      return dir * (!isNaN(nx) && !isNaN(ny) ? nx - ny : x.localeCompare(y));
    });
    rows.forEach((tr) => body.appendChild(tr));
  }));
  document.getElementById("filter").addEventListener("input", (ev) => {
    const words = ev.target.value.toLowerCase().split(/\\s+/).filter(Boolean);
    Array.from(body.rows).forEach((tr) => {
      const text = tr.textContent.toLowerCase();
      tr.hidden = !words.every((w) => text.includes(w));
    });
  });
})();
"""


def render(record: dict, folder: Path) -> str:
    """The page for a parsed results.json; ``folder`` holds its overlay PNGs."""
    meta = record.get("meta") or {}
    rows = [r for r in record.get("results") or [] if isinstance(r, dict)]
    pts = [
        i
        for i, r in enumerate(rows)
        if r.get("status") == "ok"
        and r.get("p50_ms")
        and r.get("f1") is not None
        and r.get("variant") != "seed-unet"
    ]
    front_idx = [pts[k] for k in pareto_front([(rows[i]["p50_ms"], rows[i]["f1"]) for i in pts])]
    records = _records(rows)
    title = f"fundus-edge bench, {meta.get('date', '')}, {identity_of(meta.get('machine') or {}).short}"
    # The answer first: the machine, the targets, the front; then every cell, the notes and the overlays.
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)}</title><style>{_STYLE}</style></head>
<body>
<h1>{_esc(title)}</h1>
<section id="machine">{_header(meta)}</section>
<h2>Against the targets</h2>
<section id="targets">{_targets(records)}</section>
<h2>Speed versus accuracy: the Pareto front</h2>
{_chart(rows, front_idx, meta)}
{_front_rows(records, front_idx)}
<h2>All cells ({len(rows)})</h2>
<p>Click a heading to sort; type to filter (every word must appear in the row).
★: on the Pareto front (p50 against F1). Errors and notes are listed under Notes below.
Biomarker drift: each vessel biomarker's mean |difference| from the float model's fp32 reference-engine row
over the test images, % of the reference (hover the name for all of them); amber rows move a biomarker
beyond its tolerance, a quarter of DRIVE's inter-observer difference (measure/tolerance.py).</p>
<input id="filter" type="search" placeholder="filter, e.g. openvino int8" aria-label="filter rows">
<div class="tablewrap">{_table(rows, set(front_idx))}</div>
<h2>Notes</h2>
<section id="notes">{_notes(rows, meta)}</section>
<h2>Overlays of the rows on the front</h2>
{_overlays(rows, front_idx, folder)}
<script>{_SCRIPT}</script>
</body></html>
"""


def write_report(results_json: str | Path, out: str | Path | None = None) -> Path:
    """results.json (+ the overlay_*.png beside it) -> report.html beside it (or ``out``)."""
    path = Path(results_json)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a bench record ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(record, dict) or not isinstance(record.get("results"), list):
        raise InputError(f"{path}: not a bench record (no 'results' list)")
    target = Path(out) if out else path.parent / "report.html"
    try:
        target.write_text(render(record, path.parent), encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{target}: could not write ({exc.strerror or exc})") from None
    return target


# The page's parts another page reuses (the site report, fundus_edge/site_pages.py): its style, the sortable
# table's script (a table id="results" and an input id="filter"), HTML escaping and inlined PNGs.
STYLE, TABLE_SCRIPT, esc, png_data = _STYLE, _SCRIPT, _esc, _png_data
