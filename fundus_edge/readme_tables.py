"""The README's generated blocks, rewritten from what the repository records, so no figure there is typed by
hand: the shipped-models table (manifests, model cards, the test-read ledger and the latest bench record) and
the bench summary (that record's Pareto front). Both name the CPU identity their latencies hold on
(generation, family / model, flags: a latency is that CPU's, not the model's), and the summary links the
newest page of each CPU identity measured.

A block is the text between ``<!-- generated: NAME -->`` and ``<!-- /generated -->``.

    python -m fundus_edge.readme_tables            # rewrite README.md's blocks
    python -m fundus_edge.readme_tables --check    # exit 1 when a block is stale (a test runs this)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from fundus_edge.bench.history import (
    RESULTS_DIR,
    front_records,
    front_table,
    latest_per_identity,
    latest_record,
    load_record,
)
from fundus_edge.bench.records import BenchRecord
from fundus_edge.measure.ledger import REPO_LEDGER, count_lineage, read_ledger
from fundus_edge.runtime.cpu import identity_of
from fundus_edge.runtime.engines.table import ENGINE_TABLE
from fundus_edge.runtime.errors import FundusEdgeError, InputError
from fundus_edge.runtime.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- generated: ([\w-]+) -->\n)(.*?)(<!-- /generated -->)", re.S)
# The latency columns of the shipped-models table: (engine, precision) of the bench rows each reads; its
# heading is the engine table's label (with the precision where one engine has two columns).
LATENCY_COLUMNS = (
    ("openvino", "fp32"),
    ("openvino", "bf16"),
    ("paddle", "fp32"),
    ("onnxruntime", "fp32"),
    ("litert", "fp32"),
)


# A column's precision also takes rows that compute it from smaller weights: LiteRT runs an fp16-weight file
# in fp32 (XNNPACK dequantizes on x86), said as "fp16-as-fp32"; models/default ships that file (5 MB cap).
FLOAT_AS = {("litert", "fp32"): ("fp16-as-fp32",)}


def latency_headings() -> list[str]:
    engines = [e for e, _ in LATENCY_COLUMNS]
    return [ENGINE_TABLE[e].label + (f" {p}" if engines.count(e) > 1 else "") for e, p in LATENCY_COLUMNS]


# The shipped default first, then by name.
ORDER = ("default",)


def card_test_metrics(card: Path) -> dict[str, float]:
    """F1, AUC and IoU of the card's DRIVE test section (written by fundus_edge.modelcard from one
    evaluation)."""
    text = card.read_text()
    ci = r"(?: \(95 % CI ([\d.]+)-([\d.]+)\))?"  # each figure's bootstrap interval (measure/intervals.py)
    m = re.search(
        rf"^## DRIVE test.*\nF1 \*\*([\d.]+)\*\*{ci}, AUC \*\*([\d.]+)\*\*{ci}, IoU ([\d.]+){ci}", text, re.M
    )
    if not m:
        raise InputError(f"{card}: no '## DRIVE test' section with 'F1 **x**, AUC **y**, IoU z'")
    g = m.groups()
    keys = ("f1", "auc", "iou")
    return {k: float(g[3 * i]) for i, k in enumerate(keys)} | {
        f"{k}_ci": (g[3 * i + 1], g[3 * i + 2]) if g[3 * i + 1] else None for i, k in enumerate(keys)
    }


def _with_ci(m: dict, k: str, bold: bool = False) -> str:
    """``**0.8232** (0.817-0.830)``: the card's figure and its 95 % interval when the card states one."""
    v = f"**{m[k]:.4f}**" if bold else f"{m[k]:.4f}"
    return v + (f" ({m[k + '_ci'][0]}-{m[k + '_ci'][1]})" if m.get(k + "_ci") else "")


def bench_variant(model: str) -> str:
    """The bench names the default's own variants bare (fp32, int8, ...), every other model by its name."""
    from fundus_edge.quantize.variants import DEFAULT_MODEL, FP32

    return FP32 if model == DEFAULT_MODEL else model


def _ms(records: list[BenchRecord], variant: str, engine: str, precision: str) -> str:
    rows = [
        r
        for r in records
        if r.variant == variant
        and r.backend == engine
        and (r.precision == precision or r.precision in FLOAT_AS.get((engine, precision), ()))
        and r.status == "ok"
        and r.p50_ms is not None
        and (r.device or "cpu") == "cpu"
    ]
    return f"{min(r.p50_ms for r in rows):.1f} ms" if rows else "–"


def table_folders(models_dir: Path) -> tuple[list[str], list[str], list[str]]:
    """The shipped folders with a card: (the table's, INT8 folders, other builds of the bench's variants).
    INT8 folders and builds such as default-pruned are listed under the table: their cards hold a validation
    on training images, not a DRIVE test read of their own (their test rows are the bench's)."""
    folders = sorted(
        (p.parent.name for p in models_dir.glob("*/MODEL_CARD.md")), key=lambda n: (n not in ORDER, n)
    )
    int8 = [n for n in folders if read_manifest(models_dir / n).quantization]
    builds = [
        n
        for n in folders
        if n not in int8
        and not re.search(r"^## DRIVE test", (models_dir / n / "MODEL_CARD.md").read_text(), re.M)
    ]
    return [n for n in folders if n not in int8 + builds], int8, builds


