"""The device chooses (issue 40): ``selftest`` on a bundle of candidates checks every file of every candidate,
each candidate's goldens, times those that pass with the bench's harness (measure.timing: rounds, their
median and spread) and records the fastest in ``choice.yaml`` (runtime.bundle_choice), with this CPU's
identity and architecture. The choice stands until the CPU identity differs, the bundle is packed again or
``selftest --recheck``; ``ensure_choice`` is what ``predict`` and ``serve`` call first.

Like selftest it imports the runtime and the timing harness only: it runs on the device.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

from fundus_edge.measure.timing import Rounds
from fundus_edge.runtime.bundle_choice import (
    CANDIDATES,
    BundleSet,
    Choice,
    Timed,
    choice_line,
    is_set,
    read_choice,
    read_set,
    stale,
    verify_set,
    write_choice,
)
from fundus_edge.runtime.cpu import cpu_identity
from fundus_edge.runtime.errors import FundusEdgeError, ModelError, one_line
from fundus_edge.runtime.manifest import sha256

from .platforms import here as here_platform
from .platforms import norm_machine
from .selftest import Checked, Failed, SelftestResult, check_bundle, time_goldens, versus

ROUNDS = 3  # each candidate timed in this many rounds, the candidates interleaved (as the bench's cells)


def time_rounds(checked: dict[str, Checked], runs: int, rounds: int = ROUNDS) -> dict[str, Rounds]:
    """Each candidate's p50 in ``rounds`` rounds of ``runs`` engine calls (selftest's golden timing), the
    candidates taken in a rotated order each round: a slow stretch of a shared machine then lands on every
    candidate instead of on the one timed last."""
    names = list(checked)
    p50s: dict[str, list[float]] = {n: [] for n in names}
    for i in range(rounds):
        k = i % len(names)
        for n in names[k:] + names[:k]:
            c = checked[n]
            p50s[n].append(time_goldens(c.pred, c.images, runs).p50)
    return {n: Rounds(tuple(v)) for n, v in p50s.items()}


def _check_all(
    folder: Path, s: BundleSet, threads: int | None, notes: list[str]
) -> tuple[dict[str, Checked], dict[str, str]]:
    """Each candidate's checks (hashes, CPU, goldens): those that passed, and why each other failed."""
    checked, failed = {}, {}
    for c in s.candidates:
        own: list[str] = []
        try:
            checked[c.name] = check_bundle(folder / CANDIDATES / c.name, threads, own)
        except (Failed, FundusEdgeError) as exc:
            failed[c.name] = str(exc).splitlines()[0]
        except Exception as exc:  # noqa: BLE001 - an engine's own failure fails that candidate, in one line
            failed[c.name] = one_line(exc)
        notes += [f"{c.name}: {n}" for n in own]
        if c.name in failed:
            notes.append(f"{c.name}: FAIL: {failed[c.name]}")
    return checked, failed


def _choose(
    folder: Path, s: BundleSet, checked: dict[str, Checked], failed: dict[str, str], runs: int
) -> Choice:
    """Time the passing candidates and record the fastest (under an emulator, whose timings say nothing:
    the record's fastest that passed)."""
    emu = next((c.emulated for c in checked.values() if c.emulated), None)
    rounds = {} if emu else time_rounds(checked, runs)
    timed = []
    for c in s.candidates:
        r = rounds.get(c.name)
        timed.append(
            Timed(
                c.name,
                c.engine,
                c.precision,
                c.name in checked,
                failed.get(c.name, checked[c.name].summary if c.name in checked else ""),
                None if r is None else round(r.median, 2),
                None if r is None or r.spread is None else round(r.spread, 3),
                [] if r is None else [round(v, 2) for v in r.timed],
            )
        )
    if emu:
        best = next(c.name for c in s.candidates if c.name in checked)
    else:
        best = min(checked, key=lambda n: rounds[n].median)
    cand = s.get(best)
    choice = Choice(
        candidate=best,
        engine=cand.engine,
        precision=cand.precision,
        cpu_identity=cpu_identity().to_dict(),
        machine=platform.machine(),
        date=time.strftime("%Y-%m-%d %H:%M"),
        timed=tuple(timed),
        bundle_sha256=sha256(folder / "bundle.yaml"),
        how=f"emulated ({emu})" if emu else "timed",
    )
    write_choice(folder, choice)
    return choice


