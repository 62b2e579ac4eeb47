"""A bundle of several candidates and the device's choice among them (issue 40): the one reader and writer of
the candidates' index (``bundle.yaml``, schema version 2) and of ``choice.yaml``.

``pack --candidates N`` writes N single bundles under ``candidates/`` (each its own model files, manifest,
goldens and engine pin) and an index beside them hashing every file of every candidate. ``selftest`` on the
device checks each candidate's goldens, times them in rounds and writes ``choice.yaml``: the fastest that
passed, on this CPU's identity. ``Predictor.load`` on such a bundle loads that candidate. It lives in the
runtime (the floor), not in deploy, because ``Predictor.load`` must read it and the runtime imports nothing
above itself; choosing (timing the candidates) is deploy's (deploy/choose.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from .cpu import CpuIdentity, cpu_identity, identity_of
from .errors import EngineUnavailable, IntegrityError, ModelError, nearest
from .manifest import confined, sha256

BUNDLE = "bundle.yaml"
CHOICE = "choice.yaml"
CANDIDATES = "candidates"  # sub-folder of the candidates, one single bundle each
SCHEMA = "fundus-edge-bundle"
SET_SCHEMA_VERSION = 2  # a single bundle is version 1: an older reader refuses a set in one line
CHOICE_SCHEMA = "fundus-edge-bundle-choice"


@dataclass(frozen=True)
class Candidate:
    """One candidate of a bundle: what the runtime needs to load it, and the record's figures for it."""

    name: str  # its folder under candidates/ (variant-engine[-precision asked])
    variant: str
    engine: str
    format: str
    precision: str  # what the engine ran at pack time
    precision_request: str | None  # what to ask the engine for (None: the model's own)
    threads: int | None
    validated_p50_ms: float | None = None  # the record's p50 (another machine's, possibly)
    validated_f1: float | None = None

    @property
    def label(self) -> str:
        """How the choice line names it: ``s2d-fast-int8-nncf on openvino`` (``/bf16`` when asked)."""
        asked = f" {self.precision_request}" if self.precision_request else ""
        return f"{self.variant} on {self.engine}{asked}"


@dataclass(frozen=True)
class BundleSet:
    """The index of a bundle of candidates (``bundle.yaml`` with ``candidates``)."""

    candidates: tuple[Candidate, ...]
    files: dict  # every file of every candidate and the top-level ones (relative path -> sha256)
    record: str = ""  # the bench record the candidates come from
    bounds: dict = field(default_factory=dict)  # what they were picked by (min_f1, max_ms, max_mb)
    cpu_identity: dict | None = None  # the record's CPU (runtime.cpu.CpuIdentity.to_dict())
    platform: str = ""
    machine: str = ""  # the device's architecture (platform.machine())
    validated_machine: str = ""  # the architecture the record was measured on
    created: str = ""
    fundus_edge_version: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["candidates"] = [asdict(c) for c in self.candidates]
        return {"schema": SCHEMA, "schema_version": SET_SCHEMA_VERSION, **d}

    def get(self, name: str) -> Candidate:
        for c in self.candidates:
            if c.name == name:
                return c
        names = [c.name for c in self.candidates]
        raise ModelError(f"no candidate {name!r} in this bundle{nearest(name, names)}")


@dataclass(frozen=True)
class Timed:
    """One candidate as selftest found it: its goldens' verdict and its engine p50 in each round."""

    name: str
    engine: str
    precision: str
    passed: bool
    reason: str  # the selftest line's reason (FAIL: why)
    p50_ms: float | None = None  # median of the rounds' p50s (measure.timing.Rounds)
    spread: float | None = None  # the rounds' range over that median
    rounds: list = field(default_factory=list)  # each round's p50, ms


@dataclass(frozen=True)
class Choice:
    """``choice.yaml``: what selftest chose on this device and why."""

    candidate: str
    engine: str
    precision: str
    cpu_identity: dict  # CpuIdentity.to_dict() of the CPU it was chosen on
    machine: str  # platform.machine() there
    date: str
    timed: tuple[Timed, ...]
    bundle_sha256: str  # of bundle.yaml when chosen: a bundle packed again is chosen again
    how: str = "timed"  # "timed", or "emulated" (an emulator's timings say nothing: the record's order)

    def identity(self) -> CpuIdentity:
        return identity_of(self.cpu_identity)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["timed"] = [asdict(t) for t in self.timed]
        return {"schema": CHOICE_SCHEMA, "schema_version": 1, **d}


@dataclass(frozen=True)
class Chosen:
    """The candidate ``Predictor.load`` runs for a bundle of candidates, and the line that says so."""

    bundle: Path
    folder: Path  # the candidate's own folder (a single bundle: a model folder)
    candidate: Candidate
    choice: Choice
    line: str


def _load_yaml(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError):
        raise IntegrityError(f"{path}: not valid YAML (changed or corrupted)") from None


def is_set(folder: str | Path) -> bool:
    """Whether ``folder`` is a bundle of candidates (its bundle.yaml has schema version 2)."""
    path = Path(folder) / BUNDLE
    if not path.is_file():
        return False
    d = _load_yaml(path)
    return isinstance(d, dict) and d.get("schema") == SCHEMA and d.get("schema_version") == SET_SCHEMA_VERSION


