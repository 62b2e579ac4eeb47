"""The FastAPI app: ``POST /v1/segment`` (JSON; PNGs as base64 on request), ``POST /v1/segment/{mask,prob,
overlay}.png``, ``GET /health``, ``GET /v1/model`` and the page at ``/``.

Every image goes through the runtime alone: its reader (so a bad upload gets ``predict``'s one-line
error), the one Predictor (loaded once) and ``encode_outputs`` (so the mask PNG is ``predict``'s file).
One engine thread runs the jobs in turn; a fixed number of admission slots sits in front of it, taken
before the body is read, so a flood gets 429 and memory stays at most slots x body limit. What one image
may cost is capped too: its header is read before it is queued, and one of more than ``max_pixels`` is a 413
naming its size (``worst_case`` is what the service can ask for at most, printed at start)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import math
import os
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fundus_edge.runtime.batch import encode_outputs, file_error, prob_to_uint8
from fundus_edge.runtime.errors import FundusEdgeError, InputError
from fundus_edge.runtime.fov import fov_diameter
from fundus_edge.runtime.images import DEFAULT_MAX_PIXELS, ImageTooLarge, header_size, read_image
from fundus_edge.runtime.manifest import manifest_sha256

PNG_KINDS = ("mask", "prob", "overlay")

# Peak memory of one image on the engine, per input pixel: 29 B, measured as peak RSS over a tiny image's
# (`/usr/bin/time -f %M fundus-edge predict`, models/s2d-fast on OpenVINO fp32, a black 4000 x 3000 PNG with
# --save-prob --overlay: 525 MB against 187 MB; AMD EPYC Zen 3, 2026-12-07). A black image is the worst case:
# no FOV is found, so it is not rescaled and the network runs at full size. Models with full-resolution
# layers (default, small) cost more per pixel; the cap bounds it either way.
BYTES_PER_PIXEL = 29


@dataclass(frozen=True)
class ServeOptions:
    max_body_bytes: int = (
        32 << 20
    )  # a 4000x3000 camera TIFF is ~36 MB uncompressed; JPEG/PNG uploads far less
    queue: int = 4  # requests that may wait for the engine besides the one it runs; beyond: 429
    fov: str = "auto"  # as predict's default
    max_pixels: int = DEFAULT_MAX_PIXELS  # an image declaring more is refused with 413 before it is queued


@dataclass(frozen=True)
class WorstCase:
    """What the service may ask for at most, beyond the loaded model: every slot's body (held, and parsed
    once more when it is a form) and one image at the cap on the engine (which decodes one at a time)."""

    bodies: int
    image: int
    machine: int | None  # this machine's memory (a cgroup's limit when lower); None when unknown

    @property
    def total(self) -> int:
        return self.bodies + self.image

    @property
    def fits(self) -> bool:
        return self.machine is None or self.total <= self.machine

    def line(self, options: ServeOptions) -> str:
        gib = 1 << 30
        there = f" of this machine's {self.machine / gib:.1f} GiB" if self.machine else ""
        slots, body_mib = options.queue + 1, options.max_body_bytes / (1 << 20)
        return (
            f"worst-case memory {self.total / gib:.1f} GiB{there} besides the model: {slots} bodies of up to"
            f" {body_mib:g} MiB ({self.bodies / gib:.2f} GiB) and one image of up to"
            f" {options.max_pixels / 1e6:g} MP on the engine ({self.image / gib:.2f} GiB)"
        )


def machine_memory() -> int | None:
    """Physical memory, or the cgroup's limit when it is lower (a container's is what counts)."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        total = None
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and (total is None or int(text) < total):
            total = int(text)
    return total


def worst_case(options: ServeOptions) -> WorstCase:
    return WorstCase(
        bodies=2 * (options.queue + 1) * options.max_body_bytes,
        image=options.max_pixels * BYTES_PER_PIXEL,
        machine=machine_memory(),
    )


@dataclass
class Segmented:
    info: dict
    pngs: dict = field(default_factory=dict)  # kind -> PNG bytes


class _TooLarge(Exception):
    pass


class EngineQueue:
    """One engine worker behind ``capacity`` admission slots (waiting + running)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._slots = threading.BoundedSemaphore(capacity)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fundus-edge-engine")
        self._lock = threading.Lock()
        self.in_flight = 0
        self._service_s = 0.5  # running mean of one job's time, for Retry-After

    def try_enter(self) -> bool:
        if not self._slots.acquire(blocking=False):
            return False
        with self._lock:
            self.in_flight += 1
        return True

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1
        self._slots.release()

    def retry_after_s(self) -> int:
        """Seconds until the slots ahead have likely drained (at least 1)."""
        return max(1, math.ceil(self._service_s * self.capacity))

    async def run(self, fn, *args):
        """Run on the engine thread; the caller's slot is given back when the job ends, not when the caller
        stops waiting (a client that hangs up must not let more jobs pile up behind the engine)."""

        def timed():
            t0 = time.perf_counter()
            try:
                return fn(*args)
            finally:
                self._service_s = 0.8 * self._service_s + 0.2 * (time.perf_counter() - t0)

        fut = self._pool.submit(timed)
        fut.add_done_callback(lambda _f: self.leave())
        return await asyncio.wrap_future(fut)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _safe_name(name: str | None) -> str:
    """The upload's file name without folders (it names the image in errors and decides GIF decoding)."""
    base = Path(str(name or "")).name
    return base if base not in ("", ".", "..") else "upload"


