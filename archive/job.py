"""The archive job as a Ray Data pipeline: list the inputs and plan (driver) -> read, segment and write
(an actor pool: one Predictor per actor, the model loaded once; each actor reads its input, writes its
outputs and the image's row itself, so no decoded image crosses processes). Inputs already done are
skipped; a bad file becomes a row with its error, never a failed job. A run resumes only what the same
model and output-changing options made (``resume.py``). An input is known by its own path (absolute, links
not resolved: ``runtime.batch.input_key``), so a link's outputs and row are its own.

Ray Data does what a hand-made queue would: streaming inputs to free actors with back-pressure, actor
pools, placement over a cluster's nodes, retries of lost workers."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np

from ..runtime.batch import (
    check_unique_stems,
    encode_outputs,
    file_error,
    input_key,
    output_paths,
    prob_to_uint8,
    resolve_fov,
)
from ..runtime.errors import FundusEdgeError, InputError, one_line
from ..runtime.images import DEFAULT_MAX_PIXELS
from .resume import JobKey, claim
from .storage import Storage
from .table import BIOMARKER_NAMES, ImageRow, delete_row, is_done, read_rows, write_row, write_table

_EMPTY_RGB = np.zeros((0, 0, 3), np.uint8)
# Said once per run when Ray has a single node: there, Ray adds its start-up and its hand-over of images
# between processes to the same cores plain predict uses alone (figures: docs/archive.md).
ONE_NODE_NOTE = (
    "note: Ray has one node here; on one machine plain predict (without --ray) is faster (docs/archive.md):"
    " --ray pays off across nodes, or for its results table and resume"
)
_EMPTY_2D = np.zeros((0, 0), np.uint8)


@dataclass(frozen=True)
class SegmentOptions:
    """What ``predict`` takes, the same for the plain loop and the Ray path."""

    model_dir: Path
    backend: str = "auto"
    device: str = "cpu"
    precision: str | None = "auto"  # as Predictor.load takes it (None: the model's own)
    rescale: bool = True
    crop_fov: bool = True
    fov: str = "auto"  # auto | none | a mask file | a folder of masks
    save_prob: bool = False
    save_overlay: bool = False
    biomarkers: bool = False  # each row also carries measure.biomarkers' values of its mask
    # The decoded-pixel cap of each input (None: none). Not part of the resume key: it changes no output,
    # only which inputs are refused.
    max_pixels: int | None = DEFAULT_MAX_PIXELS


def job_key(options: SegmentOptions) -> JobKey:
    """The resume key of a run: what makes its outputs what they are (not where the model lies, not the
    outputs asked for: those are per row)."""
    from .. import __version__
    from ..runtime.manifest import MANIFEST, read_manifest, sha256
    from ..runtime.precision import choose_precision
    from ..runtime.predictor import choose_engine

    man = read_manifest(options.model_dir)  # a folder that is no model fails here, in one line
    fov = options.fov if options.fov in ("auto", "none") else str(Path(options.fov).resolve())
    # Resolved on the driver, as the actors resolve it (the same manifest; a worker whose CPU differs records
    # what it ran in its rows' precision column).
    resolved = choose_precision(
        man, choose_engine(man, options.backend)[0], options.device, options.precision
    ).precision
    return JobKey(
        model=f"{man.name} ({man.variant})",
        model_sha256=sha256(Path(options.model_dir) / MANIFEST),
        backend=options.backend,
        device=options.device,
        precision=options.precision or "",
        rescale=options.rescale,
        crop_fov=options.crop_fov,
        fov=fov,
        tool_version=__version__,
        precision_resolved=resolved or "",
    )


@dataclass(frozen=True)
class Plan:
    todo: list[Path]
    done: list[Path]  # skipped: done before
    refused: list[ImageRow]  # error rows: their outputs exist and are not theirs
    displaced: list[str] = field(
        default_factory=list
    )  # other inputs' rows whose outputs a todo input will overwrite


@dataclass(frozen=True)
class RayOptions:
    address: str | None = (
        None  # None: start a local Ray on this machine; else join this cluster ("auto", "host:port")
    )
    workers: int = 2  # Predictor actors
    threads_per_worker: int = 1  # engine threads of each (and the CPUs each actor reserves)


@dataclass(frozen=True)
class ArchiveSummary:
    """Counts read back from the row files the table is made of, not from what the pipeline handed back:
    an input whose row is missing or not ok is not counted as written."""

    inputs: int
    done_before: int  # skipped: row ok and outputs present
    ok: int  # inputs of this run whose row says ok
    failed: int
    seconds: float  # wall time of the pipeline (Ray start included)
    nodes: dict[str, int] = field(default_factory=dict)  # node id -> images segmented there this run
    tables: tuple[str, ...] = ()
    rows: int = 0  # rows in the table (every input this location has seen)
    rows_ok: int = 0
    ray_nodes: int = 0  # alive nodes of the Ray this run used (0: Ray not started, nothing to do)

    @property
    def processed(self) -> int:
        return self.ok + self.failed

    @property
    def images_per_s(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0


def _now() -> str:
    return datetime.now().isoformat(timespec="seconds")


# -- stages (run in Ray workers) ------------------------------------------------------------------
def _read(row: dict, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> dict:
    """Task: read and decode one input (its header first: one over ``max_pixels`` is refused undecoded)."""
    from ..runtime.images import read_image

    t0 = time.perf_counter()
    out = {"path": row["path"], "rgb": _EMPTY_RGB, "error": "", "read_ms": math.nan}
    try:
        out["rgb"] = read_image(row["path"], max_pixels)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is this file's row, not the job's
        out["error"] = file_error(row["path"], exc)
    out["read_ms"] = (time.perf_counter() - t0) * 1e3
    return out


class _Segmenter:
    """Actor: one Predictor, loaded once. Each call reads one input, segments it and writes its outputs and
    row, and hands back the row's status alone: decoded images and masks never leave the actor's process.
    (Reading and writing in tasks of their own, as before, shipped each decoded image and mask between
    processes through Ray's object store: 3.3 images/s against plain predict's 9.2 on the 2-core machine,
    docs/archive.md.)"""

    def __init__(self, options: SegmentOptions, threads: int, out: Storage | None = None):
        import ray

        from ..runtime.manifest import manifest_sha256
        from ..runtime.predictor import Predictor, ScaleOptions

        self.options = options
        self.out = out
        self.pred = Predictor.load(
            options.model_dir,
            backend=options.backend,
            device=options.device,
            threads=threads,
            precision=options.precision,
            scale=ScaleOptions(rescale=options.rescale, crop_fov=options.crop_fov),
        )
        man = self.pred.manifest
        self.info = {
            "engine": self.pred.backend,
            "precision": self.pred.precision,
            "device": self.pred.device,
            "model": f"{man.name} ({man.variant})",
            "model_sha256": manifest_sha256(options.model_dir),
            "node": ray.get_runtime_context().get_node_id(),
        }

    def __call__(self, row: dict) -> dict:
        """Read, segment and write one input (``row["path"]``): its row's path, status, error and node."""
        seg = self.segment(_read(row, self.options.max_pixels))
        rec = write_row_outputs(seg, self.out, self.options.save_prob, self.options.save_overlay)
        return {k: rec[k] for k in ("path", "status", "error", "node")}

    def segment(self, row: dict) -> dict:
        """One decoded input (``_read``'s row) -> the row with its mask, probability and numbers."""
        from ..runtime.fov import fov_diameter

        out = {
            **row,
            **self.info,
            "mask": _EMPTY_2D,
            "prob": _EMPTY_2D,
            "segment_ms": math.nan,
            "engine_ms": math.nan,
            "warning": "",
            "biomarkers": "",
            "fov_found": False,
            "fov_diameter_px": math.nan,
            "scale": math.nan,
            "vessel_share": math.nan,
            "width": int(row["rgb"].shape[1]),
            "height": int(row["rgb"].shape[0]),
        }
        if row["error"]:
            return out
        rgb = row["rgb"]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the warning is the row's own column
                res = self.pred.predict(rgb, fov=resolve_fov(self.options.fov, Path(row["path"])))
        except Exception as exc:  # noqa: BLE001 - this image's row, not the job's
            out["error"] = file_error(row["path"], exc)
            return out
        fov = res.fov
        inside = int(fov.sum()) if fov is not None else res.mask.size
        out.update(
            mask=res.mask.astype(np.uint8),
            segment_ms=res.total_ms,
            engine_ms=res.engine_ms,
            warning=res.warning or "",
            fov_found=fov is not None,
            fov_diameter_px=fov_diameter(fov) if fov is not None else math.nan,
            scale=float(res.scale),
            vessel_share=float(res.mask.sum()) / max(1, inside),
        )
        if self.options.biomarkers:
            from ..measure.biomarkers import biomarker_dict

            # JSON text: a Ray Data column of dicts would be an Arrow struct, empty where nothing was
            # computed.
            out["biomarkers"] = json.dumps(
                {k: v for k, v in biomarker_dict(res.mask, fov).items() if k in BIOMARKER_NAMES},
                allow_nan=True,
            )
        if self.options.save_prob:
            out["prob"] = prob_to_uint8(res.prob)
        if not self.options.save_overlay:
            out["rgb"] = _EMPTY_RGB  # not needed downstream: do not ship it
        return out


