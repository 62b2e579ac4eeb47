"""ARM64 bundles (issue 40): platforms in pick, pack and bundles, the precisions an ARM bundle may not record,
emulation detection in selftest, and the aarch64 pins resolving (network; skipped offline). The emulated
selftests themselves are `make test-arm` (minutes each, root for apt-get): not part of the unit suite."""

from __future__ import annotations

import platform
import subprocess
import sys

import cv2
import numpy as np
import pytest
import yaml
from fundus_edge.deploy import pack as pack_mod
from fundus_edge.deploy import platforms
from fundus_edge.deploy import selftest as selftest_mod
from fundus_edge.deploy.bundle import read_bundle
from fundus_edge.deploy.pack import pack
from fundus_edge.deploy.pick import Bounds, choice_key, pick, read_record
from fundus_edge.deploy.platforms import arm_refusal, emulated, get_platform
from fundus_edge.runtime import preprocess as preprocess_mod
from fundus_edge.runtime.clahe import clahe
from fundus_edge.runtime.cpu import cpu_identity
from fundus_edge.runtime.engines import installed_engines
from fundus_edge.runtime.engines.table import arm_checked
from fundus_edge.runtime.errors import InputError
from fundus_edge.runtime.images import read_image

from fundus_edge.cli import main

from .test_deploy import opts, row, write_record

ARM = get_platform("linux-aarch64")


def x86_record(tmp_path, data, machine="x86_64"):
    return write_record(
        tmp_path / "results.json",
        [
            row("onnxruntime", 40.0, 0.85),
            row("openvino", 30.0, 0.84, precision="bf16", asked="bf16"),
            row("onnxruntime", 20.0, 0.84, precision="int8"),
        ],
        data,
        machine={**cpu_identity().to_dict(), "machine": machine},
    )


# -- platforms and precisions ------------------------------------------------------------------------------
def test_platform_names_and_wheel_tags():
    assert get_platform("arm64") is ARM and get_platform("linux-aarch64") is ARM
    assert "manylinux_2_35_aarch64" in ARM.wheel_tags and "manylinux2014_aarch64" in ARM.wheel_tags
    assert get_platform(None).machine == platforms.norm_machine(platform.machine())
    with pytest.raises(InputError, match="--platform riscv: not one of linux-x86_64, linux-aarch64"):
        get_platform("riscv")


@pytest.mark.parametrize(
    "engine,precision,refused",
    [
        ("openvino", "bf16", "cannot be assumed to compute bf16"),
        ("openvino", "int8+bf16", "cannot be assumed to compute bf16"),
        ("openvino", "fp16", "cannot be assumed to compute fp16"),
        ("onnxruntime", "int8", "not checked on ARM64"),
        ("openvino", "int8+fp32", "not checked on ARM64"),
        ("onnxruntime", "fp32", None),
        ("openvino", "fp32", None),
        ("litert", "int8", None),
    ],
)
def test_arm_precision_refusal(engine, precision, refused):
    why = arm_refusal(engine, precision)
    assert why is None if refused is None else refused in why


# -- pick ----------------------------------------------------------------------------------------------------
def test_pick_refuses_an_x86_record_for_an_arm_bundle(tmp_path, drive_synth, capsys):
    rec = read_record(x86_record(tmp_path, drive_synth))
    with pytest.raises(InputError, match=r"measured on x86_64, the bundle is for linux-aarch64.*--any-arch"):
        pick(rec, Bounds(0.82), target=ARM)
    # told: only the rows ARM can run (no bf16, no ONNX Runtime INT8), and no CPU identity compared
    assert [choice_key(r) for r in pick(rec, Bounds(0.82), target=ARM, any_arch=True)] == ["tiny/onnxruntime"]
    assert [choice_key(r) for r in pick(rec, Bounds(0.82))][0] == "tiny/onnxruntime"  # x86: all three
    assert main(["pick", "--record", str(rec.path), "--platform", "linux-aarch64"]) == 2
    assert "--any-arch" in capsys.readouterr().err
    assert main(["pick", "--record", str(rec.path), "--platform", "linux-aarch64", "--any-arch"]) == 0
    assert "--platform linux-aarch64 --any-arch" in capsys.readouterr().out


def test_pick_takes_an_arm_record_for_an_arm_bundle(tmp_path, drive_synth):
    """A record measured on aarch64 (read here, on another CPU): no --any-arch, no CPU identity to compare."""
    rec = read_record(x86_record(tmp_path, drive_synth, machine="aarch64"))
    assert choice_key(pick(rec, Bounds(0.82), target=ARM)[0]) == "tiny/onnxruntime"
    if platforms.here().machine != "aarch64":
        with pytest.raises(InputError, match="measured on aarch64"):
            pick(rec, Bounds(0.82))


