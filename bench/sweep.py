"""``run_bench``: prepare variants and images, run the cells, derive columns, write the reports."""

from __future__ import annotations

import re
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from fundus_edge.quantize.variants import float_counterpart
from fundus_edge.runtime.manifest import manifest_sha256, read_manifest

from . import report
from .biomarker_drift import add_drift
from .cell import LATER_MIN_RUNS
from .history import probe_history
from .html_report import write_report
from .ledger_rows import record_test_reads
from .machine import PROBE_METHOD, SpeedProbe, cpu_info, measure_peak, versions
from .records import BenchRecord
from .runner import (
    DRIVE_SIZE,
    PROBE_EVERY,
    BenchConfig,
    cell_key,
    machine_terms,
    plan_cells,
    prepare_images,
    run_cells,
    shape_rows,
    shape_skipped,
)
from .variants import prepare_variants

# A cell whose vessel masks (every test image, inside its FOV) have a Dice below MIN_AGREEMENT with the
# variant's reference engine's, or whose F1 falls more than MAX_F1_DROP below it, ran "fast and wrong".
# A quantized variant is held to its float model (the float variant's reference row, same run) as strictly
# as the project's own rules hold a model it ships (INT8 variants within 0.005 F1 of their float model,
# models/wnet-small/MODEL_CARD.md; quantize's accuracy control 0.005): a vessel Dice below
# MIN_AGREEMENT_FLOAT or a pooled F1 more than MAX_F1_DROP_FLOAT below the float model's is wrong.
# Measured: two float engines agree to 1.000, two engines running one INT8 file to ~0.99, INT8 against
# its float model 0.981-0.994 (all pixels, 2026-12-04); a cell that misses a sixth of the vessels ~0.91.
MIN_AGREEMENT = 0.95
MAX_F1_DROP = 0.02
MIN_AGREEMENT_FLOAT = 0.98
MAX_F1_DROP_FLOAT = 0.005


def pixel_ratio(input_hw: str | None, model: dict) -> float:
    """Pixels of the network input that ran over those the model's GMAC figure was counted at
    ("584x565 (padded to 584x568)"); convolution work scales with pixels."""
    run = re.fullmatch(r"(\d+)x(\d+)", input_hw or "")
    at = re.search(r"padded to (\d+)x(\d+)", str(model.get("gmac_at", "")))
    if not run or not at:
        return 1.0
    return int(run[1]) * int(run[2]) / (int(at[1]) * int(at[2]))


def _read_files(man, fmt: str | None) -> list[str]:
    """The files the engine read (one format), or every file when the cell never loaded one."""
    return list(man.formats.get(fmt) or man.files)


PROBE_WHEN = f"; before round 1, every {PROBE_EVERY} cells of it and after each round"


def speed_meta(probes: list[float], reference: list[float]) -> dict | None:
    """The run's speed probes (``machine.SpeedProbe``) as results.json keeps them, with the machine's usual
    speed (the median of its earlier runs' probes, ``reference``) and how far this run was from it."""
    if not probes:
        return None
    rng, offset = machine_terms(probes, reference)
    return {
        "method": PROBE_METHOD + PROBE_WHEN,
        "ms": [round(v, 2) for v in probes],
        "median_ms": round(statistics.median(probes), 2),
        "spread_pct": None if rng is None else round(rng, 1),
        "reference_ms": round(statistics.median(reference), 2) if reference else None,
        "reference_runs": len(reference),
        "offset_pct": None if offset is None else round(offset, 1),
    }


def _probe(threads: int, window_s: float):
    """The speed probe, or None where OpenVINO cannot build it (no machine term in the spreads then)."""
    try:
        return SpeedProbe(threads, window_s)
    except Exception as exc:  # noqa: BLE001 - the bench runs without it and says so in meta
        why = f"{exc.__class__.__name__}: {str(exc)[:200]}"
        print(f"speed probe unavailable ({why}); the spreads are the rounds' own")
        return None


def peak_for(precision: str, peak: dict) -> float | None:
    """The measured peak a row's roofline is taken against: INT8 for any row whose convolutions ran in
    integers (int8, int8+fp32, int8+bf16), else BF16 or FP32; None where that peak was not measured."""
    if "int8" in precision and "sim" not in precision:
        return peak.get("int8_gops")
    return peak.get("bf16_gflops") if "bf16" in precision else peak.get("fp32_gflops")


