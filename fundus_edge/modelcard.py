"""Write ``MODEL_CARD.md`` for a shipped model from its run folder, its manifest, a test-set
evaluation and per-engine latency, so every figure in the card comes from one rerunnable command:

    python -m fundus_edge.modelcard --run runs/default --model models/default --data DRIVE
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import time
from pathlib import Path

from fundus_edge.measure.ledger import count_lineage, identify, ledger_path, read_ledger, record
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


def architecture(model: dict) -> str:
    """The network in words, from the manifest's model record."""
    blocks = [
        x
        for x, on in (
            ("LeakyReLU", model.get("act") == "leaky"),
            ("residual 1x1 shortcuts", model.get("residual")),
            ("conv bridges on the skips", model.get("bridge")),
            (
                f"space-to-depth by {model.get('s2d')} in, depth-to-space out (no full-resolution layer)",
                (model.get("s2d") or 1) > 1,
            ),
        )
        if on
    ]
    extra = "".join(f", {b}" for b in blocks)
    if model.get("arch") == "wnet":
        b = int(model["base"])
        widths = "/".join(str(b * 2**i) for i in range(int(model["depth"]) + 1))
        return (
            "W-Net (two stacked U-Nets, the second reading the image and the first one's vessel probability; "
            f"widths {widths}{extra})"
        )
    return f"U-Net ({model['arch']}, base {model['base']}, depth {model['depth']}{extra})"


def schedule(o) -> str:
    # The cycles share the iterations after warm-up (train/config.py).
    return (
        f"{o.schedule} ({o.cycles} cycles of {(o.iters - o.warmup) // o.cycles} iterations)"
        if o.schedule == "cosine-restarts"
        else o.schedule
    )


# The training log keeps each validation's pooled figures, not per-image counts, so its rows cannot carry a
# bootstrap interval over images; the cards say so where they print them (tests/test_intervals_everywhere.py).
NO_LOG_CI = "no interval: the training log keeps pooled figures, not per-image counts"


def _log_table(log: list[dict], perturbed: tuple, refit: bool = False, select: str = "robust") -> list[str]:
    if refit:
        return [
            "Training loss (a refit has no validation split; its figures are in the validation run's table, "
            "Experiments):",
            "",
            "| iteration | loss (EMA) | learning rate |",
            "| --- | --- | --- |",
            *[f"| {r['iteration']} | {float(r['loss']):.4f} | {r['lr']} |" for r in log],
        ]
    if not perturbed:
        return [
            f"Validation F1 and AUC at each logged iteration, pooled over the held-out images ({NO_LOG_CI}):",
            "",
            "| iteration | val F1 | val AUC | threshold |",
            "| --- | --- | --- | --- |",
            *[
                f"| {r['iteration']} | {float(r['val_f1']):.4f} | {float(r['val_auc']):.4f} "
                f"| {float(r['threshold']):.3f} |"
                for r in log
            ],
        ]
    kept = "the best mean of the two" if select == "robust" else "the best clean F1"
    return [
        f"Validation F1 clean and mean F1 under {', '.join(perturbed)} (the checkpoint kept is {kept}; "
        f"{NO_LOG_CI}):",
        "",
        "| iteration | val F1 clean | val F1 perturbed | val AUC | threshold |",
        "| --- | --- | --- | --- | --- |",
        *[
            f"| {r['iteration']} | {float(r['val_f1']):.4f} | {float(r['val_f1_perturbed']):.4f} "
            f"| {float(r['val_auc']):.4f} | {float(r['threshold']):.3f} |"
            for r in log
        ],
    ]


# Each shipped model's DRIVE test scores under camera perturbations with every row's per-image counts
# (evaluate --perturb --per-image-out): the card's table is rewritten from them without reading the images.
PERTURB_DIR = Path(__file__).resolve().parents[1] / "docs" / "test-stats" / "perturbations"
PERTURB_HEAD = "## Camera perturbations"


def _perturb_command(model: Path, data: str, out: str) -> str:
    return (
        f"fundus-edge evaluate {model} --data {data} --perturb --backend onnxruntime --threads 1 "
        f"--why report --rule-before --per-image-out {out}"
    )


def _robustness(model: Path, data: str, threads: int, force: bool = False) -> list[str]:
    """Score the model under every perturbation through ONNX Runtime, keep the per-image counts in
    docs/test-stats/perturbations/NAME.json and return the card's section written from them."""
    import json

    from fundus_edge.evaluate import evaluate_perturbed
    from fundus_edge.measure.camera import PERTURBATIONS

    out = PERTURB_DIR / f"{model.name}.json"
    if out.exists() and not force:
        raise SystemExit(
            f"{out}: exists (pass --force to measure again, or --update perturbations to reuse it)"
        )
    rep = evaluate_perturbed(
        model, data, PERTURBATIONS, backend="onnxruntime", threads=threads, progress=False
    )
    _record_report(rep, model, f"fundus-edge evaluate {model} --data {data} --perturb --backend onnxruntime")
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
        f"{PERTURB_HEAD} (DRIVE test, FOV pooled, through ONNX Runtime; the runtime rescales each input to "
        "the training FOV)",
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
        "images for the row and for clean). Figures through ONNX Runtime (fp32) alone: OpenVINO's, measured "
        "beside them before, were identical to 4 places and are not re-measured. Per-image counts: "
        f"`{shown}`; command: `{_perturb_command(model, rec.get('data', 'DRIVE'), shown)}`.",
        "",
    ]


def _latency_section(model: Path, data: str, threads: int) -> list[str]:
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


TEST_DATA_NOTE = "the 20 test images are never trained on; how often they were read is under Test reads"
READS_HEAD = "## Test reads"


