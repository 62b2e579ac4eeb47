"""The sweep: every variant x engine through the runtime's Predictor, one process per cell."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from fundus_edge.runtime.engines import ENGINES, gpu_engines, installed_engines
from fundus_edge.runtime.errors import FundusEdgeError, InputError
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
                                 "small-pruned", "seed-unet")
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


# -- variants ------------------------------------------------------------------------------------
def seed_unet_dir(target: Path, force: bool = False) -> Path:
    """The seed tutorial's PaddleSeg U-Net (13.4 M), untrained (fixed seed), as a PaddleSeg user brings it:
    exported by PaddleSeg's own path (``WrappedModel`` + ``paddle.jit.save`` + deploy.yaml, legacy program so
    that paddle2onnx can convert it) and imported with ``import_paddleseg``."""
    if (target / "manifest.yaml").is_file() and not force:
        return target
    import os

    from fundus_edge.export.paddleseg import import_paddleseg

    export = target.with_name(target.name + ".paddleseg")
    shutil.rmtree(export, ignore_errors=True)
    export.mkdir(parents=True)
    env = {**os.environ, "FLAGS_enable_pir_api": "0"}
    r = subprocess.run([sys.executable, "-m", "fundus_edge.export.paddleseg_unet", str(export), "softmax"], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise InputError(f"PaddleSeg export of the seed U-Net failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    import_paddleseg(export, target, name="seed-unet", force=True, variant="untrained")  # untrained: speed only, no F1
    shutil.rmtree(export, ignore_errors=True)
    return target


def _built(cfg: BenchConfig, name: str, needs_data: bool, build) -> Path:
    """build/models/<name>, made by ``build()`` unless it exists (or --no-build says not to)."""
    target = cfg.models_dir / name
    if not (target / "manifest.yaml").is_file():
        if not cfg.build:
            raise InputError(f"{target}: not built (run without --no-build)")
        if needs_data and not cfg.data:
            raise InputError(f"building {name} needs DATA (training images for fine-tuning and calibration)")
        build()
    return target


def _derived_variant(cfg: BenchConfig, name: str) -> tuple[Path, str] | None:
    """(shipped model folder, variant kind) for a name such as small-int8 or small-pruned-int8."""
    from fundus_edge.quantize.pipeline import VARIANTS

    for kind in sorted((k for k in VARIANTS if k != "fp32"), key=len, reverse=True):
        base = cfg.shipped / name[: -len(kind) - 1]
        if name.endswith("-" + kind) and (base / "manifest.yaml").is_file():
            return base, kind
    return None


def extra_variants(cfg: BenchConfig) -> dict[str, Path]:
    """--models folders that are model folders: variant name (the folder's name) -> folder."""
    out: dict[str, Path] = {}
    for d in cfg.extra:
        name = Path(d).resolve().name
        if name in out and out[name] != Path(d):
            raise InputError(f"{d}: two model folders named {name!r}; rename one")
        out[name] = Path(d)
    return out


def prepare_variants(cfg: BenchConfig) -> tuple[dict, dict]:
    """name -> model folder for the variants that exist or could be built; name -> error otherwise."""
    from fundus_edge.quantize.pipeline import VARIANTS, build_variants

    dirs, errors = {}, {}
    default = cfg.shipped / "default"
    extra = extra_variants(cfg)
    for name in tuple(cfg.variants) + tuple(n for n in extra if n not in cfg.variants):
        try:
            if name in VARIANTS:
                def build(name=name):
                    if not (default / "manifest.yaml").is_file():
                        raise InputError(f"{default}: no shipped default model")
                    build_variants(default, cfg.models_dir, cfg.data, finetune_iters=cfg.finetune_iters, only=(name,), progress=False)

                dirs[name] = _built(cfg, name, name != "fp32", build)
            elif name in extra:
                dirs[name] = extra[name]
            elif name == "seed-unet":
                dirs[name] = seed_unet_dir(cfg.models_dir / "seed-unet")
            elif (cfg.shipped / name / "manifest.yaml").is_file():  # shipped as is (small, small-pruned)
                dirs[name] = cfg.shipped / name
            elif (derived := _derived_variant(cfg, name)) is not None:
                # <shipped model>-<variant>: that shipped model compressed like the default's variant of
                # that name, e.g. small-int8 (PTQ), small-pruned (same ratio and fine-tune as `pruned`).
                from fundus_edge.quantize.pipeline import quantize

                base, kind = derived
                dirs[name] = _built(cfg, name, True, lambda: quantize(
                    base, cfg.models_dir / name, cfg.data, finetune_iters=cfg.finetune_iters, force=True, progress=False, **VARIANTS[kind]))
            else:
                raise InputError(f"unknown variant {name!r}")
        except (FundusEdgeError, Exception) as exc:  # noqa: BLE001 - recorded, the sweep goes on
            errors[name] = f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            print(f"variant {name}: export failed: {errors[name]}", flush=True)
    return dirs, errors


# -- images --------------------------------------------------------------------------------------
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
    from fundus_edge.runtime.fov import estimate_fov  # noqa: F401 - same disc as real images

    rng = np.random.default_rng(0)
    h, w = DRIVE_SIZE
    yy, xx = np.mgrid[:h, :w]
    disc = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 2 - 10) ** 2
    arrays = {}
    for i in range(3):
        img = rng.integers(0, 255, (h, w, 3)).astype(np.uint8)
        img[~disc] = 0
        arrays[f"img_{i:03d}"] = img
    np.savez(path, **arrays)
    return 3, "synthetic 584x565 fundus-sized inputs (no DATA: accuracy columns are null)"


# -- sweep ---------------------------------------------------------------------------------------
def has_bf16() -> bool:
    """A BF16 row only where the CPU has BF16 kernels; elsewhere OpenVINO runs it in FP32 and the
    row would repeat the FP32 one (it reads back f32: measured on an AVX2-only EPYC)."""
    from .machine import cpu_info

    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_info()["isa_flags"]))


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