# -- pack and selftest ---------------------------------------------------------------------------------------
def test_pack_for_arm_records_the_platform_and_tells_the_precision(tmp_path, tiny_model, drive_synth, capsys):
    rec = read_record(x86_record(tmp_path, drive_synth))
    o = opts(tmp_path, tiny_model, platform="linux-aarch64")
    with pytest.raises(InputError, match="--any-arch"):
        pack("tiny/onnxruntime", rec, o)
    with pytest.raises(InputError, match="tiny/openvino/bf16 for linux-aarch64: openvino bf16: an ARM64 CPU"):
        pack("tiny/openvino/bf16", rec, opts(tmp_path, tiny_model, platform="linux-aarch64", any_arch=True))
    folder = pack("tiny/onnxruntime", rec, opts(tmp_path, tiny_model, platform="arm64", any_arch=True)).folder
    b = read_bundle(folder)
    assert (b.platform, b.machine, b.validated_machine) == ("linux-aarch64", "aarch64", "x86_64")
    assert b.precision_request == "fp32"  # told explicitly, not the engine's default
    d = yaml.safe_load((folder / "bundle.yaml").read_text())
    assert d["platform"] == "linux-aarch64" and d["machine"] == "aarch64"
    assert "For linux-aarch64" in (folder / "requirements.txt").read_text()
    if platforms.here().machine != "aarch64":  # an ARM bundle on x86: refused in one line
        r = selftest_mod.selftest(folder, runs=1)
        assert (
            not r.passed and r.reason == f"{folder}: packed for linux-aarch64; this machine is linux-x86_64"
        )


def test_pack_default_platform_is_this_machines(tmp_path, tiny_model, drive_synth):
    rec = read_record(x86_record(tmp_path, drive_synth, machine=platform.machine()))
    b = read_bundle(pack("tiny/onnxruntime", rec, opts(tmp_path, tiny_model)).folder)
    assert b.platform == platforms.here().name and b.precision_request is None


@pytest.mark.skipif("openvino" not in installed_engines(), reason="openvino not installed")
def test_openvino_arm_bundle_asks_fp32(tmp_path, tiny_model, drive_synth):
    rec = read_record(write_record(tmp_path / "r.json", [row("openvino", 30.0, 0.84)], drive_synth))
    o = opts(tmp_path, tiny_model, platform="linux-aarch64", any_arch=True)
    b = read_bundle(pack("tiny/openvino", rec, o).folder)
    assert (b.engine, b.precision, b.precision_request) == ("openvino", "fp32", "fp32")


# -- emulation -----------------------------------------------------------------------------------------------
def test_emulation_detected_from_the_kernel_or_cpuinfo(tmp_path, monkeypatch):
    kernel, cpuinfo = tmp_path / "arch", tmp_path / "cpuinfo"
    kernel.write_text("x86_64\n")
    cpuinfo.write_text("processor\t: 0\nCPU architecture: 8\nFeatures\t: fp asimd\n")
    monkeypatch.setattr(platforms.platform, "machine", lambda: "aarch64")
    # qemu-aarch64 with an ARM /proc/cpuinfo in its sysroot: the kernel still says x86_64
    assert emulated(str(kernel), str(cpuinfo)) == "a aarch64 program on a x86_64 kernel"
    # a kernel without /proc/sys/kernel/arch: the host's x86 cpuinfo shows through qemu 7.2
    cpuinfo_x86 = tmp_path / "cpuinfo86"
    cpuinfo_x86.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu avx2\n")
    assert "x86_64 /proc/cpuinfo" in emulated(str(tmp_path / "none"), str(cpuinfo_x86))
    # a real ARM board
    kernel.write_text("aarch64\n")
    assert emulated(str(kernel), str(cpuinfo)) is None
    monkeypatch.undo()
    assert emulated() is None  # this test process runs natively


def test_emulated_selftest_gives_no_speed_verdict(tmp_path, tiny_model, drive_synth, monkeypatch):
    rec = read_record(write_record(tmp_path / "r.json", [row("onnxruntime", 40.0, 0.85)], drive_synth))
    folder = pack("tiny/onnxruntime", rec, opts(tmp_path, tiny_model)).folder
    monkeypatch.setattr(selftest_mod, "emulated", lambda: "a aarch64 program on a x86_64 kernel")
    timed = []
    monkeypatch.setattr(selftest_mod, "time_goldens", lambda *a: timed.append(a))
    r = selftest_mod.selftest(folder, runs=3)
    assert r.passed and r.line.endswith("emulated (a aarch64 program on a x86_64 kernel): correctness only")
    assert "p50" not in r.line and not timed


