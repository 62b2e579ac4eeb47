"""The card's DRIVE test section: the pooled figures with their 95 % intervals and the per-image table,
and the headline rewritten from a per-image statistics file without a second read of the images."""

from __future__ import annotations

import re
from pathlib import Path

from fundus_edge.modelcard.common import SCORING_ENGINE, STATS_DIR, engine_label


def with_intervals(lines: list[str], model: Path, stats: str = "") -> list[str]:
    """The card's DRIVE test headline rewritten with 95 % intervals from its per-image statistics file
    (``evaluate --per-image-out``; default docs/test-stats/NAME.json): no second read of the test images. The
    file must hold the card's own figures (F1, AUC, IoU to 4 places), else it is another read's."""
    from fundus_edge.measure.intervals import load_stats, record_intervals

    path = Path(stats) if stats else STATS_DIR / f"{model.name}.json"
    st, rec = load_stats(path)
    pooled = rec["pooled"]
    i = next((k for k, x in enumerate(lines) if x.startswith("## DRIVE test")), None)
    if i is None or not lines[i + 1].startswith("F1 **"):
        raise SystemExit(f"{model / 'MODEL_CARD.md'}: no '## DRIVE test' section with an 'F1 **x**' line")
    stated = re.match(r"F1 \*\*([\d.]+)\*\*.*AUC \*\*([\d.]+)\*\*.*IoU ([\d.]+)", lines[i + 1])
    if stated is None or stated.groups() != tuple(f"{pooled[k]:.4f}" for k in ("f1", "auc", "iou")):
        raise SystemExit(
            f"{path}: its F1 / AUC / IoU are not the card's ({model.name}): another read's statistics"
        )
    root = STATS_DIR.parents[1]
    shown = path.resolve().relative_to(root).as_posix() if path.resolve().is_relative_to(root) else str(path)
    j = i + 2  # the headline, and the intervals line after it when an earlier update wrote one
    if j + 1 < len(lines) and lines[j] == "" and lines[j + 1].startswith("Intervals: 95 % bootstrap"):
        j += 2
    lines[i + 1 : j] = test_headline(pooled, record_intervals(rec, st), shown)
    return lines


def test_headline(pooled: dict, intervals: dict, stats_file: str = "") -> list[str]:
    """The DRIVE test section's first lines: the pooled figures, each of F1 / AUC / IoU / Se / Sp with its
    95 % bootstrap interval over the images, and where the per-image statistics are."""

    def fig(k: str, label: str, bold: bool = False) -> str:
        v = f"**{pooled[k]:.4f}**" if bold else f"{pooled[k]:.4f}"
        return f"{label} {v}" + (f" ({intervals[k].ci()})" if k in intervals else "")

    iv = next(iter(intervals.values()), None)
    how = (
        f"Intervals: 95 % bootstrap over the {iv.n_images} images ({iv.resamples} resamples, percentile; "
        "measure/intervals.py)"
        + (f", from the per-image statistics in `{stats_file}`" if stats_file else "")
        + ". A difference between two models is claimed only when its paired interval excludes 0 "
        "(`python -m fundus_edge.measure.intervals A.json B.json`)."
        if iv is not None
        else ""
    )
    return [
        f"{fig('f1', 'F1', True)}, {fig('auc', 'AUC', True)}, {fig('iou', 'IoU')}, "
        f"accuracy {pooled['acc']:.4f}, {fig('se', 'Se')}, {fig('sp', 'Sp')}, kappa {pooled['kappa']:.4f}.",
        *(["", how] if how else []),
    ]


def drive_section(rep, stats_file: str = "") -> list[str]:
    m = rep.pooled
    return [
        f"## DRIVE test (20 images, 1st_manual, FOV pixels pooled, through {engine_label(SCORING_ENGINE)})",
        *test_headline(m.to_dict(), rep.intervals, stats_file),
        "",
        "| image | F1 | IoU | Acc | AUC |",
        "| --- | --- | --- | --- | --- |",
        *[f"| {n} | {pm.f1:.4f} | {pm.iou:.4f} | {pm.acc:.4f} | {pm.auc:.4f} |" for n, pm in rep.per_image],
        "",
    ]