def _ordinal(n: int) -> str:
    return {1: "best", 2: "second best", 3: "third best"}.get(n, f"{n}th best")


def _read_stats(lineage: str, f1: str):
    """The per-image statistics of a ledger read (docs/test-stats/LINEAGE.json, when its pooled F1 is the
    read's to 4 places), None when they were not kept (a candidate that did not ship, an older read)."""
    from fundus_edge.measure.intervals import load_stats

    path = STATS_DIR / f"{lineage}.json"
    if not f1 or not path.is_file():
        return None
    st, rec = load_stats(path)
    return (st, rec) if f"{rec['pooled']['f1']:.4f}" == f"{float(f1):.4f}" else None


def _read_ci(lineage: str, f1: str) -> str:
    """``95 % CI 0.817-0.830`` for a ledger read's F1, or says that read kept no per-image statistics."""
    from fundus_edge.measure.intervals import record_intervals

    got = _read_stats(lineage, f1)
    return (
        record_intervals(got[1], got[0])["f1"].ci() if got else "no interval: per-image statistics not kept"
    )


def reads_section(lineage: str, ledger: Path | None = None) -> list[str]:
    """``DRIVE test reads: N`` for this model's lineage and how its shipped figure was chosen, both
    counted from the test-read ledger (docs/test-reads.md), never typed by hand."""

    def n(k: int, word: str) -> str:
        return f"{k} {word}{'' if k == 1 else 's'}"

    path = ledger or ledger_path()
    c = count_lineage(read_ledger(path) if path else [], lineage)
    s = c.shipped
    rule = (
        "a read whose use was written down before it"
        if s is not None and s.rule_before == "yes"
        else "a read with no rule written down before it"
    )
    if s is None:
        how = "no read of this lineage in the ledger is marked as the shipped one."
    elif c.reads == 1:
        how = f"the shipped figure is that one read ({rule})."
    elif c.candidates == 1:
        # One pre-registered score; the other reads checked the model already fixed (perturbations, INT8).
        how = f"the shipped figure (F1 {s.f1}, {_read_ci(lineage, s.f1)}) is its one candidate score, {rule}."
    else:
        how = (
            f"the shipped figure (F1 {s.f1}, {_read_ci(lineage, s.f1)}) is the {_ordinal(c.rank)} of the "
            f"{n(c.candidates, 'candidate score')}, from {rule}."
        )
    times = "once" if c.reads == 1 else f"{c.reads} times"
    detail = (
        f" ({n(c.candidates, 'candidate score')}, {n(c.gates, 'gate check')} before shipping)"
        if c.reads > 1
        else ""
    )
    where = "in this model's lineage"
    if c.search:
        where = (
            f"in the recipe search `{c.search}` this model came from, counted as one lineage (lineages "
            + ", ".join(f"`{m}`" for m in c.members)
            + ")"
        )
    # Re-scores of fixed models (bench runs, cards) are listed in the ledger but not counted, and not numbered
    # here either: every `make bench` adds some, and a card must not go stale because a bench ran.
    later = "; re-scores of models already fixed (bench runs) are listed there and not counted"
    return [
        f"{READS_HEAD} (`docs/test-reads.csv`, lineage `{lineage}`)",
        f"DRIVE test reads: {c.reads}",
        f"The 20 DRIVE test images were read {times} {where}{detail}{later}; {how}",
        *search_lines(c, path),
        "",
    ]


_WORDS = {2: "two", 3: "three", 4: "four", 5: "five"}


def search_lines(c, path: Path | None) -> list[str]:
    """For a lineage of a recipe search: the search's candidate scores, each with the bar it was read
    against, and for every bar read more than once which candidate was the better one (so a figure that
    met a bar as the best of several reads says so)."""
    if not c.search:
        return []
    from fundus_edge.measure.ledger import bar_of

    rows = read_ledger(path) if path else []
    cand = sorted(
        (r for r in rows if r.lineage in c.members and r.why in ("candidate", "shipped")),
        key=lambda r: r.date,
    )
    listed = "; ".join(
        f"`{r.lineage}` {r.f1 or 'n/a'} ({_read_ci(r.lineage, r.f1)}"
        + (f"; bar {bar_of(r)}, {'shipped' if r.why == 'shipped' else 'not shipped'}" if bar_of(r) else "")
        + ")"
        for r in cand
    )
    k = len(cand)
    out = [
        "",
        f"The search read test {_WORDS.get(k, str(k)) + ' times' if k != 1 else 'once'} for its candidates,"
        f" in order: {listed}.",
    ]
    by_bar: dict[str, list] = {}
    for r in cand:
        if bar_of(r) and r.f1:
            by_bar.setdefault(bar_of(r), []).append(r)
    for bar, rs in by_bar.items():
        if len(rs) > 1:
            best = max(rs, key=lambda r: float(r.f1))
            out.append(
                f"For the {bar} bar, `{best.lineage}` had the higher point figure of "
                f"{_WORDS.get(len(rs), len(rs))} candidates"
                f" on their test reads ({', '.join(f'`{r.lineage}` {r.f1}' for r in rs)}; "
                f"{_paired_reads(best, [r for r in rs if r is not best])}): a figure that met"
                " the bar as the best of several reads is a selected figure, not a one-shot one."
            )
    return out


