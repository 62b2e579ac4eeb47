"""The CPU's identity, read once from /proc/cpuinfo (Linux; empty elsewhere): its model name, vendor, family /
model / stepping, the instruction-set flags that decide which kernels an engine can use, and a short
generation name where family and model identify one. Bench records, results pages, bundles, ``pick`` and the
speed probe's baseline name a machine by it: a model name such as "AMD EPYC" is shared by a Zen 4 and a Zen 5
with the same AVX-512 flags (issue 42: 10.4 against 5.8 ms for one row), which only family and model tell
apart. The INT8 build records VNNI (OpenVINO's int8 path depends on it)."""

from __future__ import annotations

import functools
import platform
import re
from dataclasses import dataclass


@functools.lru_cache(maxsize=4)
def _cpuinfo(path: str = "/proc/cpuinfo") -> dict[str, str]:
    """The first value of each key of /proc/cpuinfo (every core repeats them); {} where it cannot be read."""
    out: dict[str, str] = {}
    try:
        with open(path) as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep and key.strip() not in out:
                    out[key.strip()] = value.strip()
    except OSError:
        pass
    return out


def cpu_model_and_flags(path: str = "/proc/cpuinfo") -> tuple[str, frozenset]:
    info = _cpuinfo(path)
    flags = frozenset(info.get("flags", "").split())
    return info.get("model name") or platform.processor() or "unknown", flags


# The flags that decide which kernels an engine can use (the order they are reported in).
FLAGS_OF_INTEREST = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_bf16",
    "amx_int8",
    "amx_fp16",
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
    return precision_flag("bf16", cpu_model_and_flags(path)[1]) is not None


def _needs(precision: str, engine: str | None) -> list:
    """The engine table's ``PrecisionNeed`` of ``precision`` through ``engine`` (None: through every engine
    that can be asked for it)."""
    from .engines.table import ENGINE_TABLE, spec

    if engine is not None:
        need = spec(engine).precisions.get(precision)
        return [need] if need is not None else []
    return [
        e.precisions[precision]
        for e in ENGINE_TABLE.values()
        if precision in e.precisions and e.precisions[precision].asked
    ]


def precision_flags(precision: str, engine: str | None = None) -> tuple[str, ...]:
    """The x86 flags (any one) with which a CPU computes ``precision`` natively through ``engine`` (None: any
    engine that can be asked for it), from the engine table's ``PrecisionNeed.x86``: OpenVINO's CPU plugin
    computes bf16 on AVX-512 BF16 or AMX and fp16 on AVX-512 FP16 or AMX FP16; without them it runs such a
    request in f32."""
    return tuple(dict.fromkeys(f for n in _needs(precision, engine) for f in n.x86))


def precision_flag(precision: str, flags: frozenset | None = None, engine: str | None = None) -> str | None:
    """The flag by which this CPU (or ``flags``) computes ``precision`` natively through ``engine`` (None:
    any engine that can be asked for it); None when it cannot. A need the table leaves empty is met by every
    x86-64 CPU, named "x86-64"."""
    needs = _needs(precision, engine)
    if any(not n.x86 for n in needs):
        return "x86-64"
    have = cpu_model_and_flags()[1] if flags is None else flags
    return next((f for n in needs for f in n.x86 if f in have), None)


# -- identity ------------------------------------------------------------------------------------
VENDORS = {"AuthenticAMD": "AMD", "GenuineIntel": "Intel"}

