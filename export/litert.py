"""LiteRT files from a model folder's ONNX file: fp32 and fp16 weights beside it (formats ``tflite`` and
``tflite-fp16``), full-integer INT8 in a folder of its own (format ``tflite-int8``, calibrated on the training
images as the runtime prepares them).

The converter is onnx2tf with TensorFlow, in a venv of its own (``.venv-litert``, made by ``--setup``
from ``requirements-litert-convert.txt``): their pins (numpy 1.26, protobuf 4) clash with the project's. It
runs as a child process (``litert_child.py``) with that venv's Python and that venv first on PATH (onnx2tf
calls ``onnxsim`` by name, and without it silently ignores the input shape). A device needs only
``ai-edge-litert``.

Before converting, Paddle's ConvTranspose + separate bias ``Add`` is folded into ConvTranspose's own bias:
left apart, onnx2tf keeps NCHW islands around them (extra TRANSPOSE ops, the graph split into several XNNPACK
pieces) and its int16 variants fail (STACK.md, "ONNX to LiteRT").

    python -m fundus_edge.export.litert --setup
    python -m fundus_edge.export.litert models/s2d-fast --data DRIVE --int8-out models/s2d-fast-int8-litert
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from fundus_edge.runtime.errors import FundusEdgeError, InputError, ModelError
from fundus_edge.runtime.formats import FORMATS

REPO = Path(__file__).resolve().parents[1]
REQUIREMENTS = REPO / "requirements-litert-convert.txt"
VENV_ENV = "FUNDUS_EDGE_LITERT_VENV"  # where the converter venv is, when not ./.venv-litert
DEFAULT_VENV = Path(".venv-litert")
PRECISIONS = ("fp32", "fp16", "int8")
# onnx2tf's output name for each precision (the ONNX file's stem first) -> our format.
_ONNX2TF = {"fp32": "float32", "fp16": "float16", "int8": "full_integer_quant"}
_FORMAT = {"fp32": "tflite", "fp16": "tflite-fp16", "int8": "tflite-int8"}
CONVERT_TIMEOUT_S = 1800  # a DRIVE-sized U-Net takes 0.5-2 min on 2 cores (all of onnx2tf's INT8 variants)


@dataclass(frozen=True)
class Int8Options:
    """How the INT8 file is made. The defaults are onnx2tf's own full-integer file; either option makes it
    with TFLiteConverter on onnx2tf's saved model instead (litert_child.py), same settings otherwise."""

    float_ops: tuple[str, ...] = ()  # TFLite ops kept in float (e.g. SOFTMAX)
    calib_views: int = 1  # orientations of each calibration image: 1, 2 (+ flipped) or 4 (+ flip, turn)
    float_layers: str = ""  # "first-last": each U-Net's first and last convolutions kept in float

    @property
    def own(self) -> bool:
        return bool(self.float_ops) or self.calib_views > 1 or bool(self.float_layers)


@dataclass(frozen=True)
class LiteRtResult:
    model_dir: Path
    int8_dir: Path | None
    files: dict  # precision -> written file
    seconds: float
    hw: tuple[int, int]


# -- the converter venv -------------------------------------------------------------------------------
def venv_path(venv: str | Path | None = None) -> Path:
    return Path(venv or os.environ.get(VENV_ENV) or DEFAULT_VENV)


def _requirements_sha() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def setup_venv(venv: str | Path | None = None, force: bool = False) -> Path:
    """Make the converter venv from the pinned requirements (with this Python's interpreter); a venv made from
    the same requirements file is kept unless ``force``."""
    venv = venv_path(venv)
    if not REQUIREMENTS.is_file():
        raise InputError(f"{REQUIREMENTS}: missing (the converter's pins live in the repository)")
    stamp = venv / ".installed"
    if stamp.is_file() and stamp.read_text().strip() == _requirements_sha() and not force:
        print(f"{venv}: converter venv up to date", flush=True)
        return venv
    if venv.exists() and not (venv / "pyvenv.cfg").is_file():
        raise InputError(f"{venv}: exists and is not a venv; remove it or give --venv")
    base = getattr(sys, "_base_executable", None) or sys.executable
    steps = [
        [base, "-m", "venv", "--clear", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)],
    ]
    for cmd in steps:
        print("$ " + " ".join(cmd), flush=True)
        if subprocess.run(cmd).returncode != 0:
            raise ModelError(f"{venv}: converter venv setup failed at: {' '.join(cmd[-3:])}")
    stamp.write_text(_requirements_sha() + "\n")
    return venv


