"""The bench's timing (moved verbatim from tests/test_bench.py, issue #41): the headline and its targets,
peaks, timing rounds and their medians, spreads and ratios, round windows, machine terms and the floor."""

import json
import time

import pytest
from fundus_edge.bench.records import BenchRecord
from fundus_edge.bench.report import markdown


def test_headline_states_the_targets_from_ok_rows_only():
    from fundus_edge.bench.report import headline

    recs = [
        BenchRecord("fp32", "openvino", precision="bf16", p50_ms=30.0, f1=0.8222),
        BenchRecord("int8-nncf", "openvino", precision="int8+fp32", p50_ms=20.0, f1=0.8206),
        BenchRecord(
            "int8-ort", "openvino", precision="int8+fp32", p50_ms=10.0, f1=0.8210, status="wrong_output"
        ),  # fast and wrong
        BenchRecord("small", "openvino", precision="bf16", p50_ms=15.0, f1=0.8160),
        BenchRecord("seed-unet", "onnxruntime", precision="fp32", p50_ms=1000.0),
        BenchRecord("seed-unet", "openvino", precision="bf16", p50_ms=200.0),
    ]
    lines = headline(recs)
    assert lines[0].startswith(
        "- Fastest row with F1 >= 0.82: int8-nncf on openvino (int8+fp32), p50 20.0 ms"
        " (target <= 8 ms: not met)"
    )
    assert "10.0x the seed U-Net on its fastest engine (seed-unet on openvino (bf16), 200.0 ms)" in lines[0]
    assert lines[1] == "- No row reaches F1 >= 0.826 (best 0.8222)."
    assert (
        lines[2].startswith("- Fastest scored row: small on openvino (bf16), p50 15.0 ms")
        and "13.3x" in lines[2]
    )
    assert "fp32 on openvino: int8-nncf (int8+fp32) 20.0 ms vs bf16 30.0 ms = 1.50x, F1 -0.0016" in lines[3]
    assert headline([BenchRecord("small", "openvino", precision="bf16", p50_ms=15.0, f1=0.8160)])[:2] == [
        "- No row reaches F1 >= 0.82 (best 0.8160).",
        "- No row reaches F1 >= 0.826 (best 0.8160).",
    ]
    fast = [BenchRecord("w", "openvino", precision="int8+fp32", p50_ms=11.9, f1=0.8260)]
    assert "(target <= 12 ms: met)" in headline(fast)[1] and "(target <= 8 ms: not met)" in headline(fast)[0]
    meta = {
        "machine": {"cpu": "X", "cores": 2, "isa_flags": ["avx2"]},
        "threads": 2,
        "images": "d",
        "image_size": "584x565",
        "date": "t",
        "peak": {},
    }
    assert "Against the project's targets" in markdown(recs, meta)


def test_int8_rows_take_the_int8_peak():
    from fundus_edge.bench.sweep import peak_for

    peak = {"fp32_gflops": 100.0, "bf16_gflops": 400.0, "int8_gops": 800.0}
    assert [peak_for(p, peak) for p in ("fp32", "bf16", "int8", "int8+fp32", "int8+bf16", "int8-sim")] == [
        100.0,
        400.0,
        800.0,
        800.0,
        800.0,
        100.0,
    ]
    assert (
        peak_for("int8", {"fp32_gflops": 100.0}) is None
    )  # no INT8 peak measured: no roofline, not a float one


def test_peak_measures_an_integer_product():
    """The INT8 peak is a u8 x s8 product that OpenVINO really runs in integers (AVX2, VNNI or AMX)."""
    from fundus_edge.bench.machine import measure_peak
    from fundus_edge.runtime.cpu import isa_flags

    peak = measure_peak(1, n=256)
    assert "error" not in peak, peak.get("error")
    assert peak["fp32_gflops"] > 0
    if {"avx512_vnni", "amx_int8"} & set(isa_flags()):
        assert (
            peak["int8_gops"] > peak["fp32_gflops"]
        )  # VNNI / AMX integer products (seen: 1678 vs 292 GOP/s)
    else:  # on AVX2 alone OpenVINO may keep the product in float: then no INT8 peak, never a float one
        assert peak["int8_gops"] is None or peak["int8_gops"] > 0


