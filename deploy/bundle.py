"""A deploy bundle's record (``bundle.yaml``): the one reader and writer, shared by pack and selftest.

A bundle is a model folder the runtime loads as it is (``manifest.yaml`` listing one format: only the
files that engine reads) plus ``bundle.yaml``: the engine and precision it was validated with, the
validated figures and the CPU identity (name, generation, family / model, flags) they were measured on,
the golden inputs with the outputs this exact engine + precision gave for them, and the sha256 of every
other file. It imports the runtime only: the
device that runs ``selftest`` has no Paddle, no quantizer and no bench.

A bundle of candidates (``pack --candidates``; schema version 2) holds such bundles under ``candidates/``;
its index is runtime.bundle_choice's, and ``read_bundle`` on it says so in one line.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml
from fundus_edge.runtime.bundle_choice import CANDIDATES, SET_SCHEMA_VERSION
from fundus_edge.runtime.cpu import CpuIdentity, identity_of
from fundus_edge.runtime.errors import IntegrityError, ModelError
from fundus_edge.runtime.manifest import confined, sha256

BUNDLE = "bundle.yaml"
GOLDENS = "goldens"  # sub-folder of the golden inputs and their expected outputs
SCHEMA = "fundus-edge-bundle"
SCHEMA_VERSION = 1
MAX_BYTES = 5_000_000  # the budget for a shipped bundle (issue 33): every file, bundle.yaml included
PROB_SCALE = 65535  # expected probabilities are stored as uint16 PNG: prob * 65535, a step of 1.5e-5


@dataclass(frozen=True)
class Golden:
    image: str  # file names inside goldens/
    prob: str  # uint16 PNG, the probability x 65535
    mask: str  # 0/255 PNG, the vessel mask
    sha256: dict  # name -> sha256 of the three


@dataclass(frozen=True)
class Validated:
    """What the bench measured for this engine + precision (one record row) and where."""

    f1: float | None
    auc: float | None
    iou: float | None
    p50_ms: float | None  # engine call, the record's p50
    e2e_p50_ms: float | None
    threads: int | None
    images: str  # what the figures were measured on (the record's "images")
    cpu: str
    isa_flags: list
    date: str
    record: str  # the results.json they come from
    unsteady: bool | None = None
    # runtime.cpu.CpuIdentity.to_dict() of the record's machine; None in bundles packed before issue 42
    cpu_identity: dict | None = None
    # An adapted model's bundle (deploy/adapted.py, issue 43): no bench row, so f1/auc/iou are the site's
    # cross-validated estimate and p50_ms was timed at pack time; this holds its label, interval, the INT8
    # build's check on the site and the timing rounds. None for a bundle packed from a bench row.
    site: dict | None = None

    def identity(self) -> CpuIdentity:
        """The CPU the figures were measured on (a bundle without ``cpu_identity``: its name and flags)."""
        return identity_of(self.cpu_identity or {"cpu": self.cpu, "isa_flags": self.isa_flags})


@dataclass(frozen=True)
class Bundle:
    variant: str
    engine: str
    format: str
    precision: str  # what the engine ran at pack time (and must run at selftest)
    precision_request: str | None  # what to ask the engine for (None: the model's own precision)
    threads: int | None
    validated: Validated
    goldens: tuple[Golden, ...]
    files: dict  # every top-level file but bundle.yaml (manifest, model, README, requirements) -> sha256
    input_size: tuple[int, int] | None = None  # the camera's fixed W x H the goldens have (pack --input-size)
    network_inputs: list = field(default_factory=list)  # the engine input shape (N, C, H, W) each golden gave
    static: dict = field(
        default_factory=dict
    )  # what pack fixed for the camera's size, e.g. {"onnx": [1, 3, 576, 576]}
    created: str = ""
    fundus_edge_version: str = ""
    # The device's platform and architecture (deploy.platforms; pack --platform), and the architecture the
    # validated figures were measured on; "" in bundles packed before issue 40 (x86-64 ones).
    platform: str = ""
    machine: str = ""
    validated_machine: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["goldens"] = [asdict(g) for g in self.goldens]
        d["input_size"] = list(self.input_size) if self.input_size else None
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **d}


def write_bundle(folder: Path, bundle: Bundle) -> Path:
    path = Path(folder) / BUNDLE
    path.write_text(yaml.safe_dump(bundle.to_dict(), sort_keys=False))
    return path


def read_bundle(folder: str | Path) -> Bundle:
    folder = Path(folder)
    path = folder / BUNDLE
    if not folder.is_dir():
        raise ModelError(f"{folder}: no such bundle folder")
    if not path.is_file():
        raise ModelError(f"{folder}: not a deploy bundle (no {BUNDLE})")
    try:
        d = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError):
        raise IntegrityError(f"{path}: not valid YAML (changed or corrupted)") from None
    if not isinstance(d, dict) or d.get("schema") != SCHEMA:
        raise ModelError(f"{path}: not a fundus-edge bundle record")
    if d.get("schema_version") == SET_SCHEMA_VERSION:
        raise ModelError(
            f"{path}: a bundle of {len(d.get('candidates') or [])} candidates, not one model"
            f" (each is a bundle of its own in {folder / CANDIDATES}; selftest chooses among them)"
        )
    if d.get("schema_version") != SCHEMA_VERSION:
        raise ModelError(
            f"{path}: bundle schema version {d.get('schema_version')!r} is not supported"
            f" (supports {SCHEMA_VERSION})"
        )
    try:
        d = {k: v for k, v in d.items() if k in Bundle.__dataclass_fields__}
        d["validated"] = Validated(
            **{k: v for k, v in d["validated"].items() if k in Validated.__dataclass_fields__}
        )
        d["goldens"] = tuple(Golden(**g) for g in d["goldens"])
        if d.get("input_size"):
            d["input_size"] = tuple(d["input_size"])
        b = Bundle(**d)
    except (KeyError, TypeError) as exc:
        raise ModelError(f"{path}: incomplete bundle record ({exc})") from None
    if not isinstance(b.files, dict) or not b.goldens:
        raise ModelError(f"{path}: incomplete bundle record (no files or no goldens)")
    return b


def verify_bundle(folder: str | Path, bundle: Bundle) -> int:
    """Check the sha256 of every file ``bundle.yaml`` lists (each a plain file inside the bundle, no
    symlink); the model's own files are listed too, so a changed weight byte fails here, before any engine
    reads it. Returns how many files were checked."""
    folder = Path(folder)
    where = str(folder / BUNDLE)
    checked = [(confined(folder, n, where), h) for n, h in bundle.files.items()]
    for g in bundle.goldens:
        for n in (g.image, g.prob, g.mask):
            checked.append((confined(folder / GOLDENS, n, where), g.sha256.get(n)))
    for p, expected in checked:
        if not p.is_file():
            raise IntegrityError(f"{p}: missing (listed in {BUNDLE})")
        if sha256(p) != expected:
            raise IntegrityError(f"{p}: sha256 does not match {BUNDLE} (file changed or corrupted)")
    return len(checked)


def write_prob(path: Path, prob: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", np.round(np.clip(prob, 0.0, 1.0) * PROB_SCALE).astype(np.uint16))
    if not ok:
        raise ModelError(f"{path}: could not encode the expected probabilities")
    path.write_bytes(buf.tobytes())


def read_prob(path: Path) -> np.ndarray:
    arr = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 2:
        raise IntegrityError(f"{path}: not a 16-bit grey PNG of probabilities")
    return arr.astype(np.float32) / PROB_SCALE
