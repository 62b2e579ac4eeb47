"""Cards of pruned models: one fine-tuned here from a shipped model (evaluated and timed like a trained
model), and a shipped build of the bench's pruned recipe (every figure from manifests and the ledger)."""

from __future__ import annotations

import time
from pathlib import Path

from fundus_edge.measure.ledger import count_lineage, ledger_path, read_ledger
from fundus_edge.modelcard.common import SCORING_ENGINE, record_report
from fundus_edge.modelcard.drive_figures import drive_section
from fundus_edge.modelcard.intended_use import with_intended_use
from fundus_edge.modelcard.latency import bench_section, latency_section
from fundus_edge.modelcard.perturbations import robustness_section
from fundus_edge.modelcard.provenance import notes_section, provenance_section
from fundus_edge.modelcard.reads import reads_section
from fundus_edge.modelcard.training import architecture
from fundus_edge.runtime.manifest import is_model_dir, read_manifest


def pruned_card(
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
    rep = evaluate_source(model, data, split="test", backend=SCORING_ENGINE, progress=False)
    record_report(rep, model, f"python -m fundus_edge.modelcard {argv_line}")
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
        *drive_section(rep),
        *latency_section(model, data, threads),
        *(bench_section(Path(bench), model.name) if bench else []),
        *(robustness_section(model, data, threads) if perturb else []),
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
    if not is_model_dir(float_dir):
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
