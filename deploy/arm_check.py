"""``make test-arm``: ARM64 bundles checked on ARM, under user-mode emulation (issue 40).

From scratch, on an x86-64 Debian 12 host with root (docs/deploy.md, "ARM64"):

1. ``qemu-aarch64-static`` (apt-get, once) and Debian's arm64 package lists (``dpkg --add-architecture``).
2. An aarch64 Python 3.11 in ``build/arm/sysroot``: Debian's arm64 .debs fetched with ``apt-get download``
   and unpacked with ``dpkg -x``; nothing of the host is installed or replaced. An ARM ``/proc/cpuinfo``
   is placed in the sysroot (``-L`` looks there first): qemu 7.2 shows programs the host's x86 one, on
   which ONNX Runtime's CPU probe crashes at import.
3. A bench record of this machine for the checked rows (``--quick``, 3 DRIVE images; build/arm/bench) and
   one bundle per row packed ``--platform linux-aarch64 --any-arch`` (the figures are x86's; the check is
   about outputs).
4. Each bundle's ``requirements.txt`` resolved for aarch64 by ``pip download --only-binary=:all:`` with
   every manylinux tag (the proof that its pins install there), with their dependencies, into
   build/arm/wheels, installed ``--no-deps --target build/arm/site`` with the project's own pure-Python
   wheel.
5. ``selftest`` of each bundle by the aarch64 Python under ``QEMU_CPU=neoverse-n1``: qemu's default
   ``max`` CPU makes OpenVINO's ARM kernels compute wrong masks (Dice 0.79-0.85). PASS or FAIL per bundle,
   with the wall time of each step.

Downloads are kept under build/arm, so a rerun takes the emulated selftests' time only; ``--fresh``
removes build/arm first (what the issue's criterion names).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from fundus_edge.runtime.errors import FundusEdgeError, InputError

from .platforms import PLATFORMS

ARM = PLATFORMS["linux-aarch64"]
PYTHON = "3.11"
QEMU = "qemu-aarch64-static"
QEMU_CPU = "neoverse-n1"
# Debian 12's arm64 packages an aarch64 python3.11 and the wheels' shared libraries need (ARM.md: found by
# what the loader asked for).
DEBS = (
    "python3.11",
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "libc6",
    "libexpat1",
    "zlib1g",
    "libffi8",
    "libssl3",
    "libbz2-1.0",
    "liblzma5",
    "libsqlite3-0",
    "libuuid1",
    "libncursesw6",
    "libtinfo6",
    "libreadline8",
    "libgcc-s1",
    "libstdc++6",
    "libgomp1",
    "libdb5.3",
    "libgdbm6",
    "libnsl2",
    "libtirpc3",
    "libcrypt1",
    "libzstd1",
    "libgssapi-krb5-2",
    "libkrb5-3",
    "libk5crypto3",
    "libkrb5support0",
    "libcom-err2",
    "libkeyutils1",
)
# Two Neoverse-N1 cores as the Linux kernel prints them (QEMU_CPU names the same design).
N1_FEATURES = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs"
)
CPUINFO_CORE = """processor\t: {i}
BogoMIPS\t: 50.00
Features\t: FEATURES
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
CPU part\t: 0xd0c
CPU revision\t: 1