def test_rounds_give_the_median_its_spread_and_the_flag():
    from fundus_edge.measure.timing import SPREAD_LIMIT, Rounds

    steady = Rounds((10.0, 12.0, 11.0))
    assert steady.median == 11.0 and steady.spread == pytest.approx(2.0 / 11.0) and not steady.unsteady
    drifted = Rounds((24.1, 37.8, 25.0))  # the AMX Xeon's bf16 row, one round in a slow stretch
    assert drifted.median == 25.0 and drifted.spread == pytest.approx(13.7 / 25.0) and drifted.unsteady
    assert (
        SPREAD_LIMIT == 0.20 and not Rounds((10.0, 12.0, 10.0)).unsteady
    )  # exactly 20 %: not above the limit
    failed = Rounds((10.0, None, 12.0))  # a failed round is left out, not counted as zero
    assert (
        failed.timed == [10.0, 12.0] and failed.median == 11.0 and failed.spread == pytest.approx(2.0 / 11.0)
    )
    one = Rounds((10.0,))
    assert one.median == 10.0 and one.spread is None and not one.unsteady
    assert Rounds((None, None)).median is None


def test_ratios_come_from_rows_timed_in_the_same_rounds():
    from fundus_edge.measure.timing import round_ratio

    assert round_ratio((30.0, 45.0, 31.5), (20.0, 30.0, 21.0)) == pytest.approx(
        1.5
    )  # a slow round for both rows divides out
    # Rounds 2 and 3 slow for the float row, round 3 for the INT8 row: the medians come from different rounds.
    flt, q = (30.0, 45.0, 44.0), (20.0, 21.0, 29.0)
    assert (
        round_ratio(flt, q) == pytest.approx(44.0 / 29.0) and 44.0 / 21.0 > 2.0
    )  # the medians' ratio would say 2.1x
    assert round_ratio((30.0, None, 33.0), (20.0, 21.0, 22.0)) == pytest.approx(
        1.5
    )  # a failed round is skipped
    assert round_ratio((30.0, 31.0), (20.0, 21.0, 22.0)) is None  # not the same rounds: no per-round ratio
    assert round_ratio((), ()) is None


def test_apply_rounds_sets_the_median_spread_and_flag():
    from fundus_edge.bench.runner import apply_rounds

    def rnd(p50, p90, e2e):
        return {"p50_ms": p50, "p90_ms": p90, "e2e_p50_ms": e2e, "samples_ms": [p50 - 1, p50, p50 + 1]}

    rec = {"p50_ms": 10.0, "note": "pir failed (x); ran legacy"}
    apply_rounds(rec, [rnd(10.0, 11.0, 14.0), rnd(20.0, 22.0, 24.0), rnd(11.0, 12.0, 15.0)])
    assert (
        rec["p50_ms"] == 11.0
        and rec["p90_ms"] == 12.0
        and rec["e2e_p50_ms"] == 15.0
        and rec["timed_runs"] == 9
    )
    assert (
        rec["round_p50_ms"] == [10.0, 20.0, 11.0]
        and rec["spread_pct"] == pytest.approx(100 * 10 / 11)
        and rec["unsteady"] is True
    )
    assert rec["note"].startswith(
        "pir failed (x); ran legacy; unsteady: round p50s 10.0-20.0 ms differ by 91 %"
    )
    rec = {}
    apply_rounds(
        rec,
        [rnd(10.0, 11.0, 14.0), {"key": "k", "status": "run_failed", "error": "boom"}, rnd(10.5, 11.0, 14.0)],
    )
    assert (
        rec["rounds"] == 2
        and rec["round_p50_ms"] == [10.0, None, 10.5]
        and rec["p50_ms"] == 10.25
        and rec["unsteady"] is False
    )
    assert rec["note"] == "round 2 failed: boom"
    # A row whose rounds agree within 5 %, on a machine 3 % away from its usual speed, reports 8 %.
    steady = {}
    apply_rounds(steady, [rnd(10.0, 11.0, 14.0), rnd(10.5, 11.0, 14.0)])
    own = 100 * 0.5 / 10.25
    assert steady["round_spread_pct"] == pytest.approx(own) and steady["spread_pct"] == pytest.approx(own)
    assert steady["unsteady"] is False
    apply_rounds(steady, [rnd(10.0, 11.0, 14.0), rnd(10.5, 11.0, 14.0)], offset_pct=3.0)
    assert steady["spread_pct"] == pytest.approx(own + 3.0)

    from fundus_edge.bench.report import markdown

    r = BenchRecord.from_dict(
        {
            "variant": "v",
            "backend": "openvino",
            **{**rec, "round_p50_ms": [10.0, 30.0, 10.5]},
            "spread_pct": 190.0,
            "unsteady": True,
        }
    )
    assert r.round_p50_ms == (10.0, 30.0, 10.5)
    meta = {
        "machine": {"cpu": "X", "cores": 2, "isa_flags": []},
        "threads": 2,
        "images": "d",
        "image_size": "584x565",
        "date": "t",
        "peak": {},
        "rounds": 3,
    }
    md = markdown([r], meta)
    assert "| 10.2 (unsteady) | 190 % |" in md and "in each of 3 rounds" in md


