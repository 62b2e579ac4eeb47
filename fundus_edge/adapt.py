"""``fundus-edge adapt MODEL --data SITE --folds K``: a site's cross-validated estimate, its learning curve,
and the model fine-tuned on all its images, exported with a manifest and a card.

The order of work, and what each step may read (train/adapt.py holds the fold mechanics):
1. Zero-shot: the shipped model at its own threshold on every site image (nothing is chosen).
2. K folds: fine-tune on K-1 folds from the shipped weights, threshold on those folds, score the held-out
   fold. The held-out folds pooled are the site's estimate, with a 95 % bootstrap interval over images.
3. Learning curve: the same folds, fine-tuning on the first n images of each fold's training images
   (nested, seeded); n = 0 is the zero-shot model, n = all is step 2.
4. The model fine-tuned on every site image (threshold on them), exported beside its manifest; then
   (fundus_edge/adapt_ship.py) its INT8 builds recalibrated and validated on the site's images, and a card
   for each that records the site's file hashes, the cross-validated figures and the recipe.
Nothing here reads a held-out fold before its fine-tune and threshold are fixed; every fold's result is saved
as it finishes, so a killed run resumes from the folds it had done.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fundus_edge.measure.intervals import ImageStats, Interval, bootstrap, point
from fundus_edge.runtime.errors import InputError

CURVE = (0, 2, 5, 10, 15)
RESULTS = "adapt.json"


@dataclass
class CurvePoint:
    n_images: int  # labelled site images each fold's fine-tune saw (0: zero-shot)
    f1: dict  # Interval.to_dict()
    auc: dict | None
    folds: list = field(default_factory=list)  # per fold: n_train, threshold, seconds


@dataclass
class AdaptReport:
    model: str
    site: str
    images: int
    folds: int
    fov: str
    recipe: dict
    zero_shot: dict  # metric -> Interval dict
    cross_validated: dict  # metric -> Interval dict
    curve: list  # CurvePoint dicts
    cv_seconds: float  # wall time of the zero-shot pass and the K folds
    cv_cpu_seconds: float = 0.0  # their CPU time (this process; the figure that does not move with load)
    final: dict | None = None  # the exported model: folder, threshold, seconds
    site_files: dict = field(default_factory=dict)  # file name -> sha256
    cpu: str = ""


def site_hashes(site) -> dict:
    """sha256 of every file of the site that the adapted model learned from (images, labels, FOV masks)."""
    out = {}
    for s in site.images:
        for p in (s.image, s.label, s.fov):
            if p is not None:
                out[f"{p.parent.name}/{p.name}"] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
    return out


def intervals(stats: ImageStats) -> dict:
    return {k: v.to_dict() for k, v in bootstrap(stats).items()}


def fold_file(out: Path, n: int | str, k: int) -> Path:
    return out / "folds" / f"n{n}-fold{k}.json"


def saved_fold(path: Path):
    from fundus_edge.train.adapt import FoldResult

    if not path.is_file():
        return None
    d = json.loads(path.read_text())
    return FoldResult(
        fold=d["fold"],
        n_train=d["n_train"],
        held_out=d["held_out"],
        threshold=d["threshold"],
        seconds=d["seconds"],
        stats=ImageStats.from_dict(d["stats"]),
        cpu_seconds=d.get("cpu_seconds", 0.0),
        train_names=d.get("train", []),
    )


def _save_fold(path: Path, r) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    d = {
        "fold": r.fold,
        "n_train": r.n_train,
        "train": r.train_names,
        "held_out": r.held_out,
        "threshold": r.threshold,
        "seconds": round(r.seconds, 1),
        "cpu_seconds": round(r.cpu_seconds, 1),
        "stats": r.stats.to_dict(),
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(d))
    tmp.replace(path)  # a killed run never leaves half a fold


def _curve_point(n: int, results: list) -> CurvePoint:
    from fundus_edge.train.adapt import pooled

    iv = intervals(pooled(results))
    return CurvePoint(
        n,
        iv["f1"],
        iv.get("auc"),
        [
            {
                "fold": r.fold,
                "n_train": r.n_train,
                "threshold": round(r.threshold, 4),
                "seconds": round(r.seconds, 1),
            }
            for r in results
        ],
    )


def _curve(curve, split, zero, cv, fold_run, seed: int, log) -> list[CurvePoint]:
    """The learning curve's points: n = 0 is the zero-shot pass, n = a fold's whole training set is the
    cross-validation itself, other n fine-tune on the first n (nested, seeded) of a fold's training images."""
    from fundus_edge.train import adapt as A

    points = []
    for n in sorted(set(curve)):
        if n == 0:
            points.append(_curve_point(0, [zero]))
            continue
        runs = []
        for k, test_idx in enumerate(split):
            train_idx = [i for j, f in enumerate(split) if j != k for i in f]
            if n >= len(train_idx):
                runs.append(cv[k])
            else:
                runs.append(fold_run(n, k, A.subset(train_idx, n, seed, k), test_idx))
        points.append(_curve_point(n, runs))
        log(f"  curve n={n}: F1 {Interval(**points[-1].f1).text()}")
    return points


