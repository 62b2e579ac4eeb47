"""Write or update ``MODEL_CARD.md``: the command line, a trained model's whole card from its run folder,
and the rewrite of chosen sections of an existing card."""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

from fundus_edge.measure.ledger import identify
from fundus_edge.modelcard.common import SCORING_ENGINE, record_report, replace_section
from fundus_edge.modelcard.drive_figures import drive_section, with_intervals
from fundus_edge.modelcard.int8_build import write_int8_card
from fundus_edge.modelcard.intended_use import with_intended_use
from fundus_edge.modelcard.latency import bench_section, latency_section
from fundus_edge.modelcard.perturbations import (
    PERTURB_HEAD,
    perturb_stats,
    perturbation_section,
    robustness_section,
)
from fundus_edge.modelcard.provenance import notes_section, provenance_section
from fundus_edge.modelcard.pruned import pruned_build_card, pruned_card
from fundus_edge.modelcard.reads import READS_HEAD, reads_section
from fundus_edge.modelcard.training import TEST_DATA_NOTE, architecture, log_table, recipe_line, run_lines
from fundus_edge.runtime.errors import FundusEdgeError
from fundus_edge.runtime.manifest import is_model_dir, read_manifest


def update_card(
    model: Path,
    data: str,
    threads: int,
    sections: list[str],
    notes: str,
    bench: str = "",
    run: str = "",
    stats: str = "",
    force: bool = False,
) -> int:
    """Rewrite some sections of an existing card: for a shipped model whose training run folder is no
    longer at hand (its training and validation sections stay as they were written)."""
    card = model / "MODEL_CARD.md"
    lines = card.read_text().splitlines()
    for sec in sections:
        if sec == "perturb":
            lines = replace_section(lines, PERTURB_HEAD, robustness_section(model, data, threads, force))
        elif sec == "perturbations":
            path = Path(stats) if stats else perturb_stats(model)
            lines = replace_section(lines, PERTURB_HEAD, perturbation_section(path, model))
        elif sec == "latency":
            lines = replace_section(lines, "## Latency", latency_section(model, data, threads))
        elif sec == "bench":
            if not bench:
                raise SystemExit("--update bench needs --bench RESULTS_JSON")
            lines = replace_section(lines, "## Every engine and INT8", bench_section(Path(bench), model.name))
        elif sec == "notes":
            if not (notes and Path(notes).is_file()):
                raise SystemExit("--update notes needs --notes FILE")
            k = next((k for k, x in enumerate(lines) if x.startswith("Reproduce:")), len(lines) - 1)
            lines = lines[: k + 1] + ["", *notes_section(notes, model)]
        elif sec == "reads":
            # an INT8 folder counts its float model's lineage (identify: the manifest's name)
            lineage = identify(model)[0] if is_model_dir(model) else model.name
            lines = replace_section(
                lines, READS_HEAD, reads_section(lineage or model.name), before="## DRIVE test"
            )
            lines = [
                x.replace("the 20 test images were used once, for the figures below", TEST_DATA_NOTE)
                for x in lines
            ]
        elif sec == "intended-use":
            lines = with_intended_use(lines, model)
        elif sec == "intervals":
            lines = with_intervals(lines, model, stats)
        elif sec == "provenance":
            lines = replace_section(
                lines, "## Provenance", provenance_section(model, Path(run) if run else None)
            )
        else:
            raise SystemExit(
                f"unknown section {sec!r}: choose from perturb, perturbations, latency, bench, notes, reads, "
                "provenance, intended-use, intervals"
            )
    card.write_text("\n".join(lines) + "\n")
    print(f"rewrote {', '.join(sections)} in {card}")
    return 0


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", help="training run folder (log.csv, best/); required unless --update")
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", help="DRIVE (required but with --pruned-build and --int8-build)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-command", default="")
    ap.add_argument(
        "--notes",
        default="",
        help="the experiment diary (docs/experiments-*.md) the card links to, with its headings",
    )
    ap.add_argument(
        "--perturb",
        action="store_true",
        help="add DRIVE-test F1 under camera perturbations (ONNX Runtime; per-image counts kept in "
        "docs/test-stats/perturbations/NAME.json)",
    )
    ap.add_argument(
        "--bench",
        default="",
        help="a make bench results.json: add the latency and F1 of this model and its INT8 variants "
        "on every engine",
    )
    ap.add_argument(
        "--pruned-build",
        action="store_true",
        help="the card of a shipped build of the bench's pruned recipe (models/default-pruned) from its "
        "manifest and the test-read ledger alone: no DRIVE read, no timing, no --data",
    )
    ap.add_argument(
        "--int8-build",
        action="store_true",
        help="the card of a shipped INT8 folder (models/NAME-int8-litert) from its manifest, its float "
        "model's manifest and card, and the test-read ledger: no DRIVE read, no timing, no --data; an "
        "existing card is replaced only with --force",
    )
    ap.add_argument(
        "--update",
        help="only rewrite these sections of an existing card (comma list of perturb, perturbations, "
        "latency, bench, notes, reads, provenance, intended-use, intervals); --run is then read only by "
        "provenance (its best/, config.yaml and log.csv); perturb measures again, perturbations rewrites "
        "the table from docs/test-stats/perturbations/NAME.json",
    )
    ap.add_argument(
        "--stats",
        default="",
        help="with --update intervals: the per-image statistics of the card's DRIVE test read "
        "(evaluate --per-image-out; default docs/test-stats/NAME.json); with --update perturbations: those "
        "of its perturbed read (default docs/test-stats/perturbations/NAME.json)",
    )
    ap.add_argument(
        "--force",
        action="store_true",
        help="overwrite the per-image file of a perturbed read (--perturb); replace the card (--int8-build)",
    )
    return ap


