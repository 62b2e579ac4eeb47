"""--precision auto: the fastest precision this CPU runs among those the manifest records as validated on
training images, never an unvalidated one; an INT8 model keeps its own; predict says what it chose; the Ray
resume key records what auto resolved to. CPU flags are faked where the choice depends on them."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from fundus_edge.runtime import cpu
from fundus_edge.runtime.engines import installed_engines
from fundus_edge.runtime.manifest import MANIFEST, read_manifest, record_validation, write_manifest
from fundus_edge.runtime.precision import TOLERANCE, choose_precision
from fundus_edge.runtime.predictor import Predictor

from .conftest import synthetic_fundus

BF16 = frozenset({"avx2", "avx512f", "avx512_bf16"})
NO_BF16 = frozenset({"avx2", "fma"})
needs_openvino = pytest.mark.skipif("openvino" not in installed_engines(), reason="openvino not installed")


def _record(man, f1=0.8000, ref=0.8003, passed=True, **kw) -> dict:
    """A validation record of the manifest's ONNX file at its threshold (as export/validate.py writes one)."""
    return {
        "f1": f1,
        "f1_reference": ref,
        "reference": "fp32 through openvino",
        "passed": passed,
        "tolerance": TOLERANCE,
        "threshold": float(man.threshold),
        "files": {"model.onnx": man.files["model.onnx"]},
        "images": "DRIVE training (20)",
        **kw,
    }


def _fake_flags(monkeypatch, flags: frozenset) -> None:
    monkeypatch.setattr(cpu, "cpu_model_and_flags", lambda path="/proc/cpuinfo": ("fake CPU", flags))


@pytest.fixture
def validated(tiny_model, tmp_path) -> Path:
    """A copy of the tiny model whose manifest records OpenVINO bf16 as validated."""
    d = shutil.copytree(tiny_model, tmp_path / "validated")
    record_validation(d, "openvino", {"bf16": _record(read_manifest(d))})
    return d


def test_auto_picks_a_validated_bf16_on_a_cpu_with_bf16_and_fp32_without(validated):
    man = read_manifest(validated)
    c = choose_precision(man, "openvino", flags=BF16)
    assert (c.asked, c.precision) == ("auto", "bf16")
    assert c.reason == "validated on DRIVE training (20), F1 Δ -0.0003; this CPU has avx512_bf16"
    c = choose_precision(man, "openvino", flags=NO_BF16)
    assert c.precision == "fp32" and "bf16 validated, but this CPU lacks avx512_bf16 and amx_bf16" in c.reason
    assert choose_precision(man, "openvino", flags=frozenset({"amx_bf16"})).precision == "bf16"


def test_auto_never_picks_an_unvalidated_precision(validated):
    man = read_manifest(validated)
    rec = man.validated["openvino"]["bf16"]
    cases = {
        "no bf16 record": {"openvino": {"fp16": rec}},
        "no section": {},
        "failed": {"openvino": {"bf16": {**rec, "passed": False}}},
        "passed, but beyond the tolerance": {
            "openvino": {"bf16": {**rec, "f1": rec["f1_reference"] - 2 * TOLERANCE}}
        },
        "another threshold": {"openvino": {"bf16": {**rec, "threshold": rec["threshold"] + 0.1}}},
        "other files": {"openvino": {"bf16": {**rec, "files": {"model.onnx": "0" * 64}}}},
        "no files": {"openvino": {"bf16": {k: v for k, v in rec.items() if k != "files"}}},
        "another engine's": {"onnxruntime": {"bf16": rec}},
    }
    for why, section in cases.items():
        c = choose_precision(replace(man, validated=section), "openvino", flags=BF16)
        assert c.precision == "fp32", why
    # fp16 validated and computable, bf16 not validated: fp16
    assert (
        choose_precision(
            replace(man, validated={"openvino": {"fp16": rec}}), "openvino", flags=frozenset({"avx512_fp16"})
        ).precision
        == "fp16"
    )


