"""The adapted model a site ships (issue #43): after ``fundus-edge adapt`` has written ``OUT/adapt.json`` and
``OUT/model``, its INT8 builds recalibrated on the site's images and validated there, and a card for each.

    python -m fundus_edge.adapt_ship OUT [--data SITE] [--int8 nncf,ort] [--camera TEXT] [--force]

What each step reads:
1. The site folder, checked file by file against the sha256 that ``adapt.json`` recorded: the INT8 builds
   calibrate and validate on exactly the images the adapted model learned from, or not at all.
2. INT8 by each engine's own quantizer (quantize/engine_ptq.py: NNCF for OpenVINO, ONNX Runtime's), calibrated
   on the site's images as the runtime feeds them (rescaled to the model's FOV, cropped, padded), written to
   ``OUT/model-int8-nncf`` / ``-ort`` only when it passes the guard on the site's images: pooled FOV F1 within
   ``TOLERANCE`` of the float model through the same engine, vessel Dice with the float model's masks at least
   ``MIN_AGREEMENT_FLOAT``. These are the images the final model was trained on (a site has no others), so
   the check shows that INT8 keeps what the float model does on them, not how either does on new images; the
   site's estimate of that is the cross-validated one. A build that fails is removed and recorded as refused.
3. ``MODEL_CARD.md`` in ``OUT/model`` and each INT8 folder (fundus_edge/adapt_card.py).
``ship.json`` in OUT records what was built or refused, with every figure.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from fundus_edge.runtime.errors import FundusEdgeError, InputError, one_line

QUANTIZERS = ("nncf", "ort")
ENGINE_OF = {"nncf": "openvino", "ort": "onnxruntime"}
CALIB_IMAGES = 20  # the engine quantizers' calibration count (STACK.md's measurement), as `quantize` uses
SHIP = "ship.json"
SITE_IMAGES = "the site's images the adapted model was trained on ({n}; not held out)"


@dataclass
class Int8Check:
    """One INT8 build of the adapted model, validated on the site's images."""

    quantizer: str
    engine: str
    folder: str | None  # None: refused (nothing written)
    calibration_images: int
    images: int  # validation images
    f1: float
    f1_float: float
    delta: dict  # paired bootstrap of INT8 - float over the validation images (Interval.to_dict())
    dice: float  # vessel Dice of INT8's masks with the float model's, inside each FOV, pooled
    passed: bool
    reason: str
    seconds: float


def read_adapt(out: Path) -> dict:
    """``OUT/adapt.json``, which must describe a finished run with its final model."""
    from fundus_edge.runtime.manifest import is_model_dir

    from .adapt import RESULTS

    path = out / RESULTS
    if not path.is_file():
        raise InputError(f"{path}: no adapt report (run `fundus-edge adapt ... --out {out}` first)")
    try:
        rep = json.loads(path.read_text())
    except ValueError:
        raise InputError(f"{path}: not valid JSON") from None
    if not rep.get("final") or not is_model_dir(out / "model"):
        raise InputError(f"{path}: the run has no final model in {out / 'model'} (it ran with --no-final?)")
    return rep


def site_samples(adapt: dict, model: Path, data: str | Path | None) -> tuple[Path, list]:
    """(site folder, its images loaded), after checking they are the files ``adapt.json`` hashed and the
    images the engine quantizers will calibrate on (they read a model's training split themselves)."""
    from fundus_edge.train.adapt import read_labelled_site
    from fundus_edge.train.data import load_sample, model_training_split

    from .adapt import site_hashes

    root = Path(data or adapt["site"])
    site = read_labelled_site(root)
    now, then = site_hashes(site), adapt.get("site_files") or {}
    changed = sorted(k for k in set(now) | set(then) if now.get(k) != then.get(k))
    if changed:
        raise InputError(
            f"{root}: {len(changed)} file(s) differ from those adapt.json hashed ({', '.join(changed[:3])}"
            + (", ..." if len(changed) > 3 else "")
            + "): give --data the site folder the model was adapted on"
        )
    split = model_training_split(model, root)
    if sorted(s.image.resolve() for s in split) != sorted(s.image.resolve() for s in site.images):
        raise InputError(
            f"{root}: the training split its manifest's config reads there is not the site's "
            f"{len(site.images)} images (it lists {len(split)}); the quantizers would calibrate on others"
        )
    return root, [load_sample(s) for s in split]