def _paired_reads(best, others) -> str:
    """The paired comparison of the best read with each other one where both kept per-image statistics, or
    why there is none (a read whose statistics were not kept has only its point figure)."""
    from fundus_edge.measure.intervals import paired

    b = _read_stats(best.lineage, best.f1)
    parts = []
    for r in others:
        o = _read_stats(r.lineage, r.f1)
        if b is None or o is None:
            parts.append(f"against `{r.lineage}` no paired interval: its per-image statistics were not kept")
            continue
        c = paired(o[0], b[0], ("f1",))["f1"]
        parts.append(f"against `{r.lineage}` {c.diff.value:+.4f} ({c.diff.ci()}): {c.verdict}")
    return "; ".join(parts)


NOTES_HEAD = "## Experiments"


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def notes_section(notes: str | Path, card_dir: Path) -> list[str]:
    """A link to the experiment diary and its headings, not the diary itself: the diary lives in docs/
    and grows; the card stays short (under 200 lines)."""
    notes = Path(notes)
    if not notes.is_file():
        raise SystemExit(f"{notes}: no such notes file")
    rel = Path(os.path.relpath(notes.resolve(), card_dir.resolve())).as_posix()
    heads = [m.groups() for m in re.finditer(r"^(#{2,3}) (.+)$", notes.read_text(), re.M)]
    return [
        NOTES_HEAD,
        "",
        "The experiment diary of this model's runs (protocols, rules fixed before each test read, "
        f"validation curves, candidates) is [{notes.name}]({rel}):",
        "",
        *[f"{'  ' if len(h) == 3 else ''}- [{title}]({rel}#{_anchor(title)})" for h, title in heads],
    ]


def _git_last_commit(path: Path) -> str:
    """The last commit that holds ``path`` (empty outside a git checkout)."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "log", "-1", "--format=%h", "--", path.name],
            cwd=path.parent,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def provenance_section(model: Path, run: Path | None = None) -> list[str]:
    """Where the shipped weights came from: the checkpoint (and the sha256 of its weights, when the run
    folder is at hand), the config and the training log, and the exported files' sha256."""
    from fundus_edge.runtime.manifest import sha256

    man = read_manifest(model)
    src = man.source or {}
    ckpt = src.get("checkpoint")
    out = ["## Provenance"]
    best = Path(run) / "best" if run else None
    if best is not None and (best / "model.pdparams").is_file():
        commit = _git_last_commit(best / "model.pdparams")
        at = f" as committed in {commit}" if commit else ""
        out.append(
            f"- Weights: exported from `{ckpt or best}` (iteration {src.get('iteration')}); "
            f"its `model.pdparams` sha256 `{sha256(best / 'model.pdparams')}` (computed from `{best}`{at})."
        )
    elif ckpt:
        out.append(
            f"- Weights: exported from `{ckpt}` (iteration {src.get('iteration')}); that checkpoint's sha256 "
            "was not recorded and the run folder is gone, so the exported files below are the reference."
        )
    elif isinstance(src.get("pruning"), dict):
        s = src["pruning"].get("source")
        name = s.get("path") or s.get("name") if isinstance(s, dict) else s
        sha = (
            f" (its manifest's sha256 `{s['manifest_sha256']}`)"
            if isinstance(s, dict) and s.get("manifest_sha256")
            else ""
        )
        out.append(
            f"- Weights: pruned and fine-tuned from `{name}`{sha}; the fine-tune's record is "
            "`source.pruning` in `manifest.yaml`."
        )
    out.append(
        "- Exported files (sha256, as `manifest.yaml` pins them): "
        + ", ".join(f"`{f}` `{h}`" for f, h in man.files.items())
        + "."
    )
    if run and (Path(run) / "config.yaml").is_file():
        cfg = Path(run) / "config.yaml"
        commit = _git_last_commit(cfg)
        kept = f"`git show {commit}:{cfg}`" if commit else f"`{cfg}`"
        out.append(f"- Config: {kept} (the YAML under Training; also `source.config` in `manifest.yaml`).")
    else:
        out.append(
            "- Config: `source.config` in `manifest.yaml` (the training config as the checkpoint stored it)."
        )
    log = Path(run) / "log.csv" if run else None
    if log is not None and log.is_file():
        commit = _git_last_commit(log)
        kept = f"; in git: `git show {commit}:{log}`" if commit else ""
        out.append(f"- Training log: `{log}` ({sum(1 for _ in open(log)) - 1} rows{kept}).")
    out.append("")
    return out


def _record_report(rep, model: Path, command: str) -> None:
    """The card's own scoring of a model already fixed is a ``report`` row of the ledger."""
    record(
        rep,
        "report",
        ledger_path(),
        command=command,
        lineage=model.name,
        rule_before="yes",
        source="fundus_edge.modelcard",
    )


def replace_section(lines: list[str], head: str, new: list[str], before: str = "Reproduce:") -> list[str]:
    """``lines`` with the section starting with ``head`` replaced by ``new`` (added before the
    ``before`` line, Reproduce by default, when the card has none). A section ends at the next heading or
    Reproduce line."""
    if any(x.startswith(head) for x in lines):
        i = next(k for k, x in enumerate(lines) if x.startswith(head))
        j = next(
            (k for k in range(i + 1, len(lines)) if lines[k].startswith(("## ", "Reproduce:"))), len(lines)
        )
        del lines[i:j]
    else:
        i = next((k for k, x in enumerate(lines) if x.startswith(before)), None)
        i = (
            i
            if i is not None
            else next((k for k, x in enumerate(lines) if x.startswith("Reproduce:")), len(lines))
        )
    lines[i:i] = new
    return lines


# Per-image statistics of each shipped model's DRIVE test read (evaluate --per-image-out), for the intervals.
STATS_DIR = Path(__file__).resolve().parents[1] / "docs" / "test-stats"


def _with_intervals(lines: list[str], model: Path, stats: str = "") -> list[str]:
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