def _adaptable(model_dir: Path):
    """(manifest, training config) of a float model whose manifest records how it was trained; else a
    one-line InputError naming the folder."""
    from fundus_edge.runtime.manifest import read_manifest
    from fundus_edge.train.config import config_from_dict

    man = read_manifest(model_dir)
    if man.quantization:
        raise InputError(f"{model_dir}: an INT8 model; adapt its float model (INT8 is recalibrated after)")
    if "config" not in (man.source or {}):
        raise InputError(f"{model_dir}: its manifest records no training config to fine-tune with")
    return man, config_from_dict(man.source["config"], f"{model_dir}/manifest.yaml")


def _report(
    model_dir: Path, site, images: int, folds: int, recipe, zero, cv, points, cv_s: float
) -> AdaptReport:
    """The run's record from the zero-shot pass, the K held-out folds and the curve (the final model is
    added after)."""
    from fundus_edge.runtime.cpu import cpu_identity
    from fundus_edge.train.adapt import pooled

    return AdaptReport(
        model=str(model_dir),
        site=str(site.root),
        images=images,
        folds=folds,
        fov=site.fov_source,
        recipe=asdict(recipe),
        zero_shot=intervals(pooled([zero])),
        cross_validated=intervals(pooled(cv)),
        curve=[asdict(p) for p in points],
        cv_seconds=round(cv_s, 1),
        cv_cpu_seconds=round(zero.cpu_seconds + sum(r.cpu_seconds for r in cv), 1),
        site_files=site_hashes(site),
        cpu=cpu_identity().title,
    )


