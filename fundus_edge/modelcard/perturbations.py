"""The card's Camera perturbations section: DRIVE test F1 under each perturbation with its interval and
the paired drop against clean, from the per-image counts kept in docs/test-stats/perturbations/."""

from __future__ import annotations

from pathlib import Path

from fundus_edge.modelcard.common import ROOT, SCORING_ENGINE, STATS_DIR, engine_label, record_report

# Each shipped model's DRIVE test scores under camera perturbations with every row's per-image counts
# (evaluate --perturb --per-image-out): the card's table is rewritten from them without reading the images.
PERTURB_DIR = ROOT / "docs" / "test-stats" / "perturbations"
PERTURB_HEAD = "## Camera perturbations"


def perturb_stats(model: Path) -> Path:
    """Where a model's perturbed read keeps its per-image counts (read at call time, so tests can move it)."""
    return PERTURB_DIR / f"{model.name}.json"


def _perturb_command(model: Path, data: str, out: str) -> str:
    return (
        f"fundus-edge evaluate {model} --data {data} --perturb --backend {SCORING_ENGINE} --threads 1 "
        f"--why report --rule-before --per-image-out {out}"
    )


def robustness_section(model: Path, data: str, threads: int, force: bool = False) -> list[str]:
    """Score the model under every perturbation through ONNX Runtime, keep the per-image counts in
    docs/test-stats/perturbations/NAME.json and return the card's section written from them."""
    import json

    from fundus_edge.evaluate import evaluate_perturbed
    from fundus_edge.measure.camera import PERTURBATIONS

    out = perturb_stats(model)
    if out.exists() and not force:
        raise SystemExit(
            f"{out}: exists (pass --force to measure again, or --update perturbations to reuse it)"
        )
    rep = evaluate_perturbed(
        model, data, PERTURBATIONS, backend=SCORING_ENGINE, threads=threads, progress=False
    )
    record_report(
        rep, model, f"fundus-edge evaluate {model} --data {data} --perturb --backend {SCORING_ENGINE}"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rep.to_dict(with_stats=True), separators=(",", ":")) + "\n")
    return perturbation_section(out, model)


def _short(iv, signed: bool = False) -> str:
    """``0.7767 (0.768-0.786)``; a difference ``-0.0465 (-0.0510 to -0.0421)``."""
    if signed:
        return f"{iv.value:+.4f} ({iv.low:+.4f} to {iv.high:+.4f})"
    return f"{iv.value:.4f} ({iv.low:.3f}-{iv.high:.3f})"


def perturbation_rows(rec: dict, where: str) -> list[tuple[str, object, object, object]]:
    """(name, F1 interval, paired ΔF1 interval or None for clean, AUC interval or None) per row of a
    perturbed evaluation's per-image file: F1 and ΔF1 recomputed from its counts (the same resample draws for
    every row, so ΔF1's is the paired interval against clean), AUC's as evaluated (from the probability
    histograms, which the file does not keep)."""
    from fundus_edge.measure.intervals import ImageStats, Interval, bootstrap, paired, point

    rows = rec.get("rows") or []
    if not rows or rows[0].get("perturbation") != "clean" or any("image_stats" not in r for r in rows):
        raise SystemExit(
            f"{where}: not an `evaluate --perturb --per-image-out` file (clean first, with counts)"
        )
    stats = [ImageStats.from_dict(r["image_stats"], where) for r in rows]
    out = []
    for r, st in zip(rows, stats, strict=True):
        if abs(point(st)["f1"] - r["f1"]) > 1e-9:
            raise SystemExit(f"{where}: {r['perturbation']}'s counts do not give its F1 {r['f1']:.4f}")
        f1 = bootstrap(st, {"f1": r["f1"]})["f1"]
        drop = None if st is stats[0] else paired(stats[0], st, ("f1",))["f1"].diff
        auc = (r.get("intervals") or {}).get("auc")
        out.append((r["perturbation"], f1, drop, Interval(**auc) if auc else None))
    return out


def perturbation_section(path: Path, model: Path) -> list[str]:
    """The card's Camera perturbations section from a per-image file (no read of the images)."""
    import json

    try:
        rec = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"{path}: cannot read the perturbed evaluation ({e})") from None
    root = STATS_DIR.parents[1]
    p = Path(path).resolve()
    shown = p.relative_to(root).as_posix() if p.is_relative_to(root) else str(path)
    rows = perturbation_rows(rec, shown)
    lines = [
        f"{PERTURB_HEAD} (DRIVE test, FOV pooled, through {engine_label(SCORING_ENGINE)}; the runtime "
        "rescales each input to the training FOV)",
        "| perturbation | F1 (95 % CI) | ΔF1 (paired 95 % CI) | AUC (95 % CI) |",
        "| --- | --- | --- | --- |",
    ]
    for name, f1, drop, auc in rows:
        lines.append(
            f"| {name} | {_short(f1)} | {'reference' if drop is None else _short(drop, True)} "
            f"| {'n/a' if auc is None else _short(auc)} |"
        )
    worst = min(rows[1:], key=lambda r: r[2].value)
    lost = [r[0] for r in rows[1:] if r[2].high < 0]
    iv = rows[0][1]
    return lines + [
        "",
        f"Largest loss: {worst[0]}, {worst[2].value:+.4f} F1 (paired 95 % CI {worst[2].low:+.4f} to "
        f"{worst[2].high:+.4f}). A loss is claimed only where its paired "
        "interval excludes 0: "
        + (", ".join(lost) if lost else "none")
        + f"; the other rows are not distinguishable from clean on {iv.n_images} images. Intervals: 95 % "
        f"bootstrap over the images ({iv.resamples} resamples, percentile); ΔF1's is paired (one draw of "
        f"images for the row and for clean). Figures through {engine_label(SCORING_ENGINE)} (fp32) alone: "
        f"{engine_label('openvino')}'s, measured beside them before, were identical to 4 places and are not "
        "re-measured. Per-image counts: "
        f"`{shown}`; command: `{_perturb_command(model, rec.get('data', 'DRIVE'), shown)}`.",
        "",
    ]
