"""Cards of shipped INT8 folders (``models/<model>-int8-litert`` and the like): every figure from the INT8
manifest (``quantization``, ``source.float_model``, ``validated``), the float model's manifest and card, the
per-image validation statistics where they were kept, and the test-read ledger. No DRIVE read and no timing:
the bench measures these folders."""

from __future__ import annotations

import re
from pathlib import Path

from fundus_edge.modelcard.common import ROOT, engine_label
from fundus_edge.modelcard.intended_use import card_f1_text, with_intended_use
from fundus_edge.modelcard.reads import reads_section
from fundus_edge.runtime.engines.table import ENGINE_TABLE
from fundus_edge.runtime.errors import InputError
from fundus_edge.runtime.manifest import is_model_dir, manifest_sha256, read_manifest

# Per-image confusion counts of the validation reads, kept where a validation was recomputed with them:
# <int8 folder>.json and <float model>-<engine>.json (the float file through the same engine).
VALIDATION_STATS = ROOT / "docs" / "test-stats" / "validation"


def _folders(model: Path) -> tuple[object, dict, Path]:
    """(manifest, its quantization record, the float model's folder), or a one-line error naming the
    folder and what its manifest lacks."""
    if not is_model_dir(model):
        raise InputError(f"{model}: not a model folder (no manifest.yaml)")
    man = read_manifest(model)
    q, flt = man.quantization, (man.source or {}).get("float_model")
    if not isinstance(q, dict) or not q.get("engine"):
        raise InputError(f"{model}: its manifest records no INT8 build (quantization.engine)")
    if not isinstance(flt, dict) or not flt.get("name"):
        raise InputError(f"{model}: its manifest records no float model (source.float_model)")
    return man, q, model.parent / Path(flt.get("path") or flt["name"]).name


def _float_ops(q: dict) -> list[str]:
    """The op types LiteRT's converter left in float: the manifest records them only inside its
    ``activations`` text (``int8 (CONCATENATION, SOFTMAX in float)``), so they are read back from it."""
    m = re.search(r"\((.+) in float\)", str(q.get("activations", "")))
    return [o.strip() for o in m.group(1).split(",")] if m else []


def _command(model: Path, float_dir: Path, q: dict, method: str) -> str:
    """The command that makes this folder from the float model, with the options its manifest records."""
    here, flt = f"{model.parent.name}/{model.name}", f"{float_dir.parent.name}/{float_dir.name}"
    if q["engine"] != "litert":
        return f"fundus-edge quantize {flt} --out {here} --int8 {method} --data DRIVE"
    views = re.search(r"each in (\d) orientations", str(q.get("calibration", "")))
    opts = (
        (" --float-layers first-last" if q.get("float_layers") else "")
        + (f" --float-ops {','.join(_float_ops(q))}" if _float_ops(q) else "")
        + (f" --calib-views {views.group(1)}" if views else "")
    )
    return f"python -m fundus_edge.export.litert {flt} --precisions int8{opts} --data DRIVE --int8-out {here}"


def _kept_in_float(q: dict) -> str:
    """What of the network is not INT8, in the manifest's words."""
    parts = [f"{', '.join(_float_ops(q))} ops"] if _float_ops(q) else []
    if q.get("float_layers"):
        parts.append(str(q["float_layers"]))
    io = [q.get(k) for k in ("input", "output")]
    scales = (
        f"; the file's input and output are int8 too (input scale {io[0]['scale']:.6g}, zero point "
        f"{io[0]['zero_point']}; output scale {io[1]['scale']:.6g}, zero point {io[1]['zero_point']}): the "
        "runtime quantizes the image and dequantizes the probabilities with the file's own scales"
        if all(isinstance(x, dict) and "scale" in x for x in io)
        else ""
    )
    what = "; ".join(parts) + "; every other op int8" if parts else "no op of the network"
    return f"- Kept in float: {what} (weights {q.get('weights')}){scales}."