def _figures(choice: Choice) -> str:
    """``s2d-fast-int8-nncf-openvino 23.1 ms (spread 4%), ...; FAIL x`` for the PASS line."""
    parts = []
    for t in choice.timed:
        if not t.passed:
            parts.append(f"{t.name} FAIL")
        elif t.p50_ms is None:
            parts.append(f"{t.name} passed (not timed)")
        else:
            spread = "" if t.spread is None else f" (spread {t.spread:.0%})"
            parts.append(f"{t.name} {t.p50_ms:.1f} ms{spread}")
    return ", ".join(parts)


def selftest_set(
    folder: Path, runs: int = 10, threads: int | None = None, recheck: bool = False
) -> SelftestResult:
    """PASS (with the choice) when at least one candidate passes; FAIL when a file of any candidate was
    changed, the bundle is for another architecture, or no candidate passes."""
    notes: list[str] = []
    try:
        s = read_set(folder)
        n = verify_set(folder, s)
        notes.append(f"{n} files of {len(s.candidates)} candidates match their sha256")
        if s.machine and norm_machine(s.machine) != here_platform().machine:
            where = f"packed for {s.platform or s.machine}; this machine is {here_platform().name}"
            return SelftestResult(False, f"{folder}: {where}", notes)
        try:
            old = read_choice(folder)
        except ModelError as exc:  # a damaged choice.yaml is the device's own file: choose again
            old = None
            notes.append(f"choosing again: {exc}")
        why = "--recheck" if recheck else stale(folder, old)
        checked, failed = _check_all(folder, s, threads, notes)
        if not checked:
            return SelftestResult(
                False,
                f"no candidate passes: {'; '.join(f'{k}: {v}' for k, v in failed.items())}",
                notes,
            )
        if why is None and old.candidate not in checked:
            why = f"the chosen {old.candidate} fails now"
        passing = f"{len(checked)} of {len(s.candidates)} candidates pass"
        if why is None:
            # The choice stands for this CPU: the chosen one is timed as a single bundle's selftest times it.
            c = checked[old.candidate]
            if c.emulated:
                line = f"{choice_line(s, old)}; {passing}; emulated: correctness only"
                return SelftestResult(True, line, notes)
            t = time_goldens(c.pred, c.images, runs)
            return SelftestResult(
                True,
                f"{choice_line(s, old)}; {passing}; engine p50 {t.p50:.1f} ms over {t.runs} runs"
                f"{versus(c.bundle)}",
                notes,
            )
        choice = _choose(folder, s, checked, failed, runs)
        notes.append(f"chose again: {why}")
        return SelftestResult(True, f"{choice_line(s, choice)}; {passing}: {_figures(choice)}", notes)
    except (Failed, FundusEdgeError) as exc:
        return SelftestResult(False, str(exc).splitlines()[0], notes)
    except Exception as exc:  # noqa: BLE001 - one line, not a traceback
        return SelftestResult(False, one_line(exc), notes)


def ensure_choice(folder: str | Path, runs: int = 10, threads: int | None = None) -> str | None:
    """For ``predict`` and ``serve`` before ``Predictor.load``: where ``folder`` is a bundle of candidates
    whose choice does not stand for this CPU (none yet, another CPU identity, a bundle packed again),
    choose now (selftest) and return its line; None otherwise (``Predictor.load`` names the standing
    choice). No candidate passing is a one-line error."""
    folder = Path(folder)
    if not is_set(folder):
        return None
    try:
        why = stale(folder, read_choice(folder))
    except ModelError as exc:
        why = str(exc)
    if why is None:
        return None
    r = selftest_set(folder, runs=runs, threads=threads, recheck=True)
    if not r.passed:
        raise ModelError(f"{folder}: {r.reason}")
    return f"{choice_line(read_set(folder), read_choice(folder))}; chosen now ({why})"
