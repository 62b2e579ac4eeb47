"""The sweep: every variant x engine through the runtime's Predictor, one process per cell."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from fundus_edge.runtime.engines import ENGINES, gpu_engines, installed_engines
from fundus_edge.runtime.cpu import has_bf16
from fundus_edge.runtime.formats import formats_for
from fundus_edge.runtime.manifest import read_manifest

from .records import BenchRecord

DRIVE_SIZE = (584, 565)


@dataclass(frozen=True)
class BenchConfig:
    data: str | None
    out: Path
    threads: int = 2
    quick: bool = False
    models_dir: Path = Path("build/models")
    shipped: Path = Path("models")  # the shipped models (the CLI resolves --models)
    variants: tuple[str, ...] = ("fp32", "pruned", "int8", "pruned-int8", "int8-nncf", "int8-ort", "small", "small-int8", "small-int8-nncf", "small-int8-ort",
                                 "small-pruned", "wnet", "wnet-int8-nncf", "wnet-int8-ort", "wnet-small", "wnet-small-int8-nncf", "wnet-small-int8-ort",
                                 "seed-unet")
    engines: tuple[str, ...] | None = None
    extra: tuple[Path, ...] = ()  # model folders benchmarked beside the variants (ours or imported), each a variant named after its folder
    bf16_rows: bool = True
    gpu_rows: bool = True  # also a GPU row per variant for each engine that has a GPU here
    warmup: int = 3
    runs: int = 30
    min_runs: int = 5
    budget_s: float = 12.0
    batch: int = 4
    finetune_iters: int = 800
    build: bool = True

    def effective(self) -> "BenchConfig":
        if self.quick:
            return replace(self, warmup=1, runs=5, min_runs=3, budget_s=3.0, batch=2)
        return self


@dataclass(frozen=True)
class Cell:
    variant: str
    model_dir: Path
    backend: str
    precision: str | None = None  # an explicit precision request (OpenVINO bf16 row)
    device: str = "cpu"

    @property
    def key(self) -> str:
        return f"{self.variant}/{self.backend}" + (f"/{self.precision}" if self.precision else "") + ("/gpu" if self.device == "gpu" else "")


# -- images --------------------------------------------------------------------------------------
def synthetic_fundus(rng: np.random.Generator) -> np.ndarray:
    """A DRIVE-sized RGB image: noise inside a disc on black, so the runtime finds a field of view."""
    h, w = DRIVE_SIZE
    yy, xx = np.mgrid[:h, :w]
    img = rng.integers(0, 255, (h, w, 3)).astype(np.uint8)
    img[(yy - h / 2) ** 2 + (xx - w / 2) ** 2 >= (min(h, w) / 2 - 10) ** 2] = 0
    return img


def prepare_images(cfg: BenchConfig, path: Path) -> tuple[int, str]:
    """An .npz of test images (+ labels and FOV masks with DRIVE); returns (count, description)."""
    if cfg.data and Path(cfg.data).exists():
        from fundus_edge.train.data import discover, load_sample

        samples = discover(cfg.data, split="test")
        if cfg.quick:
            samples = samples[:3]
        arrays = {}
        for i, s in enumerate(samples):
            ls = load_sample(s)
            arrays[f"img_{i:03d}"], arrays[f"lab_{i:03d}"], arrays[f"fov_{i:03d}"] = ls.rgb, ls.label, ls.fov
        np.savez(path, **arrays)
        return len(samples), f"DRIVE test ({len(samples)} images, 1st_manual, FOV pixels pooled) from {cfg.data}"
    rng = np.random.default_rng(0)
    np.savez(path, **{f"img_{i:03d}": synthetic_fundus(rng) for i in range(3)})
    return 3, "synthetic 584x565 fundus-sized inputs (no DATA: accuracy columns are null)"


# -- sweep ---------------------------------------------------------------------------------------
def plan_cells(dirs: dict, cfg: BenchConfig) -> list[Cell]:
    engines = cfg.engines or tuple(installed_engines())
    on_gpu = set(gpu_engines(engines)) if cfg.gpu_rows else set()
    cells = []
    for variant, d in dirs.items():
        man = read_manifest(d)
        for e in engines:
            if not formats_for(e, list(man.formats)):
                continue
            cells.append(Cell(variant, d, e))
            # OpenVINO in bf16 where the CPU has it: the whole float model, or an INT8 model's float layers (int8+bf16).
            if e == "openvino" and cfg.bf16_rows and has_bf16():
                cells.append(Cell(variant, d, e, "bf16"))
            if e in on_gpu:
                cells.append(Cell(variant, d, e, device="gpu"))
    return cells


def float_counterpart(variant: str) -> str | None:
    """The float variant a quantized one was made from (int8-nncf -> fp32, pruned-int8 -> pruned,
    small-int8-ort -> small); None for a float variant."""
    if "int8" not in variant.split("-"):
        return None
    base = variant[: variant.index("int8")].rstrip("-")
    return base or "fp32"


def run_cells(cells: list[Cell], cfg: BenchConfig, images: Path, n_images: int, has_labels: bool, tmp: Path, progress: bool = True) -> list[dict]:
    from tqdm import tqdm

    out = []
    refs: dict[str, Path] = {}
    # Float variants first, so a quantized variant's cells can be checked against the float model too;
    # the records come back in the planned order.
    planned = {c.key: i for i, c in enumerate(cells)}
    cells = sorted(cells, key=lambda c: float_counterpart(c.variant) is not None)
    for cell in tqdm(cells, desc="bench", unit="cell", disable=not progress):
        ref = refs.get(cell.variant)
        fref = refs.get(float_counterpart(cell.variant) or "")
        spec = {
            "variant": cell.variant, "backend": cell.backend, "model_dir": str(cell.model_dir), "precision": cell.precision, "device": cell.device,
            "threads": cfg.threads, "batch": cfg.batch, "warmup": cfg.warmup, "runs": cfg.runs, "min_runs": cfg.min_runs,
            "budget_s": cfg.budget_s, "images": str(images), "accuracy": has_labels and read_manifest(cell.model_dir).variant != "untrained",
            "reference_mask": str(ref) if ref else None, "save_mask": str(tmp / f"{cell.variant}.masks.npz"),
            "float_reference_mask": str(fref) if fref else None,
            "save_prob": str(tmp / f"{cell.key.replace('/', '_')}.prob.npy"),
        }
        sp, rp = tmp / "spec.json", tmp / "rec.json"
        sp.write_text(json.dumps(spec))
        if rp.exists():
            rp.unlink()
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "fundus_edge.bench.cell", str(sp), str(rp)], capture_output=True, text=True)
        if r.returncode != 0 or not rp.exists():
            lines = [l for l in (r.stderr or "").splitlines() if l.strip()]
            rec = {"variant": cell.variant, "backend": cell.backend, "threads": cfg.threads, "status": "run_failed", "device": cell.device,
                   "error": f"cell process exited {r.returncode}: {lines[-1][:300] if lines else ''}"}
        else:
            rec = json.loads(rp.read_text())
            if ref is None and rec.get("status") == "ok":
                refs[cell.variant] = Path(spec["save_mask"])
        rec["_key"] = cell.key
        rec["_wall_s"] = round(time.perf_counter() - t0, 1)
        out.append(rec)
    return sorted(out, key=lambda r: planned[r["_key"]])
