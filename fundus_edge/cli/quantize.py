"""``fundus-edge quantize``: prune and/or INT8 a model folder (the work is fundus_edge.quantize)."""

from __future__ import annotations

from fundus_edge.runtime.errors import FundusEdgeError

from .common import add_run_options


def add(sub) -> None:
    from fundus_edge.quantize.variants import INT8_METHODS, RECIPE_NAMES

    q = sub.add_parser(
        "quantize",
        help="prune (PaddleSlim L1-norm filters + fine-tune) and/or INT8 (PaddleSlim PTQ/QAT, NNCF, "
        "ONNX Runtime)",
    )
    q.add_argument("source", help="FP32 model folder or training checkpoint")
    q.add_argument("--out", help="output model folder")
    q.add_argument("--variants", metavar="DIR", help=f"build DIR/{{{','.join(RECIPE_NAMES)}}} instead")
    q.add_argument(
        "--data", required=True, help="training data (fine-tuning and calibration use training images only)"
    )
    q.add_argument("--prune", type=float, metavar="RATIO", help="share of 3x3 filters to remove, in (0, 1)")
    q.add_argument(
        "--int8",
        choices=list(INT8_METHODS),
        help="; ".join(f"{m}: {tool} ({out})" for m, (tool, out) in INT8_METHODS.items()),
    )
    q.add_argument("--algo", default="avg", help="PaddleSlim PTQ algorithm: avg, hist, KL, mse, abs_max")
    _add_quantizer_options(q)
    q.add_argument("--finetune-iters", type=int, default=800)
    q.add_argument(
        "--calib-images",
        type=int,
        help="training images to calibrate on (default 8 for PaddleSlim, 20 for NNCF / ONNX Runtime)",
    )
    add_run_options(q)
    q.set_defaults(func=run)


def _add_quantizer_options(q) -> None:
    """quantize's options of the engines' own quantizers: NNCF's, then ONNX Runtime's."""
    q.add_argument(
        "--nncf-preset",
        default="performance",
        choices=["performance", "mixed"],
        help="NNCF: symmetric (performance) or asymmetric activations (mixed)",
    )
    q.add_argument(
        "--no-fast-bias-correction", action="store_true", help="NNCF: the slower, fuller bias correction"
    )
    q.add_argument(
        "--overflow-fix",
        default="auto",
        choices=["auto", "enable", "disable", "first_layer_only"],
        help="NNCF: 7-bit weights against 16-bit overflow on CPUs without VNNI (auto: NNCF's default)",
    )
    q.add_argument(
        "--accuracy-control",
        type=float,
        nargs="?",
        const=0.005,
        metavar="MAX_DROP",
        help="NNCF: quantize_with_accuracy_control, keeping pooled F1 on the training images within "
        "MAX_DROP (default 0.005)",
    )
    q.add_argument(
        "--per-tensor", action="store_true", help="ONNX Runtime: per-tensor instead of per-channel weights"
    )
    q.add_argument(
        "--reduce-range",
        default="auto",
        choices=["auto", "on", "off"],
        help="ONNX Runtime: 7-bit weights (auto: where the CPU lacks VNNI)",
    )
    q.add_argument(
        "--ort-format",
        default="qdq",
        choices=["qdq", "qoperator"],
        help="ONNX Runtime: QDQ or QOperator graph",
    )


def run(a) -> int:
    from fundus_edge.quantize.pipeline import build_variants, quantize

    if a.variants:
        done = build_variants(
            a.source,
            a.variants,
            a.data,
            finetune_iters=a.finetune_iters,
            algo=a.algo,
            force=a.force,
            progress=not a.no_progress,
        )
        print("variants: " + ", ".join(f"{k} -> {v}" for k, v in done.items()))
        return 0
    if not a.out:
        raise FundusEdgeError("give --out DIR (or --variants DIR)")
    from fundus_edge.quantize.engine_ptq import NncfOptions, OrtOptions

    nncf = NncfOptions(
        preset=a.nncf_preset,
        fast_bias_correction=not a.no_fast_bias_correction,
        overflow_fix=a.overflow_fix,
        accuracy_control=a.accuracy_control is not None,
        max_drop=a.accuracy_control or 0.005,
    )
    ort = OrtOptions(
        per_channel=not a.per_tensor,
        reduce_range={"auto": None, "on": True, "off": False}[a.reduce_range],
        quant_format=a.ort_format,
    )
    r = quantize(
        a.source,
        a.out,
        a.data,
        prune=a.prune,
        int8=a.int8,
        algo=a.algo,
        finetune_iters=a.finetune_iters,
        calib_images=a.calib_images,
        force=a.force,
        progress=not a.no_progress,
        nncf_options=nncf,
        ort_options=ort,
    )
    print(
        f"{r.variant} model in {r.model_dir}: {r.params_before:,} -> {r.params_after:,} parameters, "
        f"{r.gmac_before:.2f} -> {r.gmac_after:.2f} GMAC, {r.size_mb:.2f} MB"
    )
    return 0
