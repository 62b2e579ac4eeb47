"""``selftest``: what a device runs on a bundle before it screens anyone. It imports the runtime only
(numpy, OpenCV, PyYAML and the bundle's engine): no Paddle, no quantizer, no bench.

Every hash checked, the CPU able to run the bundle's precision, the engine loaded at it, the goldens' masks
within vessel Dice 0.99 of the ones packed (the largest probability difference reported), the goldens timed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fundus_edge.measure.timing import Timing, TimingPolicy, time_calls
from fundus_edge.runtime.bundle_choice import is_set
from fundus_edge.runtime.cpu import cpu_identity, has_bf16, has_vnni, isa_flags
from fundus_edge.runtime.errors import FundusEdgeError, one_line
from fundus_edge.runtime.images import read_binary, read_image
from fundus_edge.runtime.manifest import read_manifest
from fundus_edge.runtime.predictor import Predictor

from .bundle import GOLDENS, Bundle, read_bundle, read_prob, verify_bundle
from .platforms import emulated, norm_machine
from .platforms import here as here_platform

MIN_DICE = 0.99


@dataclass(frozen=True)
class SelftestResult:
    passed: bool
    reason: str  # FAIL: why; PASS: the one-line summary
    notes: list[str] = field(default_factory=list)  # what was checked and measured, warnings

    @property
    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}: {self.reason}"


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


def _found(d, key: str):
    """The first value of ``key`` anywhere in a nested dict (the manifest's quantization record), else
    None."""
    if isinstance(d, dict):
        if key in d:
            return d[key]
        for v in d.values():
            if (hit := _found(v, key)) is not None:
                return hit
    return None


def cpu_refusal(b: Bundle, quantization: dict | None = None) -> tuple[str | None, list[str]]:
    """(why this CPU cannot run the bundle's precision, or None; warnings)."""
    warn = []
    if "bf16" in b.precision and not has_bf16():
        return (
            f"{b.precision}: this CPU lacks AVX-512 BF16 and AMX BF16"
            f" ({b.engine} would run f32, not what was validated)",
            warn,
        )
    if (
        "int8" in b.precision
        and has_vnni() is False
        and b.engine == "onnxruntime"
        and _found(quantization, "reduce_range") is False
    ):
        # ONNX Runtime's u8 x s8 kernels without VNNI accumulate pairs in 16 bits, which full 8-bit weights
        # can saturate (its quantization docs: use reduce_range there); the file was quantized for a VNNI
        # CPU.
        return (
            f"{b.precision}: this CPU lacks VNNI and the file has full-range 8-bit weights"
            " (reduce_range off): ONNX Runtime can saturate",
            warn,
        )
    if "int8" in b.precision and has_vnni() is False:
        warn.append(
            f"{b.precision}: this CPU lacks VNNI: {b.engine} runs INT8 on slower kernels"
            " (16-bit accumulation can saturate); the goldens decide whether its outputs still match"
        )
    missing = sorted(set(b.validated.isa_flags) - set(isa_flags()))
    if missing:
        warn.append(
            f"the validated figures come from a CPU with {', '.join(missing)}, which this one lacks:"
            " its latency will differ"
        )
    elif (there := b.validated.identity()).key != (here := cpu_identity()).key:
        # Same flags, another design (a Zen 4 and a Zen 5 share AVX-512 VNNI/BF16): the outputs still
        # decide PASS, but the validated latency is another CPU's.
        warn.append(
            f"the validated figures come from {there.title}; this CPU is {here.title}:"
            " its latency will differ"
        )
    return None, warn


def time_goldens(pred: Predictor, images: list, runs: int) -> Timing:
    """``runs`` timed engine calls, each golden's in one stretch after one untimed call: goldens differ in
    size, and an engine that builds per shape (OpenVINO keeps two) would otherwise rebuild on every call
    of a cycle through three."""
    per = -(-runs // len(images))
    samples: list[float] = []
    for img in images:
        policy = TimingPolicy(warmup=1, runs=per, min_runs=per, budget_s=0.0)
        samples += time_calls(lambda img=img: pred.predict(img, fov="auto").engine_ms, policy).samples_ms
    return Timing(tuple(samples[:runs]))


class Failed(Exception):
    """A check that did not pass: its reason is the FAIL line."""


@dataclass
class Checked:
    """A bundle whose hashes, CPU and goldens passed: its engine loaded, ready to be timed."""

    bundle: Bundle
    pred: Predictor
    images: list
    summary: str
    emulated: str | None


def check_bundle(folder: Path, threads: int | None, notes: list[str]) -> Checked:
    """Every check of a single bundle but the timing; raises Failed (or the runtime's error) with the
    reason."""
    b = read_bundle(folder)
    n = verify_bundle(folder, b)
    notes.append(f"{n} files match their sha256")
    if b.machine and norm_machine(b.machine) != here_platform().machine:
        where = f"packed for {b.platform or b.machine}; this machine is {here_platform().name}"
        raise Failed(f"{folder}: {where}")
    emu = emulated()
    why, warn = cpu_refusal(b, read_manifest(folder).quantization)
    notes += [f"warning: {w}" for w in warn]
    if why:
        raise Failed(why)
    pred = Predictor.load(
        folder, backend=b.engine, threads=threads or b.threads, precision=b.precision_request, fmt=b.format
    )
    if pred.precision != b.precision:
        raise Failed(f"{b.engine} runs {pred.precision} here; the bundle was validated at {b.precision}")
    worst_dice, worst_diff, images = 1.0, 0.0, []
    for g in b.goldens:
        gdir = folder / GOLDENS
        rgb = read_image(gdir / g.image)
        p = pred.predict(rgb, fov="auto")
        want_mask = read_binary(gdir / g.mask, "expected mask")
        want_prob = read_prob(gdir / g.prob)
        if p.mask.shape != want_mask.shape or p.prob.shape != want_prob.shape:
            raise Failed(f"{g.image}: output is {p.mask.shape}, expected {want_mask.shape}")
        d, diff = dice(p.mask, want_mask), float(np.abs(p.prob - want_prob).max())
        notes.append(f"{g.image}: vessel Dice {d:.4f}, largest probability difference {diff:.2e}")
        worst_dice, worst_diff = min(worst_dice, d), max(worst_diff, diff)
        images.append(rgb)
    if worst_dice < MIN_DICE:
        raise Failed(
            f"golden masks differ: vessel Dice {worst_dice:.4f} < {MIN_DICE}"
            f" (largest probability difference {worst_diff:.2e})"
        )
    summary = (
        f"{len(b.goldens)} goldens on {b.engine} {pred.precision}: vessel Dice >= {worst_dice:.4f},"
        f" largest probability difference {worst_diff:.2e}"
    )
    return Checked(b, pred, images, summary, emu)


def versus(b: Bundle) -> str:
    """`` (validated 5.8 ms on AMD EPYC Zen 5; this CPU: AMD EPYC Zen 4)``, or "" without a figure."""
    v = b.validated
    if v.p50_ms is None:
        return ""
    there, here = v.identity(), cpu_identity()
    other = "" if there.key == here.key else f"; this CPU: {here.short}"
    how = "timed at pack" if v.site else "validated"  # an adapted model's bundle has no bench row
    return f" ({how} {v.p50_ms:.1f} ms on {there.short}{other})"


def selftest(
    folder: str | Path, runs: int = 10, threads: int | None = None, recheck: bool = False
) -> SelftestResult:
    """PASS or FAIL for a bundle; a bundle of candidates is checked candidate by candidate and the fastest
    that passes recorded as the device's choice (deploy/choose.py; ``recheck``: choose again)."""
    folder = Path(folder)
    notes: list[str] = []
    try:
        if is_set(folder):
            from .choose import selftest_set  # choose imports this module

            return selftest_set(folder, runs=runs, threads=threads, recheck=recheck)
        c = check_bundle(folder, threads, notes)
        if c.emulated:
            # An emulator runs an inference 500x slower than the CPU it imitates: no speed verdict.
            return SelftestResult(True, f"{c.summary}; emulated ({c.emulated}): correctness only", notes)
        t = time_goldens(c.pred, c.images, runs)
        return SelftestResult(
            True, f"{c.summary}; engine p50 {t.p50:.1f} ms over {t.runs} runs{versus(c.bundle)}", notes
        )
    except (Failed, FundusEdgeError) as exc:
        return SelftestResult(False, str(exc).splitlines()[0], notes)
    except Exception as exc:  # noqa: BLE001 - an engine's own failure is a FAIL with its one line, not a traceback
        return SelftestResult(False, one_line(exc), notes)
