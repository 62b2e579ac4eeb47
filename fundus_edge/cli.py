"""The ``fundus-edge`` command: parse arguments, call the Python API, print. Nothing else."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from fundus_edge.runtime.errors import FundusEdgeError


def set_threads(n: int | None) -> None:
    # Paddle/oneDNN read the OpenMP thread count when they first start, so set it before import.
    if n:
        os.environ["OMP_NUM_THREADS"] = str(n)


def _threshold_arg(text: str):
    """--threshold for train: a probability, or 'train' (chosen on the training images of a refit)."""
    if text == "train":
        return text
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number nor 'train'") from None
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not in (0, 1)")
    return v


def _resolve_config(name_or_path: str):
    from fundus_edge.train.config import resolve_config

    return resolve_config(name_or_path)


def cmd_train(a) -> int:
    set_threads(a.threads)
    from fundus_edge.train.trainer import Trainer

    cfg = _resolve_config(a.config)
    optim = {
        k: v
        for k, v in {
            "iters": a.iters,
            "batch_size": a.batch_size,
            "crop": a.crop,
            "lr": a.lr,
            "val_every": a.val_every,
            "seed": a.seed,
            "threshold": a.threshold,
            "teacher": a.teacher,
            "distill_weight": a.distill_weight,
            "teacher_mode": a.teacher_mode,
        }.items()
        if v is not None
    }
    if a.teacher and a.distill_weight is None:
        optim["distill_weight"] = 1.0
    data = {"root": str(a.data)} if a.data else {}
    if a.val_count is not None:
        data["val_count"] = a.val_count
    cfg = cfg.with_overrides(optim=optim, data=data)
    out = Path(a.out) if a.out else Path("runs") / cfg.name
    res = Trainer(
        cfg,
        out,
        device=a.device,
        progress=not a.no_progress,
        init_weights=a.init,
        checkpoint_minutes=a.checkpoint_minutes,
        to_static=a.to_static,
    ).fit(resume=a.resume, force=a.force)
    if res.stopped_at is not None:
        print(
            f"stopped by SIGTERM at iteration {res.stopped_at} of {cfg.optim.iters}; "
            f"{res.out_dir}/last is saved there: continue with the same command and --resume"
        )
        return 143  # 128 + SIGTERM, as a shell reports a process the signal ended
    if cfg.data.val_count == 0:
        kept = (
            f"no validation split (refit): {res.out_dir}/best holds the final weights "
            f"with threshold {res.threshold:.3f}"
        )
    else:
        figure = (
            "mean of clean and perturbed val F1"
            if cfg.optim.select == "robust" and cfg.optim.val_perturb
            else "val F1"
        )
        kept = (
            f"best {figure} {res.best_val_f1:.4f} at {res.best_iteration} (threshold {res.threshold:.2f}); "
            f"checkpoints in {res.out_dir}/best and {res.out_dir}/last"
        )
    print(
        f"done: {res.iterations} iterations on {res.device}, {res.iters_per_s:.2f} it/s this run, "
        f"{res.elapsed_s / 60:.1f} min in all; {kept}"
    )
    return 0


def cmd_average(a) -> int:
    set_threads(a.threads)
    from fundus_edge.train.average import average_checkpoints

    r = average_checkpoints(
        a.checkpoints, a.out, a.data, bn_batches=a.bn_batches, force=a.force, progress=not a.no_progress
    )
    val = (
        "no validation split"
        if r.val_f1 is None
        else f"val F1 {r.val_f1:.4f}, AUC {r.val_auc:.4f}, threshold {r.threshold:.3f}"
    )
    print(
        f"averaged {len(r.members)} checkpoints, BatchNorm from {r.bn_batches} training batches: {val}; "
        f"saved to {r.out_dir} ({r.elapsed_s:.0f} s)"
    )
    return 0


def _record_read(a, report) -> None:
    """A held-out evaluation appends its row to the test-read ledger (measure/ledger.py)."""
    if a.no_ledger:
        return
    from fundus_edge.measure.ledger import ledger_path, record

    # The command as the options that change the score (main may be called with an argv of its own).
    opts = [
        ("--split", a.split, "test"),
        ("--layout", a.layout, "auto"),
        ("--threshold", a.threshold, None),
        ("--backend", a.backend, "auto"),
        ("--precision", getattr(a, "precision", None), None),
        ("--perturb", a.perturb, None),
    ]
    command = " ".join(
        [
            "fundus-edge evaluate",
            str(a.source),
            "--data",
            str(a.data),
            *(f"{k} {v}" for k, v, default in opts if v != default),
        ]
    )
    record(
        report,
        a.why,
        ledger_path(a.ledger),
        command=command,
        lineage=a.lineage,
        rule_before="yes" if a.rule_before else "no",
        note=a.note,
        search=a.search,
    )


def cmd_evaluate(a) -> int:
    set_threads(a.threads)
    from fundus_edge.evaluate import evaluate_source

    if a.biomarkers and a.perturb is None:
        raise FundusEdgeError(
            "--biomarkers is an option of --perturb "
            "(for masks, see `fundus-edge biomarkers` and `predict --biomarkers`)"
        )
    if a.perturb is not None:
        return _evaluate_perturbed(a)
    from .cli_site import evaluate_site_cmd, wants_site_report

    if wants_site_report(a):  # a model folder or bundle on a site folder: the site report
        return evaluate_site_cmd(a, _record_read)

    report = evaluate_source(
        a.source,
        a.data,
        split=a.split,
        layout=a.layout,
        threshold=a.threshold,
        backend=a.backend,
        threads=a.threads,
        progress=not a.no_progress,
    )
    _record_read(a, report)
    if a.per_image_out:
        # Per-image statistics (counts, probability histograms): intervals and paired comparisons are
        # recomputed from them without reading the images again (python -m fundus_edge.measure.intervals).
        out = Path(a.per_image_out)
        if out.exists() and not a.force:
            raise FundusEdgeError(f"{out}: exists (pass --force to overwrite)")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report.to_dict(with_stats=True), separators=(",", ":")) + "\n")
    if a.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    m = report.pooled
    print(
        f"{report.source} on {report.data} ({report.split}, {report.images} images, FOV pixels pooled, "
        f"threshold {report.threshold:.3f}, via {report.via})"
    )
    auc = "n/a" if m.auc is None else f"{m.auc:.4f}"
    print(f"  {report.interval_line()}")
    if report.intervals:
        iv = next(iter(report.intervals.values()))
        print(f"  (bootstrap over the {iv.n_images} images, {iv.resamples} resamples, percentile interval)")
    print(
        f"  F1 {m.f1:.4f}  IoU {m.iou:.4f}  mIoU {m.miou:.4f}  Acc {m.acc:.4f}  Se {m.se:.4f}  "
        f"Sp {m.sp:.4f}  AUC {auc}  kappa {m.kappa:.4f}"
    )
    if a.best_threshold:
        if report.best_threshold is None:
            print("  best threshold: n/a (no probability maps to sweep)")
        else:
            t, f1 = report.best_threshold
            caution = "  (a test split: report it, never ship it)" if report.split == "test" else ""
            print(f"  threshold maximising pooled F1 on these images: {t:.3f} (F1 {f1:.4f}){caution}")
    if a.per_image:
        for name, pm in report.per_image:
            print(
                f"  {name:>12}  F1 {pm.f1:.4f}  IoU {pm.iou:.4f}  Acc {pm.acc:.4f}  "
                f"AUC {pm.auc if pm.auc is None else round(pm.auc, 4)}"
            )
    return 0


def _evaluate_perturbed(a) -> int:
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
    _record_read(a, rep)
    if a.per_image_out:
        # each row's per-image counts: F1 intervals and paired drops recomputed later (modelcard --update
        # perturbations) without reading the images again
        out = Path(a.per_image_out)
        if out.exists() and not a.force:
            raise FundusEdgeError(f"{out}: exists (pass --force to overwrite)")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rep.to_dict(with_stats=True), separators=(",", ":")) + "\n")
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


def cmd_export(a) -> int:
    from fundus_edge.export.exporter import export_checkpoint

    formats = tuple(f.strip() for f in a.formats.split(",") if f.strip())
    if a.paddleseg and "pir" not in formats:
        raise FundusEdgeError("--paddleseg is built from the PIR program: include pir in --formats")
    r = export_checkpoint(
        a.source, a.out, name=a.name, formats=formats, force=a.force, opset=a.opset, threshold=a.threshold
    )
    print(
        f"exported {', '.join(r.formats)} to {r.model_dir} ({r.params:,} parameters, "
        f"{r.gmac:.2f} GMAC at 584x565, {r.size_mb:.2f} MB)"
    )
    if a.paddleseg:
        from fundus_edge.export.paddleseg import write_paddleseg_deploy

        d = write_paddleseg_deploy(r.model_dir)
        print(
            f"PaddleSeg deploy files: {d} (+ paddleseg.json, paddleseg.pdiparams; "
            "PaddleSeg needs `import fundus_edge.export.paddleseg_transforms`)"
        )
    return 0


def cmd_import_paddleseg(a) -> int:
    set_threads(a.threads)
    from fundus_edge.export.paddleseg import import_paddleseg, set_threshold

    if a.threshold is not None and a.data:
        raise FundusEdgeError("give --threshold or --data (to choose one on the training images), not both")
    r = import_paddleseg(
        a.export_dir, a.out, name=a.name, threshold=a.threshold, vessel_class=a.vessel_class, force=a.force
    )
    gmac = f"{r.gmac:.2f} GMAC" if r.gmac else "GMAC unknown"
    print(
        f"imported {a.export_dir} -> {r.model_dir}: {', '.join(r.formats)}; {r.params:,} parameters, "
        f"{gmac}, {r.size_mb:.2f} MB"
    )
    from fundus_edge.runtime.manifest import read_manifest

    man = read_manifest(r.model_dir)
    print(
        f"output: {man.source['output_op']} over {man.source['classes']} classes -> vessel probability "
        f"(class {man.source['vessel_class']}); input multiple {man.pad_multiple}; "
        f"preprocessing {man.preprocess.to_dict()}"
    )
    if man.engines.get("paddle", {}).get("onednn") is False:
        print(
            "warning: Paddle Inference will run it without oneDNN (several times slower): "
            f"{man.engines['paddle']['why']}",
            file=sys.stderr,
        )
    if man.source.get("onnx_not_made"):
        print(
            f"warning: no ONNX (ONNX Runtime and OpenVINO cannot run it): {man.source['onnx_not_made']}",
            file=sys.stderr,
        )
    if a.data:
        from fundus_edge.evaluate import evaluate_source

        rep = evaluate_source(
            r.model_dir, a.data, split="train", threads=a.threads, progress=not a.no_progress
        )
        if rep.best_threshold is None:
            raise FundusEdgeError(f"{a.data}: no probability maps to choose a threshold on")
        t, f1 = rep.best_threshold
        set_threshold(
            r.model_dir,
            t,
            f"F1-maximising on the {rep.images} training images of {Path(a.data).name} (F1 {f1:.4f})",
        )
        print(
            f"threshold {t:.3f}: pooled F1 {f1:.4f} on the {rep.images} training images "
            "(stored in the manifest)"
        )
    return 0


def cmd_validate(a) -> int:
    set_threads(a.threads)
    from fundus_edge.export.validate import validate

    engines = [e.strip() for e in a.engines.split(",") if e.strip()] if a.engines else None
    for model in a.models:
        checks = validate(
            model, a.data, engines=engines, threads=a.threads, reference=a.reference, write=not a.dry_run
        )
        if checks and not a.dry_run:
            print(f"{model}: {len(checks)} precision check(s) recorded in its manifest (validated)")
    return 0


def cmd_quantize(a) -> int:
    set_threads(a.threads)
    from fundus_edge.quantize.pipeline import build_variants, quantize

    if a.variants:
        done = build_variants(
            a.source,
            a.variants,
            a.data,
            finetune_iters=a.finetune_iters,
            algo=a.algo,
            force=a.force,
            progress=not a.no_progress,
        )
        print("variants: " + ", ".join(f"{k} -> {v}" for k, v in done.items()))
        return 0
    if not a.out:
        raise FundusEdgeError("give --out DIR (or --variants DIR)")
    from fundus_edge.quantize.engine_ptq import NncfOptions, OrtOptions

    nncf = NncfOptions(
        preset=a.nncf_preset,
        fast_bias_correction=not a.no_fast_bias_correction,
        overflow_fix=a.overflow_fix,
        accuracy_control=a.accuracy_control is not None,
        max_drop=a.accuracy_control or 0.005,
    )
    ort = OrtOptions(
        per_channel=not a.per_tensor,
        reduce_range={"auto": None, "on": True, "off": False}[a.reduce_range],
        quant_format=a.ort_format,
    )
    r = quantize(
        a.source,
        a.out,
        a.data,
        prune=a.prune,
        int8=a.int8,
        algo=a.algo,
        finetune_iters=a.finetune_iters,
        calib_images=a.calib_images,
        force=a.force,
        progress=not a.no_progress,
        nncf_options=nncf,
        ort_options=ort,
    )
    print(
        f"{r.variant} model in {r.model_dir}: {r.params_before:,} -> {r.params_after:,} parameters, "
        f"{r.gmac_before:.2f} -> {r.gmac_after:.2f} GMAC, {r.size_mb:.2f} MB"
    )
    return 0


def cmd_bench(a) -> int:
    if a.report:
        from fundus_edge.bench.html_report import write_report

        print(f"wrote {write_report(a.report)}")
        return 0
    set_threads(a.threads)
    from fundus_edge.bench.runner import BenchConfig
    from fundus_edge.bench.sweep import run_bench

    data = a.data if a.data and Path(a.data).exists() else None
    if a.data and data is None:
        print(
            f"bench: {a.data} not found: latency on synthetic inputs only, accuracy columns null",
            file=sys.stderr,
        )
    kw = {}
    if a.variants:
        kw["variants"] = tuple(v.strip() for v in a.variants.split(","))
    if a.engines:
        kw["engines"] = tuple(e.strip() for e in a.engines.split(","))
    if a.rounds is not None:
        if a.rounds < 1:
            raise FundusEdgeError(f"--rounds {a.rounds}: at least 1 (the accuracy pass is the first round)")
        kw["rounds"] = a.rounds
    if a.window is not None:
        if a.window <= 0:
            raise FundusEdgeError(f"--window {a.window}: must be above 0 seconds")
        kw["window_s"] = a.window
    given = list(a.models or [])
    extra = tuple(Path(d) for d in given if (Path(d) / "manifest.yaml").is_file())
    folders = [d for d in given if not (Path(d) / "manifest.yaml").is_file()]
    if len(folders) > 1:
        raise FundusEdgeError(
            f"--models: {', '.join(folders)} are not model folders (no manifest.yaml); "
            "at most one may be the shipped models' folder"
        )
    cfg = BenchConfig(
        data=data,
        out=Path(a.out),
        threads=a.threads,
        quick=a.quick,
        models_dir=Path(a.models_dir),
        build=not a.no_build,
        shipped=shipped_models(folders[0] if folders else None),
        extra=extra,
        finetune_iters=a.finetune_iters,
        bf16_rows=not a.no_bf16,
        gpu_rows=not a.no_gpu,
        **kw,
    )
    # The ledger's rows name the options that decide what was scored (main may be called with an argv of
    # its own).
    opts = [
        ("--data", a.data),
        ("--variants", a.variants),
        ("--engines", a.engines),
        ("--models", " ".join(given) or None),
        ("--quick", a.quick or None),
    ]
    command = " ".join(["fundus-edge bench", *(k if v is True else f"{k} {v}" for k, v in opts if v)])
    records, meta = run_bench(cfg, progress=not a.no_progress, command=command)
    print((Path(a.out) / "results.md").read_text())
    print(
        f"wrote {a.out}/results.json, results.csv, results.md, pareto.png, report.html "
        f"({meta['wall_s']:.0f} s)"
    )
    return 0


def shipped_models(given: str | None = None) -> Path:
    """The folder that holds the shipped models (default/, small/, ...): --models, else ./models, else the
    source checkout's models/ (an editable install). Model weights are not package data: a wheel stays
    small and a device ships the one model folder it runs."""
    cands = [Path(given)] if given else [Path("models"), Path(__file__).resolve().parents[1] / "models"]
    for c in cands:
        if (c / "default" / "manifest.yaml").is_file():
            return c
    where = given or "./models"
    raise FundusEdgeError(
        f"{where}: no shipped models here (no default/manifest.yaml); give --models DIR or a model folder"
    )


# What predict and serve run when no model folder is given: s2d-fast scores higher than `default` on DRIVE
# test (0.8232 against 0.8223) and under every camera perturbation, at a quarter of its bf16 latency.
PREDICT_MODEL = "s2d-fast"


def default_model_dir(models: str | None = None) -> Path:
    """PREDICT_MODEL among the shipped models (``default`` where a models folder predates it)."""
    root = shipped_models(models)
    return root / PREDICT_MODEL if (root / PREDICT_MODEL / "manifest.yaml").is_file() else root / "default"


def cmd_pick(a) -> int:
    from fundus_edge.deploy.pick import Bounds, choice_key, pick, read_record, table
    from fundus_edge.deploy.platforms import get_platform

    rec = read_record(a.record)
    target = get_platform(a.platform)
    rows = pick(
        rec, Bounds(a.min_f1, a.max_ms, a.max_mb), any_cpu=a.any_cpu, target=target, any_arch=a.any_arch
    )
    print(
        f"from {rec.path} ({rec.cpu}; {rec.meta.get('images', '')}): {len(rows)} rows meet the bounds, "
        "fastest first"
    )
    print(table(rows))
    print(
        f"picked {choice_key(rows[0])}: "
        f"fundus-edge pack {choice_key(rows[0])} --record {rec.path} --out bundle"
        + (f" --platform {a.platform}" if a.platform else "")
        + (" --any-arch" if a.any_arch else "")
    )
    return 0


def _shipped_or_here() -> Path:
    """The shipped models' folder when there is one, else ./models (pack may be given a model folder
    instead)."""
    try:
        return shipped_models()
    except FundusEdgeError:
        return Path("models")


def cmd_pack(a) -> int:
    set_threads(a.threads)
    from fundus_edge.deploy.pack import PackOptions, pack, parse_size
    from fundus_edge.deploy.pick import read_record

    rec = read_record(a.record)
    opts = PackOptions(
        out=Path(a.out),
        data=Path(a.data) if a.data else None,
        goldens=a.goldens,
        input_size=parse_size(a.input_size) if a.input_size else None,
        models_dir=Path(a.models_dir),
        shipped=shipped_models(a.models) if a.models else _shipped_or_here(),
        engine=a.engine,
        precision=a.precision,
        threads=a.threads,
        any_cpu=a.any_cpu,
        force=a.force,
        platform=a.platform,
        any_arch=a.any_arch,
    )
    r = pack(a.choice, rec, opts)
    b = r.bundle
    print(
        f"packed {b.variant} on {b.engine} {b.precision} ({b.format}) into {r.folder}: {r.files} files, "
        f"{r.size_bytes / 1e6:.2f} MB; {len(b.goldens)} goldens; validated F1 {b.validated.f1:.4f}"
        + (f", static input {b.static['onnx']}" if b.static.get("onnx") else "")
    )
    print(f"on the device: fundus-edge selftest {r.folder}")
    return 0


def cmd_selftest(a) -> int:
    set_threads(a.threads)
    from fundus_edge.deploy.selftest import selftest

    r = selftest(a.bundle, runs=a.runs, threads=a.threads)
    if a.verbose:
        for n in r.notes:
            print(f"  {n}", file=sys.stderr)
    print(r.line)
    return 0 if r.passed else 1


def cmd_predict(a) -> int:
    set_threads(a.threads)
    from fundus_edge.runtime.batch import expand_inputs, predict_files, refuse_oversized
    from fundus_edge.runtime.predictor import Predictor, ScaleOptions

    paths = list(a.paths)
    if paths and (Path(paths[0]) / "manifest.yaml").is_file():
        model = Path(paths.pop(0))
    else:
        model = default_model_dir(a.models)
    if not paths:
        raise FundusEdgeError("no input images given")
    files = expand_inputs(paths)
    if a.max_pixels < 1:
        raise FundusEdgeError(f"--max-pixels must be at least 1 (got {a.max_pixels})")
    refuse_oversized(files, a.max_pixels)  # headers only, before a model loads or an output is written
    if a.ray is not None:
        return _predict_ray(a, model, files)
    if a.workers is not None or a.threads_per_worker is not None:
        raise FundusEdgeError("--workers and --threads-per-worker are options of --ray")
    pred = Predictor.load(
        model,
        backend=a.backend,
        device=a.device,
        threads=a.threads,
        precision=a.precision,
        scale=ScaleOptions(rescale=not a.no_rescale, crop_fov=not a.no_fov_crop),
    )
    print(
        f"model {model} ({pred.manifest.name}, {pred.manifest.variant}) on {pred.backend}, "
        f"device {pred.device}, {pred.precision_line()}",
        file=sys.stderr,
    )
    after = None
    if a.biomarkers:
        from fundus_edge.measure.biomarker_files import PredictBiomarkers

        after = PredictBiomarkers()
    t0 = time.perf_counter()
    outcomes = predict_files(
        pred,
        files,
        Path(a.output),
        save_prob=a.save_prob,
        save_overlay=a.overlay,
        fov=a.fov,
        force=a.force,
        progress=not a.no_progress,
        after=after,
        max_pixels=a.max_pixels,
    )
    wall = time.perf_counter() - t0
    if after is not None and after.rows:
        from fundus_edge.measure.biomarker_files import CSV_NAME, write_csv

        # Adds to the folder's table: rows of earlier runs stay, a re-predicted image's row is replaced.
        table = write_csv(after.rows, Path(a.output) / CSV_NAME, merge=True)
        print(f"biomarkers: {len(after.rows)} rows in {table}", file=sys.stderr)
    ok = [o for o in outcomes if o.error is None]
    failed = len(outcomes) - len(ok)
    mean = sum(o.total_ms for o in ok) / len(ok) if ok else 0.0
    # The median is what the bench reports (its e2e p50); the mean also carries one-off costs, such as
    # an engine's build for an input shape not seen before.
    median = statistics.median(o.total_ms for o in ok) if ok else 0.0
    print(
        f"{len(ok)} of {len(outcomes)} images written to {a.output} in {wall:.1f} s "
        f"({len(outcomes) / wall:.2f} images/s; per image end to end: mean {mean:.1f} ms, "
        f"median {median:.1f} ms)" + (f"; {failed} failed" if failed else ""),
        file=sys.stderr,
    )
    return 1 if failed else 0


def cmd_biomarkers(a) -> int:
    from fundus_edge.measure.biomarker_files import CSV_NAME, folder_biomarkers, write_csv

    out = Path(a.output) if a.output else Path(a.masks_dir) / CSV_NAME
    if out.exists() and not a.force:
        raise FundusEdgeError(f"{out}: exists (use --force to overwrite)")
    if a.fov_dir is None:
        print(
            "biomarkers: no --fov-dir: each mask's whole frame is its FOV (densities per frame area)",
            file=sys.stderr,
        )
    rows = folder_biomarkers(Path(a.masks_dir), Path(a.fov_dir) if a.fov_dir else None)
    write_csv(rows, out)
    print(f"{len(rows)} masks: biomarkers in {out}")
    return 0


def _predict_ray(a, model: Path, files: list) -> int:
    from fundus_edge.archive.job import RayOptions, SegmentOptions, run_archive

    if a.threads:
        raise FundusEdgeError("with --ray, give --threads-per-worker (and --workers), not --threads")
    address = None if a.ray == "local" else a.ray
    # Default: engines of up to 4 threads, as many as the CPUs hold. On the 2-core development machine one
    # 2-thread actor beat two 1-thread ones (1.92 vs 1.31 images/s, README), as one process beats two there.
    cpus = os.cpu_count() or 1
    tpw = a.threads_per_worker or min(4, cpus)
    workers = a.workers or max(1, cpus // tpw)
    opts = SegmentOptions(
        model,
        backend=a.backend,
        device=a.device,
        precision=a.precision,
        rescale=not a.no_rescale,
        crop_fov=not a.no_fov_crop,
        fov=a.fov,
        save_prob=a.save_prob,
        save_overlay=a.overlay,
        biomarkers=a.biomarkers,
        max_pixels=a.max_pixels,
    )
    print(
        f"model {model}: {len(files)} inputs, Ray {'local' if address is None else address}, "
        f"{workers} workers x {tpw} threads",
        file=sys.stderr,
    )
    s = run_archive(
        files, a.output, opts, RayOptions(address, workers, tpw), force=a.force, progress=not a.no_progress
    )
    nodes = ", ".join(f"{n[:8]}: {c}" for n, c in sorted(s.nodes.items())) or "none"
    print(
        f"{s.ok} written, {s.failed} failed, {s.done_before} done before (skipped) of {s.inputs} inputs "
        f"in {s.seconds:.1f} s ({s.images_per_s:.2f} images/s); images per node: {nodes}; "
        f"table: {s.rows} rows ({s.rows_ok} ok) in {', '.join(s.tables)}",
        file=sys.stderr,
    )
    return 1 if s.failed else 0


def cmd_serve(a) -> int:
    set_threads(a.threads)
    try:
        import uvicorn

        from fundus_edge.serve.app import ServeOptions, create_app, worst_case
    except ImportError as exc:
        raise FundusEdgeError(
            f"serve needs the serve extra ({exc.name} is missing): pip install 'fundus-edge[serve]'"
        ) from None
    from fundus_edge.runtime.predictor import Predictor, ScaleOptions

    if a.queue < 0 or a.max_body_mb <= 0 or a.max_pixels < 1:
        raise FundusEdgeError(
            "--queue must be 0 or more, --max-body-mb above 0 and --max-pixels at least 1"
            f" (got {a.queue}, {a.max_body_mb:g} and {a.max_pixels})"
        )
    options = ServeOptions(
        max_body_bytes=int(a.max_body_mb * (1 << 20)), queue=a.queue, max_pixels=a.max_pixels
    )
    worst = worst_case(options)
    if not worst.fits and not a.overcommit:
        raise FundusEdgeError(
            f"{worst.line(options)}: over this machine's memory; lower --queue, --max-body-mb or"
            " --max-pixels, or start anyway with --overcommit"
        )
    print(worst.line(options), file=sys.stderr)
    model = Path(a.model) if a.model else default_model_dir(a.models)
    pred = Predictor.load(
        model,
        backend=a.backend,
        device=a.device,
        threads=a.threads,
        precision=a.precision,
        scale=ScaleOptions(rescale=not a.no_rescale, crop_fov=not a.no_fov_crop),
    )
    app = create_app(pred, options)
    print(
        f"serving {model} ({pred.manifest.name}, {pred.manifest.variant}) on {pred.backend}, "
        f"{pred.precision_line()}, at http://{a.host}:{a.port}/ "
        f"(queue {a.queue}, body limit {a.max_body_mb:g} MiB)",
        file=sys.stderr,
    )
    uvicorn.run(app, host=a.host, port=a.port, log_level=a.log_level, workers=1)
    return 0


# -- the parser: one function per subcommand, called in the order of _SUBCOMMANDS -----------------------

PRECISIONS = ["auto", "fp32", "bf16", "fp16", "int8", "int8-sim"]


def _add_run_options(p, threads_help: str | None = None, force_help: str | None = None) -> None:
    """--threads, --force and --no-progress, which the long-running commands share."""
    p.add_argument("--threads", type=int, help=threads_help)
    p.add_argument("--force", action="store_true", help=force_help)
    p.add_argument("--no-progress", action="store_true")


def _add_engine_options(p, threads_help: str | None, precision_help: str) -> None:
    """--backend, --device, --threads and --precision of the commands that run a model folder."""
    p.add_argument("--backend", default="auto", help="auto, paddle, onnxruntime or openvino")
    p.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--threads", type=int, help=threads_help)
    p.add_argument("--precision", choices=PRECISIONS, default="auto", help=precision_help)


def _add_scale_options(p, rescale_help: str, crop_help: str) -> None:
    """--no-rescale and --no-fov-crop: the runtime's input scaling and FOV crop, on by default."""
    p.add_argument("--no-rescale", action="store_true", help=rescale_help)
    p.add_argument("--no-fov-crop", action="store_true", help=crop_help)


