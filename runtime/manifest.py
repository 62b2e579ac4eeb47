"""The deploy manifest (``manifest.yaml``) beside every exported model: the one reader and writer.

It says how to rebuild preprocessing, what the input and output are, the threshold, what the model is
(variant, parameters, GMAC, quantisation) and the sha256 of every file, which the runtime checks
before loading anything.
"""

from __future__ import annotations

import hashlib
import mmap
from dataclasses import asdict, dataclass, field, replace
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
    input: dict = field(
        default_factory=lambda: {
            "name": "image",
            "layout": "NCHW",
            "dtype": "float32",
            "channel_order": "RGB",
            "dynamic": ["batch", "height", "width"],
        }
    )
    output: dict = field(
        default_factory=lambda: {
            "layout": "NCHW",
            "channels": 1,
            "meaning": "vessel probability in [0, 1] (softmax of the vessel class)",
        }
    )
    model: dict = field(default_factory=dict)  # arch, base, depth, params, gmac, gmac_at
    quantization: dict | None = None
    source: dict = field(default_factory=dict)  # checkpoint, iteration, validation metrics
    scale: dict = field(default_factory=dict)  # training scale, e.g. {"fov_diameter_px": 540}
    # Settings an engine must use for this model, e.g. {"paddle": {"onednn": False, "why": ...}} for an
    # imported program that Paddle 3.3.1 cannot run on oneDNN (the engine reports them; nothing is switched
    # silently).
    engines: dict = field(default_factory=dict)
    # Precisions checked on training images per engine, e.g. {"openvino": {"bf16": {"f1": ...,
    # "f1_reference": ..., "passed": True, ...}}} (export/validate.py writes it); precision "auto" picks only
    # among passed ones. Optional: a manifest without it loads (auto then runs the model's own precision),
    # and older runtimes ignore it.
    validated: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    created: str = ""
    fundus_edge_version: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["preprocess"] = self.preprocess.to_dict()
        if not d["validated"]:
            del d["validated"]  # optional: a manifest that records none is written as before
        return {"schema": SCHEMA, **d}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def manifest_path(model_dir: str | Path) -> Path:
    """Where ``model_dir``'s manifest lies (whether or not it is there)."""
    return Path(model_dir) / MANIFEST


def is_model_dir(path: str | Path) -> bool:
    """Whether ``path`` is a model folder: a folder with a manifest file. The one test every caller uses to
    tell a model folder from an image folder, a checkpoint or a name; the manifest's content is checked by
    ``read_manifest`` (schema, names) and ``check_model_dir`` (hashes) when it is used."""
    return manifest_path(path).is_file()


def manifest_sha256(model_dir: str | Path) -> str:
    """The sha256 of ``model_dir``'s manifest: it pins every file's sha256, so it names the model's bytes
    (recorded by derived folders, bench cells, archive jobs and the server)."""
    return sha256(manifest_path(model_dir))


def confined(folder: str | Path, name: object, where: str) -> Path:
    """``folder / name`` for a file that ``where`` (a manifest, a deploy.yaml) names: a plain file name (no
    folder part, not absolute, not '..') that is not a symlink and lies in ``folder`` once resolved.
    Symlinks are refused wherever they point, inside the folder too: a model folder is copied, packed and
    hashed as plain files, and a link can be re-pointed between the hash check and the engine's read."""
    folder = Path(folder)
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or any(c in name for c in "/\\\0")
        or Path(name).name != name
    ):
        raise IntegrityError(f"{where}: names {name!r}, which is not a plain file name inside {folder}")
    p = folder / name
    if p.is_symlink():
        raise IntegrityError(
            f"{p}: a symlink (refused wherever it points: only plain files of the folder are read)"
        )
    if p.resolve().parent != folder.resolve():
        raise IntegrityError(f"{p}: resolves to {p.resolve()}, outside {folder.resolve()}")
    return p


