"""``fundus-edge evaluate --perturb``: scores under camera perturbations, one table row each."""

from __future__ import annotations

import json

from .common import write_per_image
from .ledger import record_read


def run_perturbed(a) -> int:
    """evaluate --perturb: the model folder's scores under camera perturbations, one table row each."""
    from fundus_edge.evaluate import evaluate_perturbed
    from fundus_edge.measure.camera import PERTURBATIONS
    from fundus_edge.measure.robustness import perturbed_cells

    names = (
        PERTURBATIONS if a.perturb == "all" else tuple(n.strip() for n in a.perturb.split(",") if n.strip())
    )
    rep = evaluate_perturbed(
        a.source,
        a.data,
        names,
        split=a.split,
        layout=a.layout,
        threshold=a.threshold,
        backend=a.backend,
        threads=a.threads,
        rescale=not a.no_rescale,
        crop_fov=not a.no_fov_crop,
        progress=not a.no_progress,
        biomarkers=a.biomarkers,
    )
    record_read(a, rep)
    write_per_image(a, rep)
    if a.json:
        print(json.dumps(rep.to_dict(), indent=2))
        return 0
    print(
        f"{rep.source} on {rep.data} ({rep.split}, {rep.images} images, FOV pooled, "
        f"threshold {rep.threshold:.3f}, via {rep.via}, rescale {'on' if rep.rescale else 'off'})"
    )
    extra = " best threshold (F1) |" if a.best_threshold else ""
    print(
        "| perturbation | F1 (95 % CI) | ΔF1 (paired 95 % CI) | AUC (95 % CI) | IoU |"
        + extra
        + "\n| --- | --- | --- | --- | --- |"
        + (" --- |" if extra else "")
    )
    for r in rep.rows:
        f1, delta, auc = perturbed_cells(r)
        best = ""
        if a.best_threshold:
            best = (
                " n/a |"
                if r.best_threshold is None
                else f" {r.best_threshold[0]:.3f} ({r.best_threshold[1]:.4f}) |"
            )
        print(f"| {r.perturbation} | {f1} | {delta} | {auc} | {r.metrics.iou:.4f} |{best}")
    if rep.images >= 2:
        print(
            f"(95 % bootstrap intervals over the {rep.images} images; ΔF1's is paired: the same image draws "
            "for the perturbed and the clean scores)"
        )
    if a.best_threshold and rep.split == "test":
        print("(best thresholds on a test split: report them, never ship them)")
    if a.biomarkers:
        _print_biomarker_changes(rep)
    return 0


def _print_biomarker_changes(rep) -> None:
    from fundus_edge.measure.biomarkers import NAMES

    print(
        "\nbiomarker change from the clean masks, % "
        "(mean |perturbed - clean| / mean |clean|, per image pairs)"
    )
    print("| perturbation | " + " | ".join(NAMES) + " |\n|" + " --- |" * (len(NAMES) + 1))
    for r in rep.rows[1:]:
        print(
            f"| {r.perturbation} | "
            + " | ".join(
                "n/a" if r.biomarker_change[n] is None else f"{r.biomarker_change[n]:.1f}" for n in NAMES
            )
            + " |"
        )
