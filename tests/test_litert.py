"""LiteRT, the fourth engine: the converter (fundus_edge.export.litert, in its own venv), the engine over
ai_edge_litert's Interpreter, and the .tflite files shipped for s2d-fast and s2d-wnet."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fundus_edge.export import litert as conv
from fundus_edge.runtime.engines import ENGINES, engine_class
from fundus_edge.runtime.errors import EngineUnavailable, InputError, ModelError
from fundus_edge.runtime.formats import FORMATS, formats_for
from fundus_edge.runtime.manifest import read_manifest, sha256
from fundus_edge.runtime.precision import passed
from fundus_edge.runtime.predictor import Predictor, ScaleOptions

from .conftest import synthetic_fundus

MODELS = Path(__file__).resolve().parents[1] / "models"
HAVE_LITERT = importlib.util.find_spec("ai_edge_litert") is not None
needs_litert = pytest.mark.skipif(not HAVE_LITERT, reason="ai-edge-litert not installed")
# (model folder, format, its float model): the LiteRT files shipped so a device needs no converter.
SHIPPED = [
    ("s2d-fast", "tflite", "s2d-fast"),
    ("s2d-wnet", "tflite", "s2d-wnet"),
    ("wnet", "tflite", "wnet"),
    # default ships fp16 weights (its fp32 file would take the folder past 5 MB: docs/litert.md)
    ("default", "tflite-fp16", "default"),
    ("s2d-fast-int8-litert", "tflite-int8", "s2d-fast"),
    ("s2d-wnet-int8-litert", "tflite-int8", "s2d-wnet"),
    ("wnet-int8-litert", "tflite-int8", "wnet"),
    ("default-int8-litert", "tflite-int8", "default"),
]
# The bench's LiteRT rows: each model's float variant (the default's is fp32) and its INT8 folder's variant.
BENCH_ROWS = {"fp32": "int8-litert", **{m: f"{m}-int8-litert" for m in ("s2d-fast", "s2d-wnet", "wnet")}}


def _converter_or_skip() -> Path:
    try:
        return conv.converter_python()
    except ModelError as exc:
        pytest.skip(f"no LiteRT converter venv: {exc}")


def test_litert_is_registered_for_its_formats_only():
    assert ENGINES["litert"] == ("litert", "ai_edge_litert")
    for fmt in ("tflite", "tflite-int8", "tflite-fp16"):
        assert FORMATS[fmt].engines == ("litert",)
    assert formats_for("litert", ["onnx", "pir", "tflite-fp16", "tflite"]) == ["tflite", "tflite-fp16"]
    assert formats_for("onnxruntime", ["tflite", "tflite-int8"]) == []


def test_without_ai_edge_litert_a_clear_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ai_edge_litert" else real(name, *a)
    )
    with pytest.raises(EngineUnavailable, match=r"'litert' is not installed \(pip install ai-edge-litert\)"):
        engine_class("litert")
    with pytest.raises(EngineUnavailable, match="not installed"):
        Predictor.load(MODELS / "s2d-fast-int8-litert", backend="litert")


def test_without_the_converter_venv_one_clear_line(tmp_path, capsys):
    with pytest.raises(ModelError, match=r"no LiteRT converter venv there; make it with .*--setup"):
        conv.converter_python(tmp_path / "none")
    rc = conv.main([str(MODELS / "s2d-fast"), "--venv", str(tmp_path / "none"), "--precisions", "fp16"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith("error: ") and "--setup" in err[0]


def test_existing_files_are_not_replaced_without_force(tmp_path):
    with pytest.raises(InputError, match=r"model.tflite: exists \(use --force"):
        conv.convert(MODELS / "s2d-fast", ("fp32",), venv=tmp_path / "none")


def test_folding_transpose_bias_keeps_the_output(tmp_path):
    src = MODELS / "s2d-fast" / "model.onnx"
    n = conv.fold_transpose_bias(src, tmp_path / "folded.onnx")
    assert n == 3  # every ConvTranspose of s2d-fast had a separate bias Add
    assert conv._check_same(src, tmp_path / "folded.onnx", 4) < 1e-6
    import onnx

    g = onnx.load(str(tmp_path / "folded.onnx")).graph
    assert "Add" not in {n.op_type for n in g.node}
    assert all(len(n.input) == 3 for n in g.node if n.op_type == "ConvTranspose")


@needs_litert
@pytest.mark.parametrize("name,fmt,float_name", SHIPPED)
def test_shipped_tflite_is_intact_and_agrees_with_onnx(name, fmt, float_name):
    d = MODELS / name
    man = read_manifest(d)
    assert fmt in man.formats and (d / man.formats[fmt][0]).stat().st_size <= 5 * 1024 * 1024
    if fmt == "tflite-int8":  # the INT8 folder holds nothing else (a float folder holds every format)
        assert sum(f.stat().st_size for f in d.iterdir() if f.is_file()) <= 5 * 1024 * 1024
    if fmt == "tflite-int8":
        src = man.source["float_model"]
        assert src["manifest_sha256"] == sha256(MODELS / float_name / "manifest.yaml")
        io = conv.tflite_io(d / man.formats[fmt][0])
        assert (io["input"], io["output"]) == (man.quantization["input"], man.quantization["output"])
        # validated on the training images against the float model through the same engine
        rec = man.validated["litert"]["int8"]
        assert passed(rec, man) and rec["images"] == "DRIVE training (20)"
    p = Predictor.load(d, backend="litert", threads=1)  # checks the file's sha256 against the manifest
    # int8+fp32: wnet's INT8 keeps its U-Nets' first and last convolutions, concatenations and softmaxes in
    # float (the converter's --float-layers / --float-ops, chosen on the training images: litert.md)
    own = "int8+fp32" if (man.quantization or {}).get("float_layers") else "int8"
    want = {"tflite-int8": own, "tflite-fp16": "fp16-as-fp32"}.get(fmt, "fp32")
    assert p.format == fmt and p.precision == want
    assert p.engine.delegated >= 1  # XNNPACK took (most of) the graph
    rgb, _, _ = synthetic_fundus(3, 584, 565)
    ref = Predictor.load(MODELS / float_name, backend="onnxruntime", threads=1, precision=None)
    a, b = p.predict(rgb), ref.predict(rgb)
    diff = np.abs(a.prob - b.prob)
    if fmt == "tflite":
        assert diff.max() < 1e-4
    elif fmt == "tflite-fp16":  # fp16 weights: close, and the masks agree but for pixels at the threshold
        assert diff.mean() < 1e-3 and np.mean(a.mask != b.mask) < 5e-4
    else:  # full-integer: the probability is quantized in steps of 1/256
        # The synthetic image has only 100-300 vessel pixels, too few for a Dice to mean anything (0.85-0.97
        # here): the masks may differ on at most 0.05 % of its pixels (measured 0.0003-0.012 %). The Dice
        # guard (>= 0.98 on DRIVE test, inside the FOV) is the bench's (docs/litert.md, "In the bench").
        assert diff.mean() < 0.01 and np.mean(a.mask != b.mask) < 5e-4


@needs_litert
def test_threads_are_honoured():
    """XNNPACK's thread pool: ``threads`` k adds k - 1 worker threads to the process, none before the load."""
    code = (
        "import os, sys, numpy as np\n"
        "from pathlib import Path\n"
        "from fundus_edge.runtime.engines import EngineOptions, engine_class\n"
        "n = lambda: len(os.listdir('/proc/self/task'))\n"
        "before = n()\n"
        f"e = engine_class('litert')(Path({str(MODELS / 's2d-fast')!r}), 'tflite', ['model.tflite'],"
        " EngineOptions(threads=int(sys.argv[1])), False)\n"
        "e.load(); e.run(np.zeros((1, 4, 64, 64), np.float32))\n"
        "print(n() - before)\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    added = {
        t: int(
            subprocess.run(
                [sys.executable, "-c", code, str(t)], env=env, capture_output=True, text=True, check=True
            ).stdout.split()[-1]
        )
        for t in (1, 3)
    }
    assert added == {1: 0, 3: 2}


