"""The card's Intended use and limits section: what the model is for, what it was trained on, where it was
measured outside DRIVE and its known failure modes, each figure read from a card or docs/outside-drive.csv."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from fundus_edge.modelcard.common import ROOT, replace_section
from fundus_edge.runtime.manifest import read_manifest

INTENDED_HEAD = "## Intended use and limits"
# Scores of shipped models on images outside DRIVE, one row each (docs/intended-use.md says what they are).
OUTSIDE_DRIVE = ROOT / "docs" / "outside-drive.csv"
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
