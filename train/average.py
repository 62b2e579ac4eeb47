"""Weight averaging of checkpoints of one training trajectory (stochastic weight averaging, Izmailov et
al. 2018: the low-learning-rate ends of a cyclical schedule, averaged, then BatchNorm statistics
recomputed), written as an ordinary checkpoint that evaluate, export and quantize read.

Paddle has no SWA utility for dygraph (``paddle.incubate`` has ModelAverage, an optimizer wrapper that
averages during one run and never recomputes BatchNorm), so the averaging and the BatchNorm pass are here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fundus_edge.runtime.errors import InputError

from .checkpoint import WEIGHTS, read_checkpoint, save_checkpoint


@dataclass(frozen=True)
class AverageResult:
    out_dir: Path
    members: tuple[str, ...]
    bn_batches: int
    threshold: float
    val_f1: float | None
    val_auc: float | None
    elapsed_s: float


def _bn_layers(net):
    import paddle.nn as nn

    return [sub for sub in net.sublayers() if isinstance(sub, nn.layer.norm._BatchNormBase)]


def recompute_batchnorm(net, batches) -> int:
    """Reset every BatchNorm layer's running mean and variance and set them to the cumulative average
    over ``batches`` (arrays N x C x H x W) of a train-mode forward without gradients. Returns the count."""
    import paddle

    layers = _bn_layers(net)
    if not layers:
        return 0
    saved = [bn._momentum for bn in layers]
    for bn in layers:
        bn._mean.set_value(np.zeros(bn._mean.shape, "float32"))
        bn._variance.set_value(np.ones(bn._variance.shape, "float32"))
    net.train()
    n = 0
    try:
        with paddle.no_grad():
            for k, x in enumerate(batches):
                # running = m * running + (1 - m) * batch with m = k / (k + 1): the mean of all batches
                # so far.
                for bn in layers:
                    bn._momentum = k / (k + 1)
                net(paddle.to_tensor(x))
                n += 1
    finally:
        for bn, m in zip(layers, saved, strict=False):
            bn._momentum = m
        net.eval()
    return n


def average_checkpoints(
    members: list[str | Path],
    out: str | Path,
    data: str | Path,
    bn_batches: int = 200,
    force: bool = False,
    progress: bool = True,
) -> AverageResult:
    """Average the weights of ``members`` (checkpoints of one network), recompute BatchNorm on
    ``bn_batches`` training batches of the last member's recipe, validate on its split, save to ``out``."""
    import paddle

    from .model import network_from_config
    from .trainer import Trainer, prepare_out_dir

    if len(members) < 2:
        raise InputError("averaging needs at least two checkpoints")
    infos = [read_checkpoint(m) for m in members]
    ref = infos[-1].config
    for i in infos:
        if i.config.model != ref.model or i.config.preprocess != ref.preprocess:
            raise InputError(
                f"{i.path}: its network or preprocessing differs from {infos[-1].path}'s; "
                "only checkpoints of one network average"
            )
    t0 = time.perf_counter()
    states = [paddle.load(str(i.path / WEIGHTS)) for i in infos]
    keys = list(states[-1])
    for i, s in zip(infos, states, strict=False):
        if set(s) != set(keys) or any(tuple(s[k].shape) != tuple(states[-1][k].shape) for k in keys):
            raise InputError(
                f"{i.path}: its weights do not match {infos[-1].path}'s (pruned or another network)"
            )
    out = Path(out)
    prepare_out_dir(out, resume=False, force=force)  # only once the members are known to average
    avg = {
        k: np.mean(
            [np.asarray(s[k].numpy() if hasattr(s[k], "numpy") else s[k], dtype=np.float64) for s in states],
            axis=0,
        ).astype("float32")
        for k in keys
    }

    cfg = ref.with_overrides(data={"root": str(data)})
    tr = Trainer(cfg, out, device="cpu", progress=progress)
    train, val = tr.load_data()
    net = network_from_config(cfg.model, cfg.preprocess.in_channels)
    net.set_state_dict({k: paddle.to_tensor(v) for k, v in avg.items()})

    from tqdm import tqdm

    batches = (tr.batch(train, it)[0] for it in range(bn_batches))
    n = recompute_batchnorm(
        net, tqdm(batches, total=bn_batches, desc="BatchNorm statistics", disable=not progress)
    )
    thr, vm = tr.validate(net, val) if val else (infos[-1].threshold, {})
    elapsed = time.perf_counter() - t0
    extra = {
        "scale": tr.scale_info,
        "averaged_from": [f"{i.path} (iteration {i.iteration})" for i in infos],
        "bn_batches": n,
    }
    save_checkpoint(out, net, None, cfg, max(i.iteration for i in infos), thr, vm, elapsed, extra)
    return AverageResult(
        out, tuple(str(i.path) for i in infos), n, thr, vm.get("val_f1"), vm.get("val_auc"), elapsed
    )