"""


@dataclass(frozen=True)
class Row:
    """One bundle the check packs: the record's row (what pick prints) and the bundle's folder name."""

    choice: str
    name: str


ROWS = (
    Row("s2d-fast/litert", "s2d-fast-litert"),
    Row("s2d-fast-int8-litert/litert", "s2d-fast-int8-litert"),
    Row("s2d-fast/onnxruntime", "s2d-fast-onnxruntime"),
    Row("s2d-fast/openvino", "s2d-fast-openvino"),
)


def run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    """A step's command; its failure stops the check in one line naming the step and the command's last
    line of output."""
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        tail = (p.stderr.strip() or p.stdout.strip() or "no output").splitlines()[-1]
        raise InputError(f"arm check, {what}: `{' '.join(cmd[:4])} ...` failed ({tail})")
    return p


def host_tools() -> None:
    """qemu-aarch64-static and the arm64 package lists (apt-get as root; never an :arm64 install)."""
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if shutil.which(QEMU) is None:
        run([*sudo, "apt-get", "update", "-q"], "apt-get update", env=env)
        run(
            [*sudo, "apt-get", "install", "-y", "-q", "qemu-user-static"], "install qemu-user-static", env=env
        )
    archs = run(["dpkg", "--print-foreign-architectures"], "dpkg").stdout.split()
    if "arm64" not in archs:
        run([*sudo, "dpkg", "--add-architecture", "arm64"], "dpkg --add-architecture arm64")
        run([*sudo, "apt-get", "update", "-q"], "apt-get update (arm64)", env=env)


def sysroot(root: Path) -> Path:
    """An aarch64 Python 3.11 unpacked from Debian's arm64 .debs (cached: kept when its python exists)."""
    sysroot = root / "sysroot"
    python = sysroot / "usr" / "bin" / f"python{PYTHON}"
    if not python.exists():
        debs = root / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        have = {p.name.split("_")[0] for p in debs.glob("*.deb")}
        need = [f"{d}:arm64" for d in DEBS if d not in have]
        if need:
            run(["apt-get", "download", *need], "apt-get download arm64 packages", cwd=debs)
        for deb in sorted(debs.glob("*.deb")):
            run(["dpkg", "-x", str(deb), str(sysroot)], f"dpkg -x {deb.name}")
    (sysroot / "proc").mkdir(parents=True, exist_ok=True)
    core = CPUINFO_CORE.replace("FEATURES", N1_FEATURES)
    (sysroot / "proc" / "cpuinfo").write_text("".join(core.format(i=i) for i in range(2)))
    return python


def bench_record(root: Path, data: Path) -> Path:
    """This machine's record of the checked rows: 3 DRIVE test images (--quick), one thread."""
    out = root / "bench"
    rec = out / "results.json"
    if not rec.is_file():
        variants = sorted({r.choice.split("/")[0] for r in ROWS})
        engines = sorted({r.choice.split("/")[1] for r in ROWS})
        extra = [str(Path("models") / v) for v in variants if v != "s2d-fast"]
        cmd = [
            sys.executable,
            "-m",
            "fundus_edge.cli",
            "bench",
            "--data",
            str(data),
            "--variants",
            "s2d-fast",
        ]
        cmd += ["--models", *extra] if extra else []
        cmd += ["--engines", ",".join(engines), "--no-bf16", "--no-build", "--no-gpu", "--quick"]
        cmd += ["--threads", "1", "--no-progress", "--out", str(out)]
        run(cmd, "the x86 bench record")
    return rec


def pack_bundles(root: Path, record: Path, data: Path, rows: tuple[Row, ...]) -> list[tuple[Row, Path]]:
    out = []
    for r in rows:
        folder = root / "bundles" / r.name
        cmd = [sys.executable, "-m", "fundus_edge.cli", "pack", r.choice, "--record", str(record)]
        cmd += ["--out", str(folder), "--data", str(data), "--platform", ARM.name, "--any-arch", "--force"]
        run(cmd, f"pack {r.choice}")
        out.append((r, folder))
    return out


