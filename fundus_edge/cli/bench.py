"""``fundus-edge bench``: every variant x engine (the work is fundus_edge.bench)."""

from __future__ import annotations

import sys
from pathlib import Path

from fundus_edge.runtime.errors import FundusEdgeError
from fundus_edge.runtime.manifest import is_model_dir

from .models import shipped_models


def add(sub) -> None:
    b = sub.add_parser(
        "bench", help="every variant x engine: latency, throughput, memory, accuracy on DRIVE test"
    )
    b.add_argument("--data", help="DRIVE folder (without it: latency on synthetic inputs, accuracy null)")
    b.add_argument("--out", default="build/bench")
    b.add_argument("--models-dir", default="build/models", help="where variants are built / found")
    b.add_argument(
        "--models",
        nargs="+",
        metavar="DIR",
        help="model folders to benchmark beside the variants (ours or imported: "
        "`import-paddleseg`), each a variant named after its folder; a folder without manifest.yaml is the "
        "shipped models' folder (default ./models, else the source checkout's)",
    )
    b.add_argument("--variants", help=_variants_help())
    b.add_argument("--engines", help="comma list (default: every installed engine)")
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--quick", action="store_true", help="smoke run: 3 images, few timed runs")
    b.add_argument(
        "--rounds",
        type=int,
        help="timing rounds per cell, interleaved over the run; p50 is the median of the rounds' "
        "(default 4; --quick 2)",
    )
    b.add_argument(
        "--window",
        type=float,
        help="seconds each round times a scored cell at least: the test images once, then again in turn "
        "(default 1; --quick 0.2)",
    )
    b.add_argument("--no-build", action="store_true", help="do not build missing variants")
    b.add_argument("--no-bf16", action="store_true", help="skip the OpenVINO bf16 rows")
    b.add_argument(
        "--no-gpu", action="store_true", help="skip the GPU rows (added per engine that has a GPU here)"
    )
    b.add_argument(
        "--finetune-iters", type=int, default=800, help="fine-tuning of the pruned variant when it is built"
    )
    b.add_argument("--no-progress", action="store_true")
    b.add_argument(
        "--report",
        metavar="RESULTS_JSON",
        help="only rebuild report.html beside this saved results.json (no cells run)",
    )
    b.set_defaults(func=run)


def _variants_help() -> str:
    """bench --variants: the table's default list, the recipes that derive a shipped model's variants, the
    quantizer each INT8 recipe names."""
    from fundus_edge.quantize.variants import DEFAULT_BENCH, DERIVABLE, INT8_METHODS

    names = [r.name for r in DERIVABLE]
    tools = ", ".join(f"{r.name} = {INT8_METHODS[r.int8][0]}" for r in DERIVABLE if r.int8 and not r.prune)
    return (
        f"comma list (default {','.join(DEFAULT_BENCH)}; <shipped model>-{', -'.join(names[:-1])} or"
        f" -{names[-1]} compresses that shipped model like the default's variant of that name; {tools})"
    )


def run(a) -> int:
    if a.report:
        from fundus_edge.bench.html_report import write_report

        print(f"wrote {write_report(a.report)}")
        return 0
    from fundus_edge.bench.runner import BenchConfig
    from fundus_edge.bench.sweep import run_bench

    data = a.data if a.data and Path(a.data).exists() else None
    if a.data and data is None:
        print(
            f"bench: {a.data} not found: latency on synthetic inputs only, accuracy columns null",
            file=sys.stderr,
        )
    kw = {}
    if a.variants:
        kw["variants"] = tuple(v.strip() for v in a.variants.split(","))
    if a.engines:
        kw["engines"] = tuple(e.strip() for e in a.engines.split(","))
    if a.rounds is not None:
        if a.rounds < 1:
            raise FundusEdgeError(f"--rounds {a.rounds}: at least 1 (the accuracy pass is the first round)")
        kw["rounds"] = a.rounds
    if a.window is not None:
        if a.window <= 0:
            raise FundusEdgeError(f"--window {a.window}: must be above 0 seconds")
        kw["window_s"] = a.window
    given = list(a.models or [])
    extra = tuple(Path(d) for d in given if is_model_dir(d))
    folders = [d for d in given if not is_model_dir(d)]
    if len(folders) > 1:
        raise FundusEdgeError(
            f"--models: {', '.join(folders)} are not model folders (no manifest.yaml); "
            "at most one may be the shipped models' folder"
        )
    cfg = BenchConfig(
        data=data,
        out=Path(a.out),
        threads=a.threads,
        quick=a.quick,
        models_dir=Path(a.models_dir),
        build=not a.no_build,
        shipped=shipped_models(folders[0] if folders else None),
        extra=extra,
        finetune_iters=a.finetune_iters,
        bf16_rows=not a.no_bf16,
        gpu_rows=not a.no_gpu,
        **kw,
    )
    # The ledger's rows name the options that decide what was scored (main may be called with an argv of
    # its own).
    opts = [
        ("--data", a.data),
        ("--variants", a.variants),
        ("--engines", a.engines),
        ("--models", " ".join(given) or None),
        ("--quick", a.quick or None),
    ]
    command = " ".join(["fundus-edge bench", *(k if v is True else f"{k} {v}" for k, v in opts if v)])
    records, meta = run_bench(cfg, progress=not a.no_progress, command=command)
    print((Path(a.out) / "results.md").read_text())
    print(
        f"wrote {a.out}/results.json, results.csv, results.md, pareto.png, report.html "
        f"({meta['wall_s']:.0f} s)"
    )
    return 0