def update_card(
    model: Path,
    data: str,
    threads: int,
    sections: list[str],
    notes: str,
    bench: str = "",
    run: str = "",
    stats: str = "",
    force: bool = False,
) -> int:
    """Rewrite some sections of an existing card: for a shipped model whose training run folder is no
    longer at hand (its training and validation sections stay as they were written)."""
    card = model / "MODEL_CARD.md"
    lines = card.read_text().splitlines()
    for sec in sections:
        if sec == "perturb":
            lines = replace_section(lines, PERTURB_HEAD, _robustness(model, data, threads, force))
        elif sec == "perturbations":
            path = Path(stats) if stats else PERTURB_DIR / f"{model.name}.json"
            lines = replace_section(lines, PERTURB_HEAD, perturbation_section(path, model))
        elif sec == "latency":
            lines = replace_section(lines, "## Latency", _latency_section(model, data, threads))
        elif sec == "bench":
            if not bench:
                raise SystemExit("--update bench needs --bench RESULTS_JSON")
            lines = replace_section(lines, "## Every engine and INT8", bench_section(Path(bench), model.name))
        elif sec == "notes":
            if not (notes and Path(notes).is_file()):
                raise SystemExit("--update notes needs --notes FILE")
            k = next((k for k, x in enumerate(lines) if x.startswith("Reproduce:")), len(lines) - 1)
            lines = lines[: k + 1] + ["", *notes_section(notes, model)]
        elif sec == "reads":
            # an INT8 folder counts its float model's lineage (identify: the manifest's name)
            lineage = identify(model)[0] if (model / "manifest.yaml").is_file() else model.name
            lines = replace_section(
                lines, READS_HEAD, reads_section(lineage or model.name), before="## DRIVE test"
            )
            lines = [
                x.replace("the 20 test images were used once, for the figures below", TEST_DATA_NOTE)
                for x in lines
            ]
        elif sec == "intended-use":
            lines = with_intended_use(lines, model)
        elif sec == "intervals":
            lines = _with_intervals(lines, model, stats)
        elif sec == "provenance":
            lines = replace_section(
                lines, "## Provenance", provenance_section(model, Path(run) if run else None)
            )
        else:
            raise SystemExit(
                f"unknown section {sec!r}: choose from perturb, perturbations, latency, bench, notes, reads, "
                "provenance, intended-use, intervals"
            )
    card.write_text("\n".join(lines) + "\n")
    print(f"rewrote {', '.join(sections)} in {card}")
    return 0


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


def _test_section(rep, stats_file: str = "") -> list[str]:
    m = rep.pooled
    return [
        "## DRIVE test (20 images, 1st_manual, FOV pixels pooled, through ONNX Runtime)",
        *test_headline(m.to_dict(), rep.intervals, stats_file),
        "",
        "| image | F1 | IoU | Acc | AUC |",
        "| --- | --- | --- | --- | --- |",
        *[f"| {n} | {pm.f1:.4f} | {pm.iou:.4f} | {pm.acc:.4f} | {pm.auc:.4f} |" for n, pm in rep.per_image],
        "",
    ]


def _pruned_card(
    model: Path,
    data: str,
    threads: int,
    command: str,
    perturb: bool,
    notes: str,
    argv_line: str,
    bench: str = "",
) -> list[str]:
    """A card for a model made by ``fundus-edge quantize --prune`` from another shipped model: its
    training is the source model's plus the fine-tune recorded in the manifest."""
    from fundus_edge.evaluate import evaluate_source

    man = read_manifest(model)
    pr = man.source["pruning"]
    cfg = man.source.get("config", {})
    rep = evaluate_source(model, data, split="test", backend="onnxruntime", progress=False)
    _record_report(rep, model, f"python -m fundus_edge.modelcard {argv_line}")
    # The source is recorded as {name, variant, manifest_sha256, path} (older manifests: a path string).
    s = pr["source"]
    src, pr_ratio = (
        (Path(s.get("path") or f"models/{s['name']}") if isinstance(s, dict) else Path(s)),
        pr["ratio"],
    )
    default_command = f"fundus-edge quantize {src} --out {model} --prune {pr_ratio} --data DRIVE"
    val = int(cfg.get("data", {}).get("val_count", 0))
    kept = (
        f"{20 - val} for fine-tuning, the checkpoint best on the other {val} kept"
        if val
        else "all 20, final weights kept"
    )
    return [
        f"# Model card: `{model.name}`",
        "",
        f"Vessel segmentation {architecture(man.model)} with {pr['ratio']:.0%} of the filters of every "
        f"3x3 convolution removed: {man.model['params']:,} parameters (from {pr['params_before']:,}), "
        f"{man.model['gmac']:.2f} GMAC at {man.model['gmac_at']} (from {pr['gmac_before']:.2f}). "
        f"Input: {man.preprocess.channels}, scaled to [-1, 1]; output: vessel probability; "
        f"threshold {man.threshold:.3f} (the source model's).",
        "",
        "## Training",
        f"- Command: `{command or default_command}`",
        f"- Source: `{src}` (its card gives its own training: command, data, time, metrics).",
        f"- Pruning: {pr['tool']} (PaddleSlim, dygraph): the {pr['ratio']:.0%} of each 3x3 convolution's "
        "filters with the smallest L1 norm removed.",
        f"- Fine-tune: {pr['finetune_iters']} iterations at a fixed learning rate {pr['finetune_lr']} on "
        f"{pr['finetune_crop']}x{pr['finetune_crop']} crops with the source's augmentation, DRIVE training "
        f"images only ({kept}); wall time {pr['finetune_s'] / 60:.1f} min on this CPU (2 cores).",
        "",
        *reads_section(model.name),
        *_test_section(rep),
        *_latency_section(model, data, threads),
        *(bench_section(Path(bench), model.name) if bench else []),
        *(_robustness(model, data, threads) if perturb else []),
        *provenance_section(model),
        f"Reproduce: `python -m fundus_edge.modelcard {argv_line}` ({time.strftime('%Y-%m-%d')}).",
        *(["", *notes_section(notes, model)] if notes else []),
    ]