def shipped_models(models_dir: Path, record: Path, ledger: Path = REPO_LEDGER) -> list[str]:
    records, meta = load_record(record)
    reads = read_ledger(ledger)
    names, int8, builds = table_folders(models_dir)
    out = [
        "| model | params | GMAC at 584×565 | DRIVE test F1 | AUC | test reads | IoU | "
        + " | ".join(latency_headings())
        + " |",
        "| --- " * (7 + len(LATENCY_COLUMNS)) + "|",
    ]
    for name in names:
        man = read_manifest(models_dir / name)
        m = card_test_metrics(models_dir / name / "MODEL_CARD.md")
        lat = [_ms(records, bench_variant(name), e, p) for e, p in LATENCY_COLUMNS]
        out.append(
            f"| `{name}` | {man.model['params']:,} | {man.model['gmac']:.2f} "
            f"| {_with_ci(m, 'f1', True)} | {_with_ci(m, 'auc', True)} | "
            f"{count_lineage(reads, name).reads} | {_with_ci(m, 'iou')} | " + " | ".join(lat) + " |"
        )
    out += [
        "",
        "F1 / AUC / IoU: each card's DRIVE test section, with its 95 % bootstrap interval over the 20 images "
        "(in brackets); test reads: `docs/test-reads.csv`; "
        f"latency: engine p50 over the 20 DRIVE test images, {meta.get('threads', '?')} threads, "
        f"{_run_link(record, meta)}.",
    ]
    if int8:
        out += [
            "",
            "INT8 folders shipped beside them (made by the engines' own quantizers, "
            "validated on the training images, run by a device without a quantizer): "
            + ", ".join(f"[`{n}`](models/{n}/MODEL_CARD.md)" for n in int8)
            + ".",
        ]
    if builds:
        out += [
            "",
            "Pruned builds of the bench's variants shipped beside them (fine-tuned and validated on the "
            "training images; the bench measures them instead of repeating the fine-tune): "
            + ", ".join(f"[`{n}`](models/{n}/MODEL_CARD.md)" for n in builds)
            + ".",
        ]
    return out


def _rel(page: Path) -> str:
    try:
        return page.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return page.as_posix()


def _run_link(record: Path, meta: dict) -> str:
    """The record's page, labelled by its date and the CPU identity its latencies hold on."""
    ident = identity_of(meta["machine"])
    label = f"bench run {meta['date']} on {ident.short}"
    return f"[{label}]({_rel(record.with_suffix('.md'))})" + (
        " (rows reconstructed from its report)" if meta.get("reconstructed") else ""
    )


def identity_line(record: Path) -> str:
    """The identity the tables hold on, and the newest page of every CPU identity in the record's history."""
    meta = load_record(record)[1]
    here = identity_of(meta["machine"])
    pages = latest_per_identity(record.parent)
    links = "; ".join(
        f"[{p.label}]({_rel(p.page)}) {p.date}" + ("" if p.identity else " (a page without a record)")
        for p in pages
    )
    return (
        f"Latencies hold on {here.title}; another CPU, even of the same name, runs them at its own speed."
        + (f" Newest run of each CPU measured: {links}." if links else "")
    )


def front_interval_line(records: list[BenchRecord]) -> str:
    """What the front's brackets are, or that the record has none (bench records before 2026-12-07 keep no
    per-image counts, so no interval can be given for their rows)."""
    front = front_records(records)
    if front and all(r.f1_low is not None for r in front):
        n = len(front[0].per_image_counts or ()) or "the"
        return f"F1 / AUC in brackets: their 95 % bootstrap interval over {n} test images."
    return (
        "F1 / AUC: no interval: record predates per-image counts (the bench keeps them from 2026-12-07); "
        "the float models' intervals are in the shipped-models table above."
    )


def bench_summary(record: Path) -> list[str]:
    records, meta = load_record(record)
    ok = [r for r in records if r.status == "ok"]
    return [
        f"The Pareto front of the {_run_link(record, meta)}: {len(records)} cells, {len(ok)} ok; "
        "every row not beaten on both engine p50 and DRIVE test F1 by another, fastest first. "
        "Compare latencies within one run only.",
        "",
        *front_table(records),
        "",
        front_interval_line(records),
        "",
        identity_line(record),
    ]


def render(text: str, models_dir: Path, record: Path | None, ledger: Path = REPO_LEDGER) -> str:
    """``text`` with every generated block rewritten; an unknown block name is an InputError."""
    if record is None:
        raise InputError(f"{RESULTS_DIR}: no bench record (*.json) to generate the README's tables from")
    makers = {
        "shipped-models": lambda: shipped_models(models_dir, record, ledger),
        "bench-summary": lambda: bench_summary(record),
    }

    def one(m: re.Match) -> str:
        name = m.group(2)
        if name not in makers:
            raise InputError(f"unknown generated block {name!r} (known: {', '.join(makers)})")
        return m.group(1) + "\n".join(makers[name]()) + "\n" + m.group(4)

    return BLOCK.sub(one, text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m fundus_edge.readme_tables", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--readme", default=str(ROOT / "README.md"))
    ap.add_argument("--models", default=str(ROOT / "models"), help="the shipped models' folder")
    ap.add_argument(
        "--record", default=None, help="a bench results.json (default: the newest under docs/results)"
    )
    ap.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 when a generated block is stale"
    )
    a = ap.parse_args(argv)
    readme = Path(a.readme)
    try:
        text = readme.read_text()
        if not BLOCK.search(text):
            raise InputError(f"{readme}: no '<!-- generated: NAME -->' ... '<!-- /generated -->' block")
        new = render(text, Path(a.models), Path(a.record) if a.record else latest_record())
    except FundusEdgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if new == text:
        print(f"{readme}: generated blocks are current")
        return 0
    if a.check:
        pairs = zip(BLOCK.finditer(text), BLOCK.finditer(new), strict=False)
        stale = [m.group(2) for m, n in pairs if m.group(0) != n.group(0)]
        print(
            f"{readme}: stale generated block(s) {', '.join(stale)}: run python -m fundus_edge.readme_tables",
            file=sys.stderr,
        )
        return 1
    readme.write_text(new)
    print(f"{readme}: rewrote the generated blocks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