class Service:
    """The loaded model and what one request does with it (no HTTP here)."""

    def __init__(self, predictor, options: ServeOptions | None = None):
        self.pred = predictor
        self.options = options or ServeOptions()
        self.queue = EngineQueue(self.options.queue + 1)
        man = predictor.manifest
        self.model_sha256 = manifest_sha256(predictor.model_dir)
        self.engine_info = {
            "engine": predictor.backend,
            "precision": predictor.precision,
            "device": predictor.device,
            "format": predictor.format,
        }
        self.model_info = {
            **man.to_dict(),
            "manifest_sha256": self.model_sha256,
            "model_dir": str(predictor.model_dir),
            "load_ms": round(predictor.load_ms, 1),
            **self.engine_info,
        }

    def segment(self, data: bytes, name: str, kinds: tuple[str, ...], biomarkers: bool = False) -> Segmented:
        """Bytes of one image file -> the numbers and the asked PNGs (and the mask's vessel biomarkers when
        asked: ~0.3 s an image, the first call also ~15 s of skan's JIT). Runs on the engine thread."""
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="fundus-edge-serve-") as tmp:
            # The runtime's reader takes a path: the upload becomes a file of its own name, and that
            # name replaces the temporary folder in any error, so the message is predict's.
            path = Path(tmp) / name
            path.write_bytes(data)
            try:
                rgb = read_image(path, self.options.max_pixels)
            except InputError as exc:  # ImageTooLarge stays itself: the client gets 413, not 400
                raise type(exc)(file_error(name, type(exc)(str(exc).replace(str(path), name)))) from None
            except FundusEdgeError as exc:
                raise InputError(file_error(name, InputError(str(exc).replace(str(path), name)))) from None
        t_read = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the warning is a field of the answer
            res = self.pred.predict(rgb, fov=self.options.fov)
        t_pred = time.perf_counter()
        pngs = encode_outputs(
            res.mask,
            prob_to_uint8(res.prob) if "prob" in kinds else None,
            rgb if "overlay" in kinds else None,
        )
        by_kind = dict(zip(["mask"] + [k for k in ("prob", "overlay") if k in kinds], pngs, strict=False))
        t_enc = time.perf_counter()
        fov = res.fov
        inside = int(fov.sum()) if fov is not None else res.mask.size
        info = {
            "image": name,
            "width": int(rgb.shape[1]),
            "height": int(rgb.shape[0]),
            "vessel_share": float(res.mask.sum())
            / max(1, inside),  # vessel pixels / FOV pixels (/ all without a FOV)
            "fov_found": fov is not None,
            "fov_diameter_px": fov_diameter(fov) if fov is not None else None,
            "scale": float(res.scale),
            "network_input_hw": list(res.input_hw) if res.input_hw else None,
            "warning": res.warning,
            **self.engine_info,
            "model": {
                "name": self.pred.manifest.name,
                "variant": self.pred.manifest.variant,
                "sha256": self.model_sha256,
            },
            "timings_ms": {
                "read": round((t_read - t0) * 1e3, 2),
                "engine": round(res.engine_ms, 2),
                "segment": round(res.total_ms, 2),
                "predict": round((t_pred - t_read) * 1e3, 2),
                "encode": round((t_enc - t_pred) * 1e3, 2),
            },
        }
        if biomarkers:
            from ..measure.biomarkers import biomarker_dict

            t_bm = time.perf_counter()
            # Inside the FOV the predictor used; without one, the whole frame (densities per frame area).
            info["biomarkers"] = biomarker_dict(res.mask, fov)
            info["biomarkers_within"] = "fov" if fov is not None else "whole frame (no FOV found)"
            info["timings_ms"]["biomarkers"] = round((time.perf_counter() - t_bm) * 1e3, 2)
        return Segmented(info, {k: v for k, v in by_kind.items() if k in kinds})