def test_timing_rounds_group_engines_keep_families_together_and_alternate(tmp_path):
    from fundus_edge.bench.runner import Cell, timing_order

    cells = [
        Cell(v, tmp_path, e, p)
        for v in ("fp32", "small", "int8-nncf", "small-int8")
        for e, p in (("openvino", None), ("openvino", "bf16"), ("onnxruntime", None))
    ]
    keys = [[c.key for c in g] for g in timing_order(cells, 0)]
    assert keys == [
        [
            "fp32/openvino",
            "fp32/openvino/bf16",
            "int8-nncf/openvino",
            "int8-nncf/openvino/bf16",
            "small/openvino",
            "small/openvino/bf16",
            "small-int8/openvino",
            "small-int8/openvino/bf16",
        ],
        ["fp32/onnxruntime", "int8-nncf/onnxruntime", "small/onnxruntime", "small-int8/onnxruntime"],
    ]
    assert [[c.key for c in g] for g in timing_order(cells, 1)] == [g[::-1] for g in keys[::-1]]
    assert [[c.key for c in g] for g in timing_order(cells, 2)] == keys


def test_a_crash_in_a_timing_round_costs_that_cell_its_round_only(tmp_path, monkeypatch):
    """The round's process dies on the second cell: it is that round's gap, and a new process times the
    rest."""
    import json
    import subprocess

    from fundus_edge.bench import runner
    from fundus_edge.bench.cell import RoundSpec

    common = {"variant": "fp32", "backend": "onnxruntime", "model_dir": "m", "images": "i.npz", "threads": 1}
    timing = {"warmup": 0, "runs": 1, "min_runs": 1, "budget_s": 0.0, "format": "onnx"}
    specs = [RoundSpec(key=k, **common, **timing, slow=False, scored=False) for k in ("a", "b", "c", "d")]
    calls = []

    def fake_run(cmd, **kw):
        todo = json.loads(open(cmd[-2]).read())
        calls.append([s["key"] for s in todo])
        with open(cmd[-1], "a") as out:
            for s in todo:
                if s["key"] == "b":
                    return subprocess.CompletedProcess(
                        cmd, -11, "", "Fatal Python error: Segmentation fault\n"
                    )
                out.write(json.dumps({"key": s["key"], "status": "ok", "p50_ms": 1.0}) + "\n")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)
    seen = []
    got = runner.run_round_group(specs, tmp_path, seen.append)
    assert calls == [["a", "b", "c", "d"], ["c", "d"]] and sum(seen) == 4
    assert [got[k]["status"] for k in "abcd"] == ["ok", "run_failed", "ok", "ok"]
    assert got["b"]["error"] == "round process exited -11: Fatal Python error: Segmentation fault"