def converter_python(venv: str | Path | None = None) -> Path:
    """The converter venv's Python, or one clear error saying how to make it."""
    venv = venv_path(venv)
    py = venv / "bin" / "python"
    if not (py.is_file() and (venv / "bin" / "onnx2tf").is_file() and (venv / ".installed").is_file()):
        raise ModelError(
            f"{venv}: no LiteRT converter venv there; make it with "
            f"python -m fundus_edge.export.litert --setup (about 2.6 GB)"
        )
    return py


# -- the ONNX copy ----------------------------------------------------------------------------------------
def fold_transpose_bias(src: Path, dst: Path) -> int:
    """Write ``src`` to ``dst`` with each ``ConvTranspose -> Add(constant [1,C,1,1])`` folded into the
    ConvTranspose's bias input; returns how many were folded. The Add's output name is kept, so the graph
    around it is unchanged. Paddle's export holds the weights in Constant nodes, others in initializers."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    consts = {t.name: t for t in g.initializer}
    consts.update({n.output[0]: n.attribute[0].t for n in g.node if n.op_type == "Constant" and n.attribute})
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    folded = []
    for n in g.node:
        if n.op_type != "ConvTranspose" or len(n.input) > 2 or len(consumers.get(n.output[0], [])) != 1:
            continue
        add = consumers[n.output[0]][0]
        other = [i for i in add.input if i != n.output[0]]
        if add.op_type != "Add" or len(other) != 1 or other[0] not in consts:
            continue
        b = numpy_helper.to_array(consts[other[0]])
        if b.ndim != 4 or b.shape[0] != 1 or b.shape[2:] != (1, 1):
            continue
        name = f"{other[0]}_folded"
        g.initializer.append(numpy_helper.from_array(b.reshape(-1), name))
        n.input.append(name)
        n.output[0] = add.output[0]
        folded.append((add, other[0]))
    for add, bias in folded:
        g.node.remove(add)
        if len(consumers[bias]) == 1:  # the old [1,C,1,1] constant, read by nothing now
            for c in [c for c in g.node if c.op_type == "Constant" and c.output[0] == bias]:
                g.node.remove(c)
            for t in [t for t in g.initializer if t.name == bias]:
                g.initializer.remove(t)
    onnx.save(model, str(dst))
    return len(folded)


def _check_same(a: Path, b: Path, channels: int, name: str = "image") -> float:
    """The largest output difference of two ONNX files on one random input (ONNX Runtime)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    x = np.random.default_rng(0).standard_normal((1, channels, 64, 64)).astype(np.float32)
    outs = [
        ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"]).run(None, {name: x})[0]
        for p in (a, b)
    ]
    return float(np.abs(outs[0] - outs[1]).max())


# -- calibration ------------------------------------------------------------------------------------------
def calibration_inputs(model_dir: Path, data: str | Path, count: int, hw: tuple[int, int]) -> np.ndarray:
    """N x H x W x C float32: training images (the split the model was trained on, never validation or test)
    prepared exactly as ``Predictor.predict`` prepares them (rescaled to the training FOV, cropped to its box,
    padded), then edge-padded or centre-cropped to the conversion size ``hw``."""
    from fundus_edge.runtime.predictor import Predictor
    from fundus_edge.train.data import load_sample, model_training_split

    if count < 1:
        raise InputError(f"{data}: no training images for calibration (count {count})")
    train = model_training_split(model_dir, data)
    p = Predictor.load(model_dir, backend="onnxruntime", threads=None, precision=None)
    out = []
    for s in train[:count]:
        loaded = load_sample(s)
        x = p.prepare(loaded.rgb, fov=loaded.fov)[0]
        out.append(_fit(x, hw).transpose(1, 2, 0))
    return np.stack(out).astype(np.float32)