def _add_train(sub) -> None:
    t = sub.add_parser("train", help="train a U-Net on DRIVE (or a file list / image+label folders)")
    t.add_argument(
        "--config",
        default="default",
        help="a packaged config name (default, small, seed-unet) or a YAML file",
    )
    t.add_argument("--data", help="data set: DRIVE folder, PaddleSeg file list or images/+labels/ folder")
    t.add_argument("--out", help="output folder (default runs/<config name>)")
    t.add_argument("--iters", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--crop", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--val-every", type=int)
    t.add_argument(
        "--val-count",
        type=int,
        help="training images held out for validation (default 4; 0 = refit on all "
        "training images with a recipe chosen on validation before: no checkpoint selection)",
    )
    t.add_argument(
        "--threshold",
        type=_threshold_arg,
        help="threshold stored with the weights when --val-count is 0: a number "
        "(default 0.5) or 'train' for the one that maximises F1 on the training images",
    )
    t.add_argument("--seed", type=int)
    _add_distill_options(t)
    t.add_argument("--init", help="start from this checkpoint's weights (fine-tuning)")
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    t.add_argument("--threads", type=int, help="CPU threads")
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last checkpoint (same data order and schedule)",
    )
    t.add_argument(
        "--to-static",
        action="store_true",
        help="trace the training step with paddle.jit.to_static (faster on some CPUs: "
        "python -m fundus_edge.train.throughput --to-static measures it)",
    )
    t.add_argument(
        "--checkpoint-minutes",
        type=float,
        default=10.0,
        help="also save last/ after this much wall time (default 10; 0 = only at validation)",
    )
    t.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=cmd_train)