def _with_model(rec: BenchRecord, model_dir, peak: dict) -> BenchRecord:
    """``rec`` with the columns its model folder gives: the folder and its manifest's sha256, parameters,
    GFLOPs, the size of the files the engine read, and (a row that ran) the work rate and roofline share."""
    man = read_manifest(model_dir)
    gflops = 2.0 * man.model.get("gmac", 0.0)
    rec = replace(
        rec,
        model_dir=str(model_dir),
        model_sha256=manifest_sha256(model_dir),
        params=man.model.get("params"),
        gflops=round(gflops, 3),
        size_mb=round(sum(Path(model_dir, f).stat().st_size for f in _read_files(man, rec.format)) / 1e6, 3),
    )
    if rec.status != "ok" or not rec.p50_ms:
        return rec
    # The work actually done: the network ran on the FOV's box, not the whole padded frame.
    per_s = gflops * pixel_ratio(rec.input_hw, man.model) / (rec.p50_ms / 1e3)
    pk = peak_for(rec.precision or "fp32", peak)
    # The measured peak is the CPU's: a GPU row gets no roofline fraction.
    on_gpu = str(rec.device or "").startswith("gpu")
    return replace(rec, gflops_per_s=per_s, roofline_frac=per_s / pk if pk and not on_gpu else None)


def _judged(rec: BenchRecord, ref_f1: dict) -> BenchRecord:
    """``rec``, or it marked wrong_output (saying why) when it ran "fast and wrong": masks or F1 too far
    from its variant's reference engine, or an INT8 row's from its float model's."""
    if rec.status != "ok":
        return rec
    wrong = []
    if rec.agreement is not None and rec.agreement < MIN_AGREEMENT:
        wrong.append(f"vessel Dice {rec.agreement:.3f} with the reference engine's masks")
    if rec.agreement_float is not None and rec.agreement_float < MIN_AGREEMENT_FLOAT:
        wrong.append(
            f"vessel Dice {rec.agreement_float:.4f} with the float model's masks"
            f" (inside the FOV; at least {MIN_AGREEMENT_FLOAT})"
        )
    rf = ref_f1.get(rec.variant)
    if rf is not None and rec.f1 is not None and rec.f1 < rf - MAX_F1_DROP:
        wrong.append(f"F1 {rec.f1:.4f} vs {rf:.4f} on the reference engine")
    ff = ref_f1.get(float_counterpart(rec.variant) or "")
    if ff is not None and rec.f1 is not None and rec.f1 < ff - MAX_F1_DROP_FLOAT:
        wrong.append(
            f"F1 {rec.f1:.4f} vs {ff:.4f} for the float model"
            f" ({rec.f1 - ff:+.4f}; at most {MAX_F1_DROP_FLOAT} below)"
        )
    return replace(rec, status="wrong_output", error="; ".join(wrong)) if wrong else rec


def finalize(raw: list[dict], dirs: dict, errors: dict, peak: dict) -> list[BenchRecord]:
    """The cells' raw results (their private ``_`` keys dropped) as records with the model's columns and
    the accuracy checks applied, then one export_failed record per variant that could not be built."""
    ref_f1 = {}
    for d in raw:
        if d.get("status") == "ok" and d["variant"] not in ref_f1:
            ref_f1[d["variant"]] = d.get("f1")
    recs = [_judged(_with_model(BenchRecord.from_dict(d), dirs[d["variant"]], peak), ref_f1) for d in raw]
    for name, err in errors.items():
        recs.append(BenchRecord(variant=name, backend="*", status="export_failed", error=err))
    return recs


