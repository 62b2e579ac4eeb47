"""The CPU's model name and instruction-set flags, read once from /proc/cpuinfo (Linux; empty
elsewhere). The bench reports them; the INT8 build records VNNI (OpenVINO's int8 path depends on it)."""

from __future__ import annotations

import functools
import platform


@functools.lru_cache(maxsize=1)
def cpu_model_and_flags(path: str = "/proc/cpuinfo") -> tuple[str, frozenset]:
    model, flags = None, None
    try:
        with open(path) as f:
            for line in f:  # every core repeats both lines: the first of each is enough
                if model is None and line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                elif flags is None and line.startswith("flags"):
                    flags = frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return model or platform.processor() or "unknown", flags or frozenset()


# The flags that decide which kernels an engine can use (the order they are reported in).
FLAGS_OF_INTEREST = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "amx_bf16",
    "amx_int8",
    "avx_vnni",
)


def isa_flags(path: str = "/proc/cpuinfo") -> list[str]:
    """The CPU's flags of interest, for every record and report that names the machine of a figure."""
    flags = cpu_model_and_flags(path)[1]
    return [f for f in FLAGS_OF_INTEREST if f in flags]


def has_vnni(path: str = "/proc/cpuinfo") -> bool | None:
    """AVX-512 VNNI or AVX-VNNI; None when the flags cannot be read."""
    flags = cpu_model_and_flags(path)[1]
    return None if not flags else bool({"avx512_vnni", "avx_vnni"} & flags)


def has_bf16(path: str = "/proc/cpuinfo") -> bool:
    """AVX-512 BF16 or AMX BF16. Elsewhere OpenVINO asked for bf16 runs FP32 and reads back f32
    (measured on an AVX2-only EPYC), so a bf16 row would repeat the FP32 one."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_model_and_flags(path)[1])


# The flags with which a CPU computes a reduced float precision natively (OpenVINO's CPU plugin: bf16 on
# AVX-512 BF16 or AMX, fp16 on AVX-512 FP16 or AMX FP16); without them it runs such a request in f32.
PRECISION_FLAGS = {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")}


def precision_flag(precision: str, flags: frozenset | None = None) -> str | None:
    """The flag by which this CPU (or ``flags``) computes ``precision`` natively; None when it cannot."""
    have = cpu_model_and_flags()[1] if flags is None else flags
    return next((f for f in PRECISION_FLAGS.get(precision, ()) if f in have), None)
