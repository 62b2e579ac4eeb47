"""Training checkpoints: a folder with the weights (Paddle's own format) and ``checkpoint.yaml``
(config, iteration, threshold, preprocessing, validation metrics). Used by train, export and
quantize; the runtime never reads these (they are pickles) - it reads exported model folders."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from fundus_edge.runtime.errors import ModelError

from .config import TrainConfig, config_from_dict, dump_config

CHECKPOINT_FORMAT = "fundus-edge-checkpoint/1"
WEIGHTS = "model.pdparams"
OPTIMIZER = "optimizer.pdopt"
META = "checkpoint.yaml"


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    config: TrainConfig
    iteration: int
    threshold: float
    metrics: dict
    elapsed_s: float
    extra: dict


def is_checkpoint(path: Path) -> bool:
    return (Path(path) / META).is_file() and (Path(path) / WEIGHTS).is_file()


def save_checkpoint(
    path: Path,
    net,
    optimizer,
    cfg: TrainConfig,
    iteration: int,
    threshold: float,
    metrics: dict,
    elapsed_s: float,
    extra: dict | None = None,
) -> None:
    import paddle

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    paddle.save(net.state_dict(), str(tmp / WEIGHTS))
    if optimizer is not None:
        paddle.save(optimizer.state_dict(), str(tmp / OPTIMIZER))
    meta = {
        "format": CHECKPOINT_FORMAT,
        "iteration": int(iteration),
        "threshold": float(threshold),
        "metrics": {k: (None if v is None else float(v)) for k, v in metrics.items()},
        "elapsed_s": round(float(elapsed_s), 1),
        "saved": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "extra": extra or {},
        "config": yaml.safe_load(dump_config(cfg)),
    }
    (tmp / META).write_text(yaml.safe_dump(meta, sort_keys=False))
    # Swap in whole so a kill mid-save never leaves a half-written checkpoint.
    if path.exists():
        old = path.with_name(path.name + ".old")
        path.rename(old)
        tmp.rename(path)
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    else:
        tmp.rename(path)


def read_checkpoint(path: str | Path) -> CheckpointInfo:
    path = Path(path)
    if path.is_file() and path.name == WEIGHTS:
        path = path.parent
    if not is_checkpoint(path):
        raise ModelError(f"{path}: not a fundus-edge checkpoint (needs {META} and {WEIGHTS})")
    try:
        meta = yaml.safe_load((path / META).read_text())
    except yaml.YAMLError:
        raise ModelError(f"{path / META}: not valid YAML") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(
            f"{path / META}: unknown checkpoint format "
            f"{meta.get('format') if isinstance(meta, dict) else meta!r}"
        )
    return CheckpointInfo(
        path=path,
        config=config_from_dict(meta["config"], str(path / META)),
        iteration=int(meta["iteration"]),
        threshold=float(meta["threshold"]),
        metrics=meta.get("metrics") or {},
        elapsed_s=float(meta.get("elapsed_s", 0.0)),
        extra=meta.get("extra") or {},
    )


def load_network(path: str | Path):
    """Build the network of a checkpoint and load its weights; returns (net, info)."""
    import paddle

    from .model import network_from_config

    info = read_checkpoint(path)
    m = info.config.model
    net = network_from_config(m, info.config.preprocess.in_channels)
    state = paddle.load(str(info.path / WEIGHTS))
    load_state_reshaping(net, state)
    net.eval()
    return net, info


def load_state_reshaping(net, state: dict) -> None:
    """Load weights whose shapes may differ from the freshly built network (a pruned checkpoint):
    each tensor is replaced in place, as PaddleSlim's pruner itself does when it prunes."""
    import numpy as np
    import paddle

    own = net.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise ModelError(f"checkpoint lacks weights for {', '.join(missing[:3])}")
    for k, t in own.items():
        v = state[k].numpy() if hasattr(state[k], "numpy") else np.asarray(state[k])
        if tuple(t.shape) == tuple(v.shape):
            t.set_value(v)
        else:
            t.value().get_tensor().set(v.astype(t.numpy().dtype), paddle.CPUPlace())


def load_source(path: str | Path):
    """(net, info) from a training checkpoint or from an exported model folder (PIR + the
    parameter order its manifest records), so shipped models can seed pruning and QAT."""
    path = Path(path)
    if is_checkpoint(path) or (path.is_file() and path.name == WEIGHTS):
        return load_network(path)
    from fundus_edge.runtime.manifest import read_manifest, verify_files

    man = read_manifest(path)  # raises a clear error when it is neither
    order = man.source.get("param_order")
    if man.quantization:
        raise ModelError(
            f"{path}: already quantized ({man.quantization.get('method')}); give an FP32 model or checkpoint"
        )
    if "pir" not in man.formats or not order or "config" not in man.source:
        raise ModelError(
            f"{path}: model folder has no PIR weights with a recorded parameter order; "
            "give the training checkpoint instead"
        )
    verify_files(path, man, man.formats["pir"])
    import paddle

    from .model import network_from_config

    cfg = config_from_dict(man.source["config"], f"{path}/manifest.yaml")
    net = network_from_config(cfg.model, cfg.preprocess.in_channels)
    prefix = path / Path(man.formats["pir"][0]).stem
    loaded = paddle.jit.load(str(prefix)).state_dict()
    tensors = [loaded[k] for k in sorted(loaded, key=lambda k: int(k.rsplit("_", 1)[-1]))]
    if len(tensors) != len(order):
        raise ModelError(f"{path}: {len(tensors)} saved tensors but {len(order)} recorded names")
    load_state_reshaping(net, dict(zip(order, tensors, strict=False)))
    net.eval()
    info = CheckpointInfo(
        path,
        cfg,
        int(man.source.get("iteration", 0)),
        float(man.threshold),
        man.source.get("validation") or {},
        0.0,
        {"from_model_dir": True, "scale": man.scale, "variant": man.variant},
    )
    return net, info