@needs_litert
def test_engine_refuses_a_precision_it_cannot_run():
    with pytest.raises(EngineUnavailable, match="cannot be honoured"):
        Predictor.load(MODELS / "s2d-fast", backend="litert", precision="bf16")
    with pytest.raises(EngineUnavailable, match="cannot be honoured"):
        Predictor.load(MODELS / "s2d-fast-int8-litert", backend="litert", precision="fp32")


@needs_litert
def test_converter_end_to_end_on_a_tiny_model(tiny_model, drive_synth, tmp_path):
    """fp32, fp16 weights and full-integer INT8 from a tiny trained model, run through the engine at its own
    size and at another (resize_tensor_input), against ONNX Runtime on the same file set."""
    _converter_or_skip()
    d = Path(shutil.copytree(tiny_model, tmp_path / "tiny"))
    onnx_sha = read_manifest(d).files["model.onnx"]
    r = conv.convert(d, ("fp32", "fp16", "int8"), drive_synth, tmp_path / "tiny-int8-litert", 6, hw=(64, 64))
    man = read_manifest(d)
    assert {"tflite", "tflite-fp16"} <= set(man.formats) and man.files["model.onnx"] == onnx_sha
    assert man.engines["litert"]["converted_at"] == "64x64"
    q = read_manifest(r.int8_dir)
    assert set(q.formats) == {"tflite-int8"} and q.quantization["calibration_images"] == 4  # 6 minus 2 val
    rgb, _, _ = synthetic_fundus(7, 72, 68)
    # The network's output brought back to the image's size bilinearly: the default "mask" upsampler moves
    # the pixels beside the thresholded mask's edge, so a probability within fp16's rounding (~1e-3) of this
    # barely trained model's threshold flips a 3 x 3 patch by ~0.16 -- a step of the upsampler by design,
    # not the conversion this compares (the fp16 engine's own output is within 1e-3 of fp32's).
    smooth = ScaleOptions(upsample="linear")
    ref = Predictor.load(d, backend="onnxruntime", precision=None, scale=smooth).predict(rgb, fov=None).prob
    for folder, fmt, prec, tol in (
        (d, "tflite", "fp32", 1e-4),
        (d, "tflite-fp16", "fp16-as-fp32", 0.02),
        (r.int8_dir, "tflite-int8", "int8", 0.25),
    ):
        p = Predictor.load(folder, backend="litert", fmt=fmt, threads=1, scale=smooth)
        assert p.precision == prec
        got = p.predict(rgb, fov=None).prob  # 72 x 68 -> padded to 72 x 72, not the 64 x 64 converted
        assert got.shape == ref.shape and np.abs(got - ref).max() < tol, (fmt, np.abs(got - ref).max())
    with pytest.raises(EngineUnavailable, match="fp16"):
        Predictor.load(d, backend="litert", fmt="tflite-fp16", precision="fp16")