def _trained_card(a, argv_line: str) -> list[str]:
    """A card for a model exported from the training run ``a.run``: every figure from the run folder,
    the manifest, a test-set evaluation and the latency measured here."""
    from fundus_edge.evaluate import evaluate_source
    from fundus_edge.train.checkpoint import read_checkpoint

    run, model = Path(a.run), Path(a.model)
    man = read_manifest(model)
    best = read_checkpoint(run / "best")
    last = read_checkpoint(run / "last")
    log = list(csv.DictReader(open(run / "log.csv")))
    rep = evaluate_source(model, a.data, split="test", backend=SCORING_ENGINE, progress=False)
    record_report(rep, model, "python -m fundus_edge.modelcard " + argv_line)
    refit = best.config.data.val_count == 0
    thr_src, data_line, iters_line = run_lines(run, a.data, man, best, last)
    lines = [
        f"# Model card: `{man.name}`",
        "",
        f"Vessel segmentation {architecture(man.model)}: "
        f"{man.model['params']:,} parameters, {man.model['gmac']:.2f} GMAC at {man.model['gmac_at']}. "
        f"Input: RGB + CLAHE green ({man.preprocess.channels}), scaled to [-1, 1]; "
        f"output: vessel probability; threshold {man.threshold:.3f} ({thr_src}).",
        "",
        "## Training",
        f"- Command: `{a.train_command or 'fundus-edge train --config ' + man.name}`",
        data_line,
        recipe_line(best.config.optim, man),
        iters_line,
        "",
        "Config (`" + str(run / "config.yaml") + "`):",
        "",
        "```yaml",
        (run / "config.yaml").read_text().strip(),
        "```",
        "",
        *log_table(log, best.config.optim.val_perturb, refit, best.config.optim.select),
        "",
        *reads_section(model.name),
        *drive_section(rep),
        *latency_section(model, a.data, a.threads),
        *(bench_section(Path(a.bench), model.name) if a.bench else []),
        *(robustness_section(model, a.data, a.threads, a.force) if a.perturb else []),
        *provenance_section(model, run),
        # last: the date is taken when the card is done, after the measurements above
        f"Reproduce: `python -m fundus_edge.modelcard --run {a.run} --model {a.model} --data {a.data}"
        f"{' --perturb' if a.perturb else ''}{' --bench ' + a.bench if a.bench else ''}"
        f"{' --notes ' + a.notes if a.notes else ''}` ({time.strftime('%Y-%m-%d')}).",
    ]
    if a.notes:
        lines += ["", *notes_section(a.notes, model)]
    return lines


def main(argv=None) -> int:
    ap = _parser()
    a = ap.parse_args(argv)
    if a.int8_build:
        try:
            card = write_int8_card(Path(a.model), a.force)
        except FundusEdgeError as e:
            raise SystemExit(str(e)) from None
        print(card.read_text())
        return 0
    if a.pruned_build:
        model = Path(a.model)
        (model / "MODEL_CARD.md").write_text("\n".join(pruned_build_card(model)) + "\n")
        print((model / "MODEL_CARD.md").read_text())
        return 0
    # sections rewritten from files in the repository alone
    offline = {"intervals", "reads", "perturbations", "intended-use", "bench"}
    if not a.data and not (a.update and {x.strip() for x in a.update.split(",") if x.strip()} <= offline):
        ap.error("the following arguments are required: --data")
    if a.update:
        return update_card(
            Path(a.model),
            a.data,
            a.threads,
            [x.strip() for x in a.update.split(",") if x.strip()],
            a.notes,
            a.bench,
            a.run or "",
            a.stats,
            a.force,
        )
    line = " ".join(argv if argv is not None else sys.argv[1:])
    if a.run:
        model = Path(a.model)
        (model / "MODEL_CARD.md").write_text(
            "\n".join(with_intended_use(_trained_card(a, line), model)) + "\n"
        )
        print((model / "MODEL_CARD.md").read_text())
        return 0
    if "pruning" in read_manifest(Path(a.model)).source:
        lines = pruned_card(
            Path(a.model), a.data, a.threads, a.train_command, a.perturb, a.notes, line, a.bench
        )
        lines = with_intended_use(lines, Path(a.model))
        (Path(a.model) / "MODEL_CARD.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return 0
    ap.error(
        "--run is required (or --update SECTIONS for an existing card, or a pruned model whose manifest "
        "records its pruning)"
    )