def _names(image: Path, save_prob: bool, save_overlay: bool) -> list[str]:
    return [p.name for p in output_paths(Path(image), Path("."), save_prob, save_overlay)]


def write_row_outputs(row: dict, out: Storage, save_prob: bool, save_overlay: bool) -> dict:
    """Task: write one image's outputs, then its row ("writing" first, so a resumed run knows a half-written
    output is its own)."""
    keys = ImageRow.__dataclass_fields__
    rec = ImageRow(
        **{
            k: (v.item() if isinstance(v, np.generic) else v)
            for k, v in row.items()
            if k in keys and k not in ("status", "outputs", "finished", "write_ms", "biomarkers")
        },
        biomarkers=json.loads(row.get("biomarkers") or "{}"),
        status="error" if row["error"] else "writing",
    )
    t0 = time.perf_counter()
    if not row["error"]:
        names = _names(Path(row["path"]), save_prob, save_overlay)
        rec = replace(rec, outputs=";".join(names), finished=_now())
        write_row(out, rec)
        try:
            blobs = encode_outputs(
                row["mask"].astype(bool),
                row["prob"] if save_prob else None,
                row["rgb"] if save_overlay else None,
            )
            for name, data in zip(names, blobs, strict=False):
                out.write_bytes(name, data)
            rec = replace(rec, status="ok")
        except Exception as exc:  # noqa: BLE001 - a full disk or a bad path is this image's row
            rec = replace(rec, status="error", error=file_error(row["path"], exc))
    rec = replace(rec, write_ms=(time.perf_counter() - t0) * 1e3, finished=_now())
    write_row(out, rec)
    return asdict(rec)