def test_auto_keeps_an_int8_models_own_precision_and_other_engines_fp32(validated):
    man = read_manifest(validated)
    int8 = replace(man, quantization={"method": "ptq", "engine": "onnxruntime"})
    assert choose_precision(int8, "openvino", flags=BF16).precision is None
    assert choose_precision(int8, "onnxruntime", flags=BF16).precision is None
    assert choose_precision(man, "onnxruntime", flags=BF16).precision == "fp32"
    assert choose_precision(man, "paddle", flags=BF16).precision == "fp32"
    assert choose_precision(man, "openvino", device="gpu", flags=BF16).precision == "fp32"
    assert choose_precision(man, "openvino", asked="fp32", flags=BF16).precision == "fp32"
    assert choose_precision(man, "openvino", asked=None, flags=BF16).precision is None


def test_an_old_manifest_loads_without_the_section_and_is_rewritten_as_it_was(tiny_model, tmp_path):
    d = shutil.copytree(tiny_model, tmp_path / "old")
    before = (d / MANIFEST).read_text()
    assert "validated" not in before and read_manifest(d).validated == {}
    write_manifest(d, read_manifest(d))
    assert (d / MANIFEST).read_text() == before


def test_recording_a_validation_never_reblesses_a_changed_file(validated):
    from fundus_edge.runtime.errors import IntegrityError

    with open(validated / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(IntegrityError, match="model.onnx: sha256 does not match"):
        record_validation(validated, "openvino", {"fp16": {"passed": False}})


@needs_openvino
def test_predictor_load_defaults_to_auto(tiny_model, validated, monkeypatch):
    _fake_flags(monkeypatch, NO_BF16)
    p = Predictor.load(validated, backend="openvino", threads=1)
    assert (
        p.precision == "fp32"
        and p.precision_choice.asked == "auto"
        and "lacks avx512_bf16" in p.precision_line()
    )
    p = Predictor.load(tiny_model, backend="openvino", threads=1)  # nothing validated
    assert p.precision == "fp32" and "no lower precision validated for openvino" in p.precision_line()
    assert (
        Predictor.load(tiny_model, backend="onnxruntime", threads=1).precision_line()
        == "precision fp32 (onnxruntime runs the file's own precision)"
    )


@needs_openvino
def test_auto_falls_back_to_fp32_when_the_engine_refuses_the_validated_precision(validated, monkeypatch):
    """The flags say bf16, OpenVINO's capabilities do not: auto runs fp32 and says why (never a failure)."""
    import fundus_edge.runtime.engines.openvino as engine

    _fake_flags(monkeypatch, BF16)
    monkeypatch.setattr(engine, "capabilities", lambda core, device: {"FP32", "INT8"})
    p = Predictor.load(validated, backend="openvino", threads=1)
    assert (
        p.precision == "fp32"
        and "bf16 validated, but openvino: precision bf16 cannot be honoured" in p.precision_line()
    )


@needs_openvino
def test_predict_prints_what_auto_chose(validated, tmp_path, monkeypatch, capsys):
    import cv2
    import openvino as ov
    from fundus_edge.runtime.engines.openvino import capabilities

    from fundus_edge.cli import main

    rgb, _, _ = synthetic_fundus(3)
    cv2.imwrite(str(tmp_path / "img.png"), rgb[..., ::-1])
    _fake_flags(monkeypatch, BF16)
    native = "BF16" in capabilities(ov.Core(), "CPU")
    capsys.readouterr()
    assert (
        main(
            [
                "predict",
                str(validated),
                str(tmp_path / "img.png"),
                "-o",
                str(tmp_path / "out"),
                "--backend",
                "openvino",
                "--threads",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    line = next(x for x in capsys.readouterr().err.splitlines() if x.startswith("model "))
    if native:  # this CPU computes bf16: auto runs the validated bf16
        assert line.endswith(
            "precision bf16 (validated on DRIVE training (20), F1 Δ -0.0003; this CPU has avx512_bf16)"
        )
    else:
        assert "precision fp32 (bf16 validated, but openvino: precision bf16 cannot be honoured" in line
    _fake_flags(monkeypatch, NO_BF16)
    assert (
        main(
            [
                "predict",
                str(validated),
                str(tmp_path / "img.png"),
                "-o",
                str(tmp_path / "out2"),
                "--backend",
                "openvino",
                "--threads",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    assert (
        "precision fp32 (bf16 validated, but this CPU lacks avx512_bf16 and amx_bf16)"
        in capsys.readouterr().err
    )
    assert (
        main(
            [
                "predict",
                str(validated),
                str(tmp_path / "img.png"),
                "-o",
                str(tmp_path / "out3"),
                "--backend",
                "openvino",
                "--threads",
                "1",
                "--no-progress",
                "--precision",
                "fp32",
            ]
        )
        == 0
    )
    assert "precision fp32 (asked)" in capsys.readouterr().err


@needs_openvino
def test_the_ray_resume_key_records_the_resolved_precision(validated, tmp_path, monkeypatch):
    from fundus_edge.archive.job import SegmentOptions, job_key
    from fundus_edge.archive.resume import claim
    from fundus_edge.archive.storage import Storage
    from fundus_edge.runtime.errors import InputError

    _fake_flags(monkeypatch, BF16)
    with_bf16 = job_key(SegmentOptions(validated, backend="openvino"))
    assert (with_bf16.precision, with_bf16.precision_resolved) == ("auto", "bf16")
    _fake_flags(monkeypatch, NO_BF16)
    without = job_key(SegmentOptions(validated, backend="openvino"))
    assert (without.precision, without.precision_resolved) == ("auto", "fp32")
    assert (
        job_key(SegmentOptions(validated, backend="openvino", precision=None)).precision_resolved == ""
    )  # the model's own
    store = Storage(tmp_path / "out")
    claim(store, without, force=False)
    with pytest.raises(InputError, match="precision resolved fp32 there, bf16 now"):
        claim(store, with_bf16, force=False)


def test_an_old_resume_key_without_the_resolved_precision_still_reads(tmp_path):
    import json

    from fundus_edge.archive.resume import KEY_FILE, read_key
    from fundus_edge.archive.storage import Storage

    store = Storage(tmp_path / "out")
    old = dict(
        model="m (fp32)",
        model_sha256="a" * 64,
        backend="auto",
        device="cpu",
        precision="",
        rescale=True,
        crop_fov=True,
        fov="auto",
        tool_version="0.1.0",
        schema=2,
    )
    store.mkdir()
    store.write_bytes(KEY_FILE, json.dumps(old).encode())
    assert read_key(store).precision_resolved == ""


@needs_openvino
def test_validate_records_checks_from_training_images_only(tiny_model, drive_synth, tmp_path, monkeypatch):
    import fundus_edge.train.data as data
    from fundus_edge.export.validate import validate
    from fundus_edge.runtime.errors import InputError

    d = shutil.copytree(tiny_model, tmp_path / "v")
    read = []
    real = data.load_sample
    monkeypatch.setattr(data, "load_sample", lambda s: read.append(s.image) or real(s))
    lines = []
    checks = validate(d, drive_synth, engines=["openvino", "onnxruntime"], threads=1, log=lines.append)
    assert read and all("training" in p.parts and "test" not in p.parts for p in read)
    man = read_manifest(d)
    if cpu.precision_flag("bf16") is None:
        assert (
            checks == []
            and any("openvino bf16: not checked (this CPU lacks" in x for x in lines)
            and man.validated == {}
        )
    else:
        (c,) = checks
        rec = man.validated["openvino"]["bf16"]
        assert (
            (c.engine, c.precision) == ("openvino", "bf16")
            and rec["passed"] is c.passed
            and rec["f1"] == round(c.f1, 5)
        )
        assert rec["files"] == {"model.onnx": man.files["model.onnx"]} and rec["threshold"] == man.threshold
        assert choose_precision(man, "openvino").precision == ("bf16" if c.passed else "fp32")
    assert "onnxruntime: nothing to check (it runs fp32 only here)" in lines
    with pytest.raises(InputError, match="not a DRIVE folder with training/images"):
        validate(d, tmp_path, engines=["openvino"])