def _float_clause(float_dir: Path, lineage: str, ledger: Path | None) -> tuple[str, str]:
    """The pruned build's float model in the card: its manifest's validation F1 (same split) and its
    lineage's DRIVE test reads, each as a clause ('' when the folder is not at hand)."""
    path = ledger or ledger_path()
    reads = count_lineage(read_ledger(path) if path else [], lineage).reads
    reads_clause = f"; its lineage `{lineage}` has {reads} DRIVE test reads (its card's Test reads)"
    if not (float_dir / "manifest.yaml").is_file():
        return reads_clause, ""
    f1 = (read_manifest(float_dir).source or {}).get("validation", {}).get("val_f1")
    same = f"; `{float_dir.name}` on the same images: {f1:.4f} (its manifest, no interval)" if f1 else ""
    return reads_clause, same


def pruned_build_card(model: Path, ledger: Path | None = None) -> list[str]:
    """A card for a shipped build of the bench's pruned recipe (models/default-pruned), like the INT8
    folders' cards: every figure from its manifest, its float model's manifest and the test-read ledger; no
    DRIVE read and no timing (the bench measures it)."""
    from fundus_edge.quantize.variants import DEFAULT_MODEL, derived

    model = Path(model)
    man = read_manifest(model)
    pr = (man.source or {}).get("pruning")
    if not isinstance(pr, dict) or not isinstance(pr.get("source"), dict):
        raise SystemExit(f"{model}: its manifest records no pruning of a model folder (source.pruning)")
    s, cfg, val = pr["source"], man.source.get("config", {}), man.source.get("validation") or {}
    float_dir = model.parent / Path(s.get("path") or s["name"]).name
    row = derived(model.name, lambda m: m == float_dir.name)
    bench = row.recipe if row is not None and row.source == DEFAULT_MODEL else model.name
    reads_clause, float_f1 = _float_clause(float_dir, s["name"], ledger)
    n_val, seed = int(cfg.get("data", {}).get("val_count", 0)), cfg.get("data", {}).get("split_seed")
    size = sum((model / f).stat().st_size for f in man.files) / 1e6
    here, flt = f"{model.parent.name}/{model.name}", f"{model.parent.name}/{float_dir.name}"
    left_out = (
        "; the build's legacy program is left out, as in every shipped model: the engines read the PIR and "
        "ONNX files first, PaddleSlim PTQ exports its own"
        if "legacy" not in man.formats
        else ""
    )
    card = [
        f"# Model card: `{model.name}`",
        "",
        f"The shipped [`{float_dir.name}`](../{float_dir.name}/MODEL_CARD.md) pruned {pr['ratio']:.0%} (the "
        f"3x3 convolutions' filters of smallest L1 norm removed) and fine-tuned {pr['finetune_iters']} "
        f"iterations on the DRIVE training images: {man.model['params']:,} parameters (from "
        f"{pr['params_before']:,}), {man.model['gmac']:.2f} GMAC at {man.model['gmac_at']} (from "
        f"{pr['gmac_before']:.2f}), {size:.2f} MB of model files; threshold {man.threshold:.3f} (F1-optimal "
        f"on the fine-tune's validation images). The bench's `{bench}` variant, shipped so that `make bench` "
        f"measures it without the fine-tune: it builds `build/models/{bench}` only when this folder no "
        f"longer matches `{flt}` or the bench's pruning settings.",
        "",
        "## How it was made",
        f"- Command: `fundus-edge quantize {flt} --out build/models/{bench} "
        f"--prune {pr['ratio']} --data DRIVE` (the bench's `{bench}` recipe), the folder copied here"
        f" ({', '.join(f'`{f}`' for f in man.formats)}{left_out}).",
        f"- Pruning: {pr['tool']} (PaddleSlim, dygraph): the {pr['ratio']:.0%} of each 3x3 convolution's "
        "filters with the smallest L1 norm removed.",
        f"- Fine-tune: {pr['finetune_iters']} iterations at a fixed learning rate {pr['finetune_lr']} on "
        f"{pr['finetune_crop']}x{pr['finetune_crop']} crops with the source's augmentation, DRIVE training "
        f"images only ({20 - n_val} for fine-tuning, the checkpoint best on the other {n_val} kept: "
        f"iteration {man.source.get('iteration')}); wall time {pr['finetune_s'] / 60:.1f} min.",
        f"- Float model: `{flt}`, manifest sha256 `{s['manifest_sha256']}`{reads_clause}.",
        "",
        "## Validation (training images)",
        f"Pooled FOV F1 on the {n_val} validation images (DRIVE training images held out of the fine-tune, "
        f"split seed {seed}) at the threshold {man.threshold:.3f}: **{val.get('val_f1', float('nan')):.4f}** "
        f"(AUC {val.get('val_auc', float('nan')):.4f}, IoU {val.get('val_iou', float('nan')):.4f}, "
        "no interval: "
        f"the fine-tune keeps pooled figures of its {n_val} validation images, not per-image counts; "
        f"`source.validation` in `manifest.yaml`){float_f1}. These files have no DRIVE test figure of their "
        "own here: the bench re-scores them in every run (`docs/results/`), reads the ledger lists as "
        "reports and does not count.",
        "",
        "## Use",
        f"`fundus-edge predict {here} IMAGES -o OUT`; `fundus-edge bench` measures "
        f"it as `{bench}` and quantizes it for `{bench}-int8` (no second fine-tune).",
        "",
        *reads_section(model.name, ledger),
        *provenance_section(model),
        f"Reproduce: `python -m fundus_edge.modelcard --model {here} --pruned-build`.",
    ]
    return with_intended_use(card, model)