def _add_distill_options(t) -> None:
    """train's --teacher, --teacher-mode and --distill-weight."""
    t.add_argument(
        "--teacher",
        help="distil from this trained model (folder or checkpoint with the same preprocessing); "
        "several, comma-separated, are an ensemble whose probabilities are averaged",
    )
    t.add_argument(
        "--teacher-mode",
        choices=["crop", "image"],
        help="crop (default): the teacher runs on every augmented crop; image: once on "
        "each whole clean training image (and its mirror), the map cropped with the batch - "
        "no teacher cost per step",
    )
    t.add_argument(
        "--distill-weight",
        type=float,
        help="weight of the distillation term (default 1 with --teacher, else 0 = off)",
    )


def _add_average(sub) -> None:
    v = sub.add_parser(
        "average",
        help="average the weights of checkpoints of one run (SWA of cycle ends), recompute BatchNorm, "
        "validate",
    )
    v.add_argument(
        "checkpoints",
        nargs="+",
        help="checkpoint folders of one network (e.g. the ends of a cyclical schedule's cycles)",
    )
    v.add_argument(
        "--data",
        required=True,
        help="the training data (BatchNorm batches and the validation split of the last checkpoint's config)",
    )
    v.add_argument("--out", required=True, help="the averaged checkpoint's folder")
    v.add_argument(
        "--bn-batches",
        type=int,
        default=200,
        help="training batches for the BatchNorm statistics (default 200)",
    )
    _add_run_options(v, threads_help="CPU threads", force_help="overwrite a non-empty --out")
    v.set_defaults(func=cmd_average)


