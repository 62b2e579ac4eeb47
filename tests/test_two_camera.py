"""The shipped two-camera model's card: its verdict is computed from the per-image statistics files, and the
committed card's rule, verdict and DRIVE sections are what the writer produces from them now."""

import re
from pathlib import Path

import pytest
from fundus_edge.runtime.errors import InputError

from fundus_edge.two_camera import drive_lines, verdict_lines, write_card

ROOT = Path(__file__).resolve().parents[1]
CARD = ROOT / "models" / "s2d-fast-2cam" / "MODEL_CARD.md"
BASES = ("s2d-fast", "s2d-wnet")


def _estimate(base: str) -> dict:
    """The run's cross-validated STARE F1 as the card's estimate table states it (adapt.json lives in the
    gitignored run folder): the verdict below is recomputed from it and the per-image statistics files."""
    text = (ROOT / "models" / f"{base}-2cam" / "MODEL_CARD.md").read_text()
    m = re.search(r"^\| 4-fold cross-validated[^|]*\| ([\d.]+) \(([\d.]+)-([\d.]+)\) \|", text, re.M)
    assert m, base
    v, lo, hi = map(float, m.groups())
    return {"value": v, "low": lo, "high": hi, "n_images": 20, "resamples": 2000, "level": 0.95}


def _section(lines: list[str], head: str) -> list[str]:
    i = lines.index(head)
    j = next((k for k in range(i + 1, len(lines)) if lines[k].startswith("## ")), len(lines))
    return lines[i:j]


@pytest.mark.parametrize("base", BASES)
def test_the_committed_verdict_and_drive_figures_come_from_the_statistics_files(base):
    card = (ROOT / "models" / f"{base}-2cam" / "MODEL_CARD.md").read_text().splitlines()
    verdict = verdict_lines(f"{base}-2cam", base, _estimate(base))
    drive = drive_lines(f"{base}-2cam")
    assert _section(card, verdict[0])[:-1] == verdict[:-1]
    assert _section(card, drive[0])[:-1] == drive[:-1]
    assert "- Verdict: shipped." in verdict


def test_the_verdict_fails_when_the_stare_estimate_does_not_clear_zero_shot():
    low = dict(_estimate("s2d-fast"), value=0.79, low=0.78, high=0.80)
    assert "- Verdict: not shipped." in verdict_lines("s2d-fast-2cam", "s2d-fast", low)


def test_write_card_refuses_what_it_cannot_stand_on(tmp_path):
    with pytest.raises(InputError, match="not a model folder"):
        write_card(tmp_path, tmp_path, "s2d-fast")
    with pytest.raises(InputError, match="exists"):
        write_card(CARD.parent, tmp_path, "s2d-fast")


def test_its_intended_use_names_both_cameras_and_what_it_is_not():
    lines = CARD.read_text().splitlines()
    assert next(x for x in lines if x.startswith("## ")) == "## Intended use and limits"
    text = "\n".join(_section(lines, "## Intended use and limits"))
    for said in ("Not a medical device", "not for diagnosis", "Canon CR5", "STARE", "TopCon"):
        assert said in text, said