def _made_lines(model: Path, man, q: dict, float_dir: Path, method: str, tool: str) -> list[str]:
    """The How it was made section: command, tool and versions, calibration, what stays in float, the float
    model and whether its manifest is still the one converted."""
    flt = man.source["float_model"]
    src_man = read_manifest(float_dir) if is_model_dir(float_dir) else man
    val = int(((src_man.source or {}).get("config") or {}).get("data", {}).get("val_count", 0))
    split = (
        f"the {20 - val} training images `{float_dir.name}` was trained on"
        if val
        else f"all 20, as `{float_dir.name}` was trained on"
    )
    built = q.get("built_on") or {}
    flags = ", ".join(built.get("isa_flags") or []) or "no ISA flags recorded"
    now = manifest_sha256(float_dir) if is_model_dir(float_dir) else None
    same = (
        ""
        if now is None or now == flt.get("manifest_sha256")
        else f" (its manifest has changed since: sha256 now `{now}`; the bench rebuilds this variant)"
    )
    return [
        "## How it was made",
        f"- Command: `{_command(model, float_dir, q, method)}` ({q.get('tool')}), from the float model's "
        f"`model.onnx`, converted at {q.get('converted_at', 'its input size')}"
        + (f" in {q['seconds']:.0f} s" if q.get("seconds") is not None else "")
        + f" on {built.get('cpu', 'an unrecorded CPU')} ({flags}).",
        f"- Calibration: {q.get('calibration_images')} DRIVE training images ({split}; never validation or "
        f"test images): {q.get('calibration', 'as recorded')}.",
        _kept_in_float(q),
        f"- Float model: `{float_dir.parent.name}/{float_dir.name}`, manifest sha256 "
        f"`{flt.get('manifest_sha256')}`{same}.",
        "",
    ]


def _recomputed(model: Path, float_name: str, engine: str, threshold: float):
    """(int8 F1, float F1, paired difference, where) from the per-image counts kept for this validation
    (int8 and the float file through the same engine, at the same threshold); None when not kept."""
    from fundus_edge.measure.intervals import load_stats, paired, record_intervals

    own, ref = VALIDATION_STATS / f"{model.name}.json", VALIDATION_STATS / f"{float_name}-{engine}.json"
    if not (own.is_file() and ref.is_file()):
        return None
    (s8, r8), (s32, r32) = load_stats(own), load_stats(ref)
    if any(
        r.get("threshold") is not None and abs(float(r["threshold"]) - threshold) > 5e-4 for r in (r8, r32)
    ):
        return None  # counts at another threshold are not this validation's
    i8, i32 = record_intervals(r8, s8)["f1"], record_intervals(r32, s32)["f1"]
    d = paired(s32, s8, ("f1",))["f1"].diff

    def rel(p: Path) -> str:
        return p.relative_to(ROOT).as_posix() if p.is_relative_to(ROOT) else str(p)

    where = (
        f" Intervals over the {s8.n} images from per-image counts recomputed at the same threshold "
        f"(`{rel(ref)}`, `{rel(own)}`; `python -m fundus_edge.measure.intervals` on the two)."
    )
    return i8, i32, d, where


def _validation_lines(model: Path, man, float_dir: Path) -> list[str]:
    """Validation on the training images from the manifest's ``validated`` record (with intervals from the
    kept per-image counts when there are some), the float model's DRIVE test figure from its card, and why
    these files have none of their own."""
    engine = man.quantization["engine"]
    v = ((man.validated or {}).get(engine) or {}).get("int8")
    label = engine_label(engine)
    if not isinstance(v, dict) or v.get("f1") is None:
        head = (
            f"Not validated: its manifest has no `validated.{engine}.int8` record (`fundus-edge validate`)."
        )
    else:
        verdict = "validated" if v.get("passed") else "NOT within it"
        ver = ", ".join(f"{k} {x}" for k, x in (v.get("engine_version") or {}).items())
        kept = _recomputed(model, float_dir.name, engine, v["threshold"])
        if kept:
            i8, i32, d, where = kept
            figures = (
                f"**{v['f1']:.4f}** ({i8.ci()}; int8) against {v['f1_reference']:.4f} ({i32.ci()}; "
                f"{v.get('reference')}), Δ {v['f1'] - v['f1_reference']:+.4f} (paired {d.ci(4)})"
            )
        else:  # validate keeps pooled figures only
            where = ""
            figures = (
                f"{v['f1']:.4f} (int8) against {v['f1_reference']:.4f} ({v.get('reference')}), "
                f"Δ {v['f1'] - v['f1_reference']:+.4f}"
            )
        head = (
            f"Pooled FOV F1 on the {v.get('images')} images at the threshold {v['threshold']:.3f}, through "
            f"{label}: {figures}, within ±{v['tolerance']}: {verdict} (`fundus-edge validate`, "
            f"{v.get('date')}, {v.get('cpu')} ({', '.join(v.get('cpu_flags') or [])}), {ver}; manifest "
            "section `validated`"
            + ("" if kept else "; no interval: validate keeps no per-image counts")
            + ")."
            + where
        )
    card = float_dir / "MODEL_CARD.md"
    f1 = card_f1_text(card.read_text().splitlines()) if card.is_file() else None
    if f1 is None:
        test = f"The float model `{float_dir.name}` states no DRIVE test F1 in a card here."
    else:
        test = f"The float model's DRIVE test F1 is {f1} (through ONNX Runtime; its card)" + (
            "." if "CI" in f1 else ", no interval: its card states none."
        )
    return [
        "## Validation (training images)",
        head,
        "",
        test + " These files have no DRIVE test figure of their own in this card: none was read for them; "
        "the bench re-scores them in its runs (`docs/results/`), which the ledger lists as reports and does "
        "not count.",
        "",
    ]


