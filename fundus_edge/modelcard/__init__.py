"""Write ``MODEL_CARD.md`` for a shipped model from its run folder, its manifest, a test-set
evaluation and per-engine latency, so every figure in the card comes from one rerunnable command:

    python -m fundus_edge.modelcard --run runs/default --model models/default --data DRIVE

One module per part of the card (training, DRIVE test, test reads, perturbations, latency and bench,
provenance, intended use, pruned models' cards, INT8 folders' cards); ``write`` holds the command line
and the updates.
"""

from fundus_edge.modelcard import perturbations
from fundus_edge.modelcard.common import ROOT, STATS_DIR, record_report, replace_section
from fundus_edge.modelcard.drive_figures import test_headline
from fundus_edge.modelcard.int8_build import int8_build_card, write_int8_card
from fundus_edge.modelcard.intended_use import (
    DRIVE_POPULATION,
    INTENDED_HEAD,
    OUTSIDE_DRIVE,
    card_drops,
    card_f1,
    card_f1_text,
    intended_use_section,
    with_intended_use,
)
from fundus_edge.modelcard.latency import CARD_TIMING, NO_BENCH_INTERVAL, bench_section, family_rows, latency
from fundus_edge.modelcard.perturbations import (
    PERTURB_DIR,
    PERTURB_HEAD,
    perturbation_rows,
    perturbation_section,
)
from fundus_edge.modelcard.provenance import NOTES_HEAD, notes_section, provenance_section
from fundus_edge.modelcard.pruned import pruned_build_card
from fundus_edge.modelcard.reads import READS_HEAD, reads_section, search_lines
from fundus_edge.modelcard.training import NO_LOG_CI, TEST_DATA_NOTE, architecture, schedule
from fundus_edge.modelcard.write import main, update_card

__all__ = [
    "CARD_TIMING",
    "DRIVE_POPULATION",
    "INTENDED_HEAD",
    "NOTES_HEAD",
    "NO_BENCH_INTERVAL",
    "NO_LOG_CI",
    "OUTSIDE_DRIVE",
    "PERTURB_DIR",
    "PERTURB_HEAD",
    "READS_HEAD",
    "ROOT",
    "STATS_DIR",
    "TEST_DATA_NOTE",
    "architecture",
    "bench_section",
    "card_drops",
    "card_f1",
    "card_f1_text",
    "family_rows",
    "int8_build_card",
    "intended_use_section",
    "latency",
    "main",
    "notes_section",
    "perturbation_rows",
    "perturbation_section",
    "perturbations",
    "provenance_section",
    "pruned_build_card",
    "reads_section",
    "record_report",
    "replace_section",
    "schedule",
    "search_lines",
    "test_headline",
    "update_card",
    "with_intended_use",
    "write_int8_card",
]
