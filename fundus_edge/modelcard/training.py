"""The card's header and Training section of a trained model: the network in words, the recipe, the
schedule, where the threshold came from, and the training log's table."""

from __future__ import annotations

from pathlib import Path

TEST_DATA_NOTE = "the 20 test images are never trained on; how often they were read is under Test reads"


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


def log_table(log: list[dict], perturbed: tuple, refit: bool = False, select: str = "robust") -> list[str]:
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


def run_lines(run: Path, data: str, man, best, last) -> tuple[str, str, str]:
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


def recipe_line(o, man) -> str:
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