def test_the_bench_has_a_litert_int8_row_per_shipped_folder_held_to_its_float_model():
    from fundus_edge.quantize.variants import DEFAULT_BENCH, ROWS, float_counterpart

    for flt, int8 in BENCH_ROWS.items():
        assert flt in DEFAULT_BENCH and int8 in DEFAULT_BENCH
        assert ROWS[int8].int8 == "litert" and float_counterpart(int8) == flt


def test_the_bench_takes_the_shipped_litert_folders_and_the_default_with_its_tflite(tiny_model, tmp_path):
    """The shipped LiteRT INT8 folders are the bench's builds (no converter on a fresh clone), and the
    default's fp32 variant is the shipped default itself once it holds model.tflite (a re-export would
    drop it); a default without LiteRT files is exported as before."""
    from types import SimpleNamespace

    from fundus_edge.bench.variants import prepare_variants, shipped_build

    cfg = SimpleNamespace(shipped=MODELS, models_dir=tmp_path / "build")
    for flt, int8 in BENCH_ROWS.items():
        kind = "variant" if flt == "fp32" else "derived"
        folder, why = shipped_build(cfg, int8, kind)
        assert why == "" and folder == MODELS / _folder(int8), (int8, why)
    assert shipped_build(cfg, "fp32", "variant") == (MODELS / "default", "")
    plain = tmp_path / "plain"
    shutil.copytree(tiny_model, plain / "default")
    assert shipped_build(SimpleNamespace(shipped=plain, models_dir=tmp_path / "b"), "fp32", "variant") == (
        None,
        "",
    )
    # no build, no converter: every LiteRT row's folder is there as shipped
    names = (*BENCH_ROWS, *BENCH_ROWS.values())
    run = SimpleNamespace(shipped=MODELS, models_dir=tmp_path / "b2", extra=(), build=False, variants=names)
    dirs, errors, _ = prepare_variants(run, progress=False)
    assert errors == {} and list(dirs) == list(names)
    assert all(d.parent == MODELS for d in dirs.values())
    assert dirs["fp32"].name == "default" and dirs["int8-litert"].name == "default-int8-litert"