def _check_names(model_dir: Path, formats: object, files: object, where: str) -> None:
    """Every name a manifest holds is one of its format's files (in the table's order; ONNX external data
    after them), each a plain file inside the folder; every hashed name is one a format lists."""
    if not isinstance(formats, dict) or not isinstance(files, dict):
        raise ModelError(f"{where}: formats and files must be mappings")
    listed: set[str] = set()
    fixed = {n for f in FORMATS.values() for n in f.files} | {MANIFEST}
    for fmt, names in formats.items():
        if fmt not in FORMATS:
            raise ModelError(f"{where}: unknown format {fmt!r} (known: {', '.join(FORMATS)})")
        own = list(FORMATS[fmt].files)
        for n in names if isinstance(names, list) else ():
            if confined(model_dir, n, where).suffix in REFUSED_SUFFIXES:
                raise IntegrityError(f"{model_dir / n}: pickled weights are refused by the runtime")
        if not isinstance(names, list) or names[: len(own)] != own:
            raise IntegrityError(f"{where}: format {fmt} lists {names!r}; its files are {', '.join(own)}")
        extra = names[len(own) :]
        if extra and not FORMATS[fmt].external_data:
            raise IntegrityError(f"{where}: format {fmt} lists {extra!r} beyond its files {', '.join(own)}")
        for n in extra:
            if not isinstance(n, str) or n in fixed or n in listed or extra.count(n) > 1:
                raise IntegrityError(
                    f"{where}: format {fmt} lists {n!r} as external data, a name taken by another file"
                )
        listed.update(names)
    for n in files:
        if n not in listed:
            raise IntegrityError(f"{where}: hashes {n!r}, which no format lists")