# -- pins resolve for aarch64 (network) ----------------------------------------------------------------------
def _pip_download(dest, *args) -> subprocess.CompletedProcess:
    tags = [a for t in ARM.wheel_tags for a in ("--platform", t)]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:"]
    cmd += ["--python-version", "3.11", *tags, "-d", str(dest), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


@pytest.mark.network
def test_arm_bundle_pins_resolve_for_aarch64(tmp_path):
    """Every pin an ARM bundle's requirements.txt holds, for each engine ARM bundles may use, has an aarch64
    wheel for Python 3.11 (pip download --no-deps --only-binary=:all:, every manylinux tag)."""
    probe = _pip_download(tmp_path / "probe", "tqdm")
    if probe.returncode != 0:
        pytest.skip(f"no package index reachable: {probe.stderr.strip().splitlines()[-1:]}")
    engines = sorted({e for e, _ in arm_checked()} & set(installed_engines()))
    assert engines, "no engine an ARM bundle may use is installed here"
    pins = sorted(
        {
            ln.strip()
            for e in engines
            for ln in pack_mod.requirements_text(e, ARM).splitlines()
            if ln.strip() and not ln.startswith("#")
        }
    )
    got = _pip_download(tmp_path / "wheels", *pins)
    assert got.returncode == 0, got.stderr[-2000:]
    names = sorted(p.name for p in (tmp_path / "wheels").iterdir())
    assert len(names) == len(pins), names
    assert all("aarch64" in n or n.endswith("-none-any.whl") for n in names), names


# -- CLAHE the same on every architecture --------------------------------------------------------------------
x86_only = pytest.mark.skipif(
    platforms.here().machine != "x86_64", reason="OpenCV's CLAHE is the reference on x86-64 only"
)


@x86_only
def test_numpy_clahe_is_opencvs_bit_for_bit():
    """Random and smooth images of sizes that are and are not multiples of the grid, every clip and grid
    size the configs can ask for (0: no clipping)."""
    rng = np.random.default_rng(40)
    for k in range(24):
        h, w = (int(v) for v in rng.integers(16, 400, 2))
        if k == 0:
            h, w = 64, 96  # both sides multiples of the grid: no extension
        img = rng.integers(0, 256, (h, w), dtype=np.uint8)
        if k % 2:
            img = cv2.GaussianBlur(img, (0, 0), 4)
        clip, tiles = [0.0, 1.0, 2.0, 3.5][k % 4], [1, 2, 8, 16][k // 6]
        want = cv2.createCLAHE(clip, (tiles, tiles)).apply(img)
        assert np.array_equal(clahe(img, clip, tiles), want), (h, w, clip, tiles)


@x86_only
def test_numpy_clahe_on_drive_is_opencvs(drive_root):
    """DRIVE's test images at full size (565 x 584: one side not a multiple of 8) and halved."""
    for f in sorted((drive_root / "test" / "images").iterdir())[:6]:
        g = np.ascontiguousarray(read_image(f)[..., 1])
        for img in (g, cv2.resize(g, (g.shape[1] // 2, g.shape[0] // 2), interpolation=cv2.INTER_AREA)):
            assert np.array_equal(clahe(img), cv2.createCLAHE(2.0, (8, 8)).apply(img)), f.name


def test_preprocess_clahe_choice(monkeypatch):
    rgb = np.random.default_rng(1).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    cfg = preprocess_mod.PreprocessConfig()
    assert preprocess_mod.CLAHE_IMPL == ("opencv" if platforms.here().machine == "x86_64" else "numpy")
    monkeypatch.setattr(preprocess_mod, "CLAHE_IMPL", "numpy")
    numpy_input = preprocess_mod.preprocess(rgb, cfg)
    monkeypatch.setattr(preprocess_mod, "CLAHE_IMPL", "opencv")
    if platforms.here().machine == "x86_64":
        assert np.array_equal(preprocess_mod.preprocess(rgb, cfg), numpy_input)
    monkeypatch.setattr(preprocess_mod, "CLAHE_IMPL", "simd")
    with pytest.raises(InputError, match="FUNDUS_EDGE_CLAHE='simd': not opencv or numpy"):
        preprocess_mod.preprocess(rgb, cfg)