INTENDED_HEAD = "## Intended use and limits"
# Scores of shipped models on images outside DRIVE, one row each (docs/intended-use.md says what they are).
OUTSIDE_DRIVE = Path(__file__).resolve().parents[1] / "docs" / "outside-drive.csv"
# DRIVE as its authors describe it (Staal et al. 2004; the data set's README): who and which camera.
DRIVE_POPULATION = (
    "DRIVE: 40 colour fundus photographs (20 training, 20 test) from a Dutch diabetic-retinopathy screening "
    "programme, one camera (Canon CR5 non-mydriatic 3CCD, 45° field of view), 768x584 frames cropped to "
    "565x584 around a FOV about 540 px across. No age, sex or ethnicity breakdown comes with the copy used "
    "here, so behaviour across them is unmeasured."
)


def card_f1(lines: list[str]) -> float | None:
    """The pooled DRIVE test F1 a card states (its ``F1 **x**`` line), None when it states none."""
    m = next((re.search(r"^F1 \*\*([0-9.]+)\*\*", x) for x in lines if x.startswith("F1 **")), None)
    return float(m.group(1)) if m else None


def card_f1_text(lines: list[str]) -> str | None:
    """The card's DRIVE test F1 with its interval as the headline states it (``0.8232 (95 % CI
    0.817-0.830)``; the figure alone on a card without intervals), None when it states none."""
    head = r"^F1 \*\*([0-9.]+)\*\*( \(95 % CI [0-9.-]+\))?"
    m = next((re.search(head, x) for x in lines if x.startswith("F1 **")), None)
    return m.group(1) + (m.group(2) or "") if m else None


def _outside_f1(r: dict) -> str:
    """A row of docs/outside-drive.csv as ``F1 0.7934 (95 % CI 0.781-0.805)``, or says it has no interval."""
    ci = (r.get("f1 95 % CI") or "").strip()
    return f"F1 {r['f1']} " + (f"(95 % CI {ci})" if ci else "(no interval: no per-image figures)")


def card_drops(lines: list[str]) -> dict[str, str]:
    """ΔF1 per perturbation as the card's Camera perturbations table states it (``-0.0465 (-0.0510 to
    -0.0421)``: the figure and its paired interval; the ONNX Runtime column of an older table)."""
    rows = (x.split("|") for x in lines if re.match(r"^\| (jpeg|scale|gamma|grey)\S* \|", x))
    return {r[1].strip(): r[3].strip() for r in rows}


def _card_lines(models_dir: Path, name: str | None) -> list[str]:
    """Model ``name``'s card beside this one, less its intended-use section ([] when it is not at hand)."""
    card = models_dir / name / "MODEL_CARD.md" if name else None
    return _without_intended(card.read_text().splitlines()) if card and card.is_file() else []


def _source_name(model: Path) -> str | None:
    """The shipped model this folder was derived from (INT8 or pruned build), None for a trained one."""
    src = read_manifest(model).source or {}
    if isinstance(src.get("float_model"), dict):
        return src["float_model"]["name"]
    s = (src.get("pruning") or {}).get("source")
    return s.get("name") if isinstance(s, dict) else None


def _outside_lines(name: str, source: str | None, models_dir: Path, rows: list[dict]) -> list[str]:
    # One bullet per card (the longest cards are at the 200-line limit); the rows' details stay in the CSV.
    # No difference from DRIVE test is printed: the two figures are of different images (no paired interval).
    def scored(n: str) -> str:
        f1 = card_f1_text(_card_lines(models_dir, n))
        return "; ".join(
            f"{r['data']}, {r['population and camera']}: {_outside_f1(r)}"
            + f", {r['date'] or 'undated'}, by {r['measured by']}, reproducible here: "
            + r["reproducible here"].split(":")[0]
            for r in rows
            if r["model"] == n
        ) + (f"; against DRIVE test F1 {f1}" if f1 else "")

    for n, who in ((name, "this model"), (source, f"its source `{source}`, not these files")):
        if n and any(r["model"] == n for r in rows):
            return [f"- Measured outside DRIVE ({who}; `docs/outside-drive.csv`): {scored(n)}."]
    # One line, not the rows: the figures are another model's, and the card stays under 200 lines.
    others = "; ".join(
        f"`{m}` (DRIVE test F1 {card_f1_text(_card_lines(models_dir, m)) or 'n/a'}): "
        + ", ".join(f"{r['data']} {_outside_f1(r)}" for r in rows if r["model"] == m)
        for m in sorted({r["model"] for r in rows})
    )
    return [
        f"- Measured outside DRIVE: never, for `{name}`"
        + (f" or its source `{source}`" if source else "")
        + (
            f". Models that were: {others} (`docs/outside-drive.csv`); another model's figures say nothing "
            "certain about this one."
            if others
            else "."
        )
    ]


