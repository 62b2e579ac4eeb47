"""The card's speed sections: per-engine latency measured here, and every engine and INT8 variant of the
model as one bench run recorded them (with F1 through that engine)."""

from __future__ import annotations

import time
from pathlib import Path

from fundus_edge.measure.timing import TimingPolicy, time_calls
from fundus_edge.runtime.manifest import read_manifest

CARD_TIMING = TimingPolicy(warmup=3, runs=15, min_runs=15, budget_s=0.0)  # 15 runs, no budget cut


def latency(
    model: Path, image, threads: int, policy: TimingPolicy = CARD_TIMING
) -> list[tuple[str, str, float]]:
    from fundus_edge.runtime.cpu import has_bf16
    from fundus_edge.runtime.engines import installed_engines
    from fundus_edge.runtime.formats import formats_for
    from fundus_edge.runtime.predictor import Predictor

    rows = []
    fmts = list(read_manifest(model).formats)
    for eng in installed_engines():  # the registry's order, as in the bench
        if not formats_for(eng, fmts):
            continue
        # OpenVINO also in bf16 where the CPU has it, as the bench does (elsewhere it would repeat FP32).
        for precision in (None, "bf16") if eng == "openvino" and has_bf16() else (None,):
            p = Predictor.load(model, backend=eng, threads=threads, precision=precision)
            rows.append((eng, p.precision, time_calls(lambda p=p: p.predict(image).engine_ms, policy).p50))
    return rows


def family_rows(results: dict, name: str) -> list[dict]:
    """The bench rows of model ``name`` and of the variants built from it (``<name>-int8-nncf``, ...;
    for the default model the bench names them fp32, int8, ...), in the bench's order."""
    from fundus_edge.quantize.variants import family

    own = set(family(name))
    return [r for r in results["results"] if r["variant"] in own]


def _bench_f1_cells(r: dict, ref: dict | None) -> tuple[str, str]:
    """A bench row's F1 with its 95 % interval over the test images, and its ΔF1 against ``ref`` (the float
    model's FP32 row on the same engine) with the paired interval: from the rows' ``per_image_counts``.
    Without counts (records before 2026-12-07) the figures alone."""
    import numpy as np

    from fundus_edge.bench.compare import f1_diff
    from fundus_edge.measure.intervals import ImageStats, bootstrap

    f1 = r.get("f1")
    if f1 is None:
        return "n/a", "n/a"
    counts = r.get("per_image_counts")
    f1_text = f"{f1:.4f}"
    if counts and len(counts) >= 2:
        lo, hi = r.get("f1_low"), r.get("f1_high")
        if lo is None or hi is None:
            names = tuple(str(i) for i in range(len(counts)))
            iv = bootstrap(ImageStats(names, np.asarray(counts, np.int64).reshape(-1, 4)), {"f1": f1})["f1"]
            lo, hi = iv.low, iv.high
        f1_text += f" ({lo:.3f}-{hi:.3f})"
    if ref is None or ref.get("f1") is None:
        return f1_text, "n/a"
    if ref is r:
        return f1_text, "reference"
    d = f1_diff(ref.get("per_image_counts"), counts)
    return f1_text, f"{f1 - ref['f1']:+.4f}" + (f" ({d.low:+.4f} to {d.high:+.4f})" if d else "")


NO_BENCH_INTERVAL = "no interval: record predates per-image counts"


def bench_section(bench_json: Path, name: str) -> list[str]:
    """Every engine and INT8 variant of this model as one ``make bench`` run measured them: latency
    and F1 through that engine (with its 95 % interval), ΔF1 against the float model's FP32 row on the same
    engine (with its paired interval), where the record has per-image counts."""
    import json

    from fundus_edge.quantize.variants import float_name

    try:
        results = json.loads(Path(bench_json).read_text())
        meta = results["meta"]
    except (OSError, ValueError, KeyError) as e:
        raise SystemExit(f"{bench_json}: not a bench results.json ({e})") from None
    rows = family_rows(results, name)
    if not rows:
        raise SystemExit(f"{bench_json}: no rows of model {name!r} or its variants; run make bench with them")
    float_row = {
        r["backend"]: r
        for r in rows
        if r["variant"] == float_name(name) and r.get("f1") is not None and not r.get("precision_requested")
    }
    counted = all(r.get("per_image_counts") for r in rows if r.get("f1") is not None)
    m = meta.get("machine", {})
    out = [
        f"## Every engine and INT8 variant in the bench ({meta.get('date')}, {meta.get('threads')} threads, "
        "engine p50 on a 584x565 DRIVE image)",
        f"CPU: {m.get('cpu')}, ISA flags {', '.join(m.get('isa_flags') or []) or 'none of interest'}. "
        "F1 is DRIVE test through that engine; ΔF1 against the float model on the same engine (FP32). "
        + (
            "In brackets: F1's 95 % bootstrap interval over the test images, ΔF1's paired one (the same "
            "image draws for both rows; a difference is claimed only when it excludes 0)."
            if counted
            else f"F1 and ΔF1: {NO_BENCH_INTERVAL} (the bench records them from 2026-12-07)."
        ),
        "",
        "| variant | engine | precision | p50 ms | "
        + ("F1 (95 % CI) | ΔF1 (paired 95 % CI)" if counted else "F1 | ΔF1")
        + " | status |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        f1_text, d = _bench_f1_cells(r, float_row.get(r["backend"]))
        p50 = f"{r['p50_ms']:.1f}" if r.get("p50_ms") is not None else "n/a"
        out.append(
            f"| {r['variant']} | {r['backend']} | {r.get('precision') or 'n/a'} | {p50} | {f1_text} | {d} "
            f"| {r['status']} |"
        )
    return out + [
        "",
        f"From `{bench_json}` (`fundus-edge bench`, as `make bench` runs it); rows of one run compare, "
        "rows of two runs on one CPU drift 10-27 %.",
        "",
    ]


def latency_section(model: Path, data: str, threads: int) -> list[str]:
    from fundus_edge.runtime.cpu import cpu_model_and_flags, isa_flags
    from fundus_edge.runtime.images import read_image

    img = read_image(sorted((Path(data) / "test" / "images").iterdir())[0])
    cpu, isa = cpu_model_and_flags()[0], ", ".join(isa_flags()) or "none of interest"
    return [
        f"## Latency (one 584x565 DRIVE image, {threads} thread{'s' if threads != 1 else ''}, engine call, "
        f"median of 15; measured {time.strftime('%Y-%m-%d')})",
        f"CPU: {cpu}, ISA flags {isa} (timings differ several-fold between CPUs: compare within one card "
        "or one bench run).",
        "",
        "| engine | precision | ms |",
        "| --- | --- | --- |",
        *[f"| {e} | {p} | {ms:.1f} |" for e, p, ms in latency(model, img, threads)],
        "",
    ]
