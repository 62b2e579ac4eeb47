import pytest
from fundus_edge.bench.arch_latency import main, parse_overrides


def test_overrides_read_yaml_values():
    assert parse_overrides("residual=false, base=8,act=leaky") == {
        "residual": False,
        "base": 8,
        "act": "leaky",
    }
    with pytest.raises(SystemExit, match="key=value"):
        parse_overrides("residual")


def test_times_the_config_and_each_change(capsys):
    assert (
        main(
            [
                "--config",
                "small",
                "--try",
                "base=4",
                "--backends",
                "onnxruntime",
                "--runs",
                "1",
                "--rounds",
                "2",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| small")]
    assert len(rows) == 2
    (gmac8, ms8), (gmac4, ms4) = [(float(r.split("|")[2]), float(r.split("|")[4])) for r in rows]
    assert gmac4 < gmac8 / 3 and ms8 > 0 and ms4 > 0  # half the width: about a quarter of the MACs


def test_an_engine_can_be_timed_at_a_precision(capsys):
    assert (
        main(
            [
                "--config",
                "small",
                "--try",
                "base=4",
                "--backends",
                "onnxruntime,onnxruntime:fp32",
                "--runs",
                "1",
                "--rounds",
                "1",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "| onnxruntime ms | onnxruntime:fp32 ms |" in out
    rows = [line for line in out.splitlines() if line.startswith("| small")]
    assert len(rows) == 2 and all(float(r.split("|")[5]) > 0 for r in rows)
