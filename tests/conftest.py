"""Shared fixtures: tiny synthetic fundus images in every supported layout, a tiny trained
checkpoint and its exported model folder (made once per session)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

DRIVE_ENV = "FUNDUS_EDGE_DRIVE"


def synthetic_fundus(seed: int, h: int = 72, w: int = 68) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rgb uint8, vessel label bool, fov bool): an orange disc on black with dark random curves."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    fov = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 2 - 2) ** 2
    label = np.zeros((h, w), np.uint8)
    for _ in range(6):
        pts = np.cumsum(rng.normal(0, 6, (6, 2)), axis=0) + [w / 2, h / 2]
        cv2.polylines(label, [pts.astype(np.int32)], False, 1, thickness=int(rng.integers(1, 3)))
    label = label.astype(bool) & fov
    rgb = np.zeros((h, w, 3), np.float32)
    rgb[fov] = (200, 90, 40)
    rgb[label] *= 0.55
    rgb += rng.normal(0, 6, rgb.shape)
    rgb[~fov] = rng.uniform(0, 4, (int((~fov).sum()), 3))
    return np.clip(rgb, 0, 255).astype(np.uint8), label, fov


def write_drive(root: Path, n_train: int = 6, n_test: int = 2) -> Path:
    """A DRIVE-layout copy: .tif images, .gif labels and masks (palette GIFs, as distributed)."""
    for split, sub, nums in (
        ("training", "training", range(21, 21 + n_train)),
        ("test", "test", range(1, 1 + n_test)),
    ):
        for d in ("images", "1st_manual", "mask"):
            (root / split / d).mkdir(parents=True, exist_ok=True)
        for n in nums:
            rgb, lab, fov = synthetic_fundus(n)
            Image.fromarray(rgb).save(root / split / "images" / f"{n:02d}_{sub}.tif")
            Image.fromarray(lab.astype(np.uint8) * 255).convert("P").save(
                root / split / "1st_manual" / f"{n:02d}_manual1.gif"
            )
            Image.fromarray(fov.astype(np.uint8) * 255).convert("P").save(
                root / split / "mask" / f"{n:02d}_{sub}_mask.gif"
            )
    return root


def pytest_configure(config):
    """Module- and session-scoped fixtures run before any per-test fixture: point the test-read ledger at a
    scratch file for the whole session first, so no test can append to the committed docs/test-reads.csv."""
    import tempfile

    os.environ["FUNDUS_EDGE_LEDGER"] = str(Path(tempfile.mkdtemp(prefix="ledger-")) / "test-reads.csv")


@pytest.fixture(autouse=True)
def _scratch_ledger(tmp_path_factory, monkeypatch):
    """Every test's held-out reads go to a scratch ledger, never the committed docs/test-reads.csv."""
    monkeypatch.setenv("FUNDUS_EDGE_LEDGER", str(tmp_path_factory.mktemp("ledger") / "test-reads.csv"))


@pytest.fixture(scope="session")
def drive_synth(tmp_path_factory) -> Path:
    return write_drive(tmp_path_factory.mktemp("drive"))


@pytest.fixture(scope="session")
def tiny_config(drive_synth):
    from fundus_edge.train.config import TrainConfig

    return TrainConfig(name="tiny").with_overrides(
        model={"base": 4, "depth": 2},
        data={"root": str(drive_synth), "val_count": 2},
        optim={"iters": 12, "batch_size": 4, "crop": 32, "val_every": 6, "warmup": 2, "lr": 0.01},
    )


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_config) -> Path:
    from fundus_edge.train.trainer import Trainer

    out = tmp_path_factory.mktemp("run") / "tiny"
    Trainer(tiny_config, out, device="cpu", progress=False).fit()
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tiny_run) -> Path:
    from fundus_edge.export.exporter import export_checkpoint

    out = tmp_path_factory.mktemp("models") / "tiny"
    export_checkpoint(tiny_run / "best", out)
    return out


@pytest.fixture(scope="session")
def drive_root() -> Path:
    root = os.environ.get(DRIVE_ENV)
    if not root or not (Path(root) / "test" / "images").is_dir():
        pytest.skip(f"DRIVE not available (set {DRIVE_ENV})")
    return Path(root)
