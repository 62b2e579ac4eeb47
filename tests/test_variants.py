"""The variant table (quantize/variants.py) is the one list of variant names: the bench's default, the CLI's
help and choices, the float counterparts, the model card's families and the bench's builds all read it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fundus_edge.bench.runner import BenchConfig
from fundus_edge.bench.variants import derived_variant, recipe_row
from fundus_edge.quantize.variants import (
    DEFAULT_BENCH,
    DEFAULT_MODEL,
    DERIVABLE,
    INT8_METHODS,
    RECIPE_NAMES,
    RECIPES,
    ROWS,
    TABLE,
    derive,
    derived,
    family,
    float_counterpart,
    float_name,
)

from fundus_edge.cli import main

REPO = Path(__file__).resolve().parents[1]
SHIPPED_FLOAT = ("default", "small", "wnet", "wnet-small", "s2d-fast", "s2d-wnet")

# What the bench ran before the table (BenchConfig.variants; models added since marked) and how quantize
# built the recipes (its VARIANTS dict): the table must keep both.
BENCH_BEFORE = (
    "fp32",
    "pruned",
    "int8",
    "pruned-int8",
    "int8-nncf",
    "int8-ort",
    "int8-litert",  # added with LiteRT's shipped INT8 folders (issue #40), each model's after its -int8-ort
    "small",
    # small-int8(-nncf, -ort) and wnet-small-int8-(nncf, ort) left the default sweep (issue #42: the bench in
    # 25 minutes on an AVX2-only CPU); they stay in the table
    "small-pruned",
    "wnet",
    "wnet-int8-nncf",
    "wnet-int8-ort",
    "wnet-int8-litert",
    "wnet-small",
    "s2d-fast",  # added with the model (issue #34)
    "s2d-fast-int8-nncf",
    "s2d-fast-int8-ort",
    "s2d-fast-int8-litert",
    "s2d-wnet",  # added with the model (issue #34)
    "s2d-wnet-int8-nncf",
    "s2d-wnet-int8-ort",
    "s2d-wnet-int8-litert",
    "seed-unet",
)
RECIPES_BEFORE = {
    "fp32": {},
    "pruned": {"prune": 0.5},
    "int8": {"int8": "ptq"},
    "pruned-int8": {"prune": 0.5, "int8": "ptq"},
    "int8-nncf": {"int8": "nncf"},
    "int8-ort": {"int8": "ort"},
    "int8-litert": {"int8": "litert"},
    "pruned-int8-nncf": {"prune": 0.5, "int8": "nncf"},
}


def test_the_table_keeps_the_bench_default_and_the_recipes():
    assert len(ROWS) == len(TABLE) and DEFAULT_BENCH == BENCH_BEFORE
    assert {"small-int8", "small-int8-nncf", "small-int8-ort", "wnet-small-int8-nncf"} <= set(ROWS)
    assert BenchConfig(data=None, out=Path("x")).variants == DEFAULT_BENCH
    got = {r.name: {k: v for k, v in r.quantize_args().items() if v is not None} for r in RECIPES}
    assert got == RECIPES_BEFORE and tuple(got) == RECIPE_NAMES
    assert all(r.int8 in (None, *INT8_METHODS) for r in TABLE)


def test_every_int8_row_has_a_float_row_and_every_derived_row_is_derive():
    for r in TABLE:
        assert (r.int8 is None) == (r.float_counterpart is None), r
        if r.int8:
            assert r.float_counterpart in ROWS and ROWS[r.float_counterpart].int8 is None, r
        if r.source not in (None, DEFAULT_MODEL) and r.recipe is not None:
            assert derive(r.source, r.recipe) == r and derived(r.name) == r


def test_derived_names_read_back_into_their_rows():
    for model in SHIPPED_FLOAT:
        for recipe in DERIVABLE:
            row = derive(model, recipe.name)
            assert derived(row.name) == row and float_counterpart(row.name) == row.float_counterpart
    assert (
        float_counterpart("small-pruned-int8") == "small-pruned"
    )  # pruned-int8 of small, held to its pruned
    assert float_counterpart("default-int8-nncf") == "default"
    assert derived("small-pruned-int8", lambda m: m == "small-pruned").recipe == "int8"  # no models/small
    assert [float_counterpart(n) for n in ("small", "seed-unet", "mine", "int8-x")] == [None] * 4
    with pytest.raises(ValueError):
        derive("small", "fp32")  # that is the model itself


def test_the_bench_finds_recipes_and_derived_variants_through_the_table(tiny_model, tmp_path):
    (tmp_path / "small").symlink_to(tiny_model)
    assert recipe_row("int8-nncf") == ROWS["int8-nncf"] and recipe_row("small-int8") is None
    assert derived_variant(tmp_path, "small-int8-ort") == ROWS["small-int8-ort"]
    assert derived_variant(tmp_path, "wnet-int8-ort") is None  # no models/wnet here


def _help(argv: list[str], capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "2000")  # one line per option
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return capsys.readouterr().out


def test_cli_help_and_choices_come_from_the_table(capsys, monkeypatch):
    bench = _help(["bench"], capsys, monkeypatch)
    listed = re.search(r"comma list \(default ([^;]+);", bench)[1].split(",")
    assert tuple(listed) == DEFAULT_BENCH
    derivable = re.search(r"<shipped model>-(.+?) compresses", bench)[1]
    assert re.split(r", -| or -", derivable) == [r.name for r in DERIVABLE]
    quantize = _help(["quantize"], capsys, monkeypatch)
    assert tuple(re.search(r"build DIR/\{([^}]+)\} instead", quantize)[1].split(",")) == RECIPE_NAMES
    assert f"--int8 {{{','.join(INT8_METHODS)}}}" in quantize


def test_model_cards_read_the_families_the_table_makes():
    from fundus_edge.modelcard import family_rows

    results = {"results": [{"variant": name} for name in ROWS]}
    for model in SHIPPED_FLOAT:
        own = {r["variant"] for r in family_rows(results, model)}
        assert own == {r.name for r in TABLE if r.source == model}, model
        assert float_name(model) in own and set(family(model)) >= own


def test_nothing_else_parses_variant_names():
    """Checks on precision strings ("int8+bf16") may stay; string operations on variant names may not."""
    patterns = [
        r'\.index\("int8"\)',
        r'endswith\("-',
        r'startswith\("pruned',
        r'"int8" in (?!\(?[\w.]*precision)',
        r'(name|variant|\bk) [!=]= "fp32"',
    ]
    found = []
    for folder in ("bench", "quantize", "deploy", "fundus_edge", "export"):
        for path in (REPO / folder).rglob("*.py"):
            if path == REPO / "quantize" / "variants.py":
                continue
            text = path.read_text()
            found += [f"{path.relative_to(REPO)}: {p}" for p in patterns if re.search(p, text)]
    assert not found


def test_the_table_imports_only_the_standard_library():
    """The CLI reads the table to build its parser, also on a device (selftest): it must stay light."""
    import subprocess
    import sys

    code = (
        "import sys; before = set(sys.modules); import fundus_edge.quantize.variants; "
        "print(sorted(m for m in set(sys.modules) - before if m.startswith('fundus_edge.') "
        "or m.split('.')[0] in ('numpy', 'yaml', 'paddle', 'onnx', 'cv2')))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "['fundus_edge.quantize', 'fundus_edge.quantize.variants']"
