"""``MODEL_CARD.md`` of a site-adapted model (``OUT/model``) and of its INT8 builds, from ``OUT/adapt.json``,
the saved folds (``OUT/folds/``) and the INT8 checks (fundus_edge/adapt_ship.py).

Every figure is one of the run's: the site's cross-validated estimate (pooled held-out folds, 95 % bootstrap
interval over the site's images), the paired gain over the zero-shot model on the same images, the learning
curve, the site files' sha256 and the CPU time. None is a held-out score of the files the card describes:
the final model learned from every site image, which is why the estimate is the cross-validated one.
The project's card writer (fundus_edge/modelcard.py) writes cards of DRIVE-trained models from a run and a
DRIVE test read; an adapted model has neither, so only its DRIVE description is reused here.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

from fundus_edge.measure.intervals import ImageStats, Interval, paired, point

CARD = "MODEL_CARD.md"


# Table cells in the cards' form (tests/test_modelcard.py): the figure, then its 95 % interval in brackets;
# the table's header says "95 % CI".
def _iv(d: dict | None) -> str:
    return "n/a" if not d else f"{d['value']:.4f} ({d['low']:.3f}-{d['high']:.3f})"


def _signed(iv: Interval) -> str:
    return f"{iv.value:+.4f} ({iv.low:+.3f} to {iv.high:+.3f})"


def _in_order(s: ImageStats, names: tuple[str, ...]) -> ImageStats:
    idx = [s.names.index(n) for n in names]
    pick = lambda a: None if a is None else a[idx]  # noqa: E731
    return ImageStats(names, s.counts[idx], pick(s.pos_hist), pick(s.neg_hist))


def fold_figures(out: Path, k: int) -> tuple[list[float], dict | None]:
    """(each fold's held-out F1, the paired cross-validated - zero-shot F1 interval) from ``out/folds/``;
    the gain is None when a fold file is missing."""
    from fundus_edge.train.adapt import pooled

    from .adapt import fold_file, saved_fold

    cv = [saved_fold(fold_file(out, "all", i)) for i in range(k)]
    zero = saved_fold(fold_file(out, 0, 0))
    if zero is None or any(r is None for r in cv):
        return [], None
    per_fold = [point(r.stats)["f1"] for r in cv]
    both = pooled(cv)
    names = tuple(sorted(both.names))
    gain = paired(_in_order(zero.stats, names), _in_order(both, names), ("f1",))["f1"].diff
    return per_fold, gain.to_dict()


def curve_cpu_seconds(out: Path) -> float:
    """CPU time of every fold the run saved (zero-shot, cross-validation and learning curve)."""
    import json

    return sum(json.loads(p.read_text()).get("cpu_seconds", 0.0) for p in (out / "folds").glob("*.json"))


def site_digest(files: dict) -> str:
    """One sha256 over the site's ``name sha256`` lines, sorted: the whole site in one line."""
    text = "".join(f"{k} {v}\n" for k, v in sorted(files.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def _base_cameras(adapt: dict) -> str:
    """What the shipped model it started from was trained on, from that model's card."""
    from .modelcard import DRIVE_POPULATION

    card = Path(adapt["model"]) / CARD
    text = card.read_text() if card.is_file() else ""
    base = Path(adapt["model"]).name
    if "DRIVE training images" in text:
        return f"`{base}` was trained on the DRIVE training images only. " + DRIVE_POPULATION
    return f"`{base}`'s training data (its card: `{card}`)"


def site_camera(adapt: dict, camera: str | None) -> str:
    """The site's camera: ``camera`` when given, else docs/outside-drive.csv's row for a data set of the
    site folder's name, else a line saying it is not described."""
    from .modelcard import OUTSIDE_DRIVE

    if camera:
        return camera
    name = Path(adapt["site"]).name.lower()
    if Path(OUTSIDE_DRIVE).is_file():
        with open(OUTSIDE_DRIVE, newline="") as f:
            for r in csv.DictReader(f):
                if r["data"].lower().split(" (")[0] == name:
                    return (
                        f"{r['data'].split(' (')[0]}: {r['population and camera']} (docs/outside-drive.csv)"
                    )
    return "not described (give `--camera`)"


def _header(adapt: dict, folder: Path, check) -> list[str]:
    from fundus_edge.runtime.manifest import read_manifest

    man, final = read_manifest(folder), adapt["final"]
    base, n = Path(adapt["model"]).name, adapt["images"]
    what = (
        f"INT8 of the adapted model [`model`](../model/{CARD}) by "
        f"{'NNCF (OpenVINO IR)' if check.quantizer == 'nncf' else 'ONNX Runtime quantize_static'}, for "
        f"{check.engine}, calibrated on {check.calibration_images} of the site's images (not DRIVE's). "
        if check
        else ""
    )
    return [
        f"# Model card: `{man.name}` adapted to `{Path(adapt['site']).name}`"
        + (f", {man.variant}" if check else ""),
        "",
        what
        + f"`{base}` fine-tuned on all {n} labelled images of one site by `fundus-edge adapt`"
        + (
            f", with the training images of `{final['kept']}` kept in every fine-tune"
            if final.get("kept")
            else ""
        )
        + f"; threshold {final['threshold']}, chosen on the site's images (the F1-optimal threshold pooled"
        f" over the images it was trained on); {int(man.model.get('params', 0)):,} parameters.",
        "",
        "## Intended use and limits",
        "- For: research on retinal-vessel segmentation and the engineering of screening software "
        "(benchmarks, devices, pipelines). Not a medical device, not cleared by any regulator, not for "
        "diagnosis, screening decisions or treatment of anyone (NOTICE).",
        f"- Cameras it has seen: {_base_cameras(adapt)} The site's: {site_camera(adapt, adapt.get('camera'))}"
        + (
            f"; and `{final['kept']}`'s training images again, in every fine-tune."
            if final.get("kept")
            else "."
        ),
        "- Its figures are the site's cross-validated estimate of the recipe below (each image scored by a "
        "fine-tune that never saw it), not a held-out score of these files: they learned from every site "
        "image.",
        "",
    ]


def _site_section(adapt: dict) -> list[str]:
    files = adapt.get("site_files") or {}
    return [
        "## Site data",
        f"`{adapt['site']}`: {adapt['images']} images with labels; FOV {adapt['fov']}. sha256 of the "
        f"{len(files)} files it learned from (`adapt.json`, `site_files`); all of them in one digest (sha256 "
        f"of the sorted `name sha256` lines): `{site_digest(files)}`.",
        "",
        "| file | sha256 |",
        "| --- | --- |",
        *(f"| `{k}` | `{v}` |" for k, v in sorted(files.items())),
        "",
    ]


def _estimate_section(adapt: dict, out: Path) -> list[str]:
    per_fold, gain = fold_figures(out, adapt["folds"])
    zs, cv, n, k = adapt["zero_shot"], adapt["cross_validated"], adapt["images"], adapt["folds"]
    zero_thr = next((f["threshold"] for p in adapt["curve"] if p["n_images"] == 0 for f in p["folds"]), None)
    folds = "; folds " + ", ".join(f"{f:.3f}" for f in per_fold) if per_fold else ""
    return [
        "## The site's estimate (cross-validated)",
        f"Pooled FOV F1 and AUC, each with its 95 % bootstrap interval over the {n} images:",
        "",
        "| | F1 (95 % CI) | AUC (95 % CI) |",
        "| --- | --- | --- |",
        f"| zero-shot `{Path(adapt['model']).name}`"
        + (f" (its threshold {zero_thr})" if zero_thr is not None else "")
        + f" | {_iv(zs.get('f1'))} | {_iv(zs.get('auc'))} |",
        f"| {adapt['folds']}-fold cross-validated (held-out folds pooled){folds} | {_iv(cv.get('f1'))} | "
        f"{_iv(cv.get('auc'))} |",
        "| gain, paired over the same images | "
        + (_signed(Interval(**gain)) if gain else "n/a (a fold file is missing in `folds/`)")
        + " | n/a |",
        "",
        "## Learning curve",
        "The same folds, each fine-tune on the first n of its training images (nested, seeded); n = 0 is the "
        "zero-shot model.",
        "",
        *(["Not run (`--curve ''`)."] if not adapt["curve"] else []),
        "| labelled images per fine-tune | F1 (95 % CI over the held-out images) | folds done |",
        "| --- | --- | --- |",
        *(
            f"| {p['n_images']} | {_iv(p['f1'])} | {len(p['folds'])} of {1 if p['n_images'] == 0 else k} |"
            for p in adapt["curve"]
        ),
        "",
    ]


def _rule_section(adapt: dict, out: Path) -> list[str]:
    r, final = adapt["recipe"], adapt["final"]
    cpu = adapt.get("cpu") or "this machine's CPU"
    final_cpu = final.get("cpu_seconds")
    return [
        "## The rule, fixed before any fold was scored",
        f"{r['iters']} iterations of {r['batch_size']} random {r['crop']} px crops, Adam, one cosine cycle "
        f"from {r['lr']:.0e} to {r['lr'] / 100:.0e}, {r['warmup']} warm-up iterations, seed {r['seed']}; the "
        "shipped model's loss, augmentation and camera copies; the threshold that maximises pooled F1 on the "
        "fine-tune's own training images; no checkpoint choice, no early stop (`train/adapt.py`, "
        "`AdaptRecipe`; docs/adapt.md). The final model's threshold was chosen the same way, on every site "
        "image.",
        "",
        "## Cost",
        f"CPU time on {cpu}: zero-shot and the {adapt['folds']} folds "
        f"{adapt.get('cv_cpu_seconds', 0) / 60:.1f} min; every saved fold with the learning curve "
        f"{curve_cpu_seconds(out) / 60:.1f} min; the final fine-tune and "
        + (
            f"export {final_cpu / 60:.1f} min"
            if final_cpu is not None
            else f"export {final['seconds'] / 60:.1f} min wall"
        )
        + (
            f" (wall time of the estimate: {adapt['cv_seconds'] / 60:.1f} min)."
            if adapt["cv_seconds"] >= 60
            # a rerun that resumed every fold from OUT/folds/ spends no time on the estimate itself
            else " (every fold resumed from a saved one: no wall time of this run's)."
        ),
        "",
    ]


def _int8_section(checks: list, this=None) -> list[str]:
    if not checks:
        return []
    from fundus_edge.bench.sweep import MIN_AGREEMENT_FLOAT
    from fundus_edge.runtime.precision import TOLERANCE

    lines = [
        "## INT8, recalibrated on the site's images",
        "Each engine's own quantizer, calibrated on the site's images at the model's scale (as the runtime "
        "feeds them); validated on the site's images the model was trained on (a site has no others: this "
        "shows INT8 keeps the float model's output, not how either does on new images) through the "
        f"quantizer's engine, at the model's threshold: F1 within ±{TOLERANCE} of the float model's and "
        f"vessel Dice with its masks at least {MIN_AGREEMENT_FLOAT}, or refused (nothing written).",
        "",
        "| build | engine | calibration images | F1 INT8 | F1 float | ΔF1 (paired 95 % CI) | vessel Dice | |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in checks:
        name = f"`model-int8-{c.quantizer}`" + (" (this folder)" if c is this else "")
        lines.append(
            f"| {name} | {c.engine} | {c.calibration_images} | {c.f1:.4f} | {c.f1_float:.4f} | "
            f"{_signed(Interval(**c.delta))} | {c.dice:.4f} | {c.reason} |"
        )
    return [*lines, ""]


def reproduce(adapt: dict, out: Path) -> str:
    """The ``fundus-edge adapt`` command that made the run (the recipe's defaults left out)."""
    from fundus_edge.train.adapt import AdaptRecipe

    from .adapt import CURVE

    curve = [p["n_images"] for p in adapt["curve"]]
    kept = (adapt.get("final") or {}).get("kept")
    return (
        f"fundus-edge adapt {adapt['model']} --data {adapt['site']} --folds {adapt['folds']}"
        + (f" --curve '{','.join(map(str, curve))}'" if tuple(curve) != CURVE else "")
        + (f" --iters {adapt['recipe']['iters']}" if adapt["recipe"]["iters"] != AdaptRecipe().iters else "")
        + (f" --keep {kept}" if kept else "")
        + f" --out {out}"
    )


def card_lines(adapt: dict, out: Path, folder: Path, checks: list, this=None) -> list[str]:
    use = f"fundus-edge predict {folder} IMAGES -o OUT" + (f" --backend {this.engine}" if this else "")
    return [
        *_header(adapt, folder, this),
        *_site_section(adapt),
        *_estimate_section(adapt, out),
        *_rule_section(adapt, out),
        *_int8_section(checks, this),
        "## Use",
        f"`{use}`; a device bundle: `fundus-edge pack {folder} --engine "
        f'{this.engine if this else "onnxruntime"} ...` (docs/adapt.md, "The adapted model").',
        "",
        f"Reproduce: `{reproduce(adapt, out)}`, then `python -m fundus_edge.adapt_ship {out}` (INT8 and "
        "these cards; `fundus-edge adapt` runs it itself after the final model).",
        "",
    ]


def write_cards(out: Path, adapt: dict, checks: list, camera: str | None = None) -> list[Path]:
    """``MODEL_CARD.md`` in ``out/model`` and in each INT8 folder that passed; the paths written."""
    adapt = {**adapt, "camera": camera}
    written = []
    for folder, this in [(out / "model", None), *((Path(c.folder), c) for c in checks if c.folder)]:
        (folder / CARD).write_text("\n".join(card_lines(adapt, out, folder, checks, this)))
        written.append(folder / CARD)
    return written
