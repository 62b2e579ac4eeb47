"""The one table of engines. Every place that lists, labels, pins, plots or checks engines reads this table:
the registry (``engine_class``), precision resolution, the bench (cells, shape rows, reports, machine,
profile), ``pack`` (what a bundle pins, what an ARM bundle may record), ``selftest``, the README's tables,
the model cards and the CLI's ``--backend`` choices. Adding an engine is one module in this package and one
row here (tests/test_engine_table.py registers a toy engine through ``register`` and finds it everywhere).

Engine options follow ONNX Runtime's ``providers=[(name, options)]``: the engine is named, and its options
(threads, precision, shapes; ``base.EngineOptions``) travel beside the name rather than through a
cpu/gpu switch; ``options`` below says how each engine is told them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# x86 flags as /proc/cpuinfo names them; ARM features as the kernel's hwcaps name them (/proc/cpuinfo
# "Features"). An empty tuple: every CPU of that architecture runs it (a baseline x86-64 or ARMv8 kernel).
# A precision with no ARM entry is never recorded by an ARM bundle (deploy.platforms).


@dataclass(frozen=True)
class PrecisionNeed:
    """What a CPU needs to run one precision natively through one engine (any one flag of each tuple)."""

    x86: tuple[str, ...] = ()
    arm: tuple[str, ...] | None = ()  # None: not assumed on ARM (never recorded by an ARM bundle)
    asked: bool = False  # a reduced float precision the engine can be *asked* for (precision "auto")
    arm_checked: bool = False  # checked under emulation by `make test-arm` (deploy.arm_check)


@dataclass(frozen=True)
class EngineSpec:
    name: str  # the --backend name, the bench's backend column, a bundle's engine
    label: str  # how reports and the README name it
    module: str  # module of fundus_edge.runtime.engines holding its ``ENGINE`` class
    import_name: str  # the Python package it imports (found by importlib without importing it)
    pip: str  # the distribution `pack` pins for a device (None-like "" for an engine a device never installs)
    extra: str  # fundus-edge's pip extra (pyproject [project.optional-dependencies])
    marker: str  # Plotly symbol in the HTML report
    mpl_marker: str  # Matplotlib marker in the Markdown report's PNG chart
    # precision -> need; its order is fastest first among reduced floats (bf16 before fp16: OpenVINO's
    # CPU plugin has bf16 kernels on far more CPUs)
    precisions: dict[str, PrecisionNeed]
    options: str  # how threads and options reach the engine (for docs and --help)
    # The bench's static-against-dynamic row (BenchConfig.shape_variant): the shape this engine's extra
    # row uses ("static" | "dynamic"), or None with the reason in shape_skipped.
    shape_row: str | None = None
    shape_skipped: str = ""
    auto_rank: int = 99  # backend "auto": the lowest installed rank that reads a format of the model
    packable: bool = True  # `pack --engine` may ship it (Paddle Inference is not a device runtime here)
    versions: tuple[str, ...] = field(default=())  # distributions the bench's machine record names
    # Formats of runtime.formats this engine reads besides the rows of that table that name it: how an
    # engine added by ``register`` (a plug-in, a test's toy) reads an existing format without a second edit.
    reads: tuple[str, ...] = ()


ENGINE_TABLE: dict[str, EngineSpec] = {
    e.name: e
    for e in (
        EngineSpec(
            name="onnxruntime",
            label="ONNX Runtime",
            module="onnxruntime",
            import_name="onnxruntime",
            pip="onnxruntime",
            extra="onnxruntime",
            marker="circle",
            mpl_marker="o",
            # ORT's INT8 (QDQ, MLAS) runs on any x86-64 / ARMv8 CPU; VNNI / dotprod only make it faster.
            precisions={"fp32": PrecisionNeed(arm_checked=True), "int8": PrecisionNeed(arm=None)},
            options="SessionOptions: intra_op_num_threads = threads; providers=[(name, options)] per device",
            shape_row="static",
            auto_rank=1,
            versions=("onnxruntime",),
        ),
        EngineSpec(
            name="openvino",
            label="OpenVINO",
            module="openvino",
            import_name="openvino",
            pip="openvino",
            extra="openvino",
            marker="square",
            mpl_marker="s",
            precisions={
                "fp32": PrecisionNeed(arm_checked=True),
                "bf16": PrecisionNeed(x86=("avx512_bf16", "amx_bf16"), arm=None, asked=True),
                "fp16": PrecisionNeed(x86=("avx512_fp16", "amx_fp16"), arm=None, asked=True),
                # NNCF INT8 IR: checked on x86 only (on ARM its kernels were not checked under emulation)
                "int8": PrecisionNeed(arm=None),
            },
            options="compile_model config: INFERENCE_NUM_THREADS = threads, "
            "INFERENCE_PRECISION_HINT = precision",
            shape_row="dynamic",
            auto_rank=0,
            versions=("openvino",),
        ),
        EngineSpec(
            name="paddle",
            label="Paddle Inference",
            module="paddle",
            import_name="paddle",
            pip="paddlepaddle",
            extra="paddle",
            marker="triangle-up",
            mpl_marker="^",
            precisions={"fp32": PrecisionNeed(arm=None), "int8": PrecisionNeed(arm=None)},
            options="Config: set_cpu_math_library_num_threads(threads), enable_mkldnn (oneDNN) unless the "
            "manifest's engines.paddle says otherwise",
            shape_skipped="no static input shape on the CPU: Paddle Inference reshapes its input per call "
            "and oneDNN caches its primitives per shape already; fixed shapes pay off only in its TensorRT "
            "engine on a GPU",
            auto_rank=2,
            packable=False,
            versions=("paddlepaddle", "paddle2onnx", "paddleslim", "paddleseg"),
        ),
        EngineSpec(
            name="litert",
            label="LiteRT",
            module="litert",
            import_name="ai_edge_litert",
            pip="ai-edge-litert",
            extra="litert",
            marker="diamond",
            mpl_marker="D",
            # XNNPACK: fp32 everywhere; full-integer INT8 kernels are ARM's own (checked under emulation)
            precisions={
                "fp32": PrecisionNeed(arm_checked=True),
                "fp16": PrecisionNeed(),
                "int8": PrecisionNeed(arm_checked=True),
            },
            options="Interpreter(num_threads=threads) with the XNNPACK delegate (the wheel's default)",
            shape_skipped="converted at one input size: the engine resizes its input tensor per image",
            auto_rank=3,
            versions=("ai-edge-litert",),
        ),
    )
}


def register(spec: EngineSpec) -> None:
    """Add (or replace) one engine: the one place a new engine is named (its module defines ``ENGINE``)."""
    ENGINE_TABLE[spec.name] = spec


def spec(name: str) -> EngineSpec:
    from ..errors import EngineUnavailable, nearest

    if name not in ENGINE_TABLE:
        raise EngineUnavailable(f"unknown engine {name!r}{nearest(name, ENGINE_TABLE)}")
    return ENGINE_TABLE[name]


def names() -> list[str]:
    """Every engine, in the table's order (the bench's and the model cards' order)."""
    return list(ENGINE_TABLE)


def backend_choices() -> list[str]:
    """What a ``--backend`` option takes: "auto" and every engine, read when the parser is built."""
    return ["auto", *ENGINE_TABLE]


def auto_order() -> list[str]:
    return sorted(ENGINE_TABLE, key=lambda n: ENGINE_TABLE[n].auto_rank)


def reduced(name: str) -> tuple[str, ...]:
    """The reduced float precisions ``name`` can be asked for, fastest first."""
    return tuple(p for p, need in spec(name).precisions.items() if need.asked)


def arm_checked() -> set[tuple[str, str]]:
    """(engine, precision) an ARM64 bundle may record."""
    return {(n, p) for n, e in ENGINE_TABLE.items() for p, need in e.precisions.items() if need.arm_checked}


def formats(name: str) -> list[str]:
    """The model formats ``name`` reads, most preferred first (runtime.formats is the formats' table)."""
    from ..formats import FORMATS, formats_for

    return formats_for(name, list(FORMATS))
