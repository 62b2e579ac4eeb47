"""The deploy manifest (``manifest.yaml``) beside every exported model: the one reader and writer.

It says how to rebuild preprocessing, what the input and output are, the threshold, what the model is
(variant, parameters, GMAC, quantisation) and the sha256 of every file, which the runtime checks
before loading anything.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from .errors import IntegrityError, ModelError
from .formats import FORMATS
from .preprocess import PreprocessConfig

MANIFEST = "manifest.yaml"
SCHEMA = "fundus-edge-model"
SCHEMA_VERSION = 1
SUPPORTED_VERSIONS = (1,)
# Pickle-based files the runtime refuses to read, whatever the manifest says.
REFUSED_SUFFIXES = (".pdparams", ".pdopt", ".pkl", ".pickle", ".pt", ".pth")


@dataclass(frozen=True)
class Manifest:
    name: str
    variant: str  # fp32 | pruned | int8 | pruned-int8 | ...
    preprocess: PreprocessConfig
    threshold: float
    pad_multiple: int
    formats: dict  # format name -> list of files
    files: dict  # relative path -> sha256
    input: dict = field(default_factory=lambda: {"name": "image", "layout": "NCHW", "dtype": "float32", "channel_order": "RGB", "dynamic": ["batch", "height", "width"]})
    output: dict = field(default_factory=lambda: {"layout": "NCHW", "channels": 1, "meaning": "vessel probability in [0, 1] (softmax of the vessel class)"})
    model: dict = field(default_factory=dict)  # arch, base, depth, params, gmac, gmac_at
    quantization: dict | None = None
    source: dict = field(default_factory=dict)  # checkpoint, iteration, validation metrics
    scale: dict = field(default_factory=dict)  # training scale, e.g. {"fov_diameter_px": 540}
    # Settings an engine must use for this model, e.g. {"paddle": {"onednn": False, "why": ...}} for an imported
    # program that Paddle 3.3.1 cannot run on oneDNN (the engine reports them; nothing is switched silently).
    engines: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    created: str = ""
    fundus_edge_version: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["preprocess"] = self.preprocess.to_dict()
        return {"schema": SCHEMA, **d}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(model_dir: str | Path, manifest: Manifest) -> Path:
    """Write ``manifest.yaml``, hashing every file its formats list (hashes are recomputed here)."""
    model_dir = Path(model_dir)
    files = {}
    for fmt, names in manifest.formats.items():
        if fmt not in FORMATS:
            raise ModelError(f"unknown format {fmt!r} in manifest")
        for n in names:
            p = model_dir / n
            if not p.is_file():
                raise ModelError(f"{p}: listed in the manifest but missing")
            files[n] = sha256(p)
    d = Manifest(**{**{k: getattr(manifest, k) for k in manifest.__dataclass_fields__}, "files": files}).to_dict()
    path = model_dir / MANIFEST
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


def read_manifest(model_dir: str | Path) -> Manifest:
    model_dir = Path(model_dir)
    path = model_dir / MANIFEST
    if not model_dir.is_dir():
        raise ModelError(f"{model_dir}: no such model folder")
    if not path.is_file():
        raise ModelError(f"{model_dir}: not a model folder (no {MANIFEST})")
    try:
        d = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        raise ModelError(f"{path}: not valid YAML") from None
    if not isinstance(d, dict) or d.get("schema") != SCHEMA:
        raise ModelError(f"{path}: not a fundus-edge model manifest")
    ver = d.get("schema_version")
    if ver not in SUPPORTED_VERSIONS:
        raise ModelError(f"{path}: manifest schema version {ver!r} is not supported by this runtime (supports {', '.join(map(str, SUPPORTED_VERSIONS))})")
    d.pop("schema")
    try:
        d["preprocess"] = PreprocessConfig.from_dict(d["preprocess"])
        known = {k: d[k] for k in Manifest.__dataclass_fields__ if k in d}
        return Manifest(**known)
    except (KeyError, TypeError) as exc:
        raise ModelError(f"{path}: incomplete manifest ({exc})") from None


def verify_files(model_dir: str | Path, manifest: Manifest, names: list[str] | tuple[str, ...]) -> None:
    """Refuse pickles and check each file's sha256 against the manifest."""
    model_dir = Path(model_dir)
    for n in names:
        p = model_dir / n
        if p.suffix in REFUSED_SUFFIXES:
            raise IntegrityError(f"{p}: pickled weights are refused by the runtime")
        expected = manifest.files.get(n)
        if expected is None:
            raise IntegrityError(f"{p}: not listed in {MANIFEST}")
        if not p.is_file():
            raise ModelError(f"{p}: missing (listed in {MANIFEST})")
        if sha256(p) != expected:
            raise IntegrityError(f"{p}: sha256 does not match {MANIFEST} (file changed or corrupted)")
