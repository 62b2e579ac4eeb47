"""pick, pack and selftest (issue 33) on the tiny model and a synthetic bench record; the fresh-venv proof is
the slow test at the end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import tomllib
import yaml
from fundus_edge.deploy import bundle as bundle_mod
from fundus_edge.deploy import selftest as selftest_mod
from fundus_edge.deploy.pack import PackOptions, pack
from fundus_edge.deploy.pick import Bounds, choice_key, pick, read_record
from fundus_edge.deploy.selftest import selftest
from fundus_edge.runtime.cpu import cpu_identity, isa_flags
from fundus_edge.runtime.engines import installed_engines
from fundus_edge.runtime.errors import InputError

from fundus_edge.cli import main

ROOT = Path(__file__).resolve().parents[1]


def row(engine: str, p50: float, f1: float, precision: str = "fp32", asked: str | None = None, **kw) -> dict:
    return {
        "variant": "tiny",
        "backend": engine,
        "precision": precision,
        "precision_requested": asked,
        "device": "cpu",
        "format": "onnx",
        "status": "ok",
        "threads": 1,
        "size_mb": 0.1,
        "p50_ms": p50,
        "f1": f1,
        "auc": 0.9,
        "iou": 0.6,
        "rounds": 2,
        "spread_pct": 3.0,
        "a_field_from_a_later_bench": 1,
        **kw,
    }


def write_record(
    path: Path, rows: list[dict], data: Path, flags: list[str] | None = None, machine: dict | None = None
) -> Path:
    """A bench record measured on this CPU (its whole identity, as the bench records it), or on a "test CPU"
    with ``flags``, or on ``machine``."""
    if machine is None:
        machine = cpu_identity().to_dict() if flags is None else {"cpu": "test CPU", "isa_flags": flags}
    meta = {
        "date": "2026-12-04 12:00",
        "machine": {"cores": 2, **machine},
        "images": f"DRIVE test (2 images, 1st_manual, FOV pixels pooled) from {data}",
        "threads": 1,
    }
    path.write_text(json.dumps({"meta": meta, "results": rows}))
    return path


@pytest.fixture()
def record(tmp_path, drive_synth) -> Path:
    return write_record(
        tmp_path / "results.json",
        [
            row("onnxruntime", 40.0, 0.85),
            row("openvino", 20.0, 0.80),
            row("openvino", 30.0, 0.84, precision="bf16", asked="bf16", size_mb=0.05),
            row("onnxruntime", 5.0, 0.90, device="gpu:cuda"),
            row("openvino", 1.0, None, status="run_failed", error="boom"),
            row("onnxruntime", 10.0, 0.85, shape_requested="static"),
        ],
        drive_synth,
    )


def opts(tmp_path, tiny_model, **kw) -> PackOptions:
    return PackOptions(
        **{
            "out": tmp_path / "bundle",
            "models_dir": tiny_model.parent,
            "shipped": tmp_path / "no-shipped",
            "threads": 1,
            **kw,
        }
    )


# -- pick --------------------------------------------------------------------------------------------------
def test_pick_fastest_that_meets_the_bounds(record):
    rec = read_record(record)
    # no GPU, failed, F1 0.80 or static-shape row
    assert [choice_key(r) for r in pick(rec, Bounds(0.82))] == ["tiny/openvino/bf16", "tiny/onnxruntime"]
    assert [choice_key(r) for r in pick(rec, Bounds(0.82, max_ms=35))] == ["tiny/openvino/bf16"]
    assert [choice_key(r) for r in pick(rec, Bounds(0.82, max_mb=0.08))] == ["tiny/openvino/bf16"]
    assert [choice_key(r) for r in pick(rec, Bounds(0.79))][0] == "tiny/openvino"
    with pytest.raises(InputError, match=r"no row meets F1 >= 0.95 .*3 F1 < 0.95"):
        pick(rec, Bounds(0.95))


def test_pick_refuses_another_cpus_record(tmp_path, drive_synth):
    other = [f for f in ("avx2", "fma", "amx_int8") if f not in isa_flags()] + [
        f for f in isa_flags() if f != "avx2"
    ]
    rec = read_record(
        write_record(tmp_path / "r.json", [row("onnxruntime", 40.0, 0.85)], drive_synth, flags=other)
    )
    with pytest.raises(InputError, match="measured on another CPU .*--any-cpu"):
        pick(rec, Bounds())
    assert len(pick(rec, Bounds(), any_cpu=True)) == 1


def test_pick_cli_prints_the_table_and_one_line_errors(record, tmp_path, capsys):
    assert main(["pick", "--record", str(record), "--min-f1", "0.82"]) == 0
    out = capsys.readouterr().out
    assert "| picked | tiny/openvino/bf16 | bf16 | 30.0 |" in out and "| 2 | tiny/onnxruntime |" in out
    assert "fundus-edge pack tiny/openvino/bf16" in out
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["pick", "--record", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: not valid JSON" in err and len(err.strip().splitlines()) == 1


# -- pack and selftest ---------------------------------------------------------------------------------
@pytest.fixture()
def packed(tmp_path, tiny_model, record) -> Path:
    return pack("tiny/onnxruntime", read_record(record), opts(tmp_path, tiny_model)).folder


def test_pack_holds_only_what_the_engine_reads(packed, tiny_model):
    man = yaml.safe_load((packed / "manifest.yaml").read_text())
    assert man["formats"] == {"onnx": ["model.onnx"]}
    top = sorted(p.name for p in packed.iterdir())
    assert top == ["README.md", "bundle.yaml", "goldens", "manifest.yaml", "model.onnx", "requirements.txt"]
    assert (packed / "model.onnx").read_bytes() == (tiny_model / "model.onnx").read_bytes()
    b = bundle_mod.read_bundle(packed)
    assert (b.engine, b.precision, b.validated.f1, b.validated.p50_ms) == ("onnxruntime", "fp32", 0.85, 40.0)
    assert (
        b.validated.isa_flags == isa_flags() and len(b.goldens) == 2
    )  # the synthetic DRIVE has two test images
    pins = [
        ln.lower()
        for ln in (packed / "requirements.txt").read_text().splitlines()
        if ln and not ln.startswith("#")
    ]
    assert "numpy==" in " ".join(pins) and any(p.startswith("onnxruntime==") for p in pins)
    assert not [p for p in pins if p.startswith(("paddle", "nncf", "openvino", "onnx=="))]
    for g in b.goldens:  # each golden is the test image halved on each side
        assert cv2.imread(str(packed / "goldens" / g.image)).shape[:2] == (36, 34)


def test_selftest_passes_and_fails_in_one_line(packed, capsys):
    r = selftest(packed, runs=3)
    assert r.passed, r.line
    assert "vessel Dice >= 1.0000" in r.line and "over 3 runs" in r.line
    assert main(["selftest", str(packed), "--runs", "2"]) == 0
    assert capsys.readouterr().out.startswith("PASS: ")
    w = packed / "model.onnx"
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 0x01
    w.write_bytes(bytes(data))
    assert main(["selftest", str(packed)]) == 1
    out = capsys.readouterr().out
    assert out == f"FAIL: {w}: sha256 does not match bundle.yaml (file changed or corrupted)\n"


def test_selftest_fails_when_the_goldens_disagree(packed):
    """Expected masks that the engine does not reproduce (re-hashed, so only the Dice check can catch
    them)."""
    b = bundle_mod.read_bundle(packed)
    g = b.goldens[0]
    p = packed / "goldens" / g.mask
    m = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(p), 255 - m)
    d = yaml.safe_load((packed / "bundle.yaml").read_text())
    d["goldens"][0]["sha256"][g.mask] = bundle_mod.sha256(p)
    (packed / "bundle.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
    r = selftest(packed, runs=1)
    assert not r.passed and r.reason.startswith("golden masks differ: vessel Dice 0.")


def test_selftest_refuses_bf16_on_a_cpu_without_it(packed, monkeypatch):
    d = yaml.safe_load((packed / "bundle.yaml").read_text())
    d["precision"] = "bf16"
    (packed / "bundle.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
    monkeypatch.setattr(selftest_mod, "has_bf16", lambda: False)
    r = selftest(packed, runs=1)
    assert not r.passed and "lacks AVX-512 BF16 and AMX BF16" in r.reason


def test_int8_without_vnni_refused_or_warned(monkeypatch):
    from fundus_edge.deploy.bundle import Bundle, Validated

    here = cpu_identity().to_dict()
    v = Validated(None, None, None, None, None, 1, "", "cpu", list(isa_flags()), "", "", cpu_identity=here)
    b = Bundle("v", "onnxruntime", "onnx", "int8", None, 1, v, (), {})
    monkeypatch.setattr(selftest_mod, "has_vnni", lambda: False)
    why, _ = selftest_mod.cpu_refusal(b, {"engine_ptq": {"reduce_range": False}})
    assert why and "lacks VNNI" in why
    why, warn = selftest_mod.cpu_refusal(b, {"engine_ptq": {"reduce_range": True}})
    assert why is None and any("lacks VNNI" in w for w in warn)
    monkeypatch.setattr(selftest_mod, "has_vnni", lambda: True)
    assert selftest_mod.cpu_refusal(b, {"reduce_range": False}) == (None, [])


def test_selftest_of_no_bundle_fails(tmp_path):
    assert selftest(tmp_path / "nothing").line == f"FAIL: {tmp_path / 'nothing'}: no such bundle folder"


def test_pack_refuses_overwrite_budget_and_unknown_rows(tmp_path, tiny_model, record, packed, monkeypatch):
    rec = read_record(record)
    with pytest.raises(InputError, match="exists \\(use --force"):
        pack("tiny/onnxruntime", rec, opts(tmp_path, tiny_model))
    keep = tmp_path / "mine"
    keep.mkdir()
    with pytest.raises(InputError, match="not a bundle"):
        pack("tiny/onnxruntime", rec, opts(tmp_path, tiny_model, force=True, out=keep))
    with pytest.raises(InputError, match="no CPU row 'tiny/paddle'"):
        pack("tiny/paddle", rec, opts(tmp_path, tiny_model, out=tmp_path / "b2"))
    monkeypatch.setattr("fundus_edge.deploy.pack.MAX_BYTES", 1000)
    with pytest.raises(InputError, match="over the 0.001 MB budget"):
        pack("tiny/onnxruntime", rec, opts(tmp_path, tiny_model, out=tmp_path / "b3"))
    assert (
        sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".b3", "b3"))) == []
    )  # nothing left behind


def test_pack_a_model_folder_choice(tmp_path, tiny_model, record):
    with pytest.raises(InputError, match="needs --engine"):
        pack(str(tiny_model), read_record(record), opts(tmp_path, tiny_model))
    r = pack(str(tiny_model), read_record(record), opts(tmp_path, tiny_model, engine="onnxruntime"))
    assert r.bundle.validated.f1 == 0.85 and selftest(r.folder, runs=1).passed


def test_pack_takes_the_folder_the_record_measured_and_refuses_a_changed_one(
    tmp_path, tiny_model, drive_synth
):
    """A row names the model folder it ran and its manifest's sha256 (a shipped INT8 folder is not under
    build/models): pack bundles that folder, and refuses it once its manifest changed."""
    import shutil

    from fundus_edge.runtime.manifest import sha256

    moved = tmp_path / "elsewhere" / "tiny-int8"
    shutil.copytree(tiny_model, moved)
    rec = write_record(
        tmp_path / "r.json",
        [
            row(
                "onnxruntime",
                40.0,
                0.85,
                variant="tiny-int8",
                model_dir=str(moved),
                model_sha256=sha256(moved / "manifest.yaml"),
            )
        ],
        drive_synth,
    )
    o = opts(tmp_path, tiny_model, out=tmp_path / "b1")
    assert pack("tiny-int8/onnxruntime", read_record(rec), o).bundle.validated.f1 == 0.85
    (moved / "manifest.yaml").write_text((moved / "manifest.yaml").read_text() + "\n")
    with pytest.raises(InputError, match="manifest changed since the bench measured it"):
        pack("tiny-int8/onnxruntime", read_record(rec), opts(tmp_path, tiny_model, out=tmp_path / "b2"))

    # a bench-built variant gone from a fresh clone: the error says how to build it again
    gone = write_record(
        tmp_path / "r2.json",
        [row("onnxruntime", 40.0, 0.85, variant="tiny-int8", model_dir="build/models/tiny-int8")],
        drive_synth,
    )
    with pytest.raises(InputError) as err:
        pack("tiny-int8/onnxruntime", read_record(gone), opts(tmp_path, tiny_model, out=tmp_path / "b3"))
    assert "not a model folder here (`make variants` builds it again)" in str(err.value)


@pytest.mark.skipif("openvino" not in installed_engines(), reason="OpenVINO not installed")
def test_pack_openvino_bf16_row(tmp_path, tiny_model, record):
    from fundus_edge.runtime.cpu import has_bf16

    if not has_bf16():
        pytest.skip("this CPU has no bf16")
    r = pack("tiny/openvino/bf16", read_record(record), opts(tmp_path, tiny_model))
    assert (r.bundle.engine, r.bundle.precision, r.bundle.precision_request) == ("openvino", "bf16", "bf16")
    assert selftest(r.folder, runs=1).passed


def test_pack_input_size_fixes_onnxruntime_dims(tmp_path, tiny_model, record):
    import onnx

    r = pack("tiny/onnxruntime", read_record(record), opts(tmp_path, tiny_model, input_size=(80, 64)))
    b = r.bundle
    assert b.input_size == (80, 64) and b.static["onnx"] == b.network_inputs[0]
    dims = [
        d.dim_value for d in onnx.load(str(r.folder / "model.onnx")).graph.input[0].type.tensor_type.shape.dim
    ]
    assert dims == b.static["onnx"] and all(dims)
    assert cv2.imread(str(r.folder / "goldens" / b.goldens[0].image)).shape[:2] == (64, 80)
    assert selftest(r.folder, runs=1).passed


def test_pack_cli(tmp_path, tiny_model, record, capsys):
    out = tmp_path / "cli-bundle"
    args = [
        "pack",
        "tiny/onnxruntime",
        "--record",
        str(record),
        "--out",
        str(out),
        "--models-dir",
        str(tiny_model.parent),
        "--threads",
        "1",
    ]
    assert main(args) == 0
    assert f"into {out}: " in capsys.readouterr().out and (out / "bundle.yaml").is_file()
    assert main(args) == 2  # an existing bundle is not replaced without --force
    assert (
        capsys.readouterr().err.strip()
        == f"fundus-edge pack: error: {out}: exists (use --force to replace it)"
    )
    assert main(args + ["--force"]) == 0


# -- the device's imports ------------------------------------------------------------------------------
BLOCKER = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('paddle', 'nncf', 'paddleslim', 'paddleseg', 'paddle2onnx', 'onnx'):
            raise ImportError('blocked on the device: ' + name)
sys.meta_path.insert(0, Block())
from fundus_edge.cli import main
rc = main(['selftest', sys.argv[1], '--runs', '1'])
# The timing harness (numpy only) is the one module of the ground floor selftest uses; the variant table
# (standard library only, tests/test_variants.py) is read by the CLI's help and choices.
above = sorted(m for m in sys.modules if m.startswith('fundus_edge.')
               and m.split('.')[1] not in ('runtime', 'cli', 'cli_adapt', 'cli_site', 'deploy')
               and m not in ('fundus_edge.measure', 'fundus_edge.measure.timing',
                             'fundus_edge.quantize', 'fundus_edge.quantize.variants'))
print('above the runtime:', above)
try:
    import nncf
    print('the blocker does not block')
except ImportError:
    pass
sys.exit(rc)
"""