# AMD generations by (family, first model, last model). The ranges are the Linux kernel's own Zen detection
# (arch/x86/kernel/cpu/amd.c, bsp_init_amd: X86_FEATURE_ZEN1..ZEN5 by family and model range); Zen 4 keeps
# only the ranges of shipped parts (Genoa / Bergamo / Siena 0x10-0x1f and 0xa0-0xaf, Raphael / Phoenix
# 0x60-0x7f): a model outside every range is named by its family, model and flags, not guessed.
AMD_GENERATIONS = (
    (0x17, 0x00, 0x2F, "Zen 1"),
    (0x17, 0x50, 0x5F, "Zen 1"),
    (0x17, 0x30, 0x4F, "Zen 2"),
    (0x17, 0x60, 0x7F, "Zen 2"),
    (0x17, 0x90, 0x91, "Zen 2"),
    (0x17, 0xA0, 0xAF, "Zen 2"),
    (0x19, 0x00, 0x0F, "Zen 3"),
    (0x19, 0x20, 0x5F, "Zen 3"),
    (0x19, 0x10, 0x1F, "Zen 4"),
    (0x19, 0x60, 0x7F, "Zen 4"),
    (0x19, 0xA0, 0xAF, "Zen 4"),
    (0x1A, 0x00, 0x2F, "Zen 5"),
    (0x1A, 0x40, 0x4F, "Zen 5"),
    (0x1A, 0x60, 0x7F, "Zen 5"),
)
# Intel server parts, family 6, by model number: the kernel's arch/x86/include/asm/intel-family.h
# (INTEL_FAM6_SKYLAKE_X 0x55, ICELAKE_X 0x6A, ICELAKE_D 0x6C, SAPPHIRERAPIDS_X 0x8F, EMERALDRAPIDS_X 0xCF,
# GRANITERAPIDS_X 0xAD, GRANITERAPIDS_D 0xAE, SIERRAFOREST_X 0xAF). 0x55 is Skylake-SP, Cascade Lake and
# Cooper Lake alike; their flags tell them apart (VNNI: Cascade Lake; AVX-512 BF16: Cooper Lake).
INTEL_GENERATIONS = {
    0x55: "Skylake-SP",
    0x6A: "Ice Lake-SP",
    0x6C: "Ice Lake-D",
    0x8F: "Sapphire Rapids",
    0xCF: "Emerald Rapids",
    0xAD: "Granite Rapids",
    0xAE: "Granite Rapids-D",
    0xAF: "Sierra Forest",
}


def generation(vendor: str, family: int | None, model: int | None, flags) -> str | None:
    """The short generation name that family and model identify (tables above), else None."""
    if family is None or model is None:
        return None
    if vendor == "AMD":
        return next((g for f, lo, hi, g in AMD_GENERATIONS if f == family and lo <= model <= hi), None)
    if vendor == "Intel" and family == 6 and model in INTEL_GENERATIONS:
        if model == 0x55:
            if "avx512_bf16" in flags:
                return "Cooper Lake"
            return "Cascade Lake" if "avx512_vnni" in flags else "Skylake-SP"
        return INTEL_GENERATIONS[model]
    return None


def generation_by_flags(vendor: str, flags) -> str | None:
    """An AMD CPU's generation from its flags alone, for records that kept no family / model: AVX-512 with
    AVX-VNNI only on Zen 5, AVX-512 without it on Zen 4, AVX2 alone on Zen 2 or 3 (Zen 1 too, but the bench
    never ran on one). Intel's flags do not single out a generation: None."""
    if vendor != "AMD":
        return None
    if "avx512f" in flags:
        return "Zen 5" if "avx_vnni" in flags else "Zen 4"
    return "Zen 2/3" if "avx2" in flags else None