def _run_all(model: Path, engine: str, samples: list, threads: int | None):
    """(per-image statistics, masks, the precision that ran) through ``engine`` at the model's threshold."""
    from fundus_edge.measure.metrics import MetricAccumulator
    from fundus_edge.runtime.predictor import Predictor

    p = Predictor.load(model, backend=engine, threads=threads)
    acc = MetricAccumulator(threshold=p.threshold, per_image_auc=False)
    masks = []
    for s in samples:
        r = p.predict(s.rgb, fov=s.fov)
        acc.add(r.prob, s.label, s.fov, s.name)
        masks.append(r.mask)
    return acc.image_stats(), masks, p.precision


def validate_on_site(int8: Path, float_dir: Path, engine: str, samples: list, threads: int | None):
    """(F1 of INT8, F1 of the float model, paired INT8 - float F1 interval, vessel Dice), each through
    ``engine`` on ``samples``."""
    from fundus_edge.bench.cell import vessel_dice
    from fundus_edge.measure.intervals import paired, point

    ref, ref_masks, _ = _run_all(float_dir, engine, samples, threads)
    got, masks, _ = _run_all(int8, engine, samples, threads)
    diff = paired(ref, got, ("f1",))["f1"].diff
    dice = vessel_dice(ref_masks, masks, [s.fov for s in samples])
    return point(got)["f1"], point(ref)["f1"], diff, dice


def site_guard(f1: float, f1_ref: float, dice: float) -> tuple[bool, str]:
    from fundus_edge.bench.sweep import MIN_AGREEMENT_FLOAT
    from fundus_edge.runtime.precision import TOLERANCE

    fails = ([f"ΔF1 {f1 - f1_ref:+.4f} beyond ±{TOLERANCE}"] if abs(f1 - f1_ref) > TOLERANCE else []) + (
        [f"vessel Dice {dice:.4f} < {MIN_AGREEMENT_FLOAT}"] if dice < MIN_AGREEMENT_FLOAT else []
    )
    if fails:
        return False, "refused: " + "; ".join(fails)
    return True, f"validated: within ±{TOLERANCE} F1 of float, vessel Dice >= {MIN_AGREEMENT_FLOAT}"


def _existing(target: Path, model: Path, force: bool) -> bool:
    """Whether ``target`` already holds this float model's INT8 build (kept); another folder there is
    refused unless ``force``."""
    from fundus_edge.runtime.manifest import manifest_sha256, read_manifest

    if not target.exists():
        return False
    if force:
        shutil.rmtree(target)
        return False
    try:
        rec = read_manifest(target).source.get("float_model") or {}
    except FundusEdgeError:
        rec = {}
    if rec.get("manifest_sha256") == manifest_sha256(model):
        return True
    raise InputError(f"{target}: exists and is not an INT8 build of {model} (use --force to replace it)")