# -- driver ---------------------------------------------------------------------------------------
def plan(files: list[Path], out: Storage, options: SegmentOptions, force: bool) -> Plan:
    """An input is done when its row says ok and lists every output asked for, all present. One with an
    existing output that its own row does not list (a user's file, another input's of the same name) is
    refused without --force; the outputs its own row lists (also one left "writing" by a killed job) are
    its own to replace. A row of another input whose outputs a todo input will write is displaced."""
    rows = read_rows(out)
    todo, done, refused = [], [], []
    claimed: dict[str, str] = {}  # output name -> the todo input that will write it
    for f in files:
        key = input_key(f)  # the input's own path: a link is not its target
        row = rows.get(key)
        names = _names(f, options.save_prob, options.save_overlay)
        if not force and is_done(row, out, names) and (row.biomarkers or not options.biomarkers):
            done.append(f)
            continue
        own = set(row.output_names()) if row is not None else set()
        foreign = [n for n in names if n not in own and out.exists(n)]
        if foreign and not force:
            refused.append(
                ImageRow(
                    path=key,
                    status="error",
                    error=f"{out.display(foreign[0])}: exists (use --force to overwrite)",
                    finished=_now(),
                )
            )
            continue
        todo.append(f)
        claimed.update((n, key) for n in names)
    displaced = sorted(p for p, r in rows.items() if any(claimed.get(n, p) != p for n in r.output_names()))
    return Plan(todo, done, refused, displaced)


def _start_ray(ray_opts: RayOptions):
    """Start or join Ray; True when this job started it (and so shuts it down). A Ray the caller already
    started (``ray.init`` in a notebook or a test) is used as it is."""
    import ray

    logging.getLogger("ray").setLevel(
        logging.ERROR
    )  # e.g. the notice that a local Ray uses token authentication
    need = ray_opts.workers * ray_opts.threads_per_worker
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # our own bar counts finished images
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    if ray.is_initialized():
        return False
    kw = dict(
        include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR, ignore_reinit_error=True
    )
    if ray_opts.address is None:
        # A Ray of our own on this machine, never one that RAY_ADDRESS points at.
        ray.init(address="local", num_cpus=max(os.cpu_count() or 1, need), **kw)
    else:
        try:
            ray.init(address=ray_opts.address, **kw)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise FundusEdgeError(
                f"ray cluster {ray_opts.address}: cannot connect ({one_line(exc)})"
            ) from None
        have = ray.cluster_resources().get("CPU", 0)
        if have < need:
            ray.shutdown()
            raise FundusEdgeError(
                f"ray cluster {ray_opts.address}: {have:g} CPUs, but {ray_opts.workers} workers"
                f" x {ray_opts.threads_per_worker} threads need {need}"
            )
    return True


def _reachable(address: str, timeout_s: float = 10.0) -> None:
    """A host:port address must answer before ray.init, which otherwise retries a dead address for minutes."""
    import socket

    target = address.removeprefix("ray://")
    if ":" not in target:
        return  # "auto" and the like: Ray finds the cluster itself and fails fast when there is none
    host, port = target.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise FundusEdgeError(f"ray cluster {address}: nothing answers there ({reason})") from None


