"""Reports from records only: Markdown table, JSON, CSV, the speed-versus-accuracy plot, overlays."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from fundus_edge.runtime.cpu import identity_of
from fundus_edge.runtime.engines.table import ENGINE_TABLE

from .columns import columns, headings
from .records import BenchRecord


def _fmt(v, f):
    if v is None:
        return "–"
    return f.format(v) if f else str(v)


def md_cell(r: BenchRecord, k: str, f: str | None) -> str:
    """One Markdown cell of field ``k`` (the column table's format ``f``), or a form that carries what the row
    adds to the value."""
    v = getattr(r, k)
    if k == "precision" and r.precision_requested and r.precision_requested != v:
        return f"{v} (asked {r.precision_requested})"
    if k == "p50_ms" and v is not None and r.unsteady:
        return f"{v:.1f} (unsteady)"
    if k == "throughput_ips" and v is not None:
        return f"{v:.2f} (b{r.batch_size})"
    if k == "backend" and r.shape_requested:
        return f"{v} ({r.shape or r.shape_requested})"
    if k == "biomarker_worst" and v is not None:
        return f"{v} {r.biomarker_worst_pct:.1f} %" + (" **beyond tol.**" if r.biomarker_flag else "")
    if k in ("f1", "iou", "auc") and v is not None and getattr(r, f"{k}_low") is not None:
        # the 95 % bootstrap interval over the test images (measure/intervals.py)
        return f"{v:.4f} ({getattr(r, f'{k}_low'):.3f}-{getattr(r, f'{k}_high'):.3f})"
    return _fmt(v, f)


def _md_preamble(meta: dict) -> list[str]:
    """The machine, the measured peaks and what the columns mean, before the table."""
    peak = meta.get("peak", {})
    return [
        f"Machine: {identity_of(meta['machine']).title}, {meta['machine']['cores']} cores; "
        f"{meta['threads']} threads; {meta['images']}; image {meta['image_size']}; {meta['date']}.",
        f"Peak ({peak.get('method', 'n/a')}): FP32 {peak.get('fp32_gflops')} GFLOP/s (OpenVINO),"
        f" {peak.get('numpy_fp32_gflops')} (numpy), BF16 {peak.get('bf16_gflops')} GFLOP/s,"
        f" INT8 {peak.get('int8_gops')} GOP/s.",
        "p50/p90/p99: engine call only, every test image once after warm-up"
        " (without labels: the images in turn within a time budget)"
        + (
            f", in each of {meta['rounds']} rounds spread over the run (the accuracy pass the first);"
            " p50 and p90 the median of the rounds', "
            "spread the range of the rounds' p50s over the p50 plus how far the machine ran from its usual"
            " speed (speed probe below; rounds over 20 % apart: unsteady);"
            " ratios the median of per-round ratios"
            if meta.get("rounds", 1) > 1
            else ""
        )
        + "; "
        "e2e: with preprocessing (CLAHE) and postprocessing. GFLOP: the model at the whole "
        "padded image; net input: what the engine ran (the FOV's bounding box, padded). "
        "Roofline: GFLOP/s from direct convolution MACs "
        "at the net input over the measured peak of the precision that ran "
        "(INT8 for int8 rows, their float layers included); "
        "Winograd kernels can exceed 1. "
        "Biomarker drift: per vessel biomarker, mean |this row's value - the float model's fp32 "
        "reference-engine row's| over the test "
        "images, % of the reference; shown: the biomarker farthest out relative to its tolerance "
        "(a quarter of DRIVE's inter-observer "
        "difference, measure/tolerance.py); beyond tol.: the Notes name every biomarker past it. "
        "F1 / IoU / AUC (low-high): the 95 % bootstrap interval over the test images (2000 resamples, "
        "percentile; measure/intervals.py): two rows whose F1s differ by less than their intervals' width "
        "are not shown apart by 20 images.",
        *([_wall_line(meta)] if meta.get("wall_s") else []),
        *([_probe_line(meta["speed_probe"], meta["machine"])] if meta.get("speed_probe") else []),
        *([_shape_line(meta["shape_rows"])] if meta.get("shape_rows") else []),
    ]


def _md_after_table(records: list[BenchRecord]) -> list[str]:
    """The targets' figures, the cells not ok and the rows' notes, after the table."""
    from .biomarker_drift import flag_note

    lines: list[str] = []
    summary = headline(records)
    if summary:
        lines += ["", "Against the project's targets (computed from the rows above; ok rows only):", *summary]
    failed = [r for r in records if r.status != "ok"]
    if failed:
        lines += ["", "Cells not ok:"] + [
            f"- {r.variant} / {r.backend}: {r.status}: {r.error}" for r in failed
        ]
    noted = [
        (r, "; ".join(t for t in (r.note, flag_note(r)) if t)) for r in records if r.note or r.biomarker_flag
    ]
    if noted:
        lines += ["", "Notes:"] + [
            f"- {r.variant} / {r.backend}" + (f" {r.precision}" if r.biomarker_flag else "") + f": {t}"
            for r, t in noted
        ]
    return lines


def md_table(records: list[BenchRecord], output: str = "md") -> list[str]:
    """A Markdown table of ``records`` with the columns the column table gives ``output`` (md: the report's
    every-cell table; readme: the Pareto front's table of the README and the run pages)."""
    cols = columns(output)
    return [
        "| " + " | ".join(headings(output)) + " |",
        "|" + "|".join(" --- " for _ in cols) + "|",
        *("| " + " | ".join(md_cell(r, c.field, c.fmt) for c in cols) + " |" for r in records),
    ]


def markdown(records: list[BenchRecord], meta: dict) -> str:
    lines = [*_md_preamble(meta), "", *md_table(records), *_md_after_table(records)]
    return "\n".join(lines) + "\n"


# The project's speed targets (issue 34): the fastest row at each accuracy, and the p50 it should reach.
TARGETS: tuple[tuple[float, float], ...] = ((0.82, 8.0), (0.826, 12.0))


def _fastest(rs: list[BenchRecord]) -> BenchRecord:
    return min(rs, key=lambda r: r.p50_ms)


def _row_name(r: BenchRecord) -> str:
    dev = f", {r.device}" if r.device and r.device != "cpu" else ""
    return f"{r.variant} on {r.backend} ({r.precision}{dev})"


def _target_lines(ok: list[BenchRecord]) -> list[str]:
    """Per target, the fastest row at its F1 (or the best F1 short of it) against its p50 bound, then the
    fastest scored row; each against the seed U-Net on its fastest engine."""
    seeds = [r for r in ok if r.variant == "seed-unet"]
    seed = _fastest(seeds) if seeds else None

    def vs_seed(r: BenchRecord) -> str:
        return (
            f"; {ratio(seed, r):.1f}x the seed U-Net on its fastest engine"
            f" ({_row_name(seed)}, {seed.p50_ms:.1f} ms)"
            if seed
            else ""
        )

    out = []
    scored = [r for r in ok if r.f1 is not None]
    for f1, bound in TARGETS:
        good = [r for r in scored if r.f1 >= f1]
        if good:
            r = _fastest(good)
            met = "met" if r.p50_ms <= bound else "not met"
            out.append(
                f"- Fastest row with F1 >= {f1}: {_row_name(r)}, p50 {r.p50_ms:.1f} ms"
                f" (target <= {bound:g} ms: {met}), F1 {r.f1:.4f}{vs_seed(r)}."
            )
        elif scored:
            out.append(f"- No row reaches F1 >= {f1} (best {max(r.f1 for r in scored):.4f}).")
    if scored:
        r = _fastest(scored)
        out.append(f"- Fastest scored row: {_row_name(r)}, p50 {r.p50_ms:.1f} ms, F1 {r.f1:.4f}{vs_seed(r)}.")
    return out


def _int8_pairs(ok: list[BenchRecord]) -> list[str]:
    """Per float model and engine: its fastest INT8 row against its fastest float row."""
    from fundus_edge.quantize.variants import float_counterpart

    pairs = []
    for base in dict.fromkeys(float_counterpart(r.variant) for r in ok):
        for engine in dict.fromkeys(r.backend for r in ok):
            q = [
                r
                for r in ok
                if r.backend == engine
                and float_counterpart(r.variant) == base
                and "int8" in (r.precision or "")
            ]
            f = [r for r in ok if r.backend == engine and r.variant == base]
            if base and q and f:
                qi, fl = _fastest(q), _fastest(f)
                df = "" if qi.f1 is None or fl.f1 is None else f", F1 {qi.f1 - fl.f1:+.4f}"
                pairs.append(
                    f"{base} on {engine}: {qi.variant} ({qi.precision}) {qi.p50_ms:.1f} ms"
                    f" vs {fl.precision} {fl.p50_ms:.1f} ms = "
                    f"{ratio(fl, qi):.2f}x{df}"
                )
    return pairs


def _shape_pairs(shaped: list[BenchRecord], ok: list[BenchRecord]) -> list[str]:
    """Each static- or dynamic-shape row against the row of its own shapes (same variant, engine, device)."""
    shapes = []
    for s in shaped:
        own = [
            r
            for r in ok
            if (r.variant, r.backend, r.device, r.precision_requested)
            == (s.variant, s.backend, s.device, s.precision_requested)
        ]
        if own:
            static, dynamic = (s, own[0]) if s.shape_requested == "static" else (own[0], s)
            shapes.append(
                f"{s.variant} on {s.backend}: {static.shape} {static.p50_ms:.1f} ms"
                f" vs {dynamic.shape} {dynamic.p50_ms:.1f} ms = "
                f"{ratio(dynamic, static):.2f}x"
                + (
                    f" (e2e {dynamic.e2e_p50_ms / static.e2e_p50_ms:.2f}x)"
                    if static.e2e_p50_ms and dynamic.e2e_p50_ms
                    else ""
                )
            )
    return shapes


def headline(records: list[BenchRecord]) -> list[str]:
    """The figures the targets are stated in, from the records alone: the fastest row at F1 >= 0.82 and
    the fastest scored row, each against the seed U-Net on its fastest engine, and each INT8 variant's
    fastest row against the fastest float row of its model on the same engine. A wrong_output row never
    counts: it is fast and wrong."""
    shaped = [r for r in records if r.status == "ok" and r.p50_ms and r.shape_requested]
    ok = [
        r for r in records if r.status == "ok" and r.p50_ms and not r.shape_requested
    ]  # shape rows: their own line below
    out = _target_lines(ok)
    pairs = _int8_pairs(ok)
    if pairs:
        out.append(
            "- INT8 against the fastest float row of its model on the same engine: " + "; ".join(pairs) + "."
        )
    shapes = _shape_pairs(shaped, ok)
    if shapes:
        out.append(
            "- Static against dynamic input shapes (above 1: static is faster): " + "; ".join(shapes) + "."
        )
    return out


def ratio(slow: BenchRecord, fast: BenchRecord) -> float:
    """How many times faster ``fast`` ran: the median of the per-round ratios where both rows were timed in
    the same rounds (drift that lands on one round divides out), else the ratio of their p50s."""
    from fundus_edge.measure.timing import round_ratio

    by_round = round_ratio(slow.round_p50_ms or (), fast.round_p50_ms or ())
    return by_round if by_round is not None else slow.p50_ms / fast.p50_ms


def _shape_line(rows: dict) -> str:
    """Which engines got a static-against-dynamic row, and why one did not."""
    got = ", ".join(f"{e} {kind}" for e, kind in rows.get("rows", {}).items())
    skipped = "; ".join(f"{e} skipped: {why}" for e, why in rows.get("skipped", {}).items())
    return (
        f"Input shapes: {rows.get('variant')} also runs {got} beside each engine's own shapes"
        " (the engine column names them)" + (f"; {skipped}" if skipped else "") + "."
    )


def _probe_line(probe: dict, machine: dict) -> str:
    ms = ", ".join(f"{v:.1f}" for v in probe["ms"])
    # The baseline is the earlier runs of this record's CPU identity (bench.history.probe_history).
    who = identity_of(machine).short
    usual = (
        f"; the usual speed of {who} {probe['reference_ms']:.1f} ms (median of {probe['reference_runs']}"
        f" earlier runs' probes on this CPU identity), {probe['offset_pct']} % away, added to every spread"
        if probe.get("reference_ms")
        else f"; no earlier run of {who} with this probe to compare with"
    )
    return (
        f"Machine speed ({probe['method']}): {ms} ms; median {probe['median_ms']:.1f} ms,"
        f" range {probe['spread_pct']} % of it{usual}."
    )


def _wall_line(meta: dict) -> str:
    built = meta.get("build_s") or {}
    slowest = max(built.items(), key=lambda kv: kv[1]) if built else None
    parts = [f"Wall {meta['wall_s'] / 60:.1f} min"]
    if meta.get("build_wall_s") is not None:
        parts.append(
            f"building {len(built)} models {meta['build_wall_s'] / 60:.1f} min"
            + (f" (longest: {slowest[0]} {slowest[1] / 60:.1f} min)" if slowest else "")
        )
    if meta.get("cell_s"):
        parts.append(
            f"{len(meta['cell_s'])} cells {sum(meta['cell_s'].values()) / 60:.1f} min"
            + (" (the accuracy pass)" if meta.get("round_s") else "")
        )
    if meta.get("round_s"):
        parts.append(
            f"{len(meta['round_s'])} more timing rounds "
            + " + ".join(f"{s / 60:.1f}" for s in meta["round_s"])
            + " min"
        )
    if meta.get("biomarker_s") is not None:
        bm = meta.get("biomarker_masks") or {}
        parts.append(
            f"biomarker drift {meta['biomarker_s'] / 60:.1f} min ({bm.get('images', '?')} masks computed,"
            f" {bm.get('reused', '?')} met again)"
        )
    return "; ".join(parts) + "."


def write_json(path: Path, records: list[BenchRecord], meta: dict) -> None:
    path.write_text(json.dumps({"meta": meta, "results": [r.to_dict() for r in records]}, indent=2))


def write_csv(path: Path, records: list[BenchRecord]) -> None:
    """Every field, its raw value, in the column table's order (headed by the field names)."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=headings("csv"))
        w.writeheader()
        for r in records:
            w.writerow(r.to_dict())


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not beaten on both latency (lower) and F1 (higher), sorted by latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -1.0
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


# F1 the seed tutorial reported for its 10-epoch PaddleSeg U-Net (the bench runs it untrained: speed only).
SEED_REPORTED_F1 = 0.717


def _draw_rows(ax, pts: list[BenchRecord], colour: dict, markers: dict[str, str]) -> None:
    """Each row a point (hollow for a reduced precision); the Pareto front a dashed line, its points named."""
    for r in pts:
        reduced = any(k in (r.precision or "") for k in ("int8", "bf16", "fp16"))
        ax.scatter(
            r.p50_ms,
            r.f1,
            marker=markers.get(r.backend, "D"),
            s=60,
            linewidths=1.5,
            facecolors="none" if reduced else colour[r.variant],
            edgecolors=colour[r.variant],
            zorder=3,
        )
    front = pareto_front([(r.p50_ms, r.f1) for r in pts])
    ax.plot([pts[i].p50_ms for i in front], [pts[i].f1 for i in front], "k--", lw=1, zorder=2)
    for k, i in enumerate(front):  # only the front is named: 30 labels overlap into a block
        r = pts[i]
        ax.annotate(
            f"{r.variant} / {r.backend} {r.precision}",
            (r.p50_ms, r.f1),
            fontsize=7,
            xytext=(6, -10 if k % 2 else 4),
            textcoords="offset points",
            bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
        )


def _draw_seed(ax, seed: BenchRecord) -> None:
    """The seed U-Net at its measured latency and the F1 its tutorial reported, marked as reported."""
    ax.scatter(seed.p50_ms, SEED_REPORTED_F1, marker="*", s=160, c="grey", zorder=3)
    ax.annotate(
        f"seed U-Net ({seed.backend}): measured latency,\n"
        f"F1 {SEED_REPORTED_F1} as its tutorial reported (not measured)",
        (seed.p50_ms, SEED_REPORTED_F1),
        fontsize=7,
        xytext=(-8, 8),
        textcoords="offset points",
        ha="right",
    )


def _legend_handles(
    pts: list[BenchRecord], variants: list[str], colour: dict, markers: dict[str, str], seed: bool
) -> list:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="", marker="o", mfc=colour[v], mec=colour[v], label=v) for v in variants]
    handles += [
        Line2D([], [], ls="", marker=m, mfc="white", mec="black", label=ENGINE_TABLE[e].label)
        for e, m in markers.items()
        if any(r.backend == e for r in pts)
    ]
    handles += [
        Line2D([], [], ls="", marker="o", mfc="none", mec="black", label="int8 / bf16 (hollow)"),
        Line2D([], [], ls="--", c="k", label="Pareto front"),
    ]
    if seed:
        handles.append(Line2D([], [], ls="", marker="*", c="grey", ms=10, label="seed U-Net (F1 reported)"))
    return handles


def plot_pareto(path: Path, records: list[BenchRecord], meta: dict) -> bool:
    """p50 (log) against F1: colour = variant, marker = engine, hollow = a reduced precision (bf16, int8);
    the Pareto front is drawn and its points named; the seed U-Net sits at its measured latency and the F1
    its tutorial reported, marked as reported."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in records if r.status == "ok" and r.p50_ms and r.f1 is not None]
    seed = sorted(
        (r for r in records if r.variant == "seed-unet" and r.status == "ok" and r.p50_ms),
        key=lambda r: r.p50_ms,
    )
    if not pts:
        return False
    fig, ax = plt.subplots(figsize=(10, 6.5))
    variants = list(dict.fromkeys(r.variant for r in pts))
    cmap = plt.get_cmap("tab20" if len(variants) > 10 else "tab10")
    colour = {v: cmap(i % cmap.N) for i, v in enumerate(variants)}
    markers = {e.name: e.mpl_marker for e in ENGINE_TABLE.values()}
    _draw_rows(ax, pts, colour, markers)
    if seed:
        _draw_seed(ax, seed[0])
    handles = _legend_handles(pts, variants, colour, markers, bool(seed))
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    ax.set_xscale("log")
    ax.set_xlabel(f"p50 latency per {meta['image_size']} image, ms ({meta['threads']} threads, log scale)")
    ax.set_ylabel("F1 on DRIVE test (FOV, pooled)")
    ax.set_title(
        f"fundus-edge: speed vs accuracy — {identity_of(meta['machine']).short}, {meta['date']}", fontsize=10
    )
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return True


# Agreement with the manual label, as the vessel-segmentation literature draws it.
TP_RGB, FP_RGB, FN_RGB = (0, 200, 0), (230, 0, 180), (0, 120, 255)


def agreement_overlay(
    rgb: np.ndarray, pred: np.ndarray, label: np.ndarray | None, fov: np.ndarray | None
) -> np.ndarray:
    """True positives green, false positives magenta, false negatives blue (inside the FOV); without a
    label, predicted vessels in green."""
    out = rgb.astype(np.float32).copy()
    inside = np.ones(pred.shape, bool) if fov is None else fov.astype(bool)
    pred = pred.astype(bool) & inside
    if label is None:
        layers = [(pred, TP_RGB)]
    else:
        lab = label.astype(bool) & inside
        layers = [(pred & lab, TP_RGB), (pred & ~lab, FP_RGB), (~pred & lab, FN_RGB)]
    for m, c in layers:
        out[m] = 0.3 * out[m] + 0.7 * np.asarray(c, np.float32)
    return out.astype(np.uint8)


def side_by_side(path: Path, panels: list[tuple[str, np.ndarray]], legend: bool) -> None:
    """Overlays next to each other with their titles (the fastest and the most accurate variant)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 5.6))
    for ax, (title, img) in zip(np.atleast_1d(axes), panels, strict=False):
        ax.imshow(img)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    if legend:
        fig.legend(
            handles=[
                Patch(color=np.asarray(c) / 255, label=t)
                for c, t in (
                    (TP_RGB, "true positive"),
                    (FP_RGB, "false positive"),
                    (FN_RGB, "false negative"),
                )
            ],
            loc="lower center",
            ncol=3,
            frameon=False,
        )
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