def onnx_external_data(graph: Path) -> list[str]:
    """The file names an ONNX graph keeps tensors in (external data locations), sorted.

    The onnx package is a development dependency, not a device's: the runtime must not need it. Every tensor
    that declares external data carries the key "location" (the ONNX spec's, which ONNX Runtime and OpenVINO
    look up) as those literal bytes, so a graph without them has none, exactly, and the package is read only
    for a graph that has them. Without the package such a graph is refused: its locations cannot be read
    to confine and hash them."""
    with open(graph, "rb") as f:
        try:
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                found = m.find(b"location") >= 0
        except ValueError:  # an empty file cannot be mapped
            found = False
    if not found:
        return []
    try:
        import onnx
    except ImportError:
        raise IntegrityError(
            f"{graph}: may keep tensors in external data files, "
            "and the onnx package that reads their names is not installed (pip install onnx), "
            "so they cannot be confined and hashed: refused"
        ) from None
    try:
        model = onnx.load_model(str(graph), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and onnx's own
        raise IntegrityError(f"{graph}: not a readable ONNX graph ({exc.__class__.__name__})") from None
    return sorted({e.value for t in _onnx_tensors(model) for e in t.external_data if e.key == "location"})


def _onnx_tensors(model):
    """Every tensor of an ONNX model: initializers (sparse too) and attribute tensors, in subgraphs and
    functions. Written out because onnx's own walk (``external_data_helper._get_all_tensors``) is private
    and skips sparse tensors."""

    def attrs(attributes):
        for a in attributes:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors
            for s in ([a.sparse_tensor] if a.HasField("sparse_tensor") else []) + list(a.sparse_tensors):
                yield from (s.values, s.indices)
            for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                yield from graph(g)

    def graph(g):
        yield from g.initializer
        for s in g.sparse_initializer:
            yield from (s.values, s.indices)
        for node in g.node:
            yield from attrs(node.attribute)

    yield from graph(model.graph)
    for fn in model.functions:
        for node in fn.node:
            yield from attrs(node.attribute)


def _check_external_data(model_dir: Path, formats: dict, names, where: str) -> None:
    """For each format of ``names`` whose graph may name files of its own: the files it names are exactly
    those the manifest lists after the format's files (so each is confined and hashed)."""
    for fmt, listed in formats.items():
        if fmt not in FORMATS or not FORMATS[fmt].external_data or FORMATS[fmt].files[0] not in names:
            continue
        own = FORMATS[fmt].files
        graph = model_dir / own[0]
        declared = onnx_external_data(graph)
        for loc in declared:
            confined(model_dir, loc, f"{graph} (external data)")
        unlisted = sorted(set(declared) - set(listed[len(own) :]))
        if unlisted:
            raise IntegrityError(
                f"{graph}: keeps tensors in {', '.join(unlisted)}, "
                f"not listed under formats.{fmt} in {where} (so not hashed)"
            )
        unused = sorted(set(listed[len(own) :]) - set(declared))
        if unused:
            raise IntegrityError(
                f"{where}: formats.{fmt} lists {', '.join(unused)}, which {graph.name} does not read"
            )


def write_manifest(
    model_dir: str | Path, manifest: Manifest, written: tuple[str, ...] | list[str] | set[str] = ()
) -> Path:
    """Write ``manifest.yaml``, hashing every file its formats list. ``written``: the files the caller has
    just written. A file the folder's current manifest already records, and not in ``written``, must still
    match its recorded sha256: rewriting a manifest (a new threshold, an added format) never blesses a file
    that fails its check."""
    model_dir = Path(model_dir)
    path = model_dir / MANIFEST
    _check_names(model_dir, manifest.formats, {}, str(path))
    recorded = read_manifest(model_dir).files if path.exists() else {}
    names = [n for ns in manifest.formats.values() for n in ns]
    _check_external_data(model_dir, manifest.formats, names, str(path))
    files = {}
    for n in names:
        p = model_dir / n
        if not p.is_file():
            raise ModelError(f"{p}: listed in the manifest but missing")
        files[n] = sha256(p)
        if n in recorded and n not in written and files[n] != recorded[n]:
            raise IntegrityError(
                f"{p}: sha256 does not match {path} (file changed or corrupted); not re-hashed"
            )
    d = Manifest(
        **{**{k: getattr(manifest, k) for k in manifest.__dataclass_fields__}, "files": files}
    ).to_dict()
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


def record_validation(model_dir: str | Path, engine: str, results: dict) -> Path:
    """Add ``results`` (precision -> record) under ``validated.<engine>`` of the folder's manifest and
    rewrite it; the model's files must still match their recorded sha256 (nothing is re-blessed)."""
    man = read_manifest(model_dir)
    validated = {**man.validated, engine: {**man.validated.get(engine, {}), **results}}
    return write_manifest(model_dir, replace(man, validated=validated))


def read_manifest(model_dir: str | Path) -> Manifest:
    """The manifest of ``model_dir``, its file names checked (each a plain file of its format, inside the
    folder, no symlink); hashes are checked by ``verify_files`` when a format is loaded."""
    model_dir = Path(model_dir)
    path = manifest_path(model_dir)
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
        raise ModelError(
            f"{path}: manifest schema version {ver!r} is not supported by this runtime "
            f"(supports {', '.join(map(str, SUPPORTED_VERSIONS))})"
        )
    d.pop("schema")
    try:
        _check_names(model_dir, d["formats"], d["files"], str(path))
        d["preprocess"] = PreprocessConfig.from_dict(d["preprocess"])
        known = {k: d[k] for k in Manifest.__dataclass_fields__ if k in d}
        return Manifest(**known)
    except (KeyError, TypeError) as exc:
        raise ModelError(f"{path}: incomplete manifest ({exc})") from None


def verify_files(model_dir: str | Path, manifest: Manifest, names: list[str] | tuple[str, ...]) -> None:
    """Refuse pickles, names outside the folder and symlinks, check each file's sha256 against the manifest,
    and check that an ONNX graph among them reads no external data the manifest does not list."""
    model_dir = Path(model_dir)
    where = str(model_dir / MANIFEST)
    names = list(names)
    for fmt, listed in manifest.formats.items():  # a graph's external data is checked with the graph
        if FORMATS.get(fmt) and FORMATS[fmt].external_data and FORMATS[fmt].files[0] in names:
            names += [n for n in listed[len(FORMATS[fmt].files) :] if n not in names]
    for n in names:
        p = confined(model_dir, n, where)
        if p.suffix in REFUSED_SUFFIXES:
            raise IntegrityError(f"{p}: pickled weights are refused by the runtime")
        expected = manifest.files.get(n)
        if expected is None:
            raise IntegrityError(f"{p}: not listed in {MANIFEST}")
        if not p.is_file():
            raise ModelError(f"{p}: missing (listed in {MANIFEST})")
        if sha256(p) != expected:
            raise IntegrityError(f"{p}: sha256 does not match {MANIFEST} (file changed or corrupted)")
    _check_external_data(model_dir, manifest.formats, names, where)


def check_model_dir(model_dir: str | Path) -> Manifest:
    """The whole folder's check, for a folder handed in to be used later (bench --models): the manifest read
    and every format's files verified."""
    man = read_manifest(model_dir)
    for names in man.formats.values():
        verify_files(model_dir, man, names)
    return man