def _add_evaluate(sub) -> None:
    e = sub.add_parser(
        "evaluate", help="score a checkpoint or model folder on a data set (FOV pixels pooled)"
    )
    e.add_argument("source", help="training checkpoint folder, exported model folder or deploy bundle")
    e.add_argument("--data", required=True)
    e.add_argument("--split", default="test", help="DRIVE split: test (default) or train")
    e.add_argument("--layout", default="auto")
    e.add_argument("--threshold", type=float, help="override the stored threshold")
    e.add_argument(
        "--best-threshold",
        action="store_true",
        help="also print the threshold that maximises pooled F1 on these images "
        "(for choosing one on training or validation images; `export --threshold` stores it)",
    )
    e.add_argument(
        "--backend", default="auto", help="engine for a model folder (auto, paddle, onnxruntime, openvino)"
    )
    e.add_argument("--threads", type=int)
    e.add_argument("--per-image", action="store_true", help="print each image's figures")
    e.add_argument(
        "--per-image-out",
        metavar="FILE",
        help="write the report with per-image statistics (confusion counts, probability histograms) as JSON: "
        "intervals and paired comparisons are recomputed from it without reading the images again "
        "(python -m fundus_edge.measure.intervals FILE [FILE ...]); with --perturb, each row's confusion "
        "counts (for python -m fundus_edge.modelcard --update perturbations)",
    )
    e.add_argument("--force", action="store_true", help="overwrite an existing --per-image-out file")
    e.add_argument(
        "--perturb",
        nargs="?",
        const="all",
        metavar="LIST",
        help="score a model folder under camera perturbations: all (default) or a comma list such as "
        "jpeg30,gamma0.6,scale2,grey",
    )
    _add_scale_options(
        e,
        rescale_help="with --perturb: do not resize inputs to the training FOV scale",
        crop_help="with --perturb: run the network on whole frames, not the FOV's bounding box",
    )
    e.add_argument(
        "--biomarkers",
        action="store_true",
        help="with --perturb: also each vessel biomarker's change (%%) from the clean masks",
    )
    e.add_argument("--json", action="store_true")
    e.add_argument("--no-progress", action="store_true")
    from .cli_site import add_site_options

    add_site_options(e)  # --report, --precision, --worst (fundus_edge/cli_site.py)
    _add_ledger_options(e)
    e.set_defaults(func=cmd_evaluate)


