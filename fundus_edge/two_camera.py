"""The card of a shipped two-camera model (docs/adapt.md, "A two-camera model"): the adapt card of its run
(cameras, STARE's cross-validated estimate, the rule, the cost) plus its DRIVE test figures, the shipping
rule's verdict computed from the per-image statistics files, and its test reads from the ledger.

    python -m fundus_edge.two_camera models/s2d-fast-2cam --run runs/two-camera-s2d-fast --base s2d-fast

Every figure comes from a file: ``docs/test-stats/NAME.json`` (its DRIVE test read, ``evaluate
--per-image-out``), ``docs/test-stats/BASE.json`` (the DRIVE-only model's), and
``docs/test-stats/outside/stare-BASE.json`` / ``stare-BASE-2cam-cv.json`` (zero-shot and
cross-validated STARE).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fundus_edge.adapt_card import card_lines
from fundus_edge.measure.intervals import Interval, bootstrap, load_stats, paired, record_intervals
from fundus_edge.modelcard.common import STATS_DIR
from fundus_edge.modelcard.drive_figures import test_headline
from fundus_edge.modelcard.reads import reads_section
from fundus_edge.runtime.errors import FundusEdgeError, InputError
from fundus_edge.runtime.manifest import is_model_dir

CARD = "MODEL_CARD.md"


def _stats(path: Path):
    if not path.is_file():
        raise InputError(f"{path}: missing (the per-image statistics this card's figures come from)")
    return load_stats(path)


def verdict_lines(name: str, base: str, estimate: dict) -> list[str]:
    """The rule's two conditions, each computed: the DRIVE test F1 intervals overlap, and STARE's
    cross-validated interval lies above the DRIVE-only model's zero-shot STARE F1. ``estimate``: the
    run's cross-validated F1 as adapt.json holds it (the interval the rest of the card gives)."""
    own, own_rec = _stats(STATS_DIR / f"{name}.json")
    ref, ref_rec = _stats(STATS_DIR / f"{base}.json")
    zero, _ = _stats(STATS_DIR / "outside" / f"stare-{base}.json")
    cv, _ = _stats(STATS_DIR / "outside" / f"stare-{base}-2cam-cv.json")
    a, b = record_intervals(own_rec, own)["f1"], record_intervals(ref_rec, ref)["f1"]
    overlap = a.low <= b.high and b.low <= a.high
    drive = paired(ref, own, metrics=("f1",))["f1"].diff
    z, c = bootstrap(zero)["f1"], Interval(**estimate)
    gain = paired(zero, cv, metrics=("f1",))["f1"].diff
    held = overlap and c.low > z.value
    return [
        "## The shipping rule and its verdict",
        'Written before any of its folds was scored (docs/adapt.md, "A two-camera model"): ship only if '
        "its DRIVE test F1 interval overlaps the DRIVE-only model's and its STARE estimate's interval lies "
        "above the DRIVE-only model's zero-shot STARE F1.",
        "",
        f"- DRIVE test: F1 {a.value:.4f} ({a.ci()}) against `{base}` {b.value:.4f} ({b.ci()}): "
        + ("the intervals overlap" if overlap else "the intervals do not overlap")
        + f". Paired over the 20 images: {drive.value:+.4f} ({drive.ci()})"
        + (
            ", a small loss the rule tolerates."
            if drive.high < 0
            else (", a gain." if drive.low > 0 else ", not distinguishable.")
        ),
        f"- STARE, 4-fold cross-validated: F1 {c.value:.4f} ({c.ci()}) against `{base}` zero-shot "
        f"{z.value:.4f} ({z.ci()}); paired gain {gain.value:+.4f} ({gain.ci()}).",
        f"- Verdict: {'shipped' if held else 'not shipped'}.",
        "",
    ]


def drive_lines(name: str) -> list[str]:
    st, rec = _stats(STATS_DIR / f"{name}.json")
    return [
        f"## DRIVE test (20 images, 1st_manual, FOV pixels pooled, through {rec.get('via', 'its engine')})",
        *test_headline(rec["pooled"], record_intervals(rec, st), f"docs/test-stats/{name}.json"),
        "",
    ]


def write_card(folder: Path, run: Path, base: str, force: bool = False) -> Path:
    folder, run = Path(folder), Path(run)
    if not is_model_dir(folder):
        raise InputError(f"{folder}: not a model folder")
    card = folder / CARD
    if card.exists() and not force:
        raise InputError(f"{card}: exists (--force replaces it)")
    adapt_file = run / "adapt.json"
    if not adapt_file.is_file():
        raise InputError(f"{adapt_file}: missing (the two-camera run this model came from)")
    adapt = json.loads(adapt_file.read_text())
    body = card_lines(adapt, run, run / "model", [])
    body[0] = f"# Model card: `{folder.name}`, a two-camera model (DRIVE and STARE)"
    body = [x.replace(f"{run}/model", str(folder)) for x in body]
    at = next(i for i, x in enumerate(body) if x.startswith("## The site's estimate"))
    verdict = verdict_lines(folder.name, base, adapt["cross_validated"]["f1"])
    lines = body[:at] + verdict + drive_lines(folder.name) + body[at:]
    lines += ["", *reads_section(folder.name)]
    card.write_text("\n".join(lines).rstrip() + "\n")
    return card


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fundus_edge.two_camera", description=__doc__.split("\n")[0])
    ap.add_argument("model", help="the shipped two-camera model folder, e.g. models/s2d-fast-2cam")
    ap.add_argument("--run", required=True, help="its adapt run (--keep's OUT)")
    ap.add_argument("--base", required=True, help="the DRIVE-only model it started from, e.g. s2d-fast")
    ap.add_argument("--force", action="store_true", help="replace an existing card")
    a = ap.parse_args(argv)
    try:
        print(f"card: {write_card(Path(a.model), Path(a.run), a.base, a.force)}")
    except FundusEdgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
