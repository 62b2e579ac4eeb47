"""The device chooses (issue 40, part 2): a bundle of candidates packed from a record, selftest's choice in
choice.yaml, Predictor.load running it, a tampered file in any candidate failing the whole bundle; pack's
engine pins from the engine table and its errors naming the nearest rows; the runtime-only venv (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fundus_edge.deploy import choose as choose_mod
from fundus_edge.deploy.bundle import read_bundle
from fundus_edge.deploy.choose import ensure_choice
from fundus_edge.deploy.pack import PackOptions, pack, requirements_text
from fundus_edge.deploy.pack_set import pack_candidates
from fundus_edge.deploy.pick import Bounds, read_record
from fundus_edge.deploy.platforms import here
from fundus_edge.deploy.selftest import Failed, selftest
from fundus_edge.runtime.bundle_choice import CHOICE, read_choice, read_set
from fundus_edge.runtime.cpu import cpu_identity
from fundus_edge.runtime.engines import installed_engines
from fundus_edge.runtime.engines.table import ENGINE_TABLE
from fundus_edge.runtime.errors import EngineUnavailable, InputError, IntegrityError, ModelError
from fundus_edge.runtime.predictor import Predictor

from tests.test_deploy import opts, row, write_record

ROOT = Path(__file__).resolve().parents[1]
ENGINES = [e for e in ("openvino", "onnxruntime") if e in installed_engines()]
needs_two = pytest.mark.skipif(len(ENGINES) < 2, reason="needs OpenVINO and ONNX Runtime")


@pytest.fixture()
def record(tmp_path, drive_synth) -> Path:
    return write_record(
        tmp_path / "results.json",
        [
            row("paddle", 5.0, 0.85),  # fastest, but no device runs Paddle Inference: passed over
            row("openvino", 20.0, 0.85),
            row("onnxruntime", 30.0, 0.85),
            row("litert", 10.0, 0.80),  # F1 below the bound
        ],
        drive_synth,
    )


@pytest.fixture()
def packed_set(tmp_path, tiny_model, record) -> Path:
    return pack_candidates(read_record(record), Bounds(0.82), 3, opts(tmp_path, tiny_model)).folder


@needs_two
def test_pack_candidates_packs_the_fastest_packable_rows(tmp_path, tiny_model, record):
    r = pack_candidates(read_record(record), Bounds(0.82), 3, opts(tmp_path, tiny_model))
    assert [c.name for c in r.index.candidates] == ["tiny-openvino", "tiny-onnxruntime"]
    assert len(r.passed_over) == 1 and "packable=False" in r.passed_over[0]
    s = read_set(r.folder)
    assert s.machine == here().machine and s.cpu_identity == cpu_identity().to_dict()
    for c in s.candidates:  # each its own single bundle pinning its own engine
        b = read_bundle(r.folder / "candidates" / c.name)
        assert b.engine == c.engine and len(b.goldens) == 2
        pins = (r.folder / "candidates" / c.name / "requirements.txt").read_text()
        assert f"{ENGINE_TABLE[c.engine].pip}==" in pins
    pins = [x.split("==")[0] for x in (r.folder / "requirements.txt").read_text().splitlines() if "==" in x]
    assert {"openvino", "onnxruntime", "numpy"} <= set(pins) and not [x for x in pins if "paddle" in x]
    assert set(s.files) >= {"README.md", "requirements.txt", "candidates/tiny-openvino/model.onnx"}
    with pytest.raises(ModelError, match="a bundle of 2 candidates, not one model"):
        read_bundle(r.folder)
    with pytest.raises(InputError, match="--candidates 6: 1 to 5"):
        pack_candidates(read_record(record), Bounds(0.82), 6, opts(tmp_path, tiny_model, force=True))


@needs_two
def test_selftest_chooses_the_fastest_and_keeps_the_choice(packed_set):
    r = selftest(packed_set, runs=2)
    assert r.passed, r.line
    assert r.line.startswith("PASS: bundle choice: tiny on ") and "2 of 2 candidates pass" in r.line
    c = read_choice(packed_set)
    assert c.cpu_identity == cpu_identity().to_dict() and c.machine == here().machine and c.how == "timed"
    timed = {t.name: t for t in c.timed}
    assert set(timed) == {"tiny-openvino", "tiny-onnxruntime"}
    assert all(t.passed and len(t.rounds) == choose_mod.ROUNDS and t.p50_ms > 0 for t in timed.values())
    assert c.candidate == min(timed, key=lambda n: timed[n].p50_ms)
    assert "chose again: no choice yet" in r.notes

    again = selftest(packed_set, runs=2)  # same CPU, same bundle: the choice stands
    assert again.passed and not any(n.startswith("chose again") for n in again.notes)
    assert read_choice(packed_set) == c
    rechecked = selftest(packed_set, runs=2, recheck=True)
    assert rechecked.passed and "chose again: --recheck" in rechecked.notes


@needs_two
def test_predictor_load_runs_the_choice_and_refuses_another_cpus(packed_set, capsys):
    with pytest.raises(
        ModelError, match=r"no choice for this CPU \(no choice yet\); run `fundus-edge selftest"
    ):
        Predictor.load(packed_set)
    line = ensure_choice(packed_set, runs=2)
    assert line.startswith("bundle choice: tiny on ") and line.endswith("chosen now (no choice yet)")
    assert ensure_choice(packed_set, runs=2) is None  # it stands now
    c = read_choice(packed_set)
    p = Predictor.load(packed_set)
    assert p.bundle_choice.line.startswith(f"bundle choice: tiny on {c.engine} (chosen by selftest on")
    assert p.backend == c.engine and p.model_dir == packed_set / "candidates" / c.candidate
    other = next(e for e in ENGINES if e != c.engine)
    assert Predictor.load(packed_set, backend=other).backend == other
    with pytest.raises(EngineUnavailable, match="no candidate on 'litert' passed selftest; nearest: "):
        Predictor.load(packed_set, backend="litert")

    # Chosen on another CPU: refused by the runtime, chosen again by selftest (and by ensure_choice).
    d = yaml.safe_load((packed_set / CHOICE).read_text())
    d["cpu_identity"] = {**d["cpu_identity"], "cpu_model": 999, "generation": None}
    (packed_set / CHOICE).write_text(yaml.safe_dump(d))
    with pytest.raises(ModelError, match=r"no choice for this CPU \(chosen on "):
        Predictor.load(packed_set)
    r = selftest(packed_set, runs=2)
    assert r.passed and any(n.startswith("chose again: chosen on ") for n in r.notes)
    assert read_choice(packed_set).cpu_identity == cpu_identity().to_dict()


@needs_two
def test_a_tampered_file_in_any_candidate_fails_the_whole_bundle(packed_set):
    assert selftest(packed_set, runs=2).passed
    chosen = read_choice(packed_set).candidate
    other = next(c.name for c in read_set(packed_set).candidates if c.name != chosen)
    w = packed_set / "candidates" / other / "model.onnx"
    data = bytearray(w.read_bytes())
    data[100] ^= 0x01
    w.write_bytes(bytes(data))
    r = selftest(packed_set, runs=2)
    assert (
        not r.passed and r.line == f"FAIL: {w}: sha256 does not match bundle.yaml (file changed or corrupted)"
    )
    with pytest.raises(IntegrityError, match="sha256 does not match"):
        Predictor.load(packed_set)  # though the chosen candidate is intact


@needs_two
def test_a_failing_candidate_is_recorded_and_not_chosen(packed_set, monkeypatch):
    real = choose_mod.check_bundle

    def check(folder, threads, notes):
        if folder.name == "tiny-openvino":
            raise Failed("golden masks differ: vessel Dice 0.5000 < 0.99")
        return real(folder, threads, notes)

    monkeypatch.setattr(choose_mod, "check_bundle", check)
    r = selftest(packed_set, runs=2)
    assert r.passed and "1 of 2 candidates pass" in r.line and "tiny-openvino FAIL" in r.line
    c = read_choice(packed_set)
    assert c.candidate == "tiny-onnxruntime"
    bad = next(t for t in c.timed if t.name == "tiny-openvino")
    assert not bad.passed and bad.p50_ms is None and "Dice 0.5000" in bad.reason

    monkeypatch.setattr(choose_mod, "check_bundle", lambda *a: (_ for _ in ()).throw(Failed("no good")))
    r = selftest(packed_set, runs=2, recheck=True)
    assert not r.passed and r.line.startswith("FAIL: no candidate passes: tiny-openvino: no good")


# -- pack: pins from the engine table, errors that help ---------------------------------------------------
def test_pins_come_from_the_engine_table(monkeypatch):
    spec = ENGINE_TABLE["onnxruntime"]
    monkeypatch.setitem(ENGINE_TABLE, "onnxruntime", type(spec)(**{**spec.__dict__, "pip": "numpy"}))
    text = requirements_text("onnxruntime", here())
    assert text.count("numpy==") == 2  # the runtime's numpy and the (renamed) engine pin


def test_pack_refuses_an_unpackable_engine_in_one_line(tmp_path, tiny_model, record):
    with pytest.raises(
        InputError, match=r"^paddle: Paddle Inference is not packed for devices .*packable=False"
    ):
        pack("tiny/paddle", read_record(record), opts(tmp_path, tiny_model))
    assert not (tmp_path / "bundle").exists()


def test_pack_errors_name_the_nearest_rows(tmp_path, tiny_model, drive_synth):
    rows = [row(e, 10.0 + i, 0.85, variant=f"v{i}") for i, e in enumerate(["onnxruntime"] * 70)]
    rows.append(row("onnxruntime", 40.0, 0.85))
    rec = read_record(write_record(tmp_path / "r.json", rows, drive_synth))
    with pytest.raises(InputError) as e:
        pack("tiny/onnxrutime", rec, opts(tmp_path, tiny_model))
    msg = str(e.value)
    assert "nearest: tiny/onnxruntime" in msg and msg.count(", ") <= 2 and "\n" not in msg
    assert f"`python -m fundus_edge.deploy.pick {rec.path}`" in msg and "v69" not in msg
    with pytest.raises(InputError, match=r"--engine 'onnxrutime': no such engine; nearest: onnxruntime"):
        pack(str(tiny_model), rec, opts(tmp_path, tiny_model, engine="onnxrutime"))
    with pytest.raises(
        InputError, match=r"no CPU row 'tiny/onnxruntime/fp23'; nearest: tiny/onnxruntime/fp32"
    ):
        pack(str(tiny_model), rec, opts(tmp_path, tiny_model, engine="onnxruntime", precision="fp23"))


@pytest.mark.skipif("onnxruntime" not in installed_engines(), reason="needs ONNX Runtime")
def test_pack_a_model_folder_with_precision_fp32(tmp_path, tiny_model, record):
    # fp32 rows carry no precision part in their keys; --precision fp32 names them all the same
    b = pack(
        str(tiny_model),
        read_record(record),
        opts(tmp_path, tiny_model, engine="onnxruntime", precision="fp32"),
    )
    assert (
        b.bundle.engine == "onnxruntime"
        and b.bundle.precision == "fp32"
        and b.bundle.validated.p50_ms == 30.0
    )


# -- the device's own venv (slow) ------------------------------------------------------------------------
@pytest.mark.slow
def test_litert_bundle_selftests_in_a_runtime_only_venv(tmp_path, drive_root):
    from fundus_edge.deploy.runtime_venv import FORBIDDEN, run_device

    if "litert" not in installed_engines():
        pytest.skip("LiteRT not installed here (its goldens are made here)")
    model = ROOT / "models" / "s2d-fast"
    rec = write_record(
        tmp_path / "r.json",
        [row("litert", 42.0, 0.8232, variant="s2d-fast", format="tflite", model_dir=str(model), threads=2)],
        drive_root,
    )
    b = pack(str(model), read_record(rec), PackOptions(out=tmp_path / "b", engine="litert", threads=2)).folder
    assert "ai-edge-litert==" in (b / "requirements.txt").read_text()
    r = run_device(b, tmp_path / "venv", runs=2)
    assert r.importable == () and r.passed, r.line
    names = {p.split("==")[0].lower() for p in r.packages}
    assert "ai-edge-litert" in names and not names & (
        {m.replace("_", "-") for m in FORBIDDEN} | {"paddlepaddle"}
    )
