"""A device's Python, made here: a fresh virtual environment holding only what a bundle's ``requirements.txt``
pins (numpy, OpenCV, PyYAML, Pillow, tqdm and the engine, or every engine of a bundle of candidates) and
fundus-edge itself installed with ``--no-deps``; then ``fundus-edge selftest BUNDLE`` run there (issue 40).

It proves two things a bundle promises: the device needs nothing of the development environment (no
TensorFlow, onnx2tf, Paddle, PaddleSlim, NNCF: each is checked unimportable there), and the bundle passes
on what it pins. pip reads the machine's own configuration (index, wheel cache); nothing is installed
outside the venv.

    python -m fundus_edge.deploy.runtime_venv BUNDLE [--venv build/device-venv] [--runs 3]

Exit code 0 when the venv holds none of them and selftest passes; 1 otherwise (the reason in one line).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import tomllib

# What a device must not need: the converters and training tools a developer's venv holds.
FORBIDDEN = ("tensorflow", "tf_keras", "onnx2tf", "paddle", "paddleslim", "paddle2onnx", "nncf", "torch")
ROOT = Path(__file__).resolve().parents[1]  # the source checkout (deploy/ lies at its top)


@dataclass(frozen=True)
class DeviceRun:
    passed: bool
    line: str  # selftest's last line, or why the venv could not be made
    importable: tuple[str, ...]  # FORBIDDEN modules found in the venv (must be none)
    packages: tuple[str, ...]  # what pip installed there, name==version
    wall_s: float


def source_copy(dest: Path, root: Path = ROOT) -> Path:
    """The folders pyproject maps onto the package, pyproject and README: what the wheel is built from
    (not build/ nor .venv), copied so pip's in-tree build writes nothing into the checkout."""
    cfg = tomllib.loads((root / "pyproject.toml").read_text())
    for folder in set(cfg["tool"]["setuptools"]["package-dir"].values()):
        shutil.copytree(
            root / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True
        )
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(root / f, dest / f)
    return dest


def _run(cmd: list, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


def _tail(r: subprocess.CompletedProcess) -> str:
    text = (r.stderr or r.stdout or "").strip().splitlines()
    return text[-1] if text else f"exit code {r.returncode}"


def make_venv(venv: Path, requirements: Path) -> tuple[str, ...]:
    """A fresh venv with the pins and fundus-edge (--no-deps); returns what pip installed."""
    if venv.exists():
        shutil.rmtree(venv)
    if (r := _run([sys.executable, "-m", "venv", venv])).returncode:
        raise RuntimeError(f"{venv}: python -m venv failed: {_tail(r)}")
    py = venv / "bin" / "python"
    if (r := _run([py, "-m", "pip", "install", "-q", "-r", requirements])).returncode:
        raise RuntimeError(f"{requirements}: pip install failed: {_tail(r)}")
    with tempfile.TemporaryDirectory(prefix="fundus-edge-src-") as tmp:
        src = source_copy(Path(tmp))
        if (r := _run([py, "-m", "pip", "install", "-q", "--no-deps", src])).returncode:
            raise RuntimeError(f"fundus-edge: pip install --no-deps failed: {_tail(r)}")
    r = _run([py, "-m", "pip", "freeze"])
    return tuple(line for line in r.stdout.splitlines() if line and not line.startswith("#"))


def importable(venv: Path) -> tuple[str, ...]:
    """The FORBIDDEN modules the venv's Python can find (without importing them)."""
    code = (
        "import importlib.util as u, sys; "
        f"print(' '.join(m for m in {FORBIDDEN!r} if u.find_spec(m) is not None))"
    )
    r = _run([venv / "bin" / "python", "-c", code], env=_clean_env(), cwd=tempfile.gettempdir())
    if r.returncode:
        raise RuntimeError(f"{venv}: its python failed: {_tail(r)}")
    return tuple(r.stdout.split())


def _clean_env() -> dict:
    """This environment without what would let the venv reach the development one."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP")
    return {k: v for k, v in os.environ.items() if k not in drop}


def run_device(bundle: Path, venv: Path, runs: int = 3) -> DeviceRun:
    t0 = time.perf_counter()
    bundle = bundle.resolve()
    req = bundle / "requirements.txt"
    if not req.is_file():
        return DeviceRun(False, f"{bundle}: no requirements.txt (not a deploy bundle)", (), (), 0.0)
    try:
        packages = make_venv(venv, req)
        found = importable(venv)
    except RuntimeError as exc:
        return DeviceRun(False, str(exc), (), (), time.perf_counter() - t0)
    r = _run(
        [venv / "bin" / "fundus-edge", "selftest", bundle, "--runs", runs],
        env=_clean_env() | {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
        cwd=tempfile.gettempdir(),  # not the checkout: its folders must not be importable from the cwd
    )
    lines = [x for x in r.stdout.splitlines() if x.startswith(("PASS", "FAIL"))]
    line = lines[-1] if lines else f"selftest printed no verdict: {_tail(r)}"
    if found:
        line = f"FAIL: the device venv can import {', '.join(found)} ({line})"
    passed = r.returncode == 0 and not found and line.startswith("PASS")
    return DeviceRun(passed, line, found, packages, time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fundus_edge.deploy.runtime_venv", description=__doc__)
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--venv", type=Path, default=Path("build/device-venv"), help="made afresh (replaced)")
    ap.add_argument("--runs", type=int, default=3, help="selftest's timed runs")
    a = ap.parse_args(argv)
    r = run_device(a.bundle, a.venv, a.runs)
    print(f"installed: {', '.join(r.packages) or 'nothing'}")
    print(f"importable there of {', '.join(FORBIDDEN)}: {', '.join(r.importable) or 'none'}")
    print(f"{r.line} [device venv {a.venv}, {r.wall_s:.0f} s in all]")
    return 0 if r.passed else 1


if __name__ == "__main__":
    sys.exit(main())
