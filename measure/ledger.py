"""The test-read ledger: one CSV row for every evaluation on a held-out split, so a model card can say
how often the test images were read in its lineage (docs/test-reads.md states the rules).

A read is one scoring command on held-out images (a plain or a perturbed evaluation alike). Held out
means any split that is not training data: DRIVE ``test``, and the whole of a data set without an
official split (STARE, CHASE_DB1, folders), unless ``--split train`` says it is training data. A
validation split carved out of the training images is training data and is never a read.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from fundus_edge.runtime.errors import InputError, nearest
from fundus_edge.runtime.manifest import is_model_dir, sha256

LEDGER_ENV = "FUNDUS_EDGE_LEDGER"
# The committed ledger of this repository (found beside the package in a source checkout).
REPO_LEDGER = Path(__file__).resolve().parents[1] / "docs" / "test-reads.csv"
WHY = ("candidate", "gate", "shipped", "report")
WHY_LIST = "fundus_edge.measure.ledger.WHY"  # where an error about a why sends the user
TRAINING_SPLITS = ("train", "training")


@dataclass(frozen=True)
class TestRead:
    """One read of held-out images. ``why``: candidate (a score that can choose something), gate (a
    further check of a candidate before it ships: perturbations, INT8), shipped (the read whose figure
    the shipped model's card gives), report (a re-score of a model already fixed; not counted)."""

    __test__ = False  # not a pytest class

    date: str
    lineage: str
    scored: str
    weights_sha256: str
    run: str
    command: str
    data: str
    f1: str
    auc: str
    why: str
    rule_before: str  # yes / no / unknown: was the use of this score fixed in writing before the read?
    source: str
    note: str = ""
    # A recipe search that tried several lineages against the same test set (e.g. ``s2d-search``: s2d-fast,
    # s2d-b16, s2d-wnet): its lineages' reads are counted together (count_lineage).
    search: str = ""


COLUMNS = tuple(f.name for f in fields(TestRead))
OPTIONAL_COLUMNS = ("search",)  # a ledger written before the column existed is still read


def is_held_out(split: str) -> bool:
    return split.lower() not in TRAINING_SPLITS


def ledger_path(explicit: str | Path | None = None) -> Path | None:
    """--ledger PATH, else $FUNDUS_EDGE_LEDGER, else the repository's committed ledger when this is a
    source checkout; None when there is none (an installed copy away from the repository)."""
    if explicit:
        return Path(explicit)
    if os.environ.get(LEDGER_ENV):
        return Path(os.environ[LEDGER_ENV])
    return REPO_LEDGER if REPO_LEDGER.is_file() else None


def read_ledger(path: str | Path) -> list[TestRead]:
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = set(COLUMNS) - set(OPTIONAL_COLUMNS) - set(rows[0]) if rows else set()
    if missing:
        raise InputError(f"{path}: not a test-read ledger (missing columns {', '.join(sorted(missing))})")
    bad = [r["why"] for r in rows if r["why"] not in WHY]
    if bad:
        raise InputError(f"{path}: unknown why {bad[0]!r}{nearest(bad[0], WHY, WHY_LIST)}")
    return [TestRead(**{k: r.get(k) or "" for k in COLUMNS}) for r in rows]


PATH_FIELDS = ("scored", "run", "command", "data")  # the fields that may name a folder


def portable_row(row: TestRead) -> TestRead:
    """``row`` with no machine path in the fields that name folders (``portable``)."""
    from dataclasses import replace

    return replace(row, **{k: portable(getattr(row, k)) for k in PATH_FIELDS})


def append_read(path: str | Path, row: TestRead) -> None:
    """Append ``row`` (its folder names made portable: the committed ledger names no machine path)."""
    row = portable_row(row)
    if row.why not in WHY:
        raise InputError(f"unknown why {row.why!r}{nearest(row.why, WHY, WHY_LIST)}")
    path = Path(path)
    new = not path.is_file() or path.stat().st_size == 0
    names = COLUMNS
    if not new:
        with open(path, newline="") as f:
            names = tuple(next(csv.reader(f), COLUMNS))  # an older ledger keeps its own columns
        if set(COLUMNS) - set(OPTIONAL_COLUMNS) - set(names):
            raise InputError(f"{path}: not a test-read ledger (its header lacks {', '.join(COLUMNS)})")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=names, lineterminator="\n", extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow(asdict(row))


def weights_digest(files: dict[str, str]) -> str:
    """One sha256 for a model's weight files: the sha256 of the lines ``NAME<Tab>SHA256<LF>`` of every file,
    sorted by name (docs/test-reads.md). Stable across manifest rewrites (``validate`` adds its records to
    manifest.yaml; the weights stay the same)."""
    text = "".join(f"{name}\t{files[name]}\n" for name in sorted(files))
    return hashlib.sha256(text.encode()).hexdigest()


# Formats whose files carry a model's own weights: made from its checkpoint (export) or by an engine's INT8
# quantizer. A conversion of those files (LiteRT's .tflite from the ONNX file) adds no weights of its own, so
# adding one to a folder leaves the folder's digest, and the ledger rows that name it, as they were.
WEIGHT_SOURCES = ("export", "quantize")


def weight_files(man) -> list[str]:
    """The files a model folder's weights digest covers: those of its formats made by export or an INT8
    quantizer; in a folder holding conversions only (a LiteRT INT8 folder), every file."""
    from fundus_edge.runtime.formats import FORMATS

    own = [
        f
        for fmt, names in man.formats.items()
        if fmt in FORMATS and FORMATS[fmt].made_by in WEIGHT_SOURCES
        for f in names
    ]
    return sorted(set(own)) if own else sorted(man.files)


def model_weights_sha256(model_dir: str | Path) -> str:
    """The weights digest of a model folder (docs/test-reads.md): the files ``weight_files`` names, each
    hashed from disk, not copied from the manifest."""
    from fundus_edge.runtime.manifest import read_manifest

    model_dir = Path(model_dir)
    return weights_digest({name: sha256(model_dir / name) for name in weight_files(read_manifest(model_dir))})


def identify(source: str | Path) -> tuple[str, str, str]:
    """(lineage, weights sha256, run) of what ``evaluate`` scored. A checkpoint: its config's name,
    the sha256 of model.pdparams, its run folder. A model folder: its manifest's name (``-pruned``
    for a pruned variant, whose card is its own), the digest of the model files the manifest pins
    (model_weights_sha256; not manifest.yaml's own hash, which ``validate`` changes), the checkpoint or
    model it was made from. Predict outputs: unknown."""
    source = Path(source)
    if is_model_dir(source):
        from fundus_edge.runtime.manifest import read_manifest

        man = read_manifest(source)
        lineage = f"{man.name}-pruned" if man.variant == "pruned" else man.name
        src = man.source or {}
        origin = src.get("checkpoint") or ""
        if not origin and isinstance(src.get("pruning"), dict):
            s = src["pruning"].get("source")
            origin = (s.get("path") or s.get("name") or "") if isinstance(s, dict) else str(s or "")
        return lineage, model_weights_sha256(source), str(origin)
    if (source / "checkpoint.yaml").is_file() and (source / "model.pdparams").is_file():
        import yaml

        meta = yaml.safe_load((source / "checkpoint.yaml").read_text()) or {}
        name = ((meta.get("config") or {}).get("name")) or ""
        return name, sha256(source / "model.pdparams"), str(source.parent)
    return "", "", ""


_ABSOLUTE = re.compile(r"(?<![\w.~/-])(/[^\s,;\"']+)")


def portable(text: str, root: Path | None = None) -> str:
    """``text`` with every absolute path beside or inside the checkout made relative to it (the committed
    ledger names ../shared/data/DRIVE, never the machine's own absolute path), one under the temp folder
    as $TMPDIR/...; others as given."""
    root = (root or REPO_LEDGER.parents[1]).absolute()
    tmp = Path(tempfile.gettempdir()).absolute()

    def rel(m: re.Match) -> str:
        p = Path(m.group(1))
        if p.is_relative_to(root.parent):
            return os.path.relpath(p, root)
        return "$TMPDIR/" + p.relative_to(tmp).as_posix() if p.is_relative_to(tmp) else m.group(1)

    return _ABSOLUTE.sub(rel, str(text))


def record(
    report,
    why: str,
    path: Path | None,
    command: str | None = None,
    lineage: str | None = None,
    rule_before: str = "unknown",
    note: str = "",
    source: str = "fundus-edge evaluate",
    search: str = "",
) -> TestRead | None:
    """Append one row for ``report`` (an EvalReport or PerturbReport) when its split is held out and
    a ledger is at hand; returns the row (None when nothing was written)."""
    if not is_held_out(report.split):
        return None
    if path is None:
        print(
            "note: no test-read ledger found (set FUNDUS_EDGE_LEDGER or pass --ledger PATH):"
            " this held-out read is not recorded",
            file=sys.stderr,
        )
        return None
    lin, sha, run = identify(report.source)
    pooled = getattr(report, "pooled", None)
    if pooled is None and getattr(report, "rows", None):
        pooled = report.rows[0].metrics  # a perturbed evaluation: its clean row
        note = (
            note + "; " if note else ""
        ) + f"perturbed: {', '.join(r.perturbation for r in report.rows[1:])}"
    row = TestRead(
        date=time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        lineage=lineage or lin,
        scored=portable(report.source),
        weights_sha256=sha,
        run=portable(run),
        command=portable(command if command is not None else " ".join(["fundus-edge", *sys.argv[1:]])),
        data=portable(f"{report.data} {report.split}"),
        f1="" if pooled is None else f"{pooled.f1:.4f}",
        auc="" if pooled is None or pooled.auc is None else f"{pooled.auc:.4f}",
        why=why,
        rule_before=rule_before,
        source=source,
        note=note,
        search=search,
    )
    append_read(path, row)
    return row


@dataclass(frozen=True)
class LineageCount:
    """What a model card says about its lineage's test reads. A lineage that is part of a recipe search
    (column ``search``) is counted with the search's other lineages: the search read the test set for all of
    them, and a bar met by the best of several candidates is a selected figure."""

    lineage: str
    reads: int  # every row but reports (of the search, when the lineage is part of one)
    candidates: int  # candidate and shipped rows: scores that could choose a model
    gates: int
    reports: int
    shipped: TestRead | None  # the lineage's own latest shipped read
    rank: int | None  # the shipped F1's place among the candidate scores (1 = best)
    search: str = ""  # the recipe search the lineage belongs to ('' when none)
    members: tuple[str, ...] = ()  # the search's lineages, in order of their first read


def search_of(rows: list[TestRead], lineage: str) -> str:
    """The recipe search a lineage belongs to: the ``search`` of any of its rows ('' when none)."""
    return next((r.search for r in rows if r.lineage == lineage and r.search), "")


def search_members(rows: list[TestRead], search: str) -> tuple[str, ...]:
    """The lineages of a search: every lineage with a row naming it, in order of their first read."""
    first: dict[str, str] = {}
    for r in rows:
        if r.search == search:
            first[r.lineage] = min(first.get(r.lineage, r.date), r.date)
    return tuple(sorted(first, key=lambda k: (first[k], k)))


BAR = re.compile(r"F1 >= (0\.\d+)")


def bar_of(row: TestRead) -> str:
    """The F1 bar a candidate read was judged against, as its note wrote it (``F1 >= 0.826``); '' if none."""
    m = BAR.search(row.note)
    return m.group(1) if m else ""


_DRIVE_TEST = re.compile(r"drive.*\btest\b", re.I)


def reads_drive_test(row: TestRead) -> bool:
    """Did the read score DRIVE's test images ("DRIVE test", "../DRIVE/test all")? A card's "DRIVE test
    reads" counts these only: a read of another camera's images (a site, STARE) chooses nothing on DRIVE."""
    return bool(_DRIVE_TEST.search(row.data))


def count_lineage(rows: list[TestRead], lineage: str) -> LineageCount:
    search = search_of(rows, lineage)
    members = search_members(rows, search) if search else (lineage,)
    own = [r for r in rows if r.lineage in members and reads_drive_test(r)]
    cand = [r for r in own if r.why in ("candidate", "shipped")]
    shipped = (
        [None] + sorted((r for r in own if r.why == "shipped" and r.lineage == lineage), key=lambda r: r.date)
    )[-1]  # the latest; ties: the later row
    rank = None
    if shipped is not None and shipped.f1:
        rank = 1 + sum(1 for r in cand if r.f1 and float(r.f1) > float(shipped.f1))
    return LineageCount(
        lineage,
        sum(r.why != "report" for r in own),
        len(cand),
        sum(r.why == "gate" for r in own),
        sum(r.why == "report" for r in own),
        shipped,
        rank,
        search,
        members if search else (),
    )