def _fit(x: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """C x H x W to C x hw: centre-cropped where larger, edge-padded (bottom/right) where smaller."""
    for axis, want in ((1, hw[0]), (2, hw[1])):
        have = x.shape[axis]
        if have > want:
            x = np.take(x, range((have - want) // 2, (have - want) // 2 + want), axis=axis)
        elif have < want:
            pad = [(0, 0)] * 3
            pad[axis] = (0, want - have)
            x = np.pad(x, pad, mode="edge")
    return x


# -- conversion -------------------------------------------------------------------------------------------
def run_converter(
    py: Path,
    onnx_copy: Path,
    out: Path,
    shape: tuple,
    name: str,
    calib: Path | None,
    int8: Int8Options = Int8Options(),  # noqa: B008 - frozen
) -> dict:
    """onnx2tf in the converter venv on ``onnx_copy`` (which it overwrites); its versions."""
    from fundus_edge.export.child import failure_line

    args = [str(py), str(Path(__file__).with_name("litert_child.py")), "--onnx", str(onnx_copy)]
    args += ["--out", str(out), "--input", name, "--shape", ",".join(map(str, shape))]
    if calib is not None:
        args += ["--calib", str(calib), "--calib-views", str(int8.calib_views)]
        if int8.float_ops:
            args += ["--float-ops", ",".join(int8.float_ops)]
        if int8.float_layers:
            args += ["--float-layers", int8.float_layers]
    env = {**os.environ, "PATH": f"{py.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTHONPATH", None)  # nothing of the project's venv may leak into the converter's
    env["VIRTUAL_ENV"] = str(py.parent.parent)
    try:
        r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ModelError(f"{onnx_copy.name}: onnx2tf gave no answer within {CONVERT_TIMEOUT_S} s") from None
    if r.returncode != 0:
        raise ModelError(f"onnx2tf failed on {onnx_copy.name}: {failure_line(r)}")
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def tflite_io(path: Path) -> dict:
    """The file's input and output as the runtime reads them: layout, shape, dtype, and for integer tensors
    the scale and zero point (recorded in the manifest; the engine takes them from the file itself)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)

    def one(d: dict) -> dict:
        rec = {"shape": [int(v) for v in d["shape"]], "dtype": np.dtype(d["dtype"]).name}
        if np.issubdtype(d["dtype"], np.integer):
            rec.update(scale=float(d["quantization"][0]), zero_point=int(d["quantization"][1]))
        return rec

    inp, out = one(it.get_input_details()[0]), one(it.get_output_details()[0])
    inp["layout"] = "NHWC" if inp["shape"][3] < inp["shape"][1] else "NCHW"
    out["layout"] = "NHWC" if out["shape"][3] == 1 and out["shape"][1] != 1 else "NCHW"
    return {"input": inp, "output": out}


def _conversion_hw(man) -> tuple[int, int]:
    """The input size to convert at: the one the Predictor feeds a FOV-cropped image at the training scale
    (560 x 560 for DRIVE's models); the engine resizes to any other."""
    from fundus_edge.runtime.predictor import ScaleOptions, expected_hw

    hw = expected_hw(man, ScaleOptions())
    if hw is None:
        m = int(man.pad_multiple)
        hw = (-(-560 // m) * m,) * 2
    return hw


def _check_request(model_dir: Path, man, precisions, data, int8_out, force: bool) -> None:
    if not precisions or any(p not in PRECISIONS for p in precisions):
        raise InputError(f"precisions {','.join(precisions)!r}: choose from {', '.join(PRECISIONS)}")
    if man.quantization is not None:
        raise ModelError(f"{model_dir}: already quantized; give the float model folder")
    if "onnx" not in man.formats:
        raise ModelError(f"{model_dir}: no ONNX file to convert (export with --formats onnx)")
    if "int8" in precisions and (data is None or int8_out is None):
        raise InputError("int8 needs --data (the training images to calibrate on) and --int8-out FOLDER")
    for p in precisions:
        if p == "int8":
            out = Path(int8_out)
            if out.exists() and any(out.iterdir()) and not force:
                raise InputError(f"{out}: output folder exists and is not empty (use --force to overwrite)")
            continue
        name = FORMATS[_FORMAT[p]].files[0]
        if (_FORMAT[p] in man.formats or (model_dir / name).exists()) and not force:
            raise InputError(f"{model_dir / name}: exists (use --force to replace it)")


def convert(
    model_dir: str | Path,
    precisions: tuple[str, ...] = ("fp32", "int8"),
    data: str | Path | None = None,
    int8_out: str | Path | None = None,
    calib_images: int = 20,
    venv: str | Path | None = None,
    force: bool = False,
    hw: tuple[int, int] | None = None,
    int8: Int8Options = Int8Options(),  # noqa: B008 - frozen
) -> LiteRtResult:
    """Convert ``model_dir``'s ONNX file to LiteRT files (see the module's doc); the manifests are written
    through runtime.manifest, so every file is hashed. ``hw``: the input size to convert at (default: the
    Predictor's first input at the training scale); the engine resizes to others."""
    from fundus_edge.runtime.manifest import read_manifest, verify_files

    t0 = time.perf_counter()
    model_dir = Path(model_dir)
    man = read_manifest(model_dir)
    _check_request(model_dir, man, precisions, data, int8_out, force)
    verify_files(model_dir, man, man.formats["onnx"])
    py = converter_python(venv)
    hw = tuple(hw) if hw else _conversion_hw(man)
    if any(v % int(man.pad_multiple) for v in hw):
        raise InputError(f"size {hw[0]}x{hw[1]}: not a multiple of the network's {man.pad_multiple}")
    channels = man.preprocess.in_channels
    name = man.input.get("name", "image")
    with tempfile.TemporaryDirectory(prefix="fe-litert-") as tmp:
        tmp = Path(tmp)
        onnx_copy = tmp / "model.onnx"  # onnx2tf overwrites its input: never the folder's own file
        folded = fold_transpose_bias(model_dir / man.formats["onnx"][0], onnx_copy)
        diff = _check_same(model_dir / man.formats["onnx"][0], onnx_copy, channels, name)
        if diff > 1e-4:
            raise ModelError(f"{model_dir}: folding ConvTranspose biases changed the output by {diff:.2g}")
        calib = None
        if "int8" in precisions:
            calib = tmp / "calib.npy"
            np.save(calib, calibration_inputs(model_dir, data, calib_images, hw))
        versions = run_converter(py, onnx_copy, tmp / "out", (1, channels, *hw), name, calib, int8)
        made = {p: tmp / "out" / f"model_{_ONNX2TF[p]}.tflite" for p in precisions}
        missing = [p for p, f in made.items() if not f.is_file()]
        if missing:
            raise ModelError(f"onnx2tf wrote no {', '.join(missing)} file for {model_dir}")
        record = {
            "converter": f"onnx2tf {versions.get('onnx2tf', '?')}, "
            f"tensorflow {versions.get('tensorflow', '?')}",
            "converted_at": f"{hw[0]}x{hw[1]}",
            "folded_transpose_bias": folded,
        }
        files = _write_float(model_dir, man, {p: f for p, f in made.items() if p != "int8"}, record)
        int8_dir = None
        if "int8" in precisions:
            n = int(np.load(calib, mmap_mode="r").shape[0])
            int8_dir = _write_int8(
                model_dir, Path(int8_out), made["int8"], record, n, time.perf_counter() - t0, int8
            )
            files["int8"] = int8_dir / FORMATS["tflite-int8"].files[0]
    return LiteRtResult(model_dir, int8_dir, files, time.perf_counter() - t0, hw)


def _write_float(model_dir: Path, man, made: dict, record: dict) -> dict:
    """Copy the float files into the model folder and add their formats to its manifest."""
    from fundus_edge.runtime.manifest import read_manifest, write_manifest

    if not made:
        return {}
    formats, written, io = dict(man.formats), [], {}
    for p, src in made.items():
        fmt = _FORMAT[p]
        dst = model_dir / FORMATS[fmt].files[0]
        shutil.copyfile(src, dst)
        formats[fmt] = list(FORMATS[fmt].files)
        written.append(dst.name)
        io[dst.name] = tflite_io(dst)
    man = read_manifest(model_dir)
    engines = {**man.engines, "litert": {**record, "files": io}}
    write_manifest(model_dir, replace(man, formats=formats, engines=engines), written=written)
    return {p: model_dir / FORMATS[_FORMAT[p]].files[0] for p in made}


def _write_int8(
    model_dir: Path, out: Path, src: Path, record: dict, n_calib: int, seconds: float, opts: Int8Options
) -> Path:
    """A model folder of its own for the INT8 file: the float model's manifest with its quantization record
    (what the runtime needs is in the file itself: input and output scales and zero points, recorded here too)
    and the float model it was made from."""
    from fundus_edge.export.exporter import source_record
    from fundus_edge.runtime.cpu import cpu_model_and_flags, has_vnni, isa_flags
    from fundus_edge.runtime.manifest import read_manifest, write_manifest

    man = read_manifest(
        model_dir
    )  # after _write_float: the float_model record names the manifest as it is now
    if out.exists():
        shutil.rmtree(out)  # _check_request refused a non-empty folder without --force
    out.mkdir(parents=True)
    fmt = "tflite-int8"
    dst = out / FORMATS[fmt].files[0]
    shutil.copyfile(src, dst)
    io = tflite_io(dst)
    quant = {
        "method": "ptq",
        "tool": f"{record['converter']} (TFLiteConverter full-integer"
        + (", on onnx2tf's saved model" if opts.own else "")
        + ")",
        "engine": "litert",
        "calibration_images": n_calib,
        "calibration": f"training images as the runtime prepares them, fitted to {record['converted_at']}"
        + (f", each in {opts.calib_views} orientations" if opts.calib_views > 1 else ""),
        "activations": "int8" + (f" ({', '.join(opts.float_ops)} in float)" if opts.float_ops else ""),
        **(
            {"float_layers": "each U-Net's first and last convolutions kept in float32"}
            if opts.float_layers
            else {}
        ),
        "weights": "int8 per channel",
        "input": io["input"],
        "output": io["output"],
        "converted_at": record["converted_at"],
        "folded_transpose_bias": record["folded_transpose_bias"],
        "seconds": round(seconds, 1),
        "built_on": {"cpu": cpu_model_and_flags()[0], "vnni": has_vnni(), "isa_flags": isa_flags()},
    }
    variant = "-".join(
        v for v in (man.variant if man.variant not in ("fp32", "") else "", "int8-litert") if v
    )
    engines = {k: v for k, v in man.engines.items() if k != "litert"}
    write_manifest(
        out,
        replace(
            man,
            variant=variant,
            formats={fmt: list(FORMATS[fmt].files)},
            files={},
            quantization=quant,
            source={**man.source, "float_model": source_record(model_dir)},
            engines=engines,
            validated={},  # the float files' checks are not these
            created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        ),
    )
    return out


# -- command line -----------------------------------------------------------------------------------------
def _size(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        h, w = (int(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"--size {text!r}: give H,W (e.g. 560,560)") from None
    return h, w


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m fundus_edge.export.litert", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("model", nargs="?", help="float model folder with model.onnx")
    ap.add_argument("--setup", action="store_true", help="make the converter venv (pinned; about 2.6 GB)")
    ap.add_argument("--venv", help=f"converter venv (default ${VENV_ENV} or {DEFAULT_VENV})")
    ap.add_argument("--precisions", default="fp32,int8", help="of fp32, fp16, int8 (default fp32,int8)")
    ap.add_argument("--data", help="data set whose training images calibrate INT8 (DRIVE)")
    ap.add_argument("--int8-out", help="folder for the INT8 model (e.g. models/NAME-int8-litert)")
    ap.add_argument("--calib-images", type=int, default=20)
    ap.add_argument(
        "--float-ops",
        default="",
        help="INT8: TFLite ops kept in float, comma list (e.g. SOFTMAX), by TFLiteConverter on onnx2tf's "
        "saved model",
    )
    ap.add_argument(
        "--calib-views",
        type=int,
        default=1,
        choices=(1, 2, 4),
        help="INT8: each calibration image also flipped (2), and turned (4)",
    )
    ap.add_argument(
        "--float-layers",
        default="",
        choices=("", "first-last"),
        help="INT8: keep each U-Net's first and last convolutions in float32 (first-last)",
    )
    ap.add_argument("--size", help="H,W to convert at (default: the first input at the training scale)")
    ap.add_argument("--force", action="store_true", help="replace existing LiteRT files / the INT8 folder")
    a = ap.parse_args(argv)
    try:
        if a.setup:
            setup_venv(a.venv, force=a.force and not a.model)
        if a.model:
            r = convert(
                a.model,
                tuple(p.strip() for p in a.precisions.split(",") if p.strip()),
                a.data,
                a.int8_out,
                a.calib_images,
                a.venv,
                a.force,
                _size(a.size),
                Int8Options(
                    tuple(o.strip().upper() for o in a.float_ops.split(",") if o.strip()),
                    a.calib_views,
                    a.float_layers,
                ),
            )
            for p, f in r.files.items():
                print(f"{p}: {f} ({f.stat().st_size / 1e6:.2f} MB)")
            print(f"converted at {r.hw[0]}x{r.hw[1]} in {r.seconds:.0f} s")
        elif not a.setup:
            ap.error("give a model folder, or --setup")
    except FundusEdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
