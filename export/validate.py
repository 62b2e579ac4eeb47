"""``fundus-edge validate``: which precisions of a model folder keep its F1, engine by engine, written into
its manifest's ``validated`` section, from which ``--precision auto`` picks (runtime/precision.py).

Each check scores pooled FOV F1 at the model's threshold on the 20 DRIVE *training* images, through the
Predictor as ``predict`` runs it, against the reference through the same engine: fp32 for a float model
(its lower precisions: OpenVINO's bf16, fp16 where this CPU computes them), the float model it was made
from for an INT8 folder (its own precision, on the engine its quantizer targets). The test images are never
read here: selection uses training data only (docs/test-reads.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from fundus_edge.runtime import cpu
from fundus_edge.runtime.engines.table import reduced
from fundus_edge.runtime.errors import InputError, ModelError
from fundus_edge.runtime.precision import TOLERANCE

IMAGES = "DRIVE training (20)"


@dataclass(frozen=True)
class PrecisionCheck:
    engine: str
    precision: str  # what was checked (an INT8 folder: "int8", its own)
    f1: float
    f1_reference: float
    reference: str  # what it was compared with
    passed: bool

    @property
    def delta(self) -> float:
        return self.f1 - self.f1_reference


def training_samples(data: str | Path) -> list:
    """The DRIVE training images with labels and FOV masks: only a DRIVE folder (another data set has no
    official training split, so every image of it is held out)."""
    from fundus_edge.train.data import detect_layout, discover, load_sample

    data = Path(data)
    if not data.exists():
        raise InputError(f"{data}: no such folder")
    if not (data / "training" / "images").is_dir() or detect_layout(data) != "drive":
        raise InputError(
            f"{data}: not a DRIVE folder with training/images (validation reads DRIVE training images only)"
        )
    samples = discover(data, split="train", layout="drive")
    if not all(
        "training" in s.image.parts for s in samples
    ):  # the split's contract, checked: never a test image
        raise InputError(f"{data}: the training split lists images outside training/")
    return [load_sample(s) for s in samples]


def pooled_f1(
    model_dir: Path, engine: str, precision: str | None, samples: list, threads: int | None
) -> tuple[float, str]:
    """(pooled FOV F1 at the model's threshold, the precision that ran)."""
    from fundus_edge.measure.metrics import MetricAccumulator
    from fundus_edge.runtime.predictor import Predictor

    p = Predictor.load(model_dir, backend=engine, threads=threads, precision=precision)
    acc = MetricAccumulator(threshold=p.threshold, per_image_auc=False)
    for s in samples:
        acc.add(p.predict(s.rgb, fov=s.fov).prob, s.label, s.fov, s.name)
    return float(acc.pooled().f1), p.precision


def float_source(model_dir: Path, man, reference: str | Path | None) -> Path:
    """The float model an INT8 folder was made from: ``reference``, else the path its manifest records, whose
    manifest must still be the one recorded (another float model would make the comparison meaningless)."""
    from fundus_edge.runtime.manifest import is_model_dir, manifest_sha256

    rec = man.source.get("float_model") if isinstance(man.source, dict) else None
    if reference is None:
        if not isinstance(rec, dict) or not rec.get("path"):
            raise ModelError(
                f"{model_dir}: an INT8 folder whose manifest names no float model;"
                " give --reference FLOAT_MODEL"
            )
        reference = rec["path"]
    ref = Path(reference)
    if not is_model_dir(ref):
        raise InputError(
            f"{ref}: no float model folder there (the reference of {model_dir}); give --reference FLOAT_MODEL"
        )
    if (
        isinstance(rec, dict)
        and rec.get("manifest_sha256")
        and manifest_sha256(ref) != rec["manifest_sha256"]
    ):
        raise ModelError(
            f"{ref}: its manifest is not the one {model_dir} was quantized from"
            f" (sha256 {rec['manifest_sha256'][:12]} recorded)"
        )
    return ref


def _engines_for(man, engines: list[str] | None) -> list[str]:
    from fundus_edge.runtime.engines import installed_engines
    from fundus_edge.runtime.formats import formats_for

    if man.quantization and man.quantization.get("engine") and engines is None:
        engines = [man.quantization["engine"]]  # the engine its quantizer targets
    names = engines or installed_engines()
    return [e for e in names if e in installed_engines() and formats_for(e, list(man.formats))]


def validate(
    model_dir: str | Path,
    data: str | Path,
    engines: list[str] | None = None,
    threads: int | None = None,
    reference: str | Path | None = None,
    write: bool = True,
    log=print,
) -> list[PrecisionCheck]:
    """Check the precisions of ``model_dir`` worth checking on this CPU, record them in its manifest
    (``write``) and return them. ``log`` gets one line per check and per precision skipped."""
    from fundus_edge.runtime.engines import engine_class
    from fundus_edge.runtime.manifest import check_model_dir, record_validation

    model_dir = Path(model_dir)
    man = check_model_dir(model_dir)
    todo = _engines_for(man, engines)
    if not todo:
        raise InputError(
            f"{model_dir}: no installed engine of {', '.join(engines or ['any'])}"
            f" reads its formats ({', '.join(man.formats)})"
        )
    ref_dir = float_source(model_dir, man, reference) if man.quantization else model_dir
    samples = training_samples(data)
    model_name, _ = cpu.cpu_model_and_flags()
    checks: list[PrecisionCheck] = []
    for engine in todo:
        if man.quantization:
            wanted = [(None, "int8")]
        else:
            wanted = []
            for p in reduced(engine):
                if cpu.precision_flag(p, engine=engine) is None:
                    lacks = " and ".join(cpu.precision_flags(p, engine))
                    log(f"{engine} {p}: not checked (this CPU lacks {lacks})")
                else:
                    wanted.append((p, p))
            if not wanted:
                log(f"{engine}: nothing to check (it runs fp32 only here)")
                continue
        f1_ref, _ = pooled_f1(ref_dir, engine, "fp32", samples, threads)
        ref_text = f"{'fp32' if ref_dir == model_dir else f'{ref_dir.name} fp32'} through {engine}"
        records = {}
        for asked, label in wanted:
            f1, ran = pooled_f1(model_dir, engine, asked, samples, threads)
            ok = abs(f1 - f1_ref) <= TOLERANCE
            check = PrecisionCheck(engine, label, f1, f1_ref, ref_text, ok)
            checks.append(check)
            log(
                f"{model_dir.name} {engine} {label} (ran {ran}): F1 {f1:.4f} vs {f1_ref:.4f} ({ref_text}), "
                f"Δ {check.delta:+.4f}: {'validated' if ok else f'not validated (beyond ±{TOLERANCE})'}"
            )
            names = man.formats[_format_of(man, engine)]
            records[label] = {
                "f1": round(f1, 5),
                "f1_reference": round(f1_ref, 5),
                "reference": ref_text,
                "passed": ok,
                "tolerance": TOLERANCE,
                "threshold": float(man.threshold),
                "files": {n: man.files[n] for n in names},
                "images": IMAGES,
                "cpu": model_name,
                "cpu_flags": cpu.isa_flags(),
                "engine_version": engine_class(engine)(model_dir, "", [], None, False).versions(),
                "date": time.strftime("%Y-%m-%d"),
            }
        if write and records:
            record_validation(model_dir, engine, records)
    return checks


def _format_of(man, engine: str) -> str:
    from fundus_edge.runtime.formats import formats_for

    return formats_for(engine, list(man.formats))[0]
