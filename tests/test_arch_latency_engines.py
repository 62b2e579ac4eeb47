"""bench/arch_latency.py's default engines come from the engine table (issue #41): every engine that reads
the ONNX file it exports, in backend "auto"'s order."""

from __future__ import annotations

from dataclasses import replace

import pytest
from fundus_edge.bench.arch_latency import default_backends, main
from fundus_edge.runtime.engines import table


def test_the_default_is_the_table_s_onnx_readers_in_auto_order(capsys):
    expected = [n for n in table.auto_order() if "onnx" in table.formats(n)]
    assert default_backends().split(",") == expected
    assert "onnxruntime" in expected and "litert" not in expected and "paddle" not in expected
    with pytest.raises(SystemExit):
        main(["--help"])
    assert f"read ONNX, {default_backends()})" in " ".join(capsys.readouterr().out.split())


def test_an_engine_added_to_the_table_that_reads_onnx_is_timed_by_default(monkeypatch):
    toy = replace(table.spec("onnxruntime"), name="toy-onnx", auto_rank=50, reads=("onnx",))
    monkeypatch.setitem(table.ENGINE_TABLE, "toy-onnx", toy)
    assert default_backends().split(",")[-1] == "toy-onnx"