def _provenance(man, float_dir: Path) -> list[str]:
    """The files as the manifest pins them, and the float file they were converted from."""
    src = read_manifest(float_dir) if is_model_dir(float_dir) else None
    onnx = (src.files or {}).get("model.onnx") if src else None
    return [
        "## Provenance",
        "- Files (sha256, as `manifest.yaml` pins them): "
        + ", ".join(f"`{f}` `{h}`" for f, h in man.files.items())
        + ".",
        f"- Made from `{float_dir.name}`'s `model.onnx`"
        + (f" (sha256 `{onnx}`)" if onnx else "")
        + f"; its weights' training and checkpoint: the card of `{float_dir.name}` (Provenance).",
        "",
    ]


def int8_build_card(model: Path, ledger: Path | None = None) -> list[str]:
    """The card of a shipped INT8 folder, like the hand-written NNCF and ONNX Runtime ones: how it was made,
    its validation on training images, the float model's DRIVE test figure, use, test reads, provenance."""
    from fundus_edge.quantize.variants import DEFAULT_MODEL, INT8_METHODS, derived

    model = Path(model)
    man, q, float_dir = _folders(model)
    engine = q["engine"]
    row = derived(model.name, lambda m: m == float_dir.name)
    method = row.int8 if row is not None and row.int8 else engine
    tool = INT8_METHODS.get(method, (f"{engine_label(engine)}'s converter",))[0]
    bench = row.recipe if row is not None and row.source == DEFAULT_MODEL else model.name
    size = sum((model / f).stat().st_size for f in man.files) / 1e6
    here = f"{model.parent.name}/{model.name}"
    extra = ENGINE_TABLE[engine].extra if engine in ENGINE_TABLE else ""
    card = [
        f"# Model card: `{model.name}`",
        "",
        f"INT8 of the shipped [`{float_dir.name}`](../{float_dir.name}/MODEL_CARD.md) (its trained weights "
        f"quantized; same preprocessing and threshold {man.threshold:.3f}), made by {tool}, for "
        f"{engine_label(engine)} ({', '.join(f'`{f}`' for f in man.files)}); {man.model['params']:,} "
        f"parameters, {size:.2f} MB of model files. Shipped so a device install"
        + (f" (`pip install fundus-edge[{extra}]`)" if extra else "")
        + " runs it without the converter, and `make bench` measures it without building it.",
        "",
        *_made_lines(model, man, q, float_dir, method, tool),
        *_validation_lines(model, man, float_dir),
        "## Use",
        f"`fundus-edge predict {here} IMAGES -o OUT --backend {engine}`; `fundus-edge bench` measures it "
        f"as `{bench}`, held to `{float_dir.name}`'s float row on the same engine.",
        "",
        *reads_section(float_dir.name, ledger),
        *_provenance(man, float_dir),
        f"Reproduce: `python -m fundus_edge.modelcard --model {here} --int8-build`.",
    ]
    return with_intended_use(card, model)


def write_int8_card(model: Path, force: bool = False, ledger: Path | None = None) -> Path:
    """Write ``model``'s card; an existing card (written by hand or by an earlier run) is replaced only with
    ``force``."""
    _folders(Path(model))  # not an INT8 folder: say so before anything about its card
    card = Path(model) / "MODEL_CARD.md"
    if card.exists() and not force:
        raise InputError(f"{card}: exists; pass --force to replace it")
    text = "\n".join(int8_build_card(Path(model), ledger)) + "\n"
    card.write_text(text)
    return card