def _add_ledger_options(e) -> None:
    """evaluate's options for its row of the test-read ledger."""
    # Every read of a held-out split (not --split train) is a row of the test-read ledger
    # (docs/test-reads.md).
    e.add_argument(
        "--why",
        choices=("candidate", "gate", "shipped", "report"),
        default="candidate",
        help="why the test images are read, for the ledger: candidate (default), gate (a check before "
        "shipping), shipped (the one read whose figure ships), report (re-scoring a model already fixed; "
        "not counted)",
    )
    e.add_argument(
        "--rule-before",
        action="store_true",
        help="the use of this score was written down before the read (ledger column rule_before)",
    )
    e.add_argument(
        "--lineage",
        help="the shipped model this read belongs to (default: the checkpoint's config name or the "
        "manifest's name)",
    )
    e.add_argument("--note", default="", help="a note for the ledger row")
    e.add_argument(
        "--search",
        default="",
        help="the recipe search this read belongs to (ledger column search): the search's lineages are "
        "counted together in their cards",
    )
    e.add_argument(
        "--ledger",
        help="the ledger CSV (default: $FUNDUS_EDGE_LEDGER, else the repository's docs/test-reads.csv)",
    )
    e.add_argument("--no-ledger", action="store_true", help="do not record this read (for scratch data only)")