def _folder(variant: str) -> str:
    """The shipped folder of a LiteRT INT8 variant: the default's int8-litert is default-int8-litert."""
    return "default-int8-litert" if variant == "int8-litert" else variant


def test_quantize_int8_litert_converts_a_float_folder_only(tiny_model, tmp_path, monkeypatch):
    from fundus_edge.quantize.pipeline import quantize

    with pytest.raises(InputError, match="prune it first"):
        quantize(tiny_model, tmp_path / "a", "DATA", prune=0.5, int8="litert")
    with pytest.raises(InputError, match="not a checkpoint"):
        quantize(tmp_path, tmp_path / "b", "DATA", int8="litert")
    monkeypatch.setenv(conv.VENV_ENV, str(tmp_path / "no-venv"))
    with pytest.raises(ModelError, match="--setup"):  # the converter's own one line, nothing written
        quantize(tiny_model, tmp_path / "c", "DATA", int8="litert")
    assert not (tmp_path / "c").exists()


@needs_litert
def test_int8_options_keep_the_layers_named_in_float(tiny_model, drive_synth, tmp_path):
    """--float-layers first-last and --float-ops: TFLiteConverter on onnx2tf's saved model, int8 in and out
    still, the layers named left in float (the engine says int8+fp32), recorded in the manifest."""
    _converter_or_skip()
    opts = conv.Int8Options(float_ops=("CONCATENATION",), float_layers="first-last")
    out = tmp_path / "tiny-int8-litert"
    r = conv.convert(tiny_model, ("int8",), drive_synth, out, 6, hw=(64, 64), int8=opts)
    q = read_manifest(r.int8_dir).quantization
    assert q["activations"] == "int8 (CONCATENATION in float)" and "first and last" in q["float_layers"]
    assert "on onnx2tf's saved model" in q["tool"] and q["input"]["dtype"] == q["output"]["dtype"] == "int8"
    p = Predictor.load(out, backend="litert", threads=1)
    assert p.precision == "int8+fp32"
    rgb, _, _ = synthetic_fundus(7, 72, 68)
    ref = Predictor.load(tiny_model, backend="onnxruntime", precision=None).predict(rgb, fov=None).prob
    assert np.abs(p.predict(rgb, fov=None).prob - ref).max() < 0.25
    assert "tflite" not in read_manifest(tiny_model).formats  # --precisions int8: the float folder untouched
