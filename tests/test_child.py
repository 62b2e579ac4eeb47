"""export/child.py: the one launcher of child processes (PIR switch, one-line failures)."""

from __future__ import annotations

import subprocess

import pytest
from fundus_edge.export.child import PIR_FLAG, failure_line, run_child
from fundus_edge.runtime.errors import InputError, ModelError

CHILD = """
import os, sys
print("pir", os.environ.get("{flag}"), *sys.argv[1:])
if sys.argv[1:] == ["refuse"]:
    raise SystemExit("error: not a segmentation export")
if sys.argv[1:] == ["crash"]:
    print("Traceback (most recent call last):", file=sys.stderr)
    print("RuntimeError: boom", file=sys.stderr)
    print("", file=sys.stderr)
    sys.exit(3)
"""


@pytest.fixture
def child(tmp_path, monkeypatch):
    (tmp_path / "probe_child.py").write_text(CHILD.replace("{flag}", PIR_FLAG))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    return "probe_child"


def test_run_child_sets_the_pir_switch_and_passes_arguments(child):
    assert run_child(child, ("a", 1), pir=False).stdout.split() == ["pir", "0", "a", "1"]
    assert run_child(child, ("b",), pir=True).stdout.split()[:2] == ["pir", "1"]
    r = run_child(child, ("c",), env={PIR_FLAG: "x"})  # None: the environment's own
    assert r.stdout.split()[:2] == ["pir", "x"]


def test_a_failed_child_is_one_line_with_its_reason(child):
    with pytest.raises(ModelError) as exc:
        run_child(child, ("crash",), what="PaddleSlim prune failed")
    assert str(exc.value) == "PaddleSlim prune failed: RuntimeError: boom"
    with pytest.raises(InputError, match=r"^x: not a segmentation export$"):
        run_child(child, ("refuse",), what="x", error=InputError)
    with pytest.raises(ModelError, match="no JSON"):
        run_child(child, ("ok",), what="no JSON", ok=lambda r: r.stdout.startswith("{"))
    r = run_child(child, ("crash",), check=False)
    assert r.returncode == 3 and failure_line(r) == "RuntimeError: boom"
    assert failure_line(subprocess.CompletedProcess([], 1, "", "")) == "no output"