def wheels(root: Path, bundles: list[Path]) -> Path:
    """Every bundle's pins (and their dependencies) as aarch64 wheels, installed into build/arm/site with
    the project's own wheel."""
    pip = [sys.executable, "-m", "pip"]
    wdir, site = root / "wheels", root / "site"
    tags = [a for t in ARM.wheel_tags for a in ("--platform", t)]
    for b in bundles:
        cmd = [*pip, "download", "-q", "--only-binary=:all:", "--python-version", PYTHON, *tags]
        run([*cmd, "-d", str(wdir), "-r", str(b / "requirements.txt")], f"pip download for {b.name}")
    dist = root / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    # With build isolation: Debian's setuptools is older than pyproject's minimum.
    run([*pip, "wheel", "-q", "--no-deps", "-w", str(dist), "."], "the project's wheel")
    shutil.rmtree(site, ignore_errors=True)
    # One version of each package (a dependency downloaded twice at two versions: the newer one).
    newest: dict[str, Path] = {}
    for w in sorted(wdir.glob("*.whl")):
        newest[w.name.split("-")[0].lower()] = w
    files = [str(w) for w in newest.values()] + [str(w) for w in dist.glob("*.whl")]
    # pip installs another platform's wheels only when told that platform (and binaries only).
    plat = ["--only-binary=:all:", "--python-version", PYTHON, *tags]
    run(
        [*pip, "install", "-q", "--no-deps", *plat, "--target", str(site), *files],
        "pip install --target site",
    )
    return site


def selftest_emulated(python: Path, sysroot: Path, site: Path, bundle: Path) -> tuple[bool, str, float]:
    env = {**os.environ, "QEMU_CPU": QEMU_CPU, "PYTHONPATH": str(site.resolve()), "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONHOME", None)
    cmd = [QEMU, "-L", str(sysroot.resolve()), str(python.resolve()), "-m", "fundus_edge.cli", "selftest"]
    t0 = time.monotonic()
    p = subprocess.run(
        [*cmd, str(bundle.resolve()), "--runs", "1", "--threads", "1", "-v"],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
    )
    # selftest -v's notes (stderr): each golden's Dice and largest probability difference
    goldens = [ln.strip() for ln in p.stderr.splitlines() if "vessel Dice" in ln]
    for ln in goldens:
        print(f"  {bundle.name}: {ln}", flush=True)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith(("PASS", "FAIL"))]
    line = (
        lines[-1]
        if lines
        else f"FAIL: no verdict (exit {p.returncode}): "
        + ((p.stderr.strip() or "no output").splitlines()[-1])
    )
    return p.returncode == 0 and line.startswith("PASS"), line, time.monotonic() - t0


def dump_inputs(bundle: Path, out: Path) -> None:
    """The network input (after FOV, rescale, CLAHE, crop and padding) of each of the bundle's goldens, as
    this machine's Python builds it, into ``out`` (.npz): run natively and under emulation to compare."""
    import numpy as np
    from fundus_edge.runtime.images import read_image
    from fundus_edge.runtime.predictor import Predictor

    from .bundle import GOLDENS, read_bundle

    b = read_bundle(bundle)
    pred = Predictor.load(bundle, backend=b.engine, threads=1, precision=b.precision_request, fmt=b.format)
    arrays = {g.image: pred.prepare(read_image(bundle / GOLDENS / g.image), fov="auto")[0] for g in b.goldens}
    np.savez_compressed(out, **arrays)


def compare_inputs(native: Path, arm: Path, scale: float = 127.5) -> list[str]:
    """Per golden and input channel: the largest difference in grey levels and the pixels that differ."""
    import numpy as np

    a, b = np.load(native), np.load(arm)
    lines = []
    for name in a.files:
        x, y = a[name], b[name]
        if x.shape != y.shape:
            lines.append(f"{name}: network input {x.shape} natively, {y.shape} on aarch64")
            continue
        d = np.abs(x - y) * scale  # back to grey levels (the input is x / 127.5 - 1)
        per = [f"ch{c} max {d[c].max():.2f}, {int((d[c] > 0.01).sum())} px" for c in range(d.shape[0])]
        lines.append(f"{name} {tuple(x.shape)}: " + "; ".join(per))
    return lines