def intended_use_section(model: Path, lines: list[str], outside: Path = OUTSIDE_DRIVE) -> list[str]:
    """What the model is for and not for, what it was trained on, where it was measured outside DRIVE
    and its known failure modes, each figure from this card, its source model's card or ``outside``."""
    model = Path(model)
    source = _source_name(model)
    lines = _without_intended(lines)
    src_lines = _card_lines(model.parent, source)
    if not any("DRIVE training images" in x for x in lines + src_lines):
        raise SystemExit(
            f"{model}: its card states no DRIVE training data; the intended-use text knows DRIVE only"
        )
    drops, whose = card_drops(lines), "this model"
    if not drops and source:
        drops, whose = card_drops(src_lines), f"its source `{source}`, not measured for these files"
    rows = list(csv.DictReader(open(outside, newline=""))) if Path(outside).is_file() else []
    jpeg = ", ".join(f"quality {k[4:]} {v}" for k, v in drops.items() if k.startswith("jpeg"))
    fails = (
        [
            # one bullet: the longest cards are at the 200-line limit
            f"- Known failure modes ({whose}, DRIVE test, ΔF1 with its paired 95 % CI; docs/cameras.md): "
            f"heavy JPEG, {jpeg} (blocking erases the 1-2 px capillaries; a camera storing JPEG at a higher "
            f"resolution loses less); small FOVs, half DRIVE's scale {drops['scale0.5']}, smaller not "
            "measured. An image whose FOV is not found is not rescaled (a one-line warning), and a large "
            "image run without the rescaling (`--no-rescale`) misses most vessels.",
        ]
        if jpeg and "scale0.5" in drops
        else ["- Failure modes: not measured for this model or its source."]
    )
    where = f"the card of `{source}`" if source else "Training"
    return [
        INTENDED_HEAD,
        "- For: research on retinal-vessel segmentation and the engineering of screening software "
        "(benchmarks, devices, pipelines). Not a medical device, not cleared by any regulator, not for "
        "diagnosis, screening decisions or treatment of anyone (NOTICE).",
        f"- Trained on: the DRIVE training images only (see {where}). " + DRIVE_POPULATION,
        *_outside_lines(model.name, source, model.parent, rows),
        *fails,
        "",
    ]


def _without_intended(lines: list[str]) -> list[str]:
    """A card's lines less its intended-use section (which quotes the rest, so must not be read back)."""
    return replace_section(list(lines), INTENDED_HEAD, []) if INTENDED_HEAD in lines else list(lines)


def with_intended_use(lines: list[str], model: Path) -> list[str]:
    """``lines`` (a card) with its intended-use section replaced, or added before its first section."""
    base = _without_intended(lines)
    first = next((x for x in base if x.startswith("## ")), "Reproduce:")
    return replace_section(base, INTENDED_HEAD, intended_use_section(model, base), before=first)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", help="training run folder (log.csv, best/); required unless --update")
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", help="DRIVE (required but with --pruned-build)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-command", default="")
    ap.add_argument(
        "--notes",
        default="",
        help="the experiment diary (docs/experiments-*.md) the card links to, with its headings",
    )
    ap.add_argument(
        "--perturb",
        action="store_true",
        help="add DRIVE-test F1 under camera perturbations (ONNX Runtime; per-image counts kept in "
        "docs/test-stats/perturbations/NAME.json)",
    )
    ap.add_argument(
        "--bench",
        default="",
        help="a make bench results.json: add the latency and F1 of this model and its INT8 variants "
        "on every engine",
    )
    ap.add_argument(
        "--pruned-build",
        action="store_true",
        help="the card of a shipped build of the bench's pruned recipe (models/default-pruned) from its "
        "manifest and the test-read ledger alone: no DRIVE read, no timing, no --data",
    )
    ap.add_argument(
        "--update",
        help="only rewrite these sections of an existing card (comma list of perturb, perturbations, "
        "latency, bench, notes, reads, provenance, intended-use, intervals); --run is then read only by "
        "provenance (its best/, config.yaml and log.csv); perturb measures again, perturbations rewrites "
        "the table from docs/test-stats/perturbations/NAME.json",
    )
    ap.add_argument(
        "--stats",
        default="",
        help="with --update intervals: the per-image statistics of the card's DRIVE test read "
        "(evaluate --per-image-out; default docs/test-stats/NAME.json); with --update perturbations: those "
        "of its perturbed read (default docs/test-stats/perturbations/NAME.json)",
    )
    ap.add_argument(
        "--force", action="store_true", help="overwrite the per-image file of a perturbed read (--perturb)"
    )
    return ap


def _run_lines(run: Path, data: str, man, best, last) -> tuple[str, str, str]:
    """Where a trained model's threshold came from, and the card's Data and Iterations lines."""
    from fundus_edge.evaluate import evaluate_source

    wall = (
        f"wall time {last.elapsed_s / 60:.0f} min on this CPU (2 cores shared with other work; see README)."
    )
    if best.config.data.val_count == 0:
        # A refit's threshold comes from its validation run, or is the F1-optimal one on the training images
        # (--threshold train, or `evaluate --split train --best-threshold` at export): check which, on the
        # checkpoint as those choose it (the runtime's FOV rescaling moves the flat optimum by ~0.005).
        on_train = evaluate_source(run / "best", data, split="train", progress=False)
        t_train, f1_train = on_train.best_threshold
        if abs(t_train - man.threshold) <= 0.0015:
            thr_src = (
                f"the F1-optimal threshold on the {on_train.images} training images, "
                f"F1 {f1_train:.4f} there, in-sample and without interval: the threshold maximises it "
                "on these same images; "
                "`fundus-edge evaluate CHECKPOINT --data DRIVE --split train --best-threshold`"
            )
            chosen = (
                "the recipe and iteration count were chosen on a 16/4 validation split first, "
                "the threshold on all training images"
            )
        else:
            thr_src = "taken from the validation run of the same recipe"
            chosen = "the recipe, iteration count and threshold were chosen on a 16/4 validation split first"
        data_line = (
            f"- Data: DRIVE training images only, all 20 (a refit: {chosen}, see Experiments; "
            f"no checkpoint selection); {TEST_DATA_NOTE}."
        )
        iters_line = f"- Iterations: {last.iteration} (final weights); {wall}"
    else:
        val = best.config.data.val_count
        thr_src = "chosen on validation"
        data_line = (
            f"- Data: DRIVE training images only: {20 - val} for training, {val} held out for validation "
            f"(split seed {best.config.data.split_seed}); {TEST_DATA_NOTE}."
        )
        iters_line = f"- Iterations: {last.iteration} (best validation F1 at {best.iteration}); {wall}"
    return thr_src, data_line, iters_line


