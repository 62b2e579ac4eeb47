"""The one engine table (runtime/engines/table.py): an engine registered in one place (tests/toy_engine.py:
its module and its row) is found everywhere engines are listed, and no module outside runtime/engines/
keeps a list of engines of its own."""

from __future__ import annotations

import argparse
import ast
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from fundus_edge.runtime import cpu
from fundus_edge.runtime.engines import installed_engines
from fundus_edge.runtime.engines.table import ENGINE_TABLE, arm_checked, auto_order, reduced, register
from fundus_edge.runtime.errors import EngineUnavailable

from tests.toy_engine import TOY

ROOT = Path(__file__).resolve().parents[1]
SMALL = ROOT / "models" / "small"  # a shipped float model with an ONNX file


@pytest.fixture
def toy(monkeypatch):
    """The toy engine registered through ``register``; monkeypatch takes its row out after the test."""
    assert TOY.name not in ENGINE_TABLE
    monkeypatch.setitem(ENGINE_TABLE, TOY.name, TOY)  # recorded as absent before: undone by deleting it
    register(TOY)
    return TOY.name


# -- the runtime ---------------------------------------------------------------------------------
def test_toy_is_installed_reads_onnx_and_runs_like_onnxruntime(toy):
    from fundus_edge.runtime.formats import formats_for
    from fundus_edge.runtime.predictor import Predictor

    assert toy in installed_engines() and auto_order()[0] == toy
    assert formats_for(toy, ["pir", "onnx"]) == ["onnx"]
    rgb = np.random.default_rng(0).integers(0, 255, (96, 88, 3)).astype(np.uint8)
    ours = Predictor.load(SMALL, backend=toy, threads=1, precision=None)
    ref = Predictor.load(SMALL, backend="onnxruntime", threads=1, precision=None)
    assert ours.backend == toy and ours.engine.format == "onnx"
    a, b = ours.predict(rgb, fov="none").prob, ref.predict(rgb, fov="none").prob
    np.testing.assert_allclose(a, b, atol=1e-5)
    # backend "auto" reads the table's order when asked: the toy ranks first once registered
    assert Predictor.load(SMALL, threads=1, precision=None).backend == toy


def test_toy_precisions_come_from_its_row(toy):
    from fundus_edge.deploy.platforms import arm_refusal

    assert reduced(toy) == ("fp16",)
    assert cpu.precision_flags("fp16", toy) == ("toy_fp16",)
    assert cpu.precision_flag("fp16", frozenset({"toy_fp16"}), toy) == "toy_fp16"
    assert cpu.precision_flag("fp16", frozenset({"avx512_fp16"}), toy) is None
    assert (toy, "fp32") in arm_checked()
    assert arm_refusal(toy, "fp32") is None and arm_refusal(toy, "int8") is not None


def test_builtin_precision_flags_unchanged():
    """What the table says of the built-in engines is what runtime.cpu used to list."""
    assert cpu.precision_flags("bf16") == ("avx512_bf16", "amx_bf16")
    assert cpu.precision_flags("fp16", "openvino") == ("avx512_fp16", "amx_fp16")
    assert cpu.precision_flag("bf16", frozenset({"avx2", "amx_bf16"})) == "amx_bf16"
    assert cpu.precision_flag("bf16", frozenset({"avx2", "fma"})) is None
    assert reduced("openvino") == ("bf16", "fp16") and reduced("onnxruntime") == ()


# -- the CLI -------------------------------------------------------------------------------------
def _backend_actions(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if "--backend" in action.option_strings:
            yield action
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _backend_actions(sub)


def test_toy_in_cli_backend_choices(toy):
    from fundus_edge.cli import build_parser  # built after the registration: choices read then

    actions = list(_backend_actions(build_parser()))
    assert actions, "no --backend option found in the CLI"
    for a in actions:
        assert a.choices is not None and toy in a.choices, f"--backend {a.choices}"


# -- the bench -----------------------------------------------------------------------------------
def test_toy_in_bench_cells(toy, tmp_path):
    from fundus_edge.bench.machine import versions
    from fundus_edge.bench.runner import BenchConfig, plan_cells, shape_rows

    cfg = BenchConfig(data=None, out=tmp_path, gpu_rows=False, shape_variant="small")
    cells = plan_cells({"small": SMALL}, cfg)
    assert [(c.backend, c.shape) for c in cells if c.backend == toy] == [(toy, None), (toy, "static")]
    assert shape_rows()[toy] == "static"
    assert versions()["onnx"] == metadata.version("onnx")  # listed only by the toy's row


def test_toy_without_profiler_says_so(toy):
    from fundus_edge.bench.profile import profiler

    with pytest.raises(EngineUnavailable, match="no profiler for engine 'toy'"):
        profiler(toy)
    assert callable(profiler("onnxruntime"))


# -- pack ----------------------------------------------------------------------------------------
def test_toy_pinned_by_pack(toy):
    """What a bundle pins for an engine is the table's ``pip`` (deploy/pack.py)."""
    from fundus_edge.deploy.pack import requirements_text
    from fundus_edge.deploy.platforms import here

    text = requirements_text(toy, here())
    assert f"{TOY.pip}=={metadata.version(TOY.pip)}" in text.splitlines()


def test_toy_row_removed_after_the_test():
    assert TOY.name not in ENGINE_TABLE


# -- no list of engines outside the table ---------------------------------------------------------
SOURCE = (
    "runtime",
    "measure",
    "train",
    "export",
    "quantize",
    "bench",
    "serve",
    "archive",
    "deploy",
    "fundus_edge",
)
# Files allowed to keep a literal of two or more engine names, each with why. The lead empties the list.
ALLOWED = {
    # The formats' table: per format, the engines that read it (a relation the engine table's ``reads``
    # extends for an added engine), not a list of engines.
    "runtime/formats.py",
}


def _literals(path: Path, names: set[str]):
    """(line, engine names) of each dict / tuple / list / set literal holding two or more engine names."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Dict):
            items = node.keys
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            items = node.elts
        else:
            continue
        got = {e.value for e in items if isinstance(e, ast.Constant) and e.value in names}
        if len(got) >= 2:
            yield node.lineno, sorted(got)


def test_no_engine_list_outside_the_table():
    names = set(ENGINE_TABLE)
    offenders = []
    for folder in SOURCE:
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith("runtime/engines/") or rel in ALLOWED:
                continue
            offenders += [f"{rel}:{line}: {', '.join(got)}" for line, got in _literals(path, names)]
    assert not offenders, "engine lists outside runtime/engines/table.py:\n" + "\n".join(offenders)


def test_the_literal_check_can_fail(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('CHOICES = ["openvino", "onnxruntime"]\nONE = {"paddle": 1}\n')
    assert list(_literals(bad, set(ENGINE_TABLE))) == [(1, ["onnxruntime", "openvino"])]