def test_headline_ratios_are_medians_of_per_round_ratios():
    from fundus_edge.bench.report import headline, ratio

    # The float row drifted in rounds 2 and 3, the INT8 row in round 3: medians 37.8 and 21.6 ms would say
    # 1.75x.
    flt = BenchRecord(
        "fp32", "openvino", precision="bf16", p50_ms=37.8, f1=0.8222, round_p50_ms=(24.0, 37.8, 38.0)
    )
    q = BenchRecord(
        "int8-nncf",
        "openvino",
        precision="int8+fp32",
        p50_ms=21.6,
        f1=0.8206,
        round_p50_ms=(20.0, 21.6, 32.0),
    )
    assert ratio(flt, q) == pytest.approx(1.2)  # per round 1.2, 1.75, 1.1875: the median
    line = [x for x in headline([flt, q]) if x.startswith("- INT8")][0]
    assert "int8-nncf (int8+fp32) 21.6 ms vs bf16 37.8 ms = 1.20x, F1 -0.0016" in line
    old = BenchRecord(
        "fp32", "openvino", precision="bf16", p50_ms=32.4
    )  # a record without rounds: the p50s' ratio
    assert ratio(old, q) == pytest.approx(1.5)


def test_each_round_times_a_cell_for_its_window_not_a_count():
    from fundus_edge.bench.cell import LATER_MIN_RUNS, MAX_RUNS, CellSpec, timing_policy
    from fundus_edge.measure.timing import time_calls

    spec = CellSpec(
        variant="v", backend="openvino", model_dir="m", images="i.npz", threads=2, batch=4,
        warmup=3, runs=30, min_runs=5, budget_s=12.0, window_s=0.1,
    )  # fmt: skip
    first = timing_policy(spec, slow=False, scored=True, n_images=20)
    # every image once, then the images in turn until the window has passed
    assert (first.min_runs, first.runs, first.budget_s) == (20, MAX_RUNS, 0.1)
    later = timing_policy(spec, slow=False, scored=True, n_images=20, first=False)
    assert later.min_runs == LATER_MIN_RUNS and later.budget_s == 0.1
    assert timing_policy(spec, slow=True, scored=True, n_images=20, first=False).min_runs == 3
    # A heavy model (>= 100 ms a call): one warm-up, every image once in the accuracy pass, three calls later
    heavy_first = timing_policy(spec, slow=False, scored=True, n_images=20, heavy=True)
    heavy_later = timing_policy(spec, slow=False, scored=True, n_images=20, first=False, heavy=True)
    assert (heavy_first.warmup, heavy_first.min_runs, first.warmup) == (1, 20, 3)
    assert (heavy_later.warmup, heavy_later.min_runs) == (1, 3)
    assert spec.round_spec("k", "onnx", slow=False, scored=True, heavy=True).heavy
    # A 1 ms call is timed for the whole window (~90 calls), not 20 times; a 30 ms one 20 times.
    fast = time_calls(lambda: time.sleep(0.001), first)
    slow = time_calls(lambda: time.sleep(0.03), first)
    assert fast.runs > 30 and slow.runs == 20


def test_machine_terms_range_over_the_run_and_offset_from_earlier_runs(tmp_path):
    from fundus_edge.bench.history import probe_history
    from fundus_edge.bench.runner import machine_terms

    rng, offset = machine_terms([10.0, 11.0, 10.5], [10.0, 9.0, 9.5, 20.0])
    assert rng == pytest.approx(100 / 10.5) and offset == pytest.approx(100 * 0.75 / 9.75)
    assert machine_terms([10.0, 11.0], []) == (pytest.approx(100 / 10.5), None)
    assert machine_terms([], [10.0]) == (None, None)
    # The history: earlier runs on the same CPU and flags, by the same probe; anything else is skipped.
    me = {"cpu": "AMD EPYC", "isa_flags": ["avx2", "avx512f"]}

    def run(name, machine, method, median):
        meta = {"machine": machine, "speed_probe": {"method": method, "median_ms": median}}
        (tmp_path / name).write_text(json.dumps({"meta": meta, "results": []}))

    run("a.json", me, "conv", 30.0)
    run("b.json", me, "conv", 33.0)
    run("c.json", me, "numpy", 50.0)  # another probe
    run("d.json", {**me, "isa_flags": ["avx2"]}, "conv", 80.0)  # another flavour
    (tmp_path / "e.json").write_text("not json")
    assert probe_history(me, "conv", tmp_path) == [30.0, 33.0]


def test_floor_names_a_folder_without_onnx(tmp_path, capsys):
    from fundus_edge.bench.floor import main

    with pytest.raises(SystemExit) as e:
        main([str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err[-1].endswith(
        f"{tmp_path}: no model.onnx (the floor reads the float ONNX graph)"
    )
