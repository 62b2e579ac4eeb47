"""The platforms a bundle can be packed for (``pack --platform``): the architecture a bench record or a device
runs on, the pip wheel tags its pins must resolve for, and what an ARM64 bundle may not record.

A bundle is packed on one machine (x86-64 here) for another: its goldens are this machine's outputs, its
requirements the versions installed here, which must also exist as wheels for the device's architecture
(``pip download --only-binary=:all: --platform ...`` proves it; issue 40). An ARM64 CPU cannot be assumed to
compute bf16 or fp16 (only some ARMv8.2+ designs do, and a handheld camera's Cortex-A53 does not), and the
INT8 files made by ONNX Runtime's and OpenVINO's quantizers were tuned on x86 VNNI and are not checked on
ARM, so such rows are refused for an ARM bundle in one line.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass

from fundus_edge.runtime.engines.table import arm_checked
from fundus_edge.runtime.errors import InputError


@dataclass(frozen=True)
class Platform:
    name: str  # linux-x86_64, linux-aarch64: what pack --platform takes and bundle.yaml records
    machine: str  # platform.machine() on it (and bench records' machine.machine)
    wheel_tags: tuple[str, ...]  # pip --platform tags, every manylinux_2_N listed (see wheel_tags_for)


def wheel_tags_for(machine: str, newest_glibc: int = 36) -> tuple[str, ...]:
    """Every manylinux tag a Debian 12 (glibc 2.36) device accepts. pip takes the listed tags only: with just
    manylinux2014 / 2_28 it falls back to openvino <= 2024.0, as openvino 2026.4's aarch64 wheel is 2_35."""
    return ("manylinux2014_" + machine,) + tuple(
        f"manylinux_2_{n}_{machine}" for n in range(17, newest_glibc + 1)
    )


PLATFORMS = {
    p.name: p
    for p in (
        Platform("linux-x86_64", "x86_64", wheel_tags_for("x86_64")),
        Platform("linux-aarch64", "aarch64", wheel_tags_for("aarch64")),
    )
}
_ALIASES = {"amd64": "x86_64", "arm64": "aarch64", "x64": "x86_64"}

# The (engine, precision) an ARM64 bundle may record are the engine table's (``table.arm_checked()``:
# PrecisionNeed.arm_checked, what `make test-arm` checks under emulation: fp32 on every device engine,
# LiteRT's full-integer INT8 whose kernels are ARM's own), read when asked so a registered engine counts.


def norm_machine(machine: str | None) -> str | None:
    if not machine:
        return None
    m = machine.lower()
    return _ALIASES.get(m, m)


def here() -> Platform:
    """This machine's platform (the default of ``pack --platform``)."""
    m = norm_machine(platform.machine()) or "x86_64"
    return PLATFORMS.get(f"linux-{m}", Platform(f"linux-{m}", m, wheel_tags_for(m)))


def get_platform(name: str | None) -> Platform:
    if name is None:
        return here()
    key = name.lower()
    if key in ("aarch64", "arm64", "x86_64", "amd64"):
        key = f"linux-{norm_machine(key)}"
    if key not in PLATFORMS:
        raise InputError(f"--platform {name}: not one of {', '.join(PLATFORMS)}")
    return PLATFORMS[key]


def is_arm(p: Platform) -> bool:
    return p.machine == "aarch64"


def arm_refusal(engine: str, precision: str) -> str | None:
    """Why an ARM64 bundle may not record this engine + precision, or None."""
    base = precision.removeprefix("int8+")
    if "bf16" in precision or "fp16" in precision or base in ("bf16", "f16", "fp16"):
        return (
            f"{engine} {precision}: an ARM64 CPU cannot be assumed to compute {base}"
            " (only some ARMv8.2+ designs do); pack the fp32 row for linux-aarch64"
        )
    checked = arm_checked()
    if (engine, "int8" if precision.startswith("int8") else precision) not in checked:
        return (
            f"{engine} {precision}: not checked on ARM64 (its INT8 files were tuned on x86 VNNI;"
            f" `make test-arm` checks {', '.join(sorted(f'{e} {p}' for e, p in checked))})"
        )
    return None


def arch_mismatch(record_machine: str | None, target: Platform, path: str) -> str | None:
    """Why a bench record's figures (measured on ``record_machine``) do not describe ``target``'s CPUs, or
    None. A record that kept no architecture is taken for x86-64 (every record before issue 40 is)."""
    there = norm_machine(record_machine) or "x86_64"
    if there == target.machine:
        return None
    return (
        f"{path}: measured on {there}, the bundle is for {target.name}: its speed says nothing about that CPU"
        " (--any-arch to use it anyway: selftest on the device still checks the outputs)"
    )


def emulated(
    kernel_arch_path: str = "/proc/sys/kernel/arch", cpuinfo_path: str = "/proc/cpuinfo"
) -> str | None:
    """Why this program looks emulated (a user-mode emulator such as qemu-aarch64 running another
    architecture's binary), or None. The kernel's own architecture (/proc/sys/kernel/arch, Linux 5.x+), which
    a user-mode emulator does not rewrite, or else /proc/cpuinfo's kind, against the architecture this program
    was built for (platform.machine(), which the emulator does report as the guest's)."""
    me = norm_machine(platform.machine())
    try:
        with open(kernel_arch_path) as f:
            kernel = norm_machine(f.read().strip())
    except OSError:
        kernel = None
    if kernel and me and kernel != me:
        return f"a {me} program on a {kernel} kernel"
    try:
        with open(cpuinfo_path) as f:
            text = f.read()
    except OSError:
        return None
    # x86 cpuinfo has "vendor_id" and "flags"; ARM's has "CPU architecture" and "Features".
    looks = "x86_64" if "vendor_id" in text else "aarch64" if "CPU architecture" in text else None
    if looks and me in ("x86_64", "aarch64") and looks != me:
        return f"a {me} program shown an {looks} /proc/cpuinfo"
    return None
