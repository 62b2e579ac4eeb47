"""The test-read ledger: evaluate records held-out reads (never training ones), and every shipped
model card's count agrees with the committed docs/test-reads.csv."""

import hashlib
import os
import re
from pathlib import Path

import pytest
from fundus_edge.measure.ledger import (
    COLUMNS,
    LEDGER_ENV,
    REPO_LEDGER,
    TestRead,
    append_read,
    count_lineage,
    identify,
    ledger_path,
    model_weights_sha256,
    portable,
    read_ledger,
    weights_digest,
)
from fundus_edge.runtime.errors import InputError
from fundus_edge.runtime.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[1]
CARDS = sorted((ROOT / "models").glob("*/MODEL_CARD.md"))


def test_tests_never_write_the_committed_ledger():
    assert (
        os.environ[LEDGER_ENV]
        and ledger_path() != REPO_LEDGER
        and ledger_path() == Path(os.environ[LEDGER_ENV])
    )


def test_evaluate_records_a_test_read_and_no_training_read(tiny_run, tiny_model, drive_synth, capsys):
    from fundus_edge.cli import main

    path = ledger_path()
    assert (
        main(
            [
                "evaluate",
                str(tiny_model),
                "--data",
                str(drive_synth),
                "--no-progress",
                "--why",
                "gate",
                "--rule-before",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "evaluate",
                str(tiny_run / "best"),
                "--data",
                str(drive_synth),
                "--no-progress",
                "--split",
                "train",
            ]
        )
        == 0
    )
    assert (
        main(["evaluate", str(tiny_run / "best"), "--data", str(drive_synth), "--no-progress", "--no-ledger"])
        == 0
    )
    assert (
        main(
            [
                "evaluate",
                str(tiny_run / "best"),
                "--data",
                str(drive_synth),
                "--no-progress",
                "--lineage",
                "other",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    rows = read_ledger(path)
    assert len(rows) == 2  # the train split and --no-ledger wrote nothing
    model_row, ckpt_row = rows
    assert (
        model_row.why == "gate"
        and model_row.rule_before == "yes"
        and model_row.lineage == "tiny"
        and model_row.data.endswith(" test")
    )
    # the weight files' digest, not manifest.yaml's hash (validate rewrites the manifest)
    pins = {
        n: hashlib.sha256((tiny_model / n).read_bytes()).hexdigest() for n in read_manifest(tiny_model).files
    }
    assert model_row.weights_sha256 == weights_digest(pins) == model_weights_sha256(tiny_model)
    assert model_row.weights_sha256 != hashlib.sha256((tiny_model / "manifest.yaml").read_bytes()).hexdigest()
    f1 = re.search(r"F1 (\d\.\d{4})", out).group(1)
    assert model_row.f1 == f1 and model_row.command.startswith("fundus-edge evaluate")
    assert ckpt_row.why == "candidate" and ckpt_row.rule_before == "no" and ckpt_row.lineage == "other"
    assert (
        ckpt_row.weights_sha256
        == hashlib.sha256((tiny_run / "best" / "model.pdparams").read_bytes()).hexdigest()
    )
    assert ckpt_row.run == portable(str(tiny_run))  # the run folder, as the ledger names it (no machine path)
    assert count_lineage(rows, "tiny").reads == 1


def test_identify_names_a_checkpoints_lineage_from_its_config(tiny_run):
    lineage, sha, run = identify(tiny_run / "best")
    assert (lineage, run) == ("tiny", str(tiny_run)) and len(sha) == 64


def _row(lineage, why, f1, date="2026-12-04 10:00"):
    return TestRead(date, lineage, "x", "", "", "cmd", "DRIVE test", f1, "", why, "yes", "src")


def test_count_leaves_out_reports_and_ranks_the_latest_shipped_read(tmp_path):
    path = tmp_path / "reads.csv"
    for r in (
        _row("m", "shipped", "0.8100", "2026-12-01 00:00"),
        _row("m", "candidate", "0.8300"),
        _row("m", "gate", "0.8000"),
        _row("m", "shipped", "0.8200", "2026-12-02 00:00"),
        _row("m", "report", "0.8200"),
        _row("n", "candidate", "0.9000"),
    ):
        append_read(path, r)
    c = count_lineage(read_ledger(path), "m")
    assert (c.reads, c.candidates, c.gates, c.reports, c.shipped.f1, c.rank) == (4, 3, 1, 1, "0.8200", 2)


def test_a_bad_ledger_is_a_one_line_error(tmp_path):
    bad = tmp_path / "reads.csv"
    bad.write_text(",".join(COLUMNS) + "\n" + ",".join(["x"] * len(COLUMNS)) + "\n")
    with pytest.raises(InputError, match=r"reads.csv: unknown why 'x'"):
        read_ledger(bad)
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="other.csv: not a test-read ledger"):
        read_ledger(tmp_path / "other.csv")


@pytest.mark.parametrize("card", CARDS, ids=[c.parent.name for c in CARDS])
def test_card_count_matches_the_committed_ledger(card):
    """A card's `DRIVE test reads: N` and its sentence are what modelcard computes from the ledger
    now: a row added to docs/test-reads.csv without `modelcard --update reads` fails here."""
    from fundus_edge.modelcard import reads_section

    text = card.read_text()
    m = re.search(r"^DRIVE test reads: (\d+)$", text, re.M)
    assert m, f"{card}: no 'DRIVE test reads: N' line"
    rows = read_ledger(REPO_LEDGER)
    lineage = identify(card.parent)[
        0
    ]  # the folder's own name, but an INT8 folder's is its float model's (default-int8-nncf: default)
    assert lineage == card.parent.name or read_manifest(card.parent).quantization
    c = count_lineage(rows, lineage)
    assert int(m.group(1)) == c.reads > 0
    assert "\n".join(reads_section(lineage, REPO_LEDGER)) in text
    assert "used once" not in text  # the old sentence, untrue for every card


def test_committed_ledger_rows_are_complete():
    rows = read_ledger(REPO_LEDGER)
    assert rows and all(r.date and r.lineage and r.command and r.source for r in rows)
    assert all(r.f1 or r.note for r in rows)  # a read without a figure says why
    assert all(re.fullmatch(r"[0-9a-f]{64}", r.weights_sha256) or r.note for r in rows)


def test_readme_shipped_table_counts_match_the_ledger():
    text = (ROOT / "README.md").read_text()
    header = next(line for line in text.splitlines() if line.startswith("| model | params |"))
    col = [c.strip() for c in header.strip("|").split("|")].index("test reads")
    rows = read_ledger(REPO_LEDGER)
    seen = {}
    for line in text.splitlines():
        m = re.match(r"\| `([\w-]+)` \| [\d,]+ \| ", line)
        if m and (ROOT / "models" / m.group(1) / "MODEL_CARD.md").is_file():
            seen[m.group(1)] = int(line.strip("|").split("|")[col].strip())
    from fundus_edge.readme_tables import table_folders

    # INT8 folders and pruned builds (default-pruned): listed under the table, no DRIVE test read of their own
    assert (
        set(seen)
        == set(table_folders(ROOT / "models")[0])
        == {c.parent.name for c in CARDS if "\n## DRIVE test" in c.read_text()}
    )
    assert seen == {name: count_lineage(rows, name).reads for name in seen}


def test_weights_digest_is_stable_across_manifest_rewrites_and_follows_the_weights(tiny_model, tmp_path):
    import shutil

    m = tmp_path / "m"
    shutil.copytree(tiny_model, m)
    before = model_weights_sha256(m)
    # what validate does: more records in manifest.yaml, the same weight files
    (m / "manifest.yaml").write_text((m / "manifest.yaml").read_text() + "# validated\n")
    assert model_weights_sha256(m) == before == identify(m)[1]
    # the digest is of the files on disk, not the pins copied from the manifest
    f = next(iter(read_manifest(m).files))
    (m / f).write_bytes((m / f).read_bytes() + b"\0")
    assert model_weights_sha256(m) != before
    # sorted (name, sha256) pairs: the order of the manifest's mapping does not matter
    assert (
        weights_digest({"b": "2", "a": "1"})
        == weights_digest({"a": "1", "b": "2"})
        == hashlib.sha256(b"a\t1\nb\t2\n").hexdigest()
    )


def test_a_recipe_search_is_counted_as_one_lineage(tmp_path):
    path = tmp_path / "reads.csv"
    rows = [
        TestRead(
            "2026-12-04 19:19",
            "fast",
            "x",
            "",
            "",
            "c",
            "DRIVE test",
            "0.8232",
            "",
            "shipped",
            "yes",
            "s",
            "ships if F1 >= 0.820",
            "search-1",
        ),
        TestRead(
            "2026-12-04 19:20",
            "fast",
            "x",
            "",
            "",
            "c",
            "DRIVE test",
            "0.8232",
            "",
            "gate",
            "yes",
            "s",
            "",
            "search-1",
        ),
        TestRead(
            "2026-12-04 21:28",
            "b16",
            "x",
            "",
            "",
            "c",
            "DRIVE test",
            "0.8227",
            "",
            "candidate",
            "yes",
            "s",
            "ships if F1 >= 0.826",
            "search-1",
        ),
        TestRead(
            "2026-12-05 01:50",
            "wnet",
            "x",
            "",
            "",
            "c",
            "DRIVE test",
            "0.8262",
            "",
            "shipped",
            "yes",
            "s",
            "ships if F1 >= 0.826",
            "search-1",
        ),
        # a later bench report of a search member carries no search name: still the member's
        TestRead(
            "2026-12-05 02:36", "fast", "x", "", "", "c", "DRIVE test", "0.8232", "", "report", "yes", "s"
        ),
        _row("other", "shipped", "0.9000"),
    ]
    for r in rows:
        append_read(path, r)
    got = read_ledger(path)
    fast, wnet, other = (count_lineage(got, k) for k in ("fast", "wnet", "other"))
    assert (fast.reads, fast.candidates, fast.gates, fast.reports) == (4, 3, 1, 1)
    assert (wnet.reads, wnet.search, wnet.members) == (4, "search-1", ("fast", "b16", "wnet"))
    assert (fast.shipped.f1, fast.rank, wnet.shipped.f1, wnet.rank) == ("0.8232", 2, "0.8262", 1)
    assert (other.reads, other.search, other.members) == (1, "", ())

    from fundus_edge.modelcard import reads_section

    text = "\n".join(reads_section("wnet", path))
    assert "DRIVE test reads: 4" in text and "recipe search `search-1`" in text
    assert "The search read test three times for its candidates" in text
    assert "For the 0.826 bar, `wnet` had the higher point figure of two candidates" in text
    assert "0.820 bar" not in text  # one candidate at that bar: nothing chosen among reads


def test_a_ledger_without_the_search_column_is_still_read_and_appended(tmp_path):
    old = tmp_path / "old.csv"
    head = [c for c in COLUMNS if c != "search"]
    old.write_text(
        ",".join(head) + "\n" + ",".join(_row("m", "candidate", "0.8").__dict__[c] for c in head) + "\n"
    )
    append_read(old, _row("m", "shipped", "0.81"))
    rows = read_ledger(old)
    assert [r.why for r in rows] == ["candidate", "shipped"] and old.read_text().splitlines()[0] == ",".join(
        head
    )


def test_committed_ledger_hashes_are_the_weights_and_the_s2d_search_is_one_lineage():
    rows = read_ledger(REPO_LEDGER)
    manifests = {
        hashlib.sha256(p.read_bytes()).hexdigest() for p in (ROOT / "models").glob("*/manifest.yaml")
    }
    assert not [r for r in rows if r.weights_sha256 in manifests]  # no row carries a manifest's hash
    # every hashed shipped read of a model folder still in models/ carries that folder's weights digest now
    # (backfilled rows whose files were not kept stay empty, with a note)
    checked = set()
    for r in rows:
        folder = ROOT / r.scored
        if r.why == "shipped" and r.weights_sha256 and (folder / "manifest.yaml").is_file():
            assert r.weights_sha256 == model_weights_sha256(folder), r
            checked.add(r.scored)
    assert {"models/s2d-fast", "models/s2d-wnet"} <= checked
    b16 = [r for r in rows if r.lineage == "s2d-b16"]
    assert [r.why for r in b16] == ["candidate"] and b16[0].f1 == "0.8227"
    for name in ("s2d-fast", "s2d-wnet"):
        c = count_lineage(rows, name)
        assert c.search == "s2d-search" and set(c.members) == {"s2d-fast", "s2d-b16", "s2d-wnet"}
        assert c.candidates == 3
        text = (ROOT / "models" / name / "MODEL_CARD.md").read_text()
        assert "The search read test three times" in text
        assert "For the 0.826 bar, `s2d-wnet` had the higher point figure of two candidates" in text


def test_a_card_counts_drive_test_reads_only():
    from fundus_edge.measure.ledger import TestRead, count_lineage, reads_drive_test

    def row(data, why="candidate"):
        return TestRead("2026-12-07 00:00", "m", "models/m", "", "", "cmd", data, "0.8", "", why, "yes", "x")

    assert reads_drive_test(row("DRIVE test")) and reads_drive_test(row("../shared/data/DRIVE/test all"))
    assert not reads_drive_test(row("../shared/data/STARE all"))
    rows = [row("DRIVE test"), row("../shared/data/STARE all"), row("site all", "gate")]
    assert count_lineage(rows, "m").reads == 1


def test_a_conversion_added_to_a_folder_leaves_its_weights_digest(tmp_path, tiny_model):
    import shutil
    from dataclasses import replace

    from fundus_edge.measure.ledger import model_weights_sha256
    from fundus_edge.runtime.manifest import read_manifest, write_manifest

    m = tmp_path / "m"
    shutil.copytree(tiny_model, m)
    before = model_weights_sha256(m)
    (m / "model.tflite").write_bytes(b"converted")
    man = read_manifest(m)
    write_manifest(
        m, replace(man, formats={**man.formats, "tflite": ["model.tflite"]}), written=("model.tflite",)
    )
    assert "model.tflite" in read_manifest(m).files
    assert model_weights_sha256(m) == before
    (m / "model.onnx").write_bytes((m / "model.onnx").read_bytes() + b" ")
    assert model_weights_sha256(m) != before  # the weights' own files still count


def test_ledger_rows_name_no_machine_path(tmp_path):
    import tempfile

    root = tmp_path / "main"
    root.mkdir()
    got = portable(
        f"fundus-edge evaluate {root}/models/x --data {tmp_path}/shared/DRIVE -o /elsewhere/o", root
    )
    assert got == "fundus-edge evaluate models/x --data ../shared/DRIVE -o /elsewhere/o"
    assert portable("DRIVE test", root) == "DRIVE test"
    scratch = Path(tempfile.gettempdir()) / "pred-x"
    assert portable(f"-o {scratch}", Path("/nowhere/main")) == "-o $TMPDIR/pred-x"