def read_set(folder: str | Path) -> BundleSet:
    path = Path(folder) / BUNDLE
    if not path.is_file():
        raise ModelError(f"{folder}: not a deploy bundle (no {BUNDLE})")
    d = _load_yaml(path)
    if not isinstance(d, dict) or d.get("schema") != SCHEMA or d.get("schema_version") != SET_SCHEMA_VERSION:
        raise ModelError(f"{path}: not a bundle of candidates (schema version {SET_SCHEMA_VERSION})")
    try:
        d = {k: v for k, v in d.items() if k in BundleSet.__dataclass_fields__}
        d["candidates"] = tuple(
            Candidate(**{k: v for k, v in c.items() if k in Candidate.__dataclass_fields__})
            for c in d["candidates"]
        )
        s = BundleSet(**d)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"{path}: incomplete bundle record ({exc})") from None
    if not s.candidates or not isinstance(s.files, dict) or not s.files:
        raise ModelError(f"{path}: incomplete bundle record (no candidates or no files)")
    return s


def write_set(folder: Path, s: BundleSet) -> Path:
    path = Path(folder) / BUNDLE
    path.write_text(yaml.safe_dump(s.to_dict(), sort_keys=False))
    return path


def confined_path(folder: Path, rel: str, where: str) -> Path:
    """``folder / rel`` for a relative path of plain names (candidates/NAME/goldens/FILE): each part checked
    as manifest.confined checks a model's file name (no '..', no absolute path, no symlink, inside)."""
    if not isinstance(rel, str) or not rel:
        raise IntegrityError(f"{where}: names {rel!r}, which is not a file inside {folder}")
    p = Path(folder)
    for part in rel.split("/"):
        p = confined(p, part, where)
    return p


def verify_set(folder: str | Path, s: BundleSet) -> int:
    """The sha256 of every file of every candidate (and the top-level ones): one changed byte anywhere fails
    the whole bundle, whichever candidate is chosen. Returns how many files were checked."""
    folder = Path(folder)
    where = str(folder / BUNDLE)
    for name, expected in s.files.items():
        p = confined_path(folder, name, where)
        if not p.is_file():
            raise IntegrityError(f"{p}: missing (listed in {BUNDLE})")
        if sha256(p) != expected:
            raise IntegrityError(f"{p}: sha256 does not match {BUNDLE} (file changed or corrupted)")
    return len(s.files)


def read_choice(folder: str | Path) -> Choice | None:
    """The recorded choice, or None where selftest has not chosen yet."""
    path = Path(folder) / CHOICE
    if not path.is_file():
        return None
    d = _load_yaml(path)
    if not isinstance(d, dict) or d.get("schema") != CHOICE_SCHEMA:
        raise ModelError(f"{path}: not a fundus-edge bundle choice (run `fundus-edge selftest --recheck`)")
    try:
        d = {k: v for k, v in d.items() if k in Choice.__dataclass_fields__}
        d["timed"] = tuple(Timed(**t) for t in d["timed"])
        return Choice(**d)
    except (KeyError, TypeError) as exc:
        raise ModelError(f"{path}: incomplete choice ({exc}; run `fundus-edge selftest --recheck`)") from None


def write_choice(folder: Path, choice: Choice) -> Path:
    path = Path(folder) / CHOICE
    path.write_text(yaml.safe_dump(choice.to_dict(), sort_keys=False))
    return path


def stale(folder: str | Path, choice: Choice | None, here: CpuIdentity | None = None) -> str | None:
    """Why ``choice`` cannot stand for this device (none yet, another CPU identity, a bundle packed again),
    or None."""
    if choice is None:
        return "no choice yet"
    here = cpu_identity() if here is None else here
    there = choice.identity()
    if there.key != here.key:
        return f"chosen on {there.short}; this CPU is {here.short}"
    if choice.bundle_sha256 != sha256(Path(folder) / BUNDLE):
        return f"{BUNDLE} changed since the choice"
    return None


def choice_line(s: BundleSet, choice: Choice) -> str:
    """``bundle choice: s2d-fast-int8-nncf on openvino (chosen by selftest on AMD EPYC Zen 3 (...),
    2026-12-07)``."""
    how = "" if choice.how == "timed" else f", {choice.how}: not timed"
    return (
        f"bundle choice: {s.get(choice.candidate).label} (chosen by selftest on"
        f" {choice.identity().title}, {choice.date[:10]}{how})"
    )


def resolve(folder: str | Path, backend: str = "auto") -> Chosen | None:
    """For ``Predictor.load``: None where ``folder`` is not a bundle of candidates; else every file of every
    candidate checked and the candidate chosen on this CPU (``backend`` other than "auto": that engine's
    candidate, the fastest of them that passed). A missing or stale choice is refused in one line: choosing
    means timing, which is selftest's (the runtime does not time)."""
    folder = Path(folder)
    if not is_set(folder):
        return None
    s = read_set(folder)
    verify_set(folder, s)
    choice = read_choice(folder)
    if why := stale(folder, choice):
        raise ModelError(
            f"{folder}: a bundle of {len(s.candidates)} candidates with no choice for this CPU ({why});"
            f" run `fundus-edge selftest {folder}` to choose"
        )
    line = choice_line(s, choice)
    cand = s.get(choice.candidate)
    if backend not in ("auto", cand.engine):
        passed = {t.name: t.p50_ms for t in choice.timed if t.passed}
        of = [c for c in s.candidates if c.engine == backend and c.name in passed]
        if not of:
            engines = sorted({c.engine for c in s.candidates if c.name in passed})
            raise EngineUnavailable(
                f"{folder}: no candidate on {backend!r} passed selftest{nearest(backend, engines)}"
            )
        cand = min(of, key=lambda c: passed[c.name] if passed[c.name] is not None else float("inf"))
        line = f"bundle candidate: {cand.label} (asked --backend {backend}; {line})"
    return Chosen(folder, folder / CANDIDATES / cand.name, cand, choice, line)