def preprocessing_check(python: Path, sysroot: Path, site: Path, bundle: Path, root: Path) -> list[str]:
    """The goldens' network inputs on aarch64 against x86-64's: with the runtime's CLAHE (numpy's there)
    and with OpenCV's forced (FUNDUS_EDGE_CLAHE=opencv), to show what the numpy one removes."""
    native = root / "inputs-x86_64.npz"
    args = ["-m", "fundus_edge.deploy.arm_check", "--dump-inputs", str(bundle.resolve())]
    run([sys.executable, *args, str(native.resolve())], "network inputs natively")
    env = {**os.environ, "QEMU_CPU": QEMU_CPU, "PYTHONPATH": str(site.resolve()), "OMP_NUM_THREADS": "1"}
    qemu = [QEMU, "-L", str(sysroot.resolve()), str(python.resolve())]
    lines = []
    for impl, extra in (("the runtime's", {}), ("OpenCV's", {"FUNDUS_EDGE_CLAHE": "opencv"})):
        arm = root / f"inputs-aarch64-{'opencv' if extra else 'runtime'}.npz"
        what = f"network inputs under emulation ({impl} CLAHE)"
        run([*qemu, *args, str(arm.resolve())], what, env={**env, **extra}, cwd="/")
        lines += [f"{impl} CLAHE: {ln}" for ln in compare_inputs(native, arm)]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m fundus_edge.deploy.arm_check", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--root", default="build/arm", help="where everything is built and cached")
    ap.add_argument("--data", default=os.environ.get("FUNDUS_EDGE_DRIVE", "data/DRIVE"), help="DRIVE folder")
    ap.add_argument("--fresh", action="store_true", help="remove ROOT first: the from-scratch check")
    ap.add_argument("--only", help="comma list of bundle names to check (default all)")
    ap.add_argument(
        "--dump-inputs", nargs=2, metavar=("BUNDLE", "OUT"), help="only write the goldens' network inputs"
    )
    a = ap.parse_args(argv)
    if a.dump_inputs:
        dump_inputs(Path(a.dump_inputs[0]), Path(a.dump_inputs[1]))
        return 0
    root, data = Path(a.root), Path(a.data)
    t_all = time.monotonic()
    try:
        if not (data / "test" / "images").is_dir():
            raise InputError(f"{data}: not a DRIVE folder (test/images); give --data or FUNDUS_EDGE_DRIVE")
        if a.fresh:
            shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
        steps: list[tuple[str, float]] = []

        def step(name, fn, *args):
            t0 = time.monotonic()
            out = fn(*args)
            steps.append((name, time.monotonic() - t0))
            print(f"arm check: {name} ({steps[-1][1]:.0f} s)", flush=True)
            return out

        step("host tools (qemu-user-static, arm64 lists)", host_tools)
        python = step("aarch64 Python sysroot", sysroot, root)
        record = step("x86 bench record of the checked rows", bench_record, root, data)
        rows = tuple(r for r in ROWS if not a.only or r.name in a.only.split(","))
        if not rows:
            raise InputError(f"--only {a.only}: none of {', '.join(r.name for r in ROWS)}")
        packed = step("bundles packed for linux-aarch64", pack_bundles, root, record, data, rows)
        site = step("aarch64 wheels resolved and installed", wheels, root, [b for _, b in packed])
        failed = 0
        for r, b in packed:
            ok, line, secs = selftest_emulated(python, root / "sysroot", site, b)
            failed += not ok
            print(
                f"{'PASS' if ok else 'FAIL'} {r.name} ({secs:.0f} s under {QEMU} -cpu {QEMU_CPU}): {line}",
                flush=True,
            )
        if packed:
            lines = step(
                "preprocessing x86_64 vs aarch64",
                preprocessing_check,
                python,
                root / "sysroot",
                site,
                packed[0][1],
                root,
            )
            for ln in lines:
                print(f"  network input, {ln}")
        print(f"arm check: {len(packed) - failed}/{len(packed)} PASS, wall {time.monotonic() - t_all:.0f} s")
        return 1 if failed else 0
    except FundusEdgeError as exc:
        print(f"arm check: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