def run_adapt(
    model_dir: str | Path,
    data: str | Path,
    out: str | Path,
    folds: int = 4,
    curve: tuple[int, ...] = CURVE,
    recipe=None,
    final: bool = True,
    progress: bool = True,
    log=print,
    keep: str | Path | None = None,
    ship: bool = True,
) -> AdaptReport:
    """See the module's docstring. ``out`` is created (resumed when it holds this run's folds). ``keep``:
    a data set whose *training* images every fine-tune also learns from (DRIVE for a two-camera model:
    the model keeps its first camera); its test images are never read here. ``ship``: after the final
    model, its INT8 builds recalibrated on the site and the cards (fundus_edge/adapt_ship.py)."""
    from fundus_edge.train import adapt as A

    model_dir, out = Path(model_dir), Path(out)
    man, cfg = _adaptable(model_dir)
    recipe = recipe or A.AdaptRecipe()
    site = A.read_labelled_site(data)
    out.mkdir(parents=True, exist_ok=True)
    samples = A.load_site(site, man.scale.get("fov_diameter_px"))
    extra = []
    if keep is not None:
        extra = A.load_site(A.read_labelled_site(keep, "train"), man.scale.get("fov_diameter_px"))
        log(f"every fine-tune also trains on {len(extra)} training images of {keep}")
    names = [s.native.name for s in samples]
    split = A.folds(names, folds)
    log(f"adapt {model_dir} on {site.root}: {len(samples)} images, {folds} folds, FOV {site.fov_source}")
    t_cv = time.perf_counter()

    def fold_run(n, k, train_idx, test_idx):
        path = fold_file(out, n, k)
        r = saved_fold(path)
        if r is None:
            r = A.run_fold(
                model_dir, cfg, recipe, samples, train_idx, test_idx, out / "work", k, progress, extra
            )
            _save_fold(path, r)
            f1 = point(r.stats)["f1"]
            log(f"  n={n} fold {k + 1}/{folds}: threshold {r.threshold:.3f}, F1 {f1:.4f} ({r.seconds:.0f} s)")
        return r

    zero = fold_run(0, 0, [], list(range(len(samples))))
    cv = []
    for k, test_idx in enumerate(split):
        train_idx = [i for j, f in enumerate(split) if j != k for i in f]
        cv.append(fold_run("all", k, train_idx, test_idx))
    cv_s = time.perf_counter() - t_cv
    points = _curve(curve, split, zero, cv, fold_run, recipe.seed, log)
    report = _report(model_dir, site, len(samples), folds, recipe, zero, cv, points, cv_s)
    if final:
        report.final = saved_final(out, report, keep)
        if report.final:
            log(f"final model kept from the previous run of this adaptation: {out / 'model'}")
        else:
            report.final = final_model(model_dir, cfg, recipe, [*samples, *extra], out, progress)
        report.final["kept"] = str(keep) if keep else None
    (out / RESULTS).write_text(json.dumps(asdict(report), indent=1))
    if final and ship:
        # INT8 recalibrated on the site and the cards (fundus_edge/adapt_ship.py); adapt.json is written
        # first, so a failure here leaves a run that `python -m fundus_edge.adapt_ship OUT` finishes.
        from .adapt_ship import ship as ship_model

        ship_model(out, data, log=log)
    return report


def saved_final(out: Path, report: AdaptReport, keep=None) -> dict | None:
    """The final model a previous run of this same adaptation left in ``out`` (same model, recipe, site
    files and kept data set), so a rerun that only adds curve points does not fine-tune and export it
    again; else None."""
    from fundus_edge.runtime.manifest import is_model_dir

    path = out / RESULTS
    if not path.is_file() or not is_model_dir(out / "model"):
        return None
    try:
        old = json.loads(path.read_text())
    except ValueError:
        return None
    final = old.get("final")
    same = all(old.get(k) == getattr(report, k) for k in ("model", "recipe", "site_files", "folds"))
    # a final model trained with (or without) another --keep data set is another model
    same = same and isinstance(final, dict) and final.get("kept") == (str(keep) if keep else None)
    return final if same else None


def final_model(model_dir: Path, cfg, recipe, samples, out: Path, progress: bool) -> dict:
    """Fine-tune on every site image (threshold on them) and export it to ``out/model``."""
    from fundus_edge.export.exporter import export_checkpoint
    from fundus_edge.train.adapt import fine_tune
    from fundus_edge.train.checkpoint import read_checkpoint

    t0, c0 = time.perf_counter(), time.process_time()
    run = out / "final-run"
    fine_tune(model_dir, cfg, recipe, samples, run, progress)
    res = export_checkpoint(
        run / "best", out / "model", name=f"{cfg.name}-site", formats=("pir", "onnx"), force=True
    )
    return {
        "folder": str(res.model_dir),
        "threshold": round(float(read_checkpoint(run / "best").threshold), 4),
        "seconds": round(time.perf_counter() - t0, 1),
        "cpu_seconds": round(time.process_time() - c0, 1),
    }
