"""A non-editable install finds nothing through the source tree: configs come from package data, shipped
models from --models (or ./models), and the CLI works from another directory."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-800:]
    return target


def _cli(installed, cwd, *args):
    """The installed `fundus-edge` console script (its shebang is this interpreter; the package comes from
    the install target, not the checkout)."""
    env = {"PYTHONPATH": str(installed), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [str(installed / "bin" / "fundus-edge"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_installed_package_is_self_contained(installed, tmp_path):
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import fundus_edge, fundus_edge.train.config as c, fundus_edge.archive.job, "
            "fundus_edge.export.paddleseg_transforms; "
            "print(fundus_edge.__file__); print(c.resolve_config('wnet').model.arch)",
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": str(installed)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr[-500:]
    where, arch = probe.stdout.split()
    assert where.startswith(str(installed)) and arch == "wnet"  # the installed copy, with its configs


def test_installed_cli_predicts_and_benches_with_explicit_models(installed, tmp_path, tiny_model):
    from PIL import Image

    from .conftest import synthetic_fundus

    rgb, _, _ = synthetic_fundus(3)
    Image.fromarray(rgb).save(tmp_path / "eye.png")
    r = _cli(installed, tmp_path, "predict", "eye.png", "--output", "out")
    assert r.returncode != 0 and "no shipped models" in r.stderr and "Traceback" not in r.stderr
    models = tmp_path / "shipped"
    models.mkdir()
    (models / "default").symlink_to(tiny_model)
    r = _cli(
        installed,
        tmp_path,
        "predict",
        "eye.png",
        "--output",
        "out",
        "--models",
        str(models),
        "--backend",
        "onnxruntime",
    )
    assert r.returncode == 0, r.stderr[-800:]
    assert (tmp_path / "out" / "eye_mask.png").is_file()
    r = _cli(
        installed,
        tmp_path,
        "bench",
        "--quick",
        "--variants",
        "default",
        "--engines",
        "onnxruntime",
        "--models",
        str(models),
        "--out",
        "b",
        "--no-bf16",
        "--no-gpu",
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr[-800:]
    assert "| default | onnxruntime |" in (tmp_path / "b" / "results.md").read_text()
