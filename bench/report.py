"""Reports from records only: Markdown table, JSON, CSV, the speed-versus-accuracy plot, overlays."""
from __future__ import annotations

import csv
import json
from dataclasses import fields
from pathlib import Path

from .records import BenchRecord

MD_COLUMNS = [
    ("variant", "variant", None), ("backend", "engine", None), ("precision", "precision", None), ("device", "device", None),
    ("status", "status", None), ("params", "params", "{:,}"), ("gflops", "GFLOP", "{:.1f}"), ("input_hw", "net input", None), ("size_mb", "MB", "{:.2f}"),
    ("load_ms", "load ms", "{:.0f}"), ("p50_ms", "p50 ms", "{:.1f}"), ("p90_ms", "p90 ms", "{:.1f}"), ("p99_ms", "p99 ms", "{:.1f}"),
    ("e2e_p50_ms", "e2e p50 ms", "{:.1f}"), ("throughput_ips", "img/s (batch)", "{:.2f}"), ("peak_rss_mb", "peak RSS MB", "{:.0f}"),
    ("f1", "F1", "{:.4f}"), ("iou", "IoU", "{:.4f}"), ("auc", "AUC", "{:.4f}"), ("agreement", "Dice vs ref", "{:.4f}"), ("agreement_float", "Dice vs float", "{:.4f}"),
    ("gflops_per_s", "GFLOP/s", "{:.1f}"), ("roofline_frac", "roofline", "{:.2f}"),
]


def _fmt(v, f):
    if v is None:
        return "–"
    return f.format(v) if f else str(v)


def markdown(records: list[BenchRecord], meta: dict) -> str:
    head = "| " + " | ".join(h for _, h, _ in MD_COLUMNS) + " |"
    sep = "|" + "|".join(" --- " for _ in MD_COLUMNS) + "|"
    rows = []
    for r in records:
        cells = []
        for k, _, f in MD_COLUMNS:
            v = getattr(r, k)
            if k == "precision" and r.precision_requested and r.precision_requested != v:
                cells.append(f"{v} (asked {r.precision_requested})")
            elif k == "throughput_ips" and v is not None:
                cells.append(f"{v:.2f} (b{r.batch_size})")
            else:
                cells.append(_fmt(v, f))
        rows.append("| " + " | ".join(cells) + " |")
    peak = meta.get("peak", {})
    lines = [
        f"Machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, ISA flags {', '.join(meta['machine']['isa_flags']) or 'none of interest'}; "
        f"{meta['threads']} threads; {meta['images']}; image {meta['image_size']}; {meta['date']}.",
        f"Peak ({peak.get('method', 'n/a')}): FP32 {peak.get('fp32_gflops')} GFLOP/s (OpenVINO), {peak.get('numpy_fp32_gflops')} (numpy), BF16 {peak.get('bf16_gflops')} GFLOP/s.",
        "p50/p90/p99: engine call only, one image; e2e: with preprocessing (CLAHE) and postprocessing. GFLOP: the model at the whole "
        "padded image; net input: what the engine ran (the FOV's bounding box, padded). Roofline: GFLOP/s from direct convolution MACs "
        "at the net input over the measured peak of the precision that ran; Winograd kernels can exceed 1.",
        "",
        head, sep, *rows,
    ]
    failed = [r for r in records if r.status != "ok"]
    if failed:
        lines += ["", "Cells not ok:"] + [f"- {r.variant} / {r.backend}: {r.status}: {r.error}" for r in failed]
    noted = [r for r in records if r.note]
    if noted:
        lines += ["", "Notes:"] + [f"- {r.variant} / {r.backend}: {r.note}" for r in noted]
    return "\n".join(lines) + "\n"


def write_json(path: Path, records: list[BenchRecord], meta: dict) -> None:
    path.write_text(json.dumps({"meta": meta, "results": [r.to_dict() for r in records]}, indent=2))


def write_csv(path: Path, records: list[BenchRecord]) -> None:
    names = [f.name for f in fields(BenchRecord)]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=names)
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


def plot_pareto(path: Path, records: list[BenchRecord], meta: dict) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [r for r in records if r.status == "ok" and r.p50_ms and r.f1 is not None]
    if not pts:
        return False
    fig, ax = plt.subplots(figsize=(8, 5.5))
    markers = {"onnxruntime": "o", "openvino": "s", "paddle": "^"}
    for r in pts:
        ax.scatter(r.p50_ms, r.f1, marker=markers.get(r.backend, "x"), s=50)
        ax.annotate(f"{r.variant}\n{r.backend} {r.precision}", (r.p50_ms, r.f1), fontsize=6.5, xytext=(4, 2), textcoords="offset points")
    front = pareto_front([(r.p50_ms, r.f1) for r in pts])
    ax.plot([pts[i].p50_ms for i in front], [pts[i].f1 for i in front], "k--", lw=1, label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel(f"p50 latency per {meta['image_size']} image, ms ({meta['threads']} threads, log scale)")
    ax.set_ylabel("F1 on DRIVE test (FOV, pooled)")
    ax.set_title(f"fundus-edge: speed vs accuracy — {meta['machine']['cpu']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return True