def _add_export(sub) -> None:
    x = sub.add_parser(
        "export", help="checkpoint or model folder -> model folder (Paddle PIR, legacy, ONNX + manifest)"
    )
    x.add_argument("source", help="training checkpoint folder (e.g. runs/default/best) or FP32 model folder")
    x.add_argument("--out", required=True)
    x.add_argument("--formats", default="pir,legacy,onnx", help="comma-separated: pir, legacy, onnx")
    x.add_argument("--name")
    x.add_argument("--opset", type=int, default=13)
    x.add_argument(
        "--threshold",
        type=float,
        help="store this threshold instead of the checkpoint's (recorded in the manifest's source)",
    )
    x.add_argument(
        "--paddleseg",
        action="store_true",
        help="also write PaddleSeg's deploy files: deploy.yaml + paddleseg.json (int32 label map, "
        "output_op argmax) for PaddleSeg's deploy path "
        "(with `import fundus_edge.export.paddleseg_transforms`)",
    )
    x.add_argument("--force", action="store_true")
    x.set_defaults(func=cmd_export)


def _add_validate(sub) -> None:
    v = sub.add_parser(
        "validate",
        help="check a model folder's lower precisions (OpenVINO bf16 / fp16; an INT8 folder's own) on the "
        "DRIVE training images against fp32 through the same engine; record them in its manifest for "
        "--precision auto",
    )
    v.add_argument("models", nargs="+", metavar="MODEL_DIR")
    v.add_argument(
        "--data", required=True, help="DRIVE folder (its 20 training images are read; never the test set)"
    )
    v.add_argument(
        "--engines",
        help="comma list (default: every installed engine that reads the model; an INT8 folder: the engine "
        "its quantizer targets)",
    )
    v.add_argument("--reference", help="an INT8 folder's float model (default: the one its manifest records)")
    v.add_argument("--threads", type=int)
    v.add_argument("--dry-run", action="store_true", help="print the checks, do not write the manifest")
    v.set_defaults(func=cmd_validate)


def _add_quantize(sub) -> None:
    from fundus_edge.quantize.variants import INT8_METHODS, RECIPE_NAMES

    q = sub.add_parser(
        "quantize",
        help="prune (PaddleSlim L1-norm filters + fine-tune) and/or INT8 (PaddleSlim PTQ/QAT, NNCF, "
        "ONNX Runtime)",
    )
    q.add_argument("source", help="FP32 model folder or training checkpoint")
    q.add_argument("--out", help="output model folder")
    q.add_argument("--variants", metavar="DIR", help=f"build DIR/{{{','.join(RECIPE_NAMES)}}} instead")
    q.add_argument(
        "--data", required=True, help="training data (fine-tuning and calibration use training images only)"
    )
    q.add_argument("--prune", type=float, metavar="RATIO", help="share of 3x3 filters to remove, in (0, 1)")
    q.add_argument(
        "--int8",
        choices=list(INT8_METHODS),
        help="; ".join(f"{m}: {tool} ({out})" for m, (tool, out) in INT8_METHODS.items()),
    )
    q.add_argument("--algo", default="avg", help="PaddleSlim PTQ algorithm: avg, hist, KL, mse, abs_max")
    _add_quantizer_options(q)
    q.add_argument("--finetune-iters", type=int, default=800)
    q.add_argument(
        "--calib-images",
        type=int,
        help="training images to calibrate on (default 8 for PaddleSlim, 20 for NNCF / ONNX Runtime)",
    )
    _add_run_options(q)
    q.set_defaults(func=cmd_quantize)


def _add_quantizer_options(q) -> None:
    """quantize's options of the engines' own quantizers: NNCF's, then ONNX Runtime's."""
    q.add_argument(
        "--nncf-preset",
        default="performance",
        choices=["performance", "mixed"],
        help="NNCF: symmetric (performance) or asymmetric activations (mixed)",
    )
    q.add_argument(
        "--no-fast-bias-correction", action="store_true", help="NNCF: the slower, fuller bias correction"
    )
    q.add_argument(
        "--overflow-fix",
        default="auto",
        choices=["auto", "enable", "disable", "first_layer_only"],
        help="NNCF: 7-bit weights against 16-bit overflow on CPUs without VNNI (auto: NNCF's default)",
    )
    q.add_argument(
        "--accuracy-control",
        type=float,
        nargs="?",
        const=0.005,
        metavar="MAX_DROP",
        help="NNCF: quantize_with_accuracy_control, keeping pooled F1 on the training images within "
        "MAX_DROP (default 0.005)",
    )
    q.add_argument(
        "--per-tensor", action="store_true", help="ONNX Runtime: per-tensor instead of per-channel weights"
    )
    q.add_argument(
        "--reduce-range",
        default="auto",
        choices=["auto", "on", "off"],
        help="ONNX Runtime: 7-bit weights (auto: where the CPU lacks VNNI)",
    )
    q.add_argument(
        "--ort-format",
        default="qdq",
        choices=["qdq", "qoperator"],
        help="ONNX Runtime: QDQ or QOperator graph",
    )


