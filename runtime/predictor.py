"""The one Predictor: model folder -> engine; image -> probability map and mask at the input's size.

A model is preprocess (the training code's own function) + engine + postprocess (crop, threshold,
FOV), after FastDeploy's split of configuration from running.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .engines import AUTO_ORDER, EngineOptions, engine_class, installed_engines
from .errors import EngineRunError, EngineUnavailable, InputError
from .formats import formats_for
from .fov import estimate_fov
from .images import read_binary, read_image, to_rgb_uint8
from .manifest import Manifest, read_manifest, verify_files
from .preprocess import pad_to_multiple, preprocess


@dataclass(frozen=True)
class Prediction:
    prob: np.ndarray  # H x W float32 vessel probability, the input's own size
    mask: np.ndarray  # H x W bool: prob >= threshold (and inside the FOV when one is used)
    fov: np.ndarray | None
    engine_ms: float  # the engine call alone
    total_ms: float  # preprocessing + engine + postprocessing


def choose_engine(manifest: Manifest, backend: str) -> tuple[str, str]:
    """(engine, format) for a backend request, checking what is installed and what the model has."""
    available = list(manifest.formats)
    if backend == "auto":
        for name in AUTO_ORDER:
            if name in installed_engines() and formats_for(name, available):
                return name, formats_for(name, available)[0]
        raise EngineUnavailable(f"no installed engine reads this model's formats ({', '.join(available)}); installed: {', '.join(installed_engines()) or 'none'}")
    cls = engine_class(backend)  # raises a clear error when unknown or not installed
    fmts = formats_for(cls.name, available)
    if not fmts:
        raise EngineUnavailable(f"engine {backend!r} reads none of this model's formats ({', '.join(available)})")
    return cls.name, fmts[0]


class Predictor:
    def __init__(self, model_dir: Path, manifest: Manifest, engine):
        self.model_dir = model_dir
        self.manifest = manifest
        self.engine = engine
        self.threshold = float(manifest.threshold)
        self.load_ms = 0.0

    @classmethod
    def load(cls, model_dir: str | os.PathLike, backend: str = "auto", device: str = "cpu", threads: int | None = None, precision: str | None = None, fmt: str | None = None) -> "Predictor":
        t0 = time.perf_counter()
        model_dir = Path(model_dir)
        manifest = read_manifest(model_dir)
        if device not in ("cpu", "gpu"):
            raise InputError(f"unknown device {device!r}; choose cpu or gpu")
        name, chosen = choose_engine(manifest, backend)
        if fmt is not None:
            if fmt not in formats_for(name, list(manifest.formats)):
                raise EngineUnavailable(f"engine {name!r} cannot read format {fmt!r} of {model_dir}")
            chosen = fmt
        files = list(manifest.formats[chosen])
        verify_files(model_dir, manifest, files)
        engine = engine_class(name)(model_dir, chosen, files, EngineOptions(device, threads, precision), manifest.quantization is not None)
        try:
            engine.load()
        except (EngineUnavailable, InputError):
            raise
        except Exception as exc:  # noqa: BLE001 - engines raise their own types; report one line
            raise EngineRunError(f"{model_dir}: {name} could not load {chosen}: {_first_line(exc)}") from None
        p = cls(model_dir, manifest, engine)
        p.load_ms = (time.perf_counter() - t0) * 1e3
        return p

    @property
    def backend(self) -> str:
        return self.engine.name

    @property
    def device(self) -> str:
        return self.engine.device

    @property
    def precision(self) -> str:
        return self.engine.precision

    # -- pre / post ----------------------------------------------------------------------------
    def _rgb(self, image, order: str) -> np.ndarray:
        if isinstance(image, (str, os.PathLike)):
            return read_image(image)
        return to_rgb_uint8(image, order)

    def _fov(self, fov, rgb: np.ndarray) -> np.ndarray | None:
        if fov is None or (isinstance(fov, str) and fov == "none"):
            return None
        if isinstance(fov, str) and fov == "auto":
            return estimate_fov(rgb)
        if isinstance(fov, (str, os.PathLike)):
            m = read_binary(fov, "FOV mask")
            where = str(fov)
        else:
            m = np.asarray(fov).astype(bool)
            where = "FOV mask"
        if m.shape != rgb.shape[:2]:
            raise InputError(f"{where}: FOV mask is {m.shape[1]}x{m.shape[0]} but the image is {rgb.shape[1]}x{rgb.shape[0]}")
        return m

    def prepare(self, rgb: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
        x, hw = pad_to_multiple(preprocess(rgb, self.manifest.preprocess), self.manifest.pad_multiple)
        return x, hw

    def _run(self, x: np.ndarray) -> np.ndarray:
        try:
            return self.engine.run(x)
        except Exception as exc:  # noqa: BLE001
            raise EngineRunError(f"{self.model_dir}: {self.backend} failed on a {x.shape} input: {_first_line(exc)}") from None

    def predict(self, image, fov=None, order: str = "rgb") -> Prediction:
        """One image (array or path). ``fov``: None, "auto", a mask array or a mask file."""
        t0 = time.perf_counter()
        rgb = self._rgb(image, order)
        fmask = self._fov(fov, rgb)
        x, (h, w) = self.prepare(rgb)
        t1 = time.perf_counter()
        out = self._run(x[None])
        t2 = time.perf_counter()
        prob = np.ascontiguousarray(out[0, 0, :h, :w], np.float32)
        mask = prob >= self.threshold
        if fmask is not None:
            mask &= fmask
        return Prediction(prob, mask, fmask, (t2 - t1) * 1e3, (time.perf_counter() - t0) * 1e3)

    def predict_batch(self, images: list, fovs: list | None = None, order: str = "rgb") -> list[Prediction]:
        """Several images; same-size ones run as one batch."""
        fovs = fovs or [None] * len(images)
        rgbs = [self._rgb(im, order) for im in images]
        results: list[Prediction | None] = [None] * len(images)
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(rgbs):
            groups.setdefault(r.shape, []).append(i)
        for idx in groups.values():
            t0 = time.perf_counter()
            prepared = [self.prepare(rgbs[i]) for i in idx]
            t1 = time.perf_counter()
            out = self._run(np.stack([p[0] for p in prepared]))
            t2 = time.perf_counter()
            for k, i in enumerate(idx):
                h, w = prepared[k][1]
                prob = np.ascontiguousarray(out[k, 0, :h, :w], np.float32)
                fmask = self._fov(fovs[i], rgbs[i])
                mask = prob >= self.threshold
                if fmask is not None:
                    mask &= fmask
                share = 1.0 / len(idx)
                results[i] = Prediction(prob, mask, fmask, (t2 - t1) * 1e3 * share, (time.perf_counter() - t0) * 1e3 * share)
        return results  # type: ignore[return-value]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{exc.__class__.__name__}: {text.splitlines()[0][:300] if text else ''}"
