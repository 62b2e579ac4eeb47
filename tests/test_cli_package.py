"""The CLI as a package of small verbs (issue #41): every verb registered, each module short, --backend's
choices read from the one engine table, a mistyped choice naming the nearest few, threads set in one place."""

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from fundus_edge.runtime.engines.table import ENGINE_TABLE, EngineSpec, names

from fundus_edge import cli
from fundus_edge.cli import build_parser, main

CLI_DIR = Path(cli.__file__).parent
VERBS = [
    "train",
    "average",
    "evaluate",
    "export",
    "validate",
    "quantize",
    "import-paddleseg",
    "bench",
    "pick",
    "pack",
    "selftest",
    "predict",
    "biomarkers",
    "serve",
    "adapt",
]
# The verbs that run a model folder through an engine, and the arguments that get them past their
# required options.
ENGINE_VERBS = {"predict": ["x.png", "-o", "out"], "serve": [], "evaluate": ["src", "--data", "d"]}


def _subparsers(parser):
    return next(a for a in parser._actions if a.dest == "command")


def _option(parser, verb: str, flag: str):
    sub = _subparsers(parser).choices[verb]
    return next(a for a in sub._actions if flag in a.option_strings)


def test_every_verb_is_registered_and_parses_its_help(capsys):
    assert list(_subparsers(build_parser()).choices) == VERBS
    for verb in VERBS:
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args([verb, "--help"])
        assert e.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: fundus-edge {verb} ")


def test_every_cli_module_is_short():
    sizes = {p.name: len(p.read_text().splitlines()) for p in CLI_DIR.glob("*.py")}
    assert {"__init__.py", "common.py", "adapt.py", "site.py", "predict.py"} <= set(sizes)
    assert not {n: s for n, s in sizes.items() if s > 400}, sizes
    assert not (CLI_DIR.parent / "cli.py").exists()  # a module beside the package would be shadowed


def test_backend_choices_are_the_engine_table(monkeypatch):
    toy = EngineSpec(
        name="toyengine",
        label="Toy Engine",
        module="toy",
        import_name="toy",
        pip="toy",
        extra="toy",
        marker="x",
        mpl_marker="x",
        precisions={},
        options="",
    )
    monkeypatch.setitem(ENGINE_TABLE, toy.name, toy)
    parser = build_parser()  # built after the registration: it offers the new engine
    for verb, args in ENGINE_VERBS.items():
        action = _option(parser, verb, "--backend")
        assert list(action.choices) == ["auto", *names()] and "toyengine" in action.choices
        assert action.default == "auto" and "Toy Engine" in action.help
        assert parser.parse_args([verb, *args, "--backend", "toyengine"]).backend == "toyengine"


def test_a_mistyped_backend_names_at_most_three(monkeypatch, capsys):
    # More engines than three, so a message that listed every choice would show.
    for i in range(6):
        monkeypatch.setitem(
            ENGINE_TABLE, f"onnxruntime{i}", replace(ENGINE_TABLE["onnxruntime"], name=f"onnxruntime{i}")
        )
    for verb, args in ENGINE_VERBS.items():
        with pytest.raises(SystemExit) as e:
            main([verb, *args, "--backend", "onnxrutime"])
        assert e.value.code == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert "argument --backend: invalid choice 'onnxrutime'" in last, last
        named = last.split("nearest: ")[1].split(";")[0].split(", ")
        assert 1 <= len(named) <= 3 and "onnxruntime" in named, last
        assert set(named) <= {"auto", *names()} and len(names()) + 1 > 3  # some choices left unnamed


def test_threads_are_set_once_before_the_verb_runs(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # selftest on a folder that is no bundle: FAIL (exit 1), after main has set the threads
    assert main(["selftest", str(tmp_path), "--threads", "3"]) == 1
    assert os.environ["OMP_NUM_THREADS"] == "3"
    assert capsys.readouterr().out.startswith("FAIL: ")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert main(["pick", "--record", str(tmp_path / "none.json")]) == 2  # pick has no --threads
    assert os.environ["OMP_NUM_THREADS"] == "1"


def test_building_the_parser_imports_nothing_above_the_runtime():
    """The device runs ``selftest`` with the runtime alone: the verbs' modules defer their work's imports.
    (The variant table, standard library only, names bench's and quantize's choices.)"""
    probe = (
        "import sys; from fundus_edge.cli import build_parser; build_parser(); "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith(('fundus_edge', 'paddle')))))"
    )
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-500:]
    allowed = ("fundus_edge.cli", "fundus_edge.runtime")
    above = [
        m
        for m in r.stdout.split()
        if not m.startswith(allowed)
        and m not in ("fundus_edge", "fundus_edge.quantize", "fundus_edge.quantize.variants")
    ]
    assert "fundus_edge.cli.predict" in r.stdout.split() and not above, above


def test_python_dash_m_runs_the_same_command():
    """bench cells, arm_check and the load test start ``python -m fundus_edge.cli``."""
    r = subprocess.run(
        [sys.executable, "-m", "fundus_edge.cli", "selftest", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and r.stdout.startswith("usage: fundus-edge selftest"), r.stderr[-300:]


def test_shipped_models_are_found_from_another_folder(monkeypatch, tmp_path):
    """Without ./models, the source checkout's models/ (cli/models.py sits one folder deeper than cli.py
    did)."""
    from fundus_edge.cli.models import shipped_models

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)
    assert shipped_models() == repo / "models"