def site_int8(out: Path, quantizer: str, root: Path, samples: list, threads: int | None, log) -> Int8Check:
    """INT8 of ``OUT/model`` by ``quantizer``, calibrated on the site (``root``), guarded on ``samples``."""
    from fundus_edge.deploy.adapted import SITE_CHECK
    from fundus_edge.export.exporter import source_record
    from fundus_edge.quantize.engine_ptq import engine_int8
    from fundus_edge.runtime.manifest import read_manifest, record_validation, write_manifest

    model, target = out / "model", out / f"model-int8-{quantizer}"
    engine, t0 = ENGINE_OF[quantizer], time.perf_counter()
    tmp = out / f".model-int8-{quantizer}.building"  # renamed into place only when it passes
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        engine_int8(model, tmp, root, quantizer, calib_images=CALIB_IMAGES, force=True)
        man = read_manifest(tmp)
        n_cal = int(man.quantization.get("calibration_images", 0))
        quant = {**man.quantization, "calibration": f"the site's images ({n_cal}), not DRIVE's"}
        src = {**man.source, "float_model": source_record(model)}
        write_manifest(tmp, _with(man, quantization=quant, source=src))
        f1, f1_ref, diff, dice = validate_on_site(tmp, model, engine, samples, threads)
        passed, reason = site_guard(f1, f1_ref, dice)
        check = Int8Check(
            quantizer, engine, None, n_cal, len(samples), round(f1, 5), round(f1_ref, 5),
            diff.to_dict(), round(dice, 5), passed, reason, 0.0,
        )  # fmt: skip
        if passed:
            record_validation(tmp, engine, {SITE_CHECK: _validation_record(check, tmp)})
            tmp.rename(target)
            check.folder = str(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    check.seconds = round(time.perf_counter() - t0, 1)
    log(
        f"{target.name}: F1 {f1:.4f} vs float {f1_ref:.4f} through {engine}, vessel Dice {dice:.4f} on "
        f"{SITE_IMAGES.format(n=len(samples))}: {reason}"
    )
    return check


def _with(man, **kw):
    from dataclasses import replace

    return replace(man, **kw)


def _validation_record(c: Int8Check, folder: Path) -> dict:
    """The manifest's ``validated`` entry (as ``fundus-edge validate`` writes it), on the site's images."""
    from fundus_edge.runtime import cpu
    from fundus_edge.runtime.manifest import read_manifest
    from fundus_edge.runtime.precision import TOLERANCE

    man = read_manifest(folder)
    names = next(iter(man.formats.values()))
    return {
        "f1": c.f1,
        "f1_reference": c.f1_float,
        "reference": f"model fp32 through {c.engine}",
        "passed": c.passed,
        "tolerance": TOLERANCE,
        "vessel_dice": c.dice,
        "threshold": float(man.threshold),
        "files": {n: man.files[n] for n in names},
        "images": SITE_IMAGES.format(n=c.images),
        "cpu": cpu.cpu_model_and_flags()[0],
        "cpu_flags": cpu.isa_flags(),
        "date": time.strftime("%Y-%m-%d"),
    }


def ship(
    out: str | Path,
    data: str | Path | None = None,
    quantizers: tuple[str, ...] = QUANTIZERS,
    camera: str | None = None,
    force: bool = False,
    threads: int | None = None,
    log=print,
) -> dict:
    """Steps 1-3 of the module's docstring on a finished adapt folder ``out``; returns ``ship.json``'s
    record. An INT8 folder already built from this float model is kept (``force`` rebuilds it)."""
    from .adapt_card import write_cards

    out = Path(out)
    bad = [q for q in quantizers if q not in QUANTIZERS]
    if bad:
        raise InputError(f"--int8 {','.join(bad)}: choose from {', '.join(QUANTIZERS)}")
    adapt = read_adapt(out)
    root, samples = site_samples(adapt, out / "model", data)
    prior = _read_ship(out)
    checks = []
    for q in quantizers:
        target = out / f"model-int8-{q}"
        if _existing(target, out / "model", force):
            if q in prior:
                log(f"{target}: built from this model already, kept (--force rebuilds)")
                checks.append(Int8Check(**prior[q]))
                continue
            shutil.rmtree(target)  # ours, but ship.json lost its figures: built and checked again
        checks.append(site_int8(out, q, root, samples, threads, log))
    record = {"site": str(root), "int8": [asdict(c) for c in checks], "camera": camera}
    (out / SHIP).write_text(json.dumps(record, indent=1))
    for card in write_cards(out, adapt, checks, camera):
        log(f"card: {card}")
    return record


def _read_ship(out: Path) -> dict:
    try:
        return {c["quantizer"]: c for c in json.loads((out / SHIP).read_text())["int8"] if c.get("passed")}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m fundus_edge.adapt_ship", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("out", help="a finished `fundus-edge adapt` folder (adapt.json and model/)")
    ap.add_argument("--data", help="the site folder (default: the one adapt.json names)")
    ap.add_argument(
        "--int8", default=",".join(QUANTIZERS), help="engine quantizers (default nncf,ort; '' for none)"
    )
    ap.add_argument("--camera", help="the site's camera and population, for the card")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--force", action="store_true", help="rebuild INT8 folders that exist")
    a = ap.parse_args(argv)
    try:
        ship(a.out, a.data, tuple(q for q in a.int8.split(",") if q.strip()), a.camera, a.force, a.threads)
    except FundusEdgeError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