def _pipeline(todo: list[Path], out: Storage, options: SegmentOptions, ray_opts: RayOptions):
    """The Ray Data dataset over ``todo``: one block per input, each read, segmented and written by one of
    the actor pool's Predictors (Ray Data streams the blocks to free actors, with back-pressure)."""
    import ray
    from ray.data import ActorPoolStrategy

    from ..runtime.threads import threads_env

    ds = ray.data.from_items([{"path": input_key(f)} for f in todo], override_num_blocks=len(todo))
    return ds.map(
        _Segmenter,
        fn_constructor_kwargs={"options": options, "threads": ray_opts.threads_per_worker, "out": out},
        compute=ActorPoolStrategy(size=ray_opts.workers),
        num_cpus=ray_opts.threads_per_worker,
        runtime_env={"env_vars": threads_env(ray_opts.threads_per_worker)},
    )


def _segment_todo(
    todo: list[Path], out: Storage, options: SegmentOptions, ray_opts: RayOptions, progress: bool
) -> list[dict]:
    """Run the pipeline over ``todo`` (Ray started or joined): each image's written row, in finish order."""
    from tqdm import tqdm

    results: list[dict] = []
    ds = _pipeline(todo, out, options, ray_opts)
    with (
        tqdm(total=len(todo), desc="segment (ray)", unit="img", disable=not progress) as bar,
        warnings.catch_warnings(),
    ):
        # Ray Data's advice that a short list cannot fill every actor: true, and nothing to act on.
        warnings.filterwarnings("ignore", message="The (maximum|minimum) number of concurrent")
        for row in ds.iter_rows():
            results.append(row)
            if row["status"] != "ok":
                tqdm.write(f"error: {row['error']}", file=sys.stderr)
            bar.update(1)
    return results


def run_archive(
    files: list[Path],
    out_dir: str | Path,
    options: SegmentOptions,
    ray_opts: RayOptions = RayOptions(),
    force: bool = False,
    progress: bool = True,
) -> ArchiveSummary:
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        raise FundusEdgeError("--ray needs Ray Data: pip install 'fundus-edge[ray]' (ray[data])") from None

    if ray_opts.workers < 1 or ray_opts.threads_per_worker < 1:
        raise InputError("--workers and --threads-per-worker must be at least 1")
    t0 = time.perf_counter()
    files = check_unique_stems(files)  # two inputs of one output name: refused before anything runs
    if ray_opts.address is not None:
        _reachable(ray_opts.address)  # before anything is written
    out = Storage(out_dir)  # a folder, or an object store / file system URI (s3://bucket/prefix, ...)
    options = replace(options, model_dir=Path(options.model_dir).resolve())
    key = job_key(options)
    out.mkdir()
    claim(
        out, key, force
    )  # another job's location or a foreign table: refused here, before anything is written
    p = plan(files, out, options, force)
    todo, done, refused = p.todo, p.done, p.refused
    for path in p.displaced:
        delete_row(out, path)
    for r in refused:
        write_row(out, r)
        print(f"error: {r.error}", file=sys.stderr)
    results: list[dict] = []
    n_nodes = 0
    if todo:
        import ray

        started = _start_ray(ray_opts)
        try:
            n_nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
            if n_nodes == 1:
                print(ONE_NODE_NOTE, file=sys.stderr)
            results = _segment_todo(todo, out, options, ray_opts, progress)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - an actor that cannot load the model ends the job in one line
            raise FundusEdgeError(f"ray pipeline failed: {_root_cause(exc)}") from None
        finally:
            rows = read_rows(out)
            tables = write_table(out, list(rows.values()), key.to_json())
            if started:
                ray.shutdown()
    else:
        rows = read_rows(out)
        tables = write_table(out, list(rows.values()), key.to_json())
    ok = sum(1 for f in todo if (r := rows.get(input_key(f))) is not None and r.status == "ok")
    nodes = Counter(r["node"] for r in results if r.get("node"))
    return ArchiveSummary(
        len(files),
        len(done),
        ok,
        len(todo) - ok + len(refused),
        time.perf_counter() - t0,
        dict(nodes),
        tuple(tables),
        rows=len(rows),
        rows_ok=sum(r.status == "ok" for r in rows.values()),
        ray_nodes=n_nodes,
    )


def _root_cause(exc: BaseException) -> str:
    """Ray wraps a worker's exception (RayTaskError, ...): report the innermost one in one line."""
    inner = exc
    while getattr(inner, "cause", None) is not None or inner.__cause__ is not None:
        inner = getattr(inner, "cause", None) or inner.__cause__
    for line in str(inner).splitlines()[::-1]:
        if line.strip() and not line.startswith(" "):
            return line.strip()[:300]
    return one_line(inner)