def test_selftest_needs_no_paddle_nor_quantizer(packed):
    r = subprocess.run(
        [sys.executable, "-c", BLOCKER, str(packed)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASS: " in r.stdout and "above the runtime: []" in r.stdout and "does not block" not in r.stdout


# -- the fresh virtual environment (slow) --------------------------------------------------------------
def _source_copy(dest: Path) -> Path:
    """The package folders pyproject maps, pyproject and README: what a wheel is built from (not build/,
    .venv)."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for folder in set(cfg["tool"]["setuptools"]["package-dir"].values()):
        shutil.copytree(
            ROOT / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True
        )
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / f, dest / f)
    return dest


@pytest.mark.slow
def test_selftest_in_a_fresh_venv_with_runtime_extras_only(tmp_path, tiny_model, record):
    rec = read_record(record)
    bundles = {
        e: pack(f"tiny/{e}", rec, opts(tmp_path, tiny_model, out=tmp_path / f"bundle-{e}")).folder
        for e in ("onnxruntime", "openvino")
    }
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    src = _source_copy(tmp_path / "src")
    pins = [
        a for b in bundles.values() for a in ("-c", str(b / "requirements.txt"))
    ]  # the versions the goldens were made with
    r = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", f"{src}[openvino,onnxruntime]", *pins],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    have = subprocess.run(
        [str(py), "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True
    ).stdout
    names = {p["name"].lower() for p in json.loads(have)}
    assert "openvino" in names and "onnxruntime" in names
    assert not {n for n in names if n.startswith(("paddle", "nncf", "paddleslim"))}, names
    exe = venv / "bin" / "fundus-edge"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")} | {
        "OMP_NUM_THREADS": "1"
    }
    for e, b in bundles.items():
        r = subprocess.run(
            [str(exe), "selftest", str(b), "--runs", "2"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        assert r.returncode == 0 and r.stdout.startswith("PASS: "), (e, r.stdout, r.stderr)
    w = bundles["openvino"] / "model.onnx"
    data = bytearray(w.read_bytes())
    data[100] ^= 0x01
    w.write_bytes(bytes(data))
    r = subprocess.run(
        [str(exe), "selftest", str(bundles["openvino"])],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert (
        r.returncode == 1
        and r.stdout == f"FAIL: {w}: sha256 does not match bundle.yaml (file changed or corrupted)\n"
    ), r.stdout + r.stderr