def _recipe_line(o, man) -> str:
    return (
        f"- Recipe: {o.batch_size} random {o.crop}x{o.crop} crops per step, rotation/scale/flip/90° turns, "
        f"colour jitter; cross-entropy + {o.dice_weight} x Dice (vessel); "
        f"Adam, {schedule(o)} from {o.lr} with {o.warmup} warm-up steps, weight decay {o.weight_decay}."
        + (
            f" Both U-Nets' outputs supervised (the first with weight {o.aux_weight}); "
            "only the second is exported."
            if man.model.get("arch") == "wnet"
            else ""
        )
    )


def _trained_card(a, argv_line: str) -> list[str]:
    """A card for a model exported from the training run ``a.run``: every figure from the run folder,
    the manifest, a test-set evaluation and the latency measured here."""
    from fundus_edge.evaluate import evaluate_source
    from fundus_edge.train.checkpoint import read_checkpoint

    run, model = Path(a.run), Path(a.model)
    man = read_manifest(model)
    best = read_checkpoint(run / "best")
    last = read_checkpoint(run / "last")
    log = list(csv.DictReader(open(run / "log.csv")))
    rep = evaluate_source(model, a.data, split="test", backend="onnxruntime", progress=False)
    _record_report(rep, model, "python -m fundus_edge.modelcard " + argv_line)
    refit = best.config.data.val_count == 0
    thr_src, data_line, iters_line = _run_lines(run, a.data, man, best, last)
    lines = [
        f"# Model card: `{man.name}`",
        "",
        f"Vessel segmentation {architecture(man.model)}: "
        f"{man.model['params']:,} parameters, {man.model['gmac']:.2f} GMAC at {man.model['gmac_at']}. "
        f"Input: RGB + CLAHE green ({man.preprocess.channels}), scaled to [-1, 1]; "
        f"output: vessel probability; threshold {man.threshold:.3f} ({thr_src}).",
        "",
        "## Training",
        f"- Command: `{a.train_command or 'fundus-edge train --config ' + man.name}`",
        data_line,
        _recipe_line(best.config.optim, man),
        iters_line,
        "",
        "Config (`" + str(run / "config.yaml") + "`):",
        "",
        "```yaml",
        (run / "config.yaml").read_text().strip(),
        "```",
        "",
        *_log_table(log, best.config.optim.val_perturb, refit, best.config.optim.select),
        "",
        *reads_section(model.name),
        *_test_section(rep),
        *_latency_section(model, a.data, a.threads),
        *(bench_section(Path(a.bench), model.name) if a.bench else []),
        *(_robustness(model, a.data, a.threads, a.force) if a.perturb else []),
        *provenance_section(model, run),
        # last: the date is taken when the card is done, after the measurements above
        f"Reproduce: `python -m fundus_edge.modelcard --run {a.run} --model {a.model} --data {a.data}"
        f"{' --perturb' if a.perturb else ''}{' --bench ' + a.bench if a.bench else ''}"
        f"{' --notes ' + a.notes if a.notes else ''}` ({time.strftime('%Y-%m-%d')}).",
    ]
    if a.notes:
        lines += ["", *notes_section(a.notes, model)]
    return lines


def main(argv=None) -> int:
    ap = _parser()
    a = ap.parse_args(argv)
    if a.pruned_build:
        model = Path(a.model)
        (model / "MODEL_CARD.md").write_text("\n".join(pruned_build_card(model)) + "\n")
        print((model / "MODEL_CARD.md").read_text())
        return 0
    # sections rewritten from files in the repository alone
    offline = {"intervals", "reads", "perturbations", "intended-use", "bench"}
    if not a.data and not (a.update and {x.strip() for x in a.update.split(",") if x.strip()} <= offline):
        ap.error("the following arguments are required: --data")
    if a.update:
        return update_card(
            Path(a.model),
            a.data,
            a.threads,
            [x.strip() for x in a.update.split(",") if x.strip()],
            a.notes,
            a.bench,
            a.run or "",
            a.stats,
            a.force,
        )
    line = " ".join(argv if argv is not None else sys.argv[1:])
    if a.run:
        model = Path(a.model)
        (model / "MODEL_CARD.md").write_text(
            "\n".join(with_intended_use(_trained_card(a, line), model)) + "\n"
        )
        print((model / "MODEL_CARD.md").read_text())
        return 0
    if "pruning" in read_manifest(Path(a.model)).source:
        lines = _pruned_card(
            Path(a.model), a.data, a.threads, a.train_command, a.perturb, a.notes, line, a.bench
        )
        lines = with_intended_use(lines, Path(a.model))
        (Path(a.model) / "MODEL_CARD.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return 0
    ap.error(
        "--run is required (or --update SECTIONS for an existing card, or a pruned model whose manifest "
        "records its pruning)"
    )


if __name__ == "__main__":
    raise SystemExit(main())
