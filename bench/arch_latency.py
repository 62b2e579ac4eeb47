"""Inference time of untrained networks: what an architecture will cost before hours of training it.
The graph, not the weights, sets the time, so each network is built from a config with random weights,
exported to ONNX and timed through the runtime on one fundus-sized image.

    python -m fundus_edge.bench.arch_latency --config wnet --data DRIVE \
        --try residual=false --try bridge=false --try residual=false,bridge=false
    python -m fundus_edge.bench.arch_latency --config wnet --backends openvino,openvino:bf16 --try base=16
    python -m fundus_edge.bench.arch_latency --config s2d-b16 --data DRIVE \
        --backends openvino:bf16,openvino+nncf,onnxruntime+ort --try depth=2 --try s2d=4,base=32

An engine written ``ENGINE+QUANTIZER`` (``openvino+nncf``, ``onnxruntime+ort``, ``openvino+ort``) times the
INT8 file that quantizer makes of the untrained network, calibrated on DRIVE training images (--data needed):
INT8 kernels and their fusions, not the weights, set its time too.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import yaml


def parse_overrides(text: str) -> dict:
    """'residual=false,base=8' -> {'residual': False, 'base': 8} (values read as YAML)."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise SystemExit(f"--try {text!r}: expected key=value pairs, got {part!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _image(data: str | None):
    """DRIVE test image 01, or a synthetic fundus-sized one."""
    import numpy as np

    if data:
        from fundus_edge.train.data import discover, load_sample

        return load_sample(discover(data, split="test")[0]).rgb
    from .runner import synthetic_fundus

    return synthetic_fundus(np.random.default_rng(0))


def default_backends() -> str:
    """Every engine that reads ONNX (the one file this tool exports), in backend "auto"'s order, from the
    engine table: an engine added there is timed here too."""
    from fundus_edge.runtime.engines.table import auto_order, formats

    return ",".join(n for n in auto_order() if "onnx" in formats(n))


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="wnet", help="a config name or YAML file")
    ap.add_argument(
        "--try",
        dest="tries",
        action="append",
        default=[],
        metavar="KEY=VALUE[,...]",
        help="model settings to change (base, depth, act, residual, bridge, arch); repeatable;"
        " the config itself is always timed",
    )
    ap.add_argument("--data", help="DRIVE (test image 01); a synthetic image without it")
    ap.add_argument(
        "--backends",
        default=default_backends(),
        help="engines to time (default: those that read ONNX, %(default)s), each optionally with a precision"
        " (openvino:bf16)"
        " or an INT8 quantizer (openvino+nncf, onnxruntime+ort)",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5, help="timed runs per network and engine in each round")
    ap.add_argument("--rounds", type=int, default=3)
    return ap


def _networks(a: argparse.Namespace, cfg, engines: list[tuple[str, str, str]], tmp: Path) -> list[tuple]:
    """(row name, export result, one Predictor per engine) for the config and each --try: the untrained
    network exported to ONNX in ``tmp`` (and quantized by each INT8 backend's quantizer)."""
    from fundus_edge.export.exporter import export_checkpoint
    from fundus_edge.runtime.predictor import Predictor
    from fundus_edge.train.checkpoint import save_checkpoint
    from fundus_edge.train.model import network_from_config

    rows = []
    for i, change in enumerate([""] + a.tries):
        c = cfg.with_overrides(model=parse_overrides(change)) if change else cfg
        net = network_from_config(c.model, c.preprocess.in_channels)
        ck, out = tmp / f"{i}" / "ckpt", tmp / f"{i}" / "model"
        save_checkpoint(ck, net, None, c, 0, 0.5, {}, 0.0)
        r = export_checkpoint(ck, out, formats=("onnx",), force=True)
        folders = {"": out}
        for q in sorted({q for _, _, q in engines if q}):
            from fundus_edge.quantize.engine_ptq import engine_int8

            folders[q] = engine_int8(out, tmp / f"{i}" / f"int8-{q}", a.data, q, calib_images=4, force=True)
        rows.append(
            (
                f"{a.config}{' ' + change if change else ''}",
                r,
                [
                    Predictor.load(folders[q], backend=b, threads=a.threads, precision=pr or None)
                    for b, pr, q in engines
                ],
            )
        )
    return rows


def _time_round_robin(rows: list[tuple], img, n_backends: int, a: argparse.Namespace) -> dict:
    """(row, engine) -> engine ms of every timed run."""
    from fundus_edge.measure.timing import TimingPolicy, time_calls

    # Round-robin: every network is timed in every round, so a drift of the machine's speed (a shared
    # VM's neighbours, clocks) spreads over all rows instead of landing on the ones timed last.
    samples = {(i, j): [] for i in range(len(rows)) for j in range(n_backends)}
    for _ in range(a.rounds):
        for i, (_, _, preds) in enumerate(rows):
            for j, p in enumerate(preds):
                t = time_calls(
                    lambda p=p: p.predict(img).engine_ms,
                    TimingPolicy(warmup=2, runs=a.runs, min_runs=a.runs, budget_s=0.0),
                )
                samples[i, j] += t.samples_ms
    return samples


def main(argv=None) -> int:
    a = _parser().parse_args(argv)

    from fundus_edge.measure.timing import Timing
    from fundus_edge.train.config import resolve_config

    from .machine import cpu_info

    cfg = resolve_config(a.config)
    img = _image(a.data)
    backends = [b.strip() for b in a.backends.split(",") if b.strip()]
    engines = [
        (*b.partition("+")[0].partition(":")[::2], b.partition("+")[2]) for b in backends
    ]  # (engine, precision or "", quantizer or "")
    if any(q for _, _, q in engines) and not a.data:
        raise SystemExit(
            "an INT8 backend (ENGINE+QUANTIZER) calibrates on DRIVE training images: give --data"
        )
    info = cpu_info()
    print(
        f"untrained networks, engine p50 of {a.rounds} rounds x {a.runs} runs (round-robin),"
        f" {a.threads} threads; CPU {info['cpu']}, ISA flags {', '.join(info['isa_flags'])}\n"
    )
    print("| network | GMAC | params | " + " | ".join(f"{b} ms" for b in backends) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in backends) + " |")
    with tempfile.TemporaryDirectory() as tmp:
        rows = _networks(a, cfg, engines, Path(tmp))
        samples = _time_round_robin(rows, img, len(backends), a)
        for i, (name, r, _) in enumerate(rows):
            cells = [f"{Timing(tuple(samples[i, j])).p50:.1f}" for j in range(len(backends))]
            print(f"| {name} | {r.gmac:.2f} | {r.params:,} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