def _add_import_paddleseg(sub) -> None:
    i = sub.add_parser(
        "import-paddleseg",
        help="a PaddleSeg export (deploy.yaml + PIR or legacy program) -> a fundus-edge model folder",
    )
    i.add_argument(
        "export_dir",
        help="the folder PaddleSeg's export.py wrote (deploy.yaml, model.json or model.pdmodel, "
        "model.pdiparams)",
    )
    i.add_argument("--out", required=True, help="model folder to write, e.g. models/NAME")
    i.add_argument("--name", help="model name in the manifest (default: the --out folder's name)")
    i.add_argument(
        "--threshold",
        type=float,
        help="vessel-probability threshold to store (default 0.5: a two-class argmax)",
    )
    i.add_argument(
        "--data",
        help="choose the threshold that maximises pooled F1 on this data set's training images instead",
    )
    i.add_argument(
        "--vessel-class", type=int, default=1, help="class index of vessels in the model's output (default 1)"
    )
    _add_run_options(i)
    i.set_defaults(func=cmd_import_paddleseg)


def _variants_help() -> str:
    """bench --variants: the table's default list, the recipes that derive a shipped model's variants, the
    quantizer each INT8 recipe names."""
    from fundus_edge.quantize.variants import DEFAULT_BENCH, DERIVABLE, INT8_METHODS

    names = [r.name for r in DERIVABLE]
    tools = ", ".join(f"{r.name} = {INT8_METHODS[r.int8][0]}" for r in DERIVABLE if r.int8 and not r.prune)
    return (
        f"comma list (default {','.join(DEFAULT_BENCH)}; <shipped model>-{', -'.join(names[:-1])} or"
        f" -{names[-1]} compresses that shipped model like the default's variant of that name; {tools})"
    )


def _add_bench(sub) -> None:
    b = sub.add_parser(
        "bench", help="every variant x engine: latency, throughput, memory, accuracy on DRIVE test"
    )
    b.add_argument("--data", help="DRIVE folder (without it: latency on synthetic inputs, accuracy null)")
    b.add_argument("--out", default="build/bench")
    b.add_argument("--models-dir", default="build/models", help="where variants are built / found")
    b.add_argument(
        "--models",
        nargs="+",
        metavar="DIR",
        help="model folders to benchmark beside the variants (ours or imported: "
        "`import-paddleseg`), each a variant named after its folder; a folder without manifest.yaml is the "
        "shipped models' folder (default ./models, else the source checkout's)",
    )
    b.add_argument("--variants", help=_variants_help())
    b.add_argument("--engines", help="comma list (default: every installed engine)")
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--quick", action="store_true", help="smoke run: 3 images, few timed runs")
    b.add_argument(
        "--rounds",
        type=int,
        help="timing rounds per cell, interleaved over the run; p50 is the median of the rounds' "
        "(default 4; --quick 2)",
    )
    b.add_argument(
        "--window",
        type=float,
        help="seconds each round times a scored cell at least: the test images once, then again in turn "
        "(default 1; --quick 0.2)",
    )
    b.add_argument("--no-build", action="store_true", help="do not build missing variants")
    b.add_argument("--no-bf16", action="store_true", help="skip the OpenVINO bf16 rows")
    b.add_argument(
        "--no-gpu", action="store_true", help="skip the GPU rows (added per engine that has a GPU here)"
    )
    b.add_argument(
        "--finetune-iters", type=int, default=800, help="fine-tuning of the pruned variant when it is built"
    )
    b.add_argument("--no-progress", action="store_true")
    b.add_argument(
        "--report",
        metavar="RESULTS_JSON",
        help="only rebuild report.html beside this saved results.json (no cells run)",
    )
    b.set_defaults(func=cmd_bench)


def _add_pick(sub) -> None:
    k = sub.add_parser(
        "pick",
        help="from a bench record, the fastest variant x engine x precision that meets the bounds, "
        "on this CPU",
    )
    k.add_argument(
        "--record",
        default="build/bench/results.json",
        help="bench record (results.json; default build/bench/results.json)",
    )
    k.add_argument("--min-f1", type=float, default=0.82, help="least pooled F1 on DRIVE test (default 0.82)")
    k.add_argument("--max-ms", type=float, help="largest engine p50 in ms")
    k.add_argument("--max-mb", type=float, help="largest model size in MB (the files the engine reads)")
    k.add_argument(
        "--any-cpu",
        action="store_true",
        help="pick from a record measured on a CPU whose flags differ from this one's",
    )
    _add_platform_args(k)
    k.set_defaults(func=cmd_pick)


def _add_platform_args(p) -> None:
    p.add_argument(
        "--platform",
        help="the device's platform: linux-x86_64 or linux-aarch64 (default: this machine's)",
    )
    p.add_argument(
        "--any-arch",
        action="store_true",
        help="use a record measured on another architecture than the device's",
    )


def _add_pack(sub) -> None:
    pk = sub.add_parser(
        "pack",
        help="a bench row -> a self-contained deploy bundle (the engine's files, goldens, validated figures, "
        "pinned runtime)",
    )
    pk.add_argument(
        "choice",
        metavar="CHOICE",
        help="what pick printed (VARIANT/ENGINE[/PRECISION]), or a model folder with --engine [--precision]",
    )
    pk.add_argument("--out", required=True, help="bundle folder to write")
    pk.add_argument(
        "--record",
        default="build/bench/results.json",
        help="bench record the figures come from (default build/bench/results.json)",
    )
    pk.add_argument("--engine", help="with a model folder as CHOICE: the engine")
    pk.add_argument(
        "--precision", help="with a model folder as CHOICE: the precision its row asked for (e.g. bf16)"
    )
    pk.add_argument(
        "--data",
        help="golden inputs from this DRIVE folder's test images or folder of images (default: the record's "
        "data)",
    )
    pk.add_argument(
        "--goldens",
        type=int,
        default=3,
        help="golden images (default 3, each halved on both sides unless --input-size)",
    )
    pk.add_argument(
        "--input-size",
        metavar="WxH",
        help="the camera's fixed image size: goldens at that size; ONNX Runtime's input fixed to its network "
        "shape",
    )
    pk.add_argument("--models-dir", default="build/models", help="where the bench built its variants")
    pk.add_argument(
        "--models", help="folder of the shipped models (default ./models, else the source checkout's)"
    )
    pk.add_argument("--threads", type=int)
    pk.add_argument("--any-cpu", action="store_true", help="pack from a record measured on another CPU")
    _add_platform_args(pk)
    pk.add_argument("--force", action="store_true", help="replace an existing bundle")
    pk.set_defaults(func=cmd_pack)


