"""A clean checkout (issue 42): `make bench` writes only under build/ (its record, reports, the run's own test
reads and the page it would publish); docs/results/, README's tables and the committed test-read ledger change
only on `make publish`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fundus_edge.bench.records import BenchRecord

ROOT = Path(__file__).resolve().parents[1]


# Imports ``fundus_edge`` from the folder tree it is put in (pyproject's package-dir), ahead of the editable
# install's finder, which maps the package onto the source checkout. Written by hand: no library sets an
# import mapping for one child process.
SITECUSTOMIZE = """
import sys, tomllib
from importlib.util import spec_from_file_location
from pathlib import Path

ROOT = Path({root!r})
DIRS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]


class CopyFinder:
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname not in DIRS:
            return None
        d = ROOT / DIRS[fullname]
        return spec_from_file_location(fullname, d / "__init__.py", submodule_search_locations=[str(d)])


sys.meta_path.insert(0, CopyFinder)
"""


def fresh_clone(dest: Path) -> Path:
    """A git repository at ``dest`` holding the working tree as it is (tracked and untracked files git does
    not ignore) in one commit: what a fresh clone of this state would be."""
    git = [
        "git",
        "-c",
        "user.name=test",
        "-c",
        "user.email=test@example.invalid",
        "-c",
        "commit.gpgsign=false",
    ]
    names = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for n in filter(None, names.split("\0")):
        if (ROOT / n).is_file():  # a tracked file deleted in the working tree is not there
            (dest / n).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / n, dest / n)
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "working tree"]):
        subprocess.run([*git, *cmd], cwd=dest, check=True, capture_output=True)
    return dest


@pytest.mark.skipif(shutil.which("make") is None or not (ROOT / ".git").exists(), reason="needs make and git")
def test_make_bench_leaves_a_fresh_clone_clean(tiny_model, drive_synth, tmp_path):
    """The Makefile's own bench target, quick, in a fresh clone of the working tree, on a labelled (synthetic
    DRIVE) data set so the run reads test images: before issue 42 it appended to docs/test-reads.csv and wrote
    docs/results/ and README.md. Afterwards ``git status --porcelain`` is empty. (A copy, not this checkout:
    its own state may change meanwhile, and the run's build/ would overwrite the user's.)"""
    clone = fresh_clone(tmp_path / "clone")
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "sitecustomize.py").write_text(SITECUSTOMIZE.format(root=str(clone)))
    env = {k: v for k, v in os.environ.items() if k != "FUNDUS_EDGE_LEDGER"}  # the default ledger, as a user
    env.update(PYTHONPATH=str(boot), OMP_NUM_THREADS="1")
    venv = Path(sys.executable).parent.parent
    where = subprocess.run(
        [sys.executable, "-c", "import fundus_edge.bench.history as h; print(h.RESULTS_DIR)"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.stdout.strip() == str(clone / "docs" / "results"), where.stderr  # the clone's code runs
    args = (
        f"--quick --models {tiny_model} --variants {tiny_model.name} --engines onnxruntime --rounds 1"
        " --no-bf16 --no-progress"
    )
    r = subprocess.run(
        # -o: the venv counts as made (its pip install is not what is tested)
        ["make", "-o", f"{venv}/.installed", "bench", f"VENV={venv}", f"DATA={drive_synth}", "THREADS=1"]
        + [f"BENCH_ARGS={args}"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True)
    assert status.stdout == "", f"make bench changed the checkout:\n{status.stdout}"
    # what it wrote instead, under build/bench: the run's own reads and the page it would publish, named by
    # this CPU's identity, without an index of a history
    from fundus_edge.runtime.cpu import cpu_identity

    out = clone / "build" / "bench"
    assert (out / "results.json").is_file() and (out / "test-reads.csv").is_file()
    assert [p.name.endswith(f"-{cpu_identity().slug}.md") for p in (out / "page").glob("*.md")] == [True]
    assert not (out / "page" / "README.md").exists()


def test_the_bench_output_folder_is_ignored_by_git():
    paths = ["build/bench/results.json", "build/bench/test-reads.csv", "build/bench/page/x.md"]
    r = subprocess.run(["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True)
    assert r.stdout.split() == paths, "build/ is not git-ignored: make bench would dirty the checkout"


def _records() -> tuple[list[BenchRecord], dict]:
    recs = [BenchRecord("small", "openvino", "fp32", f1=0.8123, auc=0.97)]
    return recs, {"small": ROOT / "models" / "small"}


def test_the_run_ledger_is_the_runs_own_and_publishing_adds_it_once(tmp_path, capsys):
    from fundus_edge.bench.history import main
    from fundus_edge.bench.ledger_rows import publish_reads, record_test_reads
    from fundus_edge.measure.ledger import read_ledger

    recs, dirs = _records()
    run = tmp_path / "bench"
    first = record_test_reads(recs, dirs, "/data/DRIVE", True, "fundus-edge bench 1", run_dir=run)
    second = record_test_reads(recs, dirs, "/data/DRIVE", True, "fundus-edge bench 2", run_dir=run)
    assert read_ledger(run / "test-reads.csv") == second != first  # replaced, not appended to
    # a run without labels reads nothing, and leaves no earlier run's reads to publish
    assert record_test_reads(recs, dirs, None, False, "c", run_dir=run) == []
    assert not (run / "test-reads.csv").exists()

    record_test_reads(recs, dirs, "/data/DRIVE", True, "fundus-edge bench 3", run_dir=run)
    committed = tmp_path / "docs" / "test-reads.csv"
    assert publish_reads(run / "test-reads.csv", committed) == (1, committed)
    assert publish_reads(run / "test-reads.csv", committed) == (0, committed)  # published twice: once
    assert [r.command for r in read_ledger(committed)] == ["fundus-edge bench 3"]

    # `make publish`: the page and record into the history, the reads into $FUNDUS_EDGE_LEDGER's ledger
    # (conftest's scratch one here; the committed docs/test-reads.csv for a maintainer)
    import json

    from fundus_edge.measure.ledger import ledger_path
    from fundus_edge.runtime.cpu import cpu_identity

    meta = {"date": "2026-12-06 10:00", "machine": {**cpu_identity().to_dict(), "cores": 2}, "threads": 2}
    meta.update(images="DRIVE test", image_size="584x565")
    (run / "results.json").write_text(json.dumps({"meta": meta, "results": []}))
    hist = tmp_path / "results"
    assert main([str(run / "results.json"), "--out", str(hist), "--reads", str(run / "test-reads.csv")]) == 0
    assert f"{ledger_path()}: 1 test read(s) of the run appended" in capsys.readouterr().out
    assert (hist / f"2026-12-06-1000-{cpu_identity().slug}.md").is_file() and (hist / "README.md").is_file()
    assert main([str(run / "results.json"), "--out", str(hist), "--reads", str(tmp_path / "none.csv")]) == 2
    assert "none.csv: no test-read ledger of the run here" in capsys.readouterr().err


def test_make_bench_does_not_publish_and_make_publish_does():
    bench = subprocess.run(["make", "-n", "bench"], cwd=ROOT, capture_output=True, text=True).stdout
    publish = subprocess.run(["make", "-n", "publish"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "readme_tables" not in bench and "--no-index" in bench and "--out build/bench/page" in bench
    assert "fundus_edge.bench.history build/bench/results.json" in publish and "readme_tables" in publish
