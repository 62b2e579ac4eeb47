"""Training configuration: a frozen dataclass tree read from and written to YAML."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import yaml
from fundus_edge.runtime.errors import InputError
from fundus_edge.runtime.preprocess import PreprocessConfig

from .augment import AugmentConfig

# Training configs live beside the code that reads them and ship as package data, so they are found from an
# installed wheel too.
CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "vessel-unet"  # vessel-unet | wnet | seed-unet
    base: int = 16
    depth: int = 3
    act: str = "relu"  # relu | leaky
    residual: bool = False  # 1x1 conv shortcut around each block
    bridge: bool = False  # 3x3 conv on each skip connection
    # Space-to-depth (pixel-unshuffle) stem by this factor and a depth-to-space head: no layer runs at
    # full resolution, so narrow layers stop streaming full-size activations through memory (issue #34).
    s2d: int = 1
    # With s2d > 1: channels of one 3x3 conv at full resolution after the depth-to-space head (0: none).
    refine: int = 0


@dataclass(frozen=True)
class DataConfig:
    root: str = ""  # given at run time (--data); never stored in shipped configs or manifests
    layout: str = "auto"
    val_count: int = 4
    split_seed: int = 0


@dataclass(frozen=True)
class OptimConfig:
    iters: int = 2000
    batch_size: int = 8
    crop: int = 96
    lr: float = 2e-3
    min_lr: float = 1e-5
    weight_decay: float = 1e-5
    schedule: str = "cosine"  # cosine | cosine-restarts | poly
    cycles: int = 1  # cosine-restarts: number of cycles over the iterations after warm-up
    warmup: int = 100
    dice_weight: float = 0.5
    aux_weight: float = 1.0  # weight of the first U-Net's loss in a W-Net
    val_every: int = 250
    seed: int = 0
    # Validation also under these camera perturbations (e.g. [jpeg30, gamma0.6, scale0.5, grey]);
    # select "robust" keeps the checkpoint with the best mean of clean and perturbed F1.
    val_perturb: tuple = ()
    select: str = "clean"  # clean | robust
    # Threshold written with the weights when there is no validation split (data.val_count 0,
    # a refit on every training image with a recipe chosen on validation before): a number, or "train"
    # for the one that maximises pooled F1 on the (clean, whole) training images at each save.
    threshold: float | str = 0.5
    # Knowledge distillation: trained models (folders or checkpoints, same preprocessing; several, comma-
    # separated, are an ensemble whose probabilities are averaged) whose soft output the student also
    # learns, weighted by distill_weight (0 = off). teacher_mode "crop": the teacher runs on every augmented
    # crop; "image": it runs once on each whole clean training image (and its mirror image), and the map
    # is cropped and warped with the crop - no teacher forward per step, and the target has the whole
    # image's context and the clean image's view under camera and photometric changes.
    teacher: str = ""
    distill_weight: float = 0.0
    teacher_mode: str = "crop"  # crop | image


@dataclass(frozen=True)
class TrainConfig:
    name: str = "default"
    model: ModelConfig = field(default_factory=ModelConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    def with_overrides(self, **sections) -> TrainConfig:
        """``with_overrides(optim={"iters": 50})`` -> a new config."""
        cfg = self
        for sec, values in sections.items():
            if values:
                cfg = replace(cfg, **{sec: replace(getattr(cfg, sec), **values)})
        return cfg


def _build(cls, data: dict, where: str):
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a mapping")
    names = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(names)
    if unknown:
        raise InputError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    kwargs = {}
    for k, v in data.items():
        sub = {
            "model": ModelConfig,
            "preprocess": PreprocessConfig,
            "augment": AugmentConfig,
            "data": DataConfig,
            "optim": OptimConfig,
        }
        if cls is TrainConfig and k in sub:
            kwargs[k] = _build(sub[k], v, f"{where}.{k}")
        elif isinstance(v, list):
            kwargs[k] = tuple(v)
        else:
            kwargs[k] = v
    return cls(**kwargs)


def config_from_dict(d: dict, where: str = "config") -> TrainConfig:
    return _build(TrainConfig, d, where)


def load_config(path: str | Path) -> TrainConfig:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc.__class__.__name__})") from None
    return config_from_dict(data, str(path))


def dump_config(cfg: TrainConfig) -> str:
    def plain(x):
        if isinstance(x, tuple):
            return [plain(i) for i in x]
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return x

    return yaml.safe_dump(plain(cfg.to_dict()), sort_keys=False)


def resolve_config(name_or_path: str) -> TrainConfig:
    """A config by name (``default``, ``wnet`` ... shipped with the package) or by path."""
    p = Path(name_or_path)
    if not p.suffix and (CONFIG_DIR / f"{name_or_path}.yaml").is_file():
        p = CONFIG_DIR / f"{name_or_path}.yaml"
    return load_config(p)