@dataclass(frozen=True)
class CpuIdentity:
    """What sets a CPU's speed here: vendor, family / model / stepping, the flags of interest, and the
    generation they identify. Two CPUs are the same for a speed comparison when vendor, family, model and
    flags agree (``key``); the stepping, a revision of one design, is named but not compared. A record
    without family / model (before issue 42) is its own identity: its name, flags and, for AMD, the
    generation its flags prove (``by_flags``)."""

    name: str  # the model name /proc/cpuinfo gives (a VM often shows only "AMD EPYC")
    vendor: str  # AMD, Intel, the raw vendor id, or "" where unknown
    family: int | None = None
    model: int | None = None
    stepping: int | None = None
    flags: tuple[str, ...] = ()
    generation: str | None = None
    by_flags: bool = False  # the generation comes from the flags alone (no family / model recorded)

    @property
    def label(self) -> str:
        """The generation, or what stands for it: "Zen 4", "unknown generation"."""
        return self.generation or "unknown generation"

    @property
    def short(self) -> str:
        """The name with the generation ("AMD EPYC Zen 4"); with the flag set where there is none."""
        if self.generation:
            return f"{self.name} {self.generation}" + (" (by its flags)" if self.by_flags else "")
        return f"{self.name} (unknown generation; {', '.join(self.flags) or 'no flags of interest'})"

    @property
    def title(self) -> str:
        """Everything that names the machine, e.g.
        "AMD EPYC, Zen 3 (AMD family 25 model 1 stepping 1; avx2, fma)"."""
        flags = ", ".join(self.flags) or "no flags of interest"
        if self.family is None:
            where = "family / model not recorded" + (f", {self.label} by its flags" if self.by_flags else "")
            return f"{self.name}, {self.label} ({where}; {flags})"
        step = f" stepping {self.stepping}" if self.stepping is not None else ""
        vendor = f"{self.vendor} " if self.vendor else ""
        return f"{self.name}, {self.label} ({vendor}family {self.family} model {self.model}{step}; {flags})"

    @property
    def key(self) -> str:
        """Equal for two CPUs a latency of one may be compared with on the other."""
        flags = "+".join(sorted(self.flags))
        if self.family is None:
            return f"{self.vendor}|{self.name}|family unknown|{flags}"
        return f"{self.vendor}|family {self.family} model {self.model}|{flags}"

    @property
    def slug(self) -> str:
        """For file names: the name's words, the generation (else family and model) and the widest ISA:
        amd-epyc-zen4-avx512, intel-xeon-sapphire-rapids-amx, amd-epyc-f26m80-avx512."""
        cpu = re.sub(r"\((r|tm)\)", "", self.name.lower())
        words = [w for w in re.split(r"[^a-z0-9]+", cpu) if w and w != "processor"]
        if self.generation and not self.by_flags:  # "Zen 2/3" -> zen2-3, "Sapphire Rapids" -> sapphire-rapids
            words += re.split(r"[^a-z0-9]+", self.generation.lower().replace("zen ", "zen"))
        elif self.family is not None:
            words.append(f"f{self.family}m{self.model}")
        return "-".join([w for w in words if w] + [isa_tag(self.flags)])

    def record_fields(self) -> dict:
        """The fields a bench record's ``machine`` keeps beside ``cpu`` and ``isa_flags``."""
        return {
            "vendor": self.vendor,
            "cpu_family": self.family,
            "cpu_model": self.model,
            "cpu_stepping": self.stepping,
            "generation": self.generation,
            "identity": self.title,
        }

    def to_dict(self) -> dict:
        return {"cpu": self.name, "isa_flags": list(self.flags), **self.record_fields()}


def isa_tag(flags) -> str:
    """The widest vector ISA of ``flags``: amx, avx512, avx2 or baseline."""
    if any(f.startswith("amx") for f in flags):
        return "amx"
    if "avx512f" in flags:
        return "avx512"
    return "avx2" if "avx2" in flags else "baseline"


def _int(v) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _vendor_of(name: str) -> str:
    """The vendor a model name states, for records that kept no vendor id."""
    low = name.lower()
    return "AMD" if "amd" in low.split() or low.startswith("amd") else "Intel" if "intel" in low else ""


def identity_from(
    name: str, vendor: str | None, family, model, stepping, flags, recorded: str | None = None
) -> CpuIdentity:
    """The identity of these fields; ``recorded``: the generation a record stored (used where the tables
    above do not know the model)."""
    fam, mod = _int(family), _int(model)
    vendor = VENDORS.get(vendor or "", vendor or "") or _vendor_of(name)
    flags = tuple(f for f in FLAGS_OF_INTEREST if f in set(flags or ())) + tuple(
        sorted(set(flags or ()) - set(FLAGS_OF_INTEREST))
    )
    gen = generation(vendor, fam, mod, flags) or (recorded if fam is not None else None)
    by_flags = False
    if fam is None:
        gen = generation_by_flags(vendor, flags)
        by_flags = gen is not None
    return CpuIdentity(name, vendor, fam, mod, _int(stepping), flags, gen, by_flags)


@functools.lru_cache(maxsize=4)
def cpu_identity(path: str = "/proc/cpuinfo") -> CpuIdentity:
    """This CPU's identity."""
    info = _cpuinfo(path)
    return identity_from(
        cpu_model_and_flags(path)[0],
        info.get("vendor_id"),
        info.get("cpu family"),
        info.get("model"),
        info.get("stepping"),
        isa_flags(path),
    )


def identity_of(machine: dict) -> CpuIdentity:
    """The identity a bench record's ``machine`` (or a bundle's) names; older records keep only ``cpu``
    and ``isa_flags``."""
    return identity_from(
        str(machine.get("cpu") or "unknown"),
        machine.get("vendor"),
        machine.get("cpu_family"),
        machine.get("cpu_model"),
        machine.get("cpu_stepping"),
        machine.get("isa_flags") or (),
        machine.get("generation"),
    )