def run_bench(
    cfg: BenchConfig, progress: bool = True, command: str | None = None
) -> tuple[list[BenchRecord], dict]:
    """``command``: the command line the test-read ledger's rows name (default: this process's arguments)."""
    cfg = cfg.effective()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    dirs, errors, build_s = prepare_variants(cfg, progress)
    t_built = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        n, desc = prepare_images(cfg, tmp / "images.npz")
        has_labels = desc.startswith("DRIVE")
        peak = measure_peak(cfg.threads)
        cells = plan_cells(dirs, cfg)
        machine = cpu_info()
        reference = probe_history(machine, PROBE_METHOD + PROBE_WHEN)
        probe = _probe(cfg.threads, cfg.window_s)
        raw, round_s, probes = run_cells(
            cells, cfg, tmp / "images.npz", n, has_labels, tmp, progress, probe, reference
        )
        t_drift = (
            time.perf_counter()
        )  # after every timing round: the biomarkers never run beside a timed cell
        drift = add_drift(raw, tmp / "images.npz", cfg.threads) if has_labels else {}
        drift_s = round(time.perf_counter() - t_drift, 1)
        records = finalize(raw, dirs, errors, peak)
        meta = {
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": machine,
            "versions": versions(),
            "threads": cfg.threads,
            "image_size": f"{DRIVE_SIZE[0]}x{DRIVE_SIZE[1]}",
            "images": desc,
            "peak": peak,
            "speed_probe": speed_meta(probes, reference),
            "quick": cfg.quick,
            "timing": (
                f"{cfg.warmup} warm-up runs (1 for a model of 100 ms or more per call), then each test image"
                f" once (the accuracy pass is the first round) and the images again in turn until"
                f" {cfg.window_s:g} s have passed (later rounds: at least {LATER_MIN_RUNS} calls, 3 for"
                f" such a model, and {cfg.window_s:g} s)"
                if has_labels
                else f"{cfg.warmup} warm-up runs, then the images in turn, up to {cfg.runs} timed runs"
                f" (at least {cfg.min_runs}) within {cfg.budget_s:.0f} s"
            )
            + f", in each of {cfg.rounds} rounds over the run; p50 the median of the rounds' p50s,"
            f" perf_counter; throughput with batch {cfg.batch}",
            "rounds": cfg.rounds,
            "wall_s": None,
            "build_s": build_s,
            "build_wall_s": round(t_built - t0, 1),
            "cell_s": {r["_key"]: r["_wall_s"] for r in raw},  # the accuracy pass (round 1), per cell
            "round_s": round_s,  # each later timing round, all cells
            "biomarker_s": drift_s if drift else None,  # the biomarker drift, after the rounds
            "biomarker_masks": drift or None,  # masks computed, masks met again (same hash), cells compared
            "shape_rows": {
                "variant": cfg.shape_variant,
                "rows": {e: shape_rows()[e] for e in {c.backend for c in cells if c.shape}},
                "skipped": {
                    e: why
                    for e, why in shape_skipped().items()
                    if any(c.backend == e and c.variant == cfg.shape_variant for c in cells)
                },
            }
            if any(c.shape for c in cells)
            else None,
        }
        write_overlays(out, records, dirs, tmp, has_labels)
    meta["wall_s"] = round(time.perf_counter() - t0, 1)
    report.write_json(out / "results.json", records, meta)
    report.write_csv(out / "results.csv", records)
    (out / "results.md").write_text(report.markdown(records, meta))
    report.plot_pareto(out / "pareto.png", records, meta)
    write_report(out / "results.json")
    record_test_reads(records, dirs, cfg.data, has_labels, command, cfg.quick, run_dir=out)  # not docs/
    return records, meta


def write_overlays(out: Path, records: list[BenchRecord], dirs: dict, tmp: Path, has_labels: bool) -> None:
    """For the fastest ok cell of each variant, ``overlay_<variant>.png`` of the first test image: true
    positives, false positives and false negatives against the manual label (predicted vessels alone
    without labels); and ``fastest_vs_most_accurate.png`` side by side."""
    from fundus_edge.runtime.images import write_png

    z = np.load(tmp / "images.npz")
    img = z["img_000"]
    label = z["lab_000"] if has_labels and "lab_000" in z.files else None
    fov = z["fov_000"] if "fov_000" in z.files else None
    best = {}
    for r in records:
        if r.status == "ok" and r.p50_ms and (r.variant not in best or r.p50_ms < best[r.variant].p50_ms):
            best[r.variant] = r
    drawn = {}
    for v, r in best.items():
        key = cell_key(v, r.backend, r.precision_requested, r.device, r.shape_requested)
        f = tmp / f"{key.replace('/', '_')}.prob.npy"
        if f.exists():
            pic = report.agreement_overlay(img, np.load(f) >= read_manifest(dirs[v]).threshold, label, fov)
            write_png(out / f"overlay_{v}.png", pic)
            drawn[v] = (r, pic)
    if not drawn:
        return
    fastest = min(drawn.values(), key=lambda rp: rp[0].p50_ms)
    scored = [rp for rp in drawn.values() if rp[0].f1 is not None]
    accurate = max(scored, key=lambda rp: rp[0].f1) if scored else None
    panels = [fastest] + ([accurate] if accurate and accurate[0] is not fastest[0] else [])
    title = lambda r: (
        f"{r.variant} / {r.backend} {r.precision}: {r.p50_ms:.0f} ms"
        + (f", F1 {r.f1:.4f}" if r.f1 is not None else "")
    )  # noqa: E731
    report.side_by_side(
        out / "fastest_vs_most_accurate.png",
        [
            (("fastest: " if i == 0 else "most accurate: ") + title(r), pic)
            for i, (r, pic) in enumerate(panels)
        ],
        legend=label is not None,
    )
