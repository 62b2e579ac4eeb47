"""Training throughput of a config on this CPU: data preparation and forward+backward+step per batch,
pixels per second. Run it before a long run to pick threads and batch shape:

    python -m fundus_edge.train.throughput --config wnet --data DRIVE --threads 1
    python -m fundus_edge.train.throughput --config wnet --data DRIVE --threads 1 --to-static

Set threads here (not OMP_NUM_THREADS outside): Paddle reads the thread count when it starts.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def measure(cfg, steps: int = 10, warmup: int = 2, to_static: bool = False) -> dict:
    import paddle

    from .losses import build_loss
    from .trainer import Trainer

    tr = Trainer(cfg, "unused", device="cpu", progress=False)
    train, _ = tr.load_data()
    net = tr.build_network()
    net.train()
    from .model import Outputs

    step_net = Outputs(net)
    if to_static:
        step_net = paddle.jit.to_static(step_net, full_graph=True)
    opt = paddle.optimizer.Adam(learning_rate=1e-3, parameters=net.parameters())
    loss_fn = build_loss(cfg.optim.dice_weight)
    data_s, step_s = [], []
    for it in range(warmup + steps):
        t0 = time.perf_counter()
        x, y, _ = tr.batch(train, it)
        t1 = time.perf_counter()
        xt, yt = paddle.to_tensor(x), paddle.to_tensor(y)
        loss = tr.loss(step_net, None, loss_fn, xt, yt)
        loss.backward()
        opt.step()
        opt.clear_grad()
        t2 = time.perf_counter()
        if it >= warmup:
            data_s.append(t1 - t0)
            step_s.append(t2 - t1)
    o = cfg.optim
    px = o.batch_size * o.crop * o.crop
    d, s = float(np.median(data_s)), float(np.median(step_s))
    return {
        "batch": f"{o.batch_size} x {o.crop}^2",
        "data_ms": d * 1e3,
        "step_ms": s * 1e3,
        "pixels_per_s": px / (d + s),
        "compute_pixels_per_s": px / s,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="wnet")
    ap.add_argument("--data", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--crop", type=int)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--to-static", action="store_true", help="trace the forward with paddle.jit.to_static")
    a = ap.parse_args(argv)
    from fundus_edge.runtime.threads import apply_threads

    apply_threads(a.threads)
    from fundus_edge.runtime.cpu import cpu_model_and_flags, isa_flags

    from .config import resolve_config

    cfg = resolve_config(a.config).with_overrides(
        data={"root": a.data}, optim={k: v for k, v in (("batch_size", a.batch_size), ("crop", a.crop)) if v}
    )
    r = measure(cfg, a.steps, to_static=a.to_static)
    print(
        f"{a.config} ({cfg.model.arch} base {cfg.model.base}), {r['batch']}, "
        f"{a.threads} thread(s){', to_static' if a.to_static else ''}: "
        f"data {r['data_ms']:.0f} ms, step {r['step_ms']:.0f} ms, {r['pixels_per_s'] / 1e3:.0f} k px/s "
        f"(compute alone {r['compute_pixels_per_s'] / 1e3:.0f} k); "
        f"CPU {cpu_model_and_flags()[0]}, ISA flags {', '.join(isa_flags())}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
