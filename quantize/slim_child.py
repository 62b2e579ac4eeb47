"""PaddleSlim steps, run in a child process with FLAGS_enable_pir_api=0.

PaddleSlim 2.6 walks legacy programs: its pruner fails under PIR ("pir.Operation has no attribute
input_arg_names") and post-training quantisation needs a ``.pdmodel`` (STACK.md, re-measured here).

    python -m fundus_edge.quantize.slim_child prune WORK RATIO
        WORK holds config.yaml + weights.npz; writes pruned weights.npz back.
    python -m fundus_edge.quantize.slim_child ptq LEGACY_DIR CALIB_NPZ OUT_DIR ALGO OPS
    python -m fundus_edge.quantize.slim_child qat WORK OUT_DIR OPS
        WORK holds config.yaml (fine-tuning settings) + weights.npz; writes OUT_DIR/legacy.*
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def _alias_paddle3():
    # PaddleSlim 2.6 imports a private name that Paddle 3 renamed (STACK.md).
    import paddle.base.dygraph.base as b

    if not hasattr(b, "_to_static_mode_guard_"):
        b._to_static_mode_guard_ = b.to_static_mode_guard


def prune(work: str, ratio: str) -> None:
    import paddle.nn as nn

    _alias_paddle3()
    from fundus_edge.train.checkpoint import load_state_reshaping
    from fundus_edge.train.config import load_config
    from fundus_edge.train.model import network_from_config
    from paddleslim.dygraph import L1NormFilterPruner

    work = Path(work)
    cfg = load_config(work / "config.yaml")
    net = network_from_config(cfg.model, cfg.preprocess.in_channels)
    with np.load(work / "weights.npz", allow_pickle=False) as w:
        load_state_reshaping(net, {k: w[k] for k in w.files})
    net.eval()
    r = float(ratio)
    # Every 3x3 convolution loses the same share of its filters (lowest L1 norm first); the
    # 1x1 head keeps its two classes. Ratios are keyed by parameter .name (STACK.md).
    ratios = {
        layer.weight.name: r
        for layer in net.sublayers()
        if isinstance(layer, nn.Conv2D) and layer.weight.shape[2] == 3
    }
    pruner = L1NormFilterPruner(net, [1, cfg.preprocess.in_channels, 64, 64])
    pruner.prune_vars(ratios, axis=0)
    np.savez(work / "weights.npz", **{k: v.numpy() for k, v in net.state_dict().items()})


def ptq(legacy_dir: str, calib: str, out_dir: str, algo: str, ops: str) -> None:
    import paddle

    paddle.enable_static()
    from paddleslim.quant import quant_post_static

    with np.load(calib, allow_pickle=False) as z:
        batches = [z[k] for k in sorted(z.files)]

    def feeds():  # Paddle 3's PTQ takes a callable yielding feed dicts (no sample generator)
        for x in batches:
            yield {"image": x[None]}

    exe = paddle.static.Executor(paddle.CPUPlace())
    quant_post_static(
        executor=exe,
        model_dir=legacy_dir,
        quantize_model_path=out_dir,
        data_loader=feeds,
        model_filename="legacy.pdmodel",
        params_filename="legacy.pdiparams",
        save_model_filename="legacy.pdmodel",
        save_params_filename="legacy.pdiparams",
        batch_size=1,
        batch_nums=len(batches),
        algo=algo,
        quantizable_op_type=ops.split(","),
        weight_quantize_type="channel_wise_abs_max",
        onnx_format=True,
    )


def qat(work: str, out_dir: str, ops: str) -> None:
    """Quantization-aware fine-tuning: PaddleSlim's dygraph QAT inserts fake-quant layers, the
    project's trainer fine-tunes them on the training split, PaddleSlim saves the INT8 program."""
    import paddle

    _alias_paddle3()
    from fundus_edge.export.builders import input_spec
    from fundus_edge.train.checkpoint import load_state_reshaping
    from fundus_edge.train.config import load_config
    from fundus_edge.train.model import VesselProbability, network_from_config
    from fundus_edge.train.trainer import Trainer
    from paddleslim import QAT

    work = Path(work)
    cfg = load_config(work / "config.yaml")
    with paddle.utils.unique_name.guard():
        net = network_from_config(cfg.model, cfg.preprocess.in_channels)
        with np.load(work / "weights.npz", allow_pickle=False) as w:
            load_state_reshaping(net, {k: w[k] for k in w.files})
    layer_types = {"conv2d": "Conv2D", "conv2d_transpose": "Conv2DTranspose"}
    quanter = QAT(
        config={
            "weight_quantize_type": "channel_wise_abs_max",
            "activation_quantize_type": "moving_average_abs_max",
            "quantizable_layer_type": [layer_types[o] for o in ops.split(",")],
            "onnx_format": True,
        }
    )
    quanter.quantize(net)
    trainer = Trainer(cfg, work / "run", device="cpu", progress=False, net=net)
    res = trainer.fit(force=True)
    print(f"QAT fine-tuned {res.iterations} iterations, last validation F1 {res.best_val_f1:.4f}", flush=True)
    trained = trainer.net
    trained.eval()
    quanter.save_quantized_model(
        VesselProbability(trained),
        str(Path(out_dir) / "legacy"),
        input_spec=input_spec(cfg.preprocess.in_channels),
    )
    info = Path(out_dir) / "legacy.pdiparams.info"
    if info.exists():
        info.unlink()


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"prune": prune, "ptq": ptq, "qat": qat}[cmd](*args)