def _add_selftest(sub) -> None:
    st = sub.add_parser(
        "selftest",
        help="on the device: check a bundle's hashes, CPU, goldens and speed; PASS or FAIL (exit 0 / 1)",
    )
    st.add_argument("bundle", metavar="BUNDLE")
    st.add_argument("--runs", type=int, default=10, help="timed runs (default 10)")
    st.add_argument("--threads", type=int, help="engine threads (default: the bundle's)")
    st.add_argument("-v", "--verbose", action="store_true", help="also each check's figures (stderr)")
    st.set_defaults(func=cmd_selftest)


def _add_predict(sub) -> None:
    r = sub.add_parser("predict", help="segment images: writes <stem>_mask.png (and _prob.png, _overlay.png)")
    r.add_argument(
        "paths",
        nargs="+",
        metavar="[MODEL_DIR] INPUT",
        help=f"model folder (default: {PREDICT_MODEL}/ of --models), then image files or folders",
    )
    r.add_argument(
        "--models",
        help="folder of the shipped models when no model folder is given (default ./models, else the source "
        "checkout's)",
    )
    r.add_argument(
        "--output",
        "-o",
        required=True,
        help="output folder (with --ray also a pyarrow file system URI: s3://bucket/prefix, gs://..., "
        "file:///...)",
    )
    _add_engine_options(
        r,
        threads_help=None,
        precision_help="what to run (default auto: the fastest precision this CPU runs that the model's "
        "manifest records as validated (fundus-edge validate), else fp32; an INT8 model its own); an engine "
        "that cannot honour it fails: OpenVINO takes fp32, and bf16 or fp16 where the device computes them "
        "(for an INT8 model: its float layers); ONNX Runtime and Paddle run the file's own precision (fp32 "
        "or int8); Paddle also int8-sim (an INT8 program's Q/DQ graph on float kernels)",
    )
    r.add_argument("--fov", default="auto", help="auto (estimate), none, a mask file or a folder of masks")
    _add_scale_options(
        r,
        rescale_help="do not resize the input so its FOV matches the training scale",
        crop_help="run the network on the whole frame, not just the FOV's bounding box",
    )
    r.add_argument("--save-prob", action="store_true", help="also write <stem>_prob.png (probability x 255)")
    r.add_argument("--overlay", action="store_true", help="also write <stem>_overlay.png")
    r.add_argument(
        "--biomarkers",
        action="store_true",
        help="also write <stem>_biomarkers.json (vessel density, length, branch and end "
        "points, width, tortuosity, fractal dimension inside the FOV used) and add its row to "
        "OUTPUT/biomarkers.csv; with --ray: one biomarker_* column each in the results table",
    )
    r.add_argument("--force", action="store_true", help="overwrite existing outputs")
    _add_max_pixels(r, "an input whose header declares more refuses the job before anything runs (exit 2)")
    _add_ray_options(r)
    r.add_argument("--no-progress", action="store_true")
    r.set_defaults(func=cmd_predict)


def _add_max_pixels(p, what: str) -> None:
    from fundus_edge.runtime.limits import DEFAULT_MAX_PIXELS

    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"largest image in pixels, width x height (default {DEFAULT_MAX_PIXELS:,}: 40 MP, above any "
        f"fundus camera); {what}",
    )


def _add_ray_options(r) -> None:
    """predict's --ray and the options of its Ray Data pipeline."""
    r.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="run as a Ray Data pipeline (pip install 'fundus-edge[ray]'): a local Ray, or join the cluster "
        "at ADDRESS (--ray=host:port, --ray=auto); resumable: inputs whose outputs and row exist are "
        "skipped; writes results.parquet and results.csv",
    )
    r.add_argument(
        "--workers",
        type=int,
        help="with --ray: Predictor actors (default: this machine's CPUs / threads per worker)",
    )
    r.add_argument(
        "--threads-per-worker",
        type=int,
        help="with --ray: engine threads of each actor (default: this machine's CPUs, at most 4)",
    )


def _add_biomarkers(sub) -> None:
    m = sub.add_parser(
        "biomarkers", help="vessel biomarkers of mask files made elsewhere (e.g. manual labels) -> CSV"
    )
    m.add_argument(
        "masks_dir",
        metavar="MASKS_DIR",
        help="folder of binary vessel masks (predict's <stem>_mask.png when present, else every image)",
    )
    m.add_argument(
        "--fov-dir",
        help="folder of FOV masks, matched by stem, stem_mask or leading number (DRIVE's mask/); default: "
        "the whole frame",
    )
    m.add_argument("--output", "-o", help="CSV to write (default MASKS_DIR/biomarkers.csv)")
    m.add_argument("--force", action="store_true", help="overwrite an existing CSV")
    m.set_defaults(func=cmd_biomarkers)


def _add_serve(sub) -> None:
    s = sub.add_parser(
        "serve",
        help="HTTP service over one model: POST /v1/segment, GET /health, GET /v1/model, a page at / "
        "(extra: fundus-edge[serve])",
    )
    s.add_argument("model", nargs="?", help=f"model folder (default: {PREDICT_MODEL}/ of --models)")
    s.add_argument("--models", help="folder of the shipped models when no model folder is given")
    s.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 for every interface)",
    )
    s.add_argument("--port", type=int, default=8000)
    _add_engine_options(
        s, threads_help="engine threads, as for predict", precision_help="as for predict (default auto)"
    )
    _add_scale_options(s, rescale_help="as for predict", crop_help="as for predict")
    s.add_argument(
        "--queue",
        type=int,
        default=4,
        help="requests that may wait for the engine besides the one it runs (default 4); more get 429 "
        "with Retry-After",
    )
    s.add_argument(
        "--max-body-mb",
        type=float,
        default=32.0,
        help="largest request body in MiB (default 32); larger get 413",
    )
    _add_max_pixels(s, "an upload whose header declares more gets 413 before it is queued")
    s.add_argument(
        "--overcommit",
        action="store_true",
        help="start even when the worst-case memory (bodies of the queue, one image at --max-pixels) is over "
        "this machine's",
    )
    s.add_argument(
        "--log-level",
        default="warning",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn's log level",
    )
    s.set_defaults(func=cmd_serve)


from .cli_adapt import add_adapt  # noqa: E402 - a verb in its own module (issue #41's direction)

# The subcommands in the order `fundus-edge --help` lists them.
_SUBCOMMANDS = (
    _add_train,
    _add_average,
    _add_evaluate,
    _add_export,
    _add_validate,
    _add_quantize,
    _add_import_paddleseg,
    _add_bench,
    _add_pick,
    _add_pack,
    _add_selftest,
    _add_predict,
    _add_biomarkers,
    _add_serve,
    add_adapt,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fundus-edge", description="Retinal-vessel segmentation from training to screening devices."
    )
    sub = p.add_subparsers(dest="command", required=True)
    for add in _SUBCOMMANDS:
        add(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except FundusEdgeError as exc:
        print(f"fundus-edge {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fundus-edge {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
