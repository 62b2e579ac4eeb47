"""What every card section shares: the repository's docs folders, the ledger row of a card's own test
read, and the one way a section of an existing card is replaced."""

from __future__ import annotations

from pathlib import Path

from fundus_edge.measure.ledger import ledger_path, record
from fundus_edge.runtime.engines.table import ENGINE_TABLE

# The engine every card's DRIVE test and perturbation figures go through (fp32), and how cards name engines.
SCORING_ENGINE = "onnxruntime"


def engine_label(name: str) -> str:
    """An engine as the card's prose names it (ONNX Runtime), from the engine table."""
    return ENGINE_TABLE[name].label


# fundus_edge/modelcard/common.py -> the repository (the committed docs/ the cards link to)
ROOT = Path(__file__).resolve().parents[2]

# Per-image statistics of each shipped model's DRIVE test read (evaluate --per-image-out), for the intervals.
STATS_DIR = ROOT / "docs" / "test-stats"


def record_report(rep, model: Path, command: str) -> None:
    """The card's own scoring of a model already fixed is a ``report`` row of the ledger."""
    record(
        rep,
        "report",
        ledger_path(),
        command=command,
        lineage=model.name,
        rule_before="yes",
        source="fundus_edge.modelcard",
    )


def replace_section(lines: list[str], head: str, new: list[str], before: str = "Reproduce:") -> list[str]:
    """``lines`` with the section starting with ``head`` replaced by ``new`` (added before the
    ``before`` line, Reproduce by default, when the card has none). A section ends at the next heading or
    Reproduce line."""
    if any(x.startswith(head) for x in lines):
        i = next(k for k, x in enumerate(lines) if x.startswith(head))
        j = next(
            (k for k in range(i + 1, len(lines)) if lines[k].startswith(("## ", "Reproduce:"))), len(lines)
        )
        del lines[i:j]
    else:
        i = next((k for k, x in enumerate(lines) if x.startswith(before)), None)
        i = (
            i
            if i is not None
            else next((k for k, x in enumerate(lines) if x.startswith("Reproduce:")), len(lines))
        )
    lines[i:i] = new
    return lines