def _page() -> str:
    return resources.files(__package__).joinpath("static/index.html").read_text(encoding="utf-8")


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    size, chunks = 0, []
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def _image_of(request: Request, body: bytes) -> tuple[bytes, str]:
    """(file bytes, file name): the form's ``image`` (or ``file``) part, or the raw body."""
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        return body, _safe_name(request.query_params.get("name"))

    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=8)
    except Exception as exc:  # noqa: BLE001 - any parser complaint is the client's malformed form
        raise InputError(f"malformed multipart body ({exc.__class__.__name__})") from None
    part = form.get("image") or form.get("file")
    if part is None or not hasattr(part, "read"):
        raise InputError("multipart body has no file part named 'image' (or 'file')")
    return await part.read(), _safe_name(part.filename)


async def _handle(svc: Service, request: Request, kinds: tuple[str, ...], biomarkers: bool = False):
    """413 / 429 / 400 or the segmentation; the admission slot is held from before the body is read
    until the engine is done."""
    limit = svc.options.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return _error(413, f"request body of {int(declared)} bytes is over the limit of {limit} bytes")
    if not svc.queue.try_enter():
        wait = svc.queue.retry_after_s()
        return _error(
            429,
            f"busy: {svc.queue.capacity} requests in flight; retry after {wait} s",
            {"Retry-After": str(wait)},
        )
    submitted = False
    try:
        try:
            body = await _read_body(request, limit)
        except _TooLarge:
            return _error(413, f"request body is over the limit of {limit} bytes")
        t0 = time.perf_counter()
        data, name = await _image_of(request, body)
        if not data:
            raise InputError(f"{name}: empty file")
        # The header alone, before the image waits for the engine: one too large never takes its turn.
        header_size(io.BytesIO(data), name, svc.options.max_pixels)
        submitted = True  # from here the job gives its slot back when it ends
        out = await svc.queue.run(svc.segment, data, name, kinds, biomarkers)
        out.info["timings_ms"]["total"] = round((time.perf_counter() - t0) * 1e3, 2)
        return out
    except ImageTooLarge as exc:
        return _error(413, str(exc))
    except InputError as exc:
        return _error(400, str(exc))
    except FundusEdgeError as exc:  # the engine failed on a readable image: ours, not the client's
        return _error(500, str(exc))
    finally:
        if not submitted:
            svc.queue.leave()


def _kinds_of(include: str | None) -> tuple[str, ...]:
    asked = tuple(k.strip() for k in (include or "").split(",") if k.strip())
    bad = [k for k in asked if k not in PNG_KINDS]
    if bad:
        raise InputError(f"include: unknown output {bad[0]!r}; choose from {', '.join(PNG_KINDS)}")
    return asked


def _add_segment_routes(app: FastAPI, svc: Service) -> None:
    # ``name`` is read from the query by _image_of; the parameters declare it in the OpenAPI page.
    @app.post(
        "/v1/segment",
        summary="segment one image (multipart field 'image', or the raw body);"
        " include=mask,prob,overlay adds base64 PNGs; biomarkers=1 adds the mask's vessel biomarkers",
    )
    async def segment(
        request: Request, include: str | None = None, name: str | None = None, biomarkers: bool = False
    ):
        try:
            kinds = _kinds_of(include)
        except InputError as exc:
            return _error(400, str(exc))
        out = await _handle(svc, request, kinds, biomarkers)
        if not isinstance(out, Segmented):
            return out
        body = dict(out.info)
        for k, png in out.pngs.items():
            body[f"{k}_png"] = base64.b64encode(png).decode("ascii")
        return JSONResponse(body)

    @app.post("/v1/segment/{kind}.png", summary="segment one image and answer one PNG: mask, prob or overlay")
    async def segment_png(kind: str, request: Request, name: str | None = None):
        if kind not in PNG_KINDS:
            return _error(404, f"no output {kind!r}; choose from {', '.join(PNG_KINDS)}")
        out = await _handle(svc, request, (kind,))
        if not isinstance(out, Segmented):
            return out
        return Response(
            out.pngs[kind],
            media_type="image/png",
            headers={"X-Vessel-Share": f"{out.info['vessel_share']:.6f}"},
        )


def _add_info_routes(app: FastAPI, svc: Service) -> None:
    @app.get("/health")
    async def health():
        return {
            "status": "ok",
            "in_flight": svc.queue.in_flight,
            "capacity": svc.queue.capacity,
            "model_sha256": svc.model_sha256,
        }

    @app.get("/v1/model")
    async def model():
        return svc.model_info

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return HTMLResponse(_page())


def create_app(predictor, options: ServeOptions | None = None):
    """The ASGI app over an already loaded Predictor (the model loads once, before the first request)."""
    svc = Service(predictor, options)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        svc.queue.close()

    app = FastAPI(
        title="fundus-edge",
        summary="retinal-vessel segmentation over one Predictor",
        docs_url="/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = svc
    _add_segment_routes(app, svc)
    _add_info_routes(app, svc)
    return app
