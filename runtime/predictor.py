"""The one Predictor: model folder -> engine; image -> probability map and mask at the input's size.

A model is preprocess (the training code's own function) + engine + postprocess (crop, threshold,
FOV), after FastDeploy's split of configuration from running.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from .bundle_choice import resolve as resolve_bundle
from .engines import EngineOptions, engine_class, installed_engines
from .engines.table import auto_order
from .errors import EngineRunError, EngineUnavailable, InputError, one_line
from .formats import formats_for
from .fov import find_fov, fov_diameter
from .images import Decoded, read_binary, read_decoded, to_rgb_uint8
from .limits import DEFAULT_MAX_PIXELS
from .manifest import Manifest, read_manifest, verify_files
from .precision import AUTO, PrecisionChoice, choose_precision
from .preprocess import pad_to_multiple, preprocess
from .scale import (
    DEFAULT_UPSAMPLE,
    check_upsampler,
    fov_scale,
    resize_image,
    run_tiled,
    upsample_box,
    upsample_prob,
)

_CROP_STEP = 16  # FOV crops are a multiple of this many pixels


@dataclass(frozen=True)
class Prediction:
    prob: np.ndarray  # H x W float32 vessel probability, the input's own size
    mask: np.ndarray  # H x W bool: prob >= threshold (and inside the FOV when one is used)
    fov: np.ndarray | None
    engine_ms: float  # the engine call alone
    total_ms: float  # preprocessing + engine + postprocessing
    scale: float = 1.0  # resize factor applied before the network (1.0: none)
    warning: str | None = None  # e.g. no FOV found, so no rescaling
    input_hw: tuple[int, int] | None = None  # the network input's size (rescaled, cropped to the FOV, padded)


@dataclass(frozen=True)
class _Started:
    """One image read, its FOV found, rescaled and preprocessed: what the engine call needs and what
    postprocessing maps back."""

    rgb: np.ndarray
    fmask: np.ndarray | None
    factor: float
    warning: str | None
    feats: (
        np.ndarray | None
    )  # CxHxW preprocessed rescaled image, whole (dropped when it all runs: large inputs)
    box: tuple[int, int, int, int] | None  # (top, bottom, left, right) of the FOV crop in it; None: all of it
    seconds: float  # time spent getting here
    scaled_hw: tuple[int, int] = (0, 0)  # the rescaled image's size
    x: np.ndarray | None = None  # CxHxW network input: the box, padded
    hw: tuple[int, int] = (0, 0)  # its size before padding
    full_hw: tuple[int, int] = (0, 0)  # the input's own size (rgb is smaller after a reduced decode)
    fov_full: np.ndarray | None = None  # a FOV given at the input's size, when rgb is smaller


@dataclass(frozen=True)
class ScaleOptions:
    """Scale normalisation (resize the FOV to the training diameter) and tiling of large inputs."""

    rescale: bool = True
    # Run the network on the FOV's bounding box (plus a margin) only: the black frame around the retina
    # is 7 % of a DRIVE image and a quarter of a 4:3 camera frame, and never holds a vessel.
    crop_fov: bool = True
    crop_margin: int = 8
    max_side: int = 1600  # network inputs larger than this on either side run in tiles
    tile: int = 768
    overlap: int = 96
    # How the network-scale probability is brought back to a larger input (runtime/scale.py UPSAMPLERS).
    upsample: str = DEFAULT_UPSAMPLE
    # The FOV diameter the network runs at, in training diameters (1.0: the training scale). Above 1 it
    # predicts at a higher scale than it was trained at (measured as an alternative; docs/cameras.md).
    net_scale: float = 1.0
    # A JPEG file whose FOV is over twice the training diameter is decoded at 1/2, 1/4 or 1/8 in its DCT
    # (runtime/images.py read_decoded): an 8 MP frame costs a fraction of its full decode.
    reduced_decode: bool = True

    def __post_init__(self):
        check_upsampler(self.upsample)


def choose_engine(manifest: Manifest, backend: str) -> tuple[str, str]:
    """(engine, format) for a backend request, checking what is installed and what the model has."""
    available = list(manifest.formats)
    if backend == "auto":
        # The table's order read now, not at import: an engine ``register``ed since counts.
        installed = installed_engines()
        for name in auto_order():
            if name in installed and formats_for(name, available):
                return name, formats_for(name, available)[0]
        raise EngineUnavailable(
            f"no installed engine reads this model's formats ({', '.join(available)}); "
            f"installed: {', '.join(installed) or 'none'}"
        )
    cls = engine_class(backend)  # raises a clear error when unknown or not installed
    fmts = formats_for(cls.name, available)
    if not fmts:
        raise EngineUnavailable(
            f"engine {backend!r} reads none of this model's formats ({', '.join(available)})"
        )
    return cls.name, fmts[0]


def crop_step(k: int) -> int:
    """FOV crops' sizes are a multiple of this: _CROP_STEP rounded up to the network's multiple ``k``."""
    return -(-max(_CROP_STEP, k) // k) * k


def expected_hw(manifest: Manifest, scale: ScaleOptions) -> tuple[int, int] | None:
    """The network input a FOV-cropped, rescaled image most likely gives (the training diameter plus the
    margins, rounded up to the crop step): what an engine that builds per shape builds at load."""
    d = manifest.scale.get("fov_diameter_px") if manifest.scale else None
    if not (d and scale.rescale and scale.crop_fov):
        return None
    step = crop_step(manifest.pad_multiple)
    side = -(-int(np.ceil(d + 2 * scale.crop_margin)) // step) * step
    return side, side


class Predictor:
    def __init__(self, model_dir: Path, manifest: Manifest, engine, scale: ScaleOptions | None = None):
        self.model_dir = model_dir
        self.manifest = manifest
        self.engine = engine
        self.threshold = float(manifest.threshold)
        self.load_ms = 0.0
        self.scale = scale or ScaleOptions()
        self.train_diameter = manifest.scale.get("fov_diameter_px") if manifest.scale else None
        if self.train_diameter and self.scale.net_scale != 1.0:
            self.train_diameter = float(self.train_diameter) * self.scale.net_scale
        self.precision_choice = PrecisionChoice(None, None, "")  # set by load()
        self.bundle_choice = None  # load() of a bundle of candidates: runtime.bundle_choice.Chosen

    @classmethod
    def load(
        cls,
        model_dir: str | os.PathLike,
        backend: str = "auto",
        device: str = "cpu",
        threads: int | None = None,
        precision: str | None = AUTO,
        fmt: str | None = None,
        scale: ScaleOptions | None = None,
        shapes: dict | None = None,
    ) -> Predictor:
        """``precision``: "auto" (the fastest this CPU runs among those the manifest records as validated,
        runtime/precision.py), None (the model's own: fp32, or an INT8 model's int8) or one to insist on.
        ``shapes``: the engine's input-shape options (EngineOptions static_hw / dynamic_shape)."""
        t0 = time.perf_counter()
        model_dir = Path(model_dir)
        # A bundle of candidates (pack --candidates): the one selftest chose on this CPU, every file checked.
        bundle = resolve_bundle(model_dir, backend)
        if bundle is not None:
            c = bundle.candidate
            model_dir, backend, fmt = bundle.folder, c.engine, fmt or c.format
            precision = c.precision_request if precision == AUTO else precision
            threads = threads or c.threads
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
        choice = choose_precision(manifest, name, device, precision)
        shapes = dict(shapes or {})
        if not shapes:
            shapes["first_hw"] = expected_hw(manifest, scale or ScaleOptions())
        try:
            engine = cls._load_engine(
                model_dir,
                name,
                chosen,
                files,
                EngineOptions(device, threads, choice.precision, **shapes),
                manifest,
            )
        except EngineUnavailable as exc:
            if choice.asked != AUTO or choice.precision in (None, "fp32"):
                raise
            # The flags promised it and the engine refused (an older OpenVINO, say): auto never fails for
            # that.
            choice = replace(
                choice,
                precision="fp32",
                reason=f"{choice.precision} validated, but {str(exc).strip() or one_line(exc)}",
            )
            engine = cls._load_engine(
                model_dir,
                name,
                chosen,
                files,
                EngineOptions(device, threads, "fp32", **shapes),
                manifest,
            )
        p = cls(model_dir, manifest, engine, scale)
        p.precision_choice = choice
        p.bundle_choice = bundle
        p.prime()
        p.load_ms = (time.perf_counter() - t0) * 1e3
        return p

    def prime(self) -> None:
        """Predict once on a synthetic retina, at load: OpenCV's and NumPy's first calls (CLAHE, the FOV
        search, resizing back) cost as much as a small model's inference, and would otherwise land on the
        first image."""
        side = int(self.train_diameter or 224) + 32
        yy, xx = np.mgrid[:side, :side]
        disc = (yy - side // 2) ** 2 + (xx - side // 2) ** 2 <= (side // 2 - 16) ** 2
        rgb = np.zeros((side, side, 3), np.uint8)
        rgb[disc] = (150, 70, 40)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                self.predict(rgb)  # a FOV at the training diameter: the shape built at load
            except EngineRunError:
                pass  # a model fixed to another input size (pack --input-size): its first image primes it

    @staticmethod
    def _load_engine(
        model_dir: Path, name: str, fmt: str, files: list[str], options: EngineOptions, manifest: Manifest
    ):
        engine = engine_class(name)(model_dir, fmt, files, options, manifest.quantization is not None)
        try:
            engine.load()
        except (EngineUnavailable, InputError):
            raise
        except Exception as exc:  # noqa: BLE001 - engines raise their own types; report one line
            raise EngineRunError(f"{model_dir}: {name} could not load {fmt}: {one_line(exc)}") from None
        return engine

    def precision_line(self) -> str:
        """'precision bf16 (why)': what runs and, when "auto" chose it, why."""
        reason = self.precision_choice.reason
        return f"precision {self.precision}" + (
            f" ({reason})" if reason else " (asked)" if self.precision_choice.asked else " (the model's own)"
        )

    @property
    def backend(self) -> str:
        return self.engine.name

    @property
    def device(self) -> str:
        return self.engine.device

    @property
    def format(self) -> str:
        """The model file format the engine reads (pir, legacy, onnx)."""
        return self.engine.format

    @property
    def precision(self) -> str:
        return self.engine.precision

    # -- pre / post ----------------------------------------------------------------------------
    def _read(self, image, order: str, max_pixels: int | None, side: float | None = None) -> Decoded:
        """The image as the network needs it: a large JPEG file decoded reduced in its DCT (never below
        the training diameter; ``side``: the FOV's diameter at full size when known), anything else whole."""
        if isinstance(image, (str, os.PathLike)):
            need = self.train_diameter if self.scale.rescale and self.scale.reduced_decode else None
            return read_decoded(image, need, max_pixels, side)
        rgb = to_rgb_uint8(image, order)
        return Decoded(rgb, 1, rgb.shape[:2])

    def _fov(self, fov, dec: Decoded) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(the FOV at the decoded size, the FOV at the input's full size when it was given at that size
        and differs from the first; None: derived from the first when needed)."""
        if fov is None or (isinstance(fov, str) and fov == "none"):
            return None, None
        if isinstance(fov, str) and fov == "auto":
            return find_fov(dec.rgb), None  # None when there is no FOV to find: nothing is masked
        if isinstance(fov, (str, os.PathLike)):
            m = read_binary(fov, "FOV mask")
            where = str(fov)
        else:
            m = np.asarray(fov).astype(bool)
            where = "FOV mask"
        h, w = dec.full_hw
        if m.shape != (h, w):
            raise InputError(f"{where}: FOV mask is {m.shape[1]}x{m.shape[0]} but the image is {w}x{h}")
        if dec.reduction == 1:
            return m, None
        small = cv2.resize(m.view(np.uint8), dec.rgb.shape[1::-1], interpolation=cv2.INTER_NEAREST)
        return small.view(bool), m

    def _factor(
        self, rgb: np.ndarray, fmask: np.ndarray | None, fov: object
    ) -> tuple[float, str | None, np.ndarray | None]:
        """Resize factor that brings the FOV to the training diameter, a warning when the FOV cannot
        be found (then no rescaling), and the FOV the factor and the crop are taken from."""
        rescale = self.scale.rescale and self.train_diameter
        if not (rescale or self.scale.crop_fov):
            return 1.0, None, None
        # fov="auto" was searched already (fmask None: nothing found); no fov given: searched here.
        m = fmask if fmask is not None or (isinstance(fov, str) and fov == "auto") else find_fov(rgb)
        if m is None or not m.any():
            return (
                1.0,
                "no field of view found (no dark frame around a bright retina): not rescaled"
                if rescale
                else None,
                None,
            )
        return (fov_scale(m, self.train_diameter) if rescale else 1.0), None, m

    def _crop_box(
        self, m: np.ndarray | None, factor: float, hw: tuple[int, int]
    ) -> tuple[int, int, int, int] | None:
        """FOV bounding box in the rescaled image, widened by the margin; its top-left corner on the
        network's multiple so the pooling grid is the one the uncropped image would use."""
        if m is None or not self.scale.crop_fov:
            return None
        rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        k, pad = self.manifest.pad_multiple, self.scale.crop_margin
        h, w = hw
        # Sizes rounded up to a step (a multiple of k), and a box that would cross the image's edge slides
        # back inside rather than shrinking: images of one camera then share one network shape, and
        # OpenVINO compiles once per shape (a new shape costs several inferences' time).
        step = crop_step(k)
        want = expected_hw(self.manifest, self.scale)
        top, bottom = self._span(rows, factor, pad, k, step, h, want and want[0])
        left, right = self._span(cols, factor, pad, k, step, w, want and want[1])
        if (bottom - top) * (right - left) >= 0.98 * h * w:
            return None  # nothing worth cutting
        return top, bottom, left, right

    @staticmethod
    def _span(
        idx: np.ndarray, factor: float, pad: int, k: int, step: int, n: int, target: int | None = None
    ) -> tuple[int, int]:
        """[start, end) along one axis of length ``n``: the FOV's extent plus the margin, its start on the
        grid of ``k``, its length a multiple of ``step``. The end may pass ``n`` up to the next multiple of
        ``k``: that strip is the reflect padding the uncropped image would get too. ``target``: the size the
        engine was built for at load (``expected_hw``); a FOV a little wider than that keeps it, with a
        narrower margin, rather than bringing a new shape (a build costs several inferences)."""
        n_pad = -(-n // k) * k
        lo, hi = int(idx[0] * factor), min(n, int(np.ceil((idx[-1] + 1) * factor)))
        start = max(0, lo - pad) // k * k
        size = min(n_pad, -(-(min(n, hi + pad) - start) // step) * step)
        if target and size > target and hi - lo + 2 * (k - 1) <= target <= n_pad:
            size, start = target, max(0, lo - (target - (hi - lo)) // 2) // k * k
        start = min(start, (n_pad - size) // k * k)
        return start, start + size

    def prepare(self, image, fov=None, order: str = "rgb") -> tuple[np.ndarray, tuple[int, int]]:
        """The padded CxHxW network input ``predict`` builds for this image (rescaled, cropped to the
        FOV's box) and its size before padding: what an engine-only timing should feed."""
        st = self._start(image, fov, order)
        return st.x, st.hw

    def _run(self, x: np.ndarray) -> np.ndarray:
        try:
            return self.engine.run(x)
        except Exception as exc:  # noqa: BLE001
            raise EngineRunError(
                f"{self.model_dir}: {self.backend} failed on a {x.shape} input: {one_line(exc)}"
            ) from None

    def _tiled(self, x: np.ndarray) -> bool:
        return max(x.shape[-2:]) > self.scale.max_side

    def _run_one(self, x: np.ndarray) -> np.ndarray:
        """CxHxW padded input -> HxW probability, in tiles when the input is large."""
        if self._tiled(x):
            m = self.manifest.pad_multiple
            tile = max(m, self.scale.tile // m * m)
            return run_tiled(x, self._run, tile, self.scale.overlap)
        return self._run(x[None])[0, 0]

    def _start(self, image, fov, order: str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> _Started:
        """Read, find the FOV, rescale and preprocess one image."""
        t0 = time.perf_counter()
        dec = self._read(image, order, max_pixels)
        fmask, fov_full = self._fov(fov, dec)
        factor, warning, m = self._factor(dec.rgb, fmask, fov)
        if dec.reduction > 1 and m is not None and factor > 1.0:
            # The FOV is smaller than the frame promised: decode again, as large as the FOV needs.
            dec = self._read(image, order, max_pixels, side=fov_diameter(m) * dec.reduction)
            fmask, fov_full = self._fov(fov, dec)
            factor, warning, m = self._factor(dec.rgb, fmask, fov)
        if warning:
            warnings.warn(
                f"{image if isinstance(image, (str, os.PathLike)) else 'image'}: {warning}", stacklevel=3
            )
        # Preprocess the whole rescaled image, then crop: CLAHE's tile grid stays the uncropped one.
        feats = preprocess(resize_image(dec.rgb, factor), self.manifest.preprocess)
        st = _Started(dec.rgb, fmask, factor, warning, feats, None, 0.0, feats.shape[1:])
        st = self._crop(
            replace(st, full_hw=dec.full_hw, fov_full=fov_full), self._crop_box(m, factor, feats.shape[1:])
        )
        return replace(st, seconds=time.perf_counter() - t0)

    def _crop(self, st: _Started, box: tuple[int, int, int, int] | None) -> _Started:
        """The padded network input for ``box`` of the preprocessed image (None: all of it)."""
        f = st.feats if box is None else st.feats[:, box[0] : box[1], box[2] : box[3]]
        x, hw = pad_to_multiple(f, self.manifest.pad_multiple)
        return replace(st, box=box, x=x, hw=hw, feats=None if box is None else st.feats)

    @staticmethod
    def _scaled_prob(prob: np.ndarray, st: _Started) -> np.ndarray:
        """The network's output without its padding, placed in the rescaled image (the network scale)."""
        h, w = st.hw
        prob = np.ascontiguousarray(prob[:h, :w], np.float32)
        if st.box is not None:  # outside the FOV's box: background
            full = np.zeros(st.scaled_hw, np.float32)
            full[st.box[0] : st.box[1], st.box[2] : st.box[3]] = prob
            prob = full
        return prob

    def _finish(self, prob: np.ndarray, st: _Started, engine_s: float) -> Prediction:
        """Crop the padding, map back to the input's size, threshold, mask by the FOV."""
        t0 = time.perf_counter()
        shape = st.full_hw if st.full_hw != (0, 0) else st.rgb.shape[:2]
        small, method = self._scaled_prob(prob, st), self.scale.upsample
        if method == "guided" and st.rgb.shape[:2] == shape:  # a reduced decode has no full-size guide
            prob = upsample_prob(small, shape, method, self.threshold, st.rgb)
        else:
            prob = upsample_box(small, shape, st.box, method, self.threshold)
        mask = prob >= self.threshold
        fmask = st.fov_full if st.fov_full is not None else st.fmask
        if fmask is not None and fmask.shape != shape:  # found on the reduced decode: at full size
            fmask = cv2.resize(fmask.view(np.uint8), shape[::-1], interpolation=cv2.INTER_NEAREST).view(bool)
        if fmask is not None:
            mask &= fmask
        total_s = st.seconds + engine_s + time.perf_counter() - t0
        return Prediction(
            prob, mask, fmask, engine_s * 1e3, total_s * 1e3, st.factor, st.warning, tuple(st.x.shape[-2:])
        )

    def predict(
        self, image, fov=None, order: str = "rgb", max_pixels: int | None = DEFAULT_MAX_PIXELS
    ) -> Prediction:
        """One image (array or path). ``fov``: None, "auto", a mask array or a mask file. The image
        is resized so its FOV matches the training scale (``ScaleOptions.rescale``); the outputs are
        at the input's own size. A path to a large JPEG is decoded reduced (``ScaleOptions.reduced_decode``);
        ``max_pixels`` caps the size its header declares."""
        st = self._start(image, fov, order, max_pixels)
        t0 = time.perf_counter()
        out = self._run_one(st.x)
        return self._finish(out, st, time.perf_counter() - t0)

    def predict_batch(self, images: list, fovs: list | None = None, order: str = "rgb") -> list[Prediction]:
        """Several images; those of the same network-input size run as one batch (each is charged
        its share of the batch's engine time)."""
        fovs = fovs or [None] * len(images)
        started = [self._start(im, fv, order) for im, fv in zip(images, fovs, strict=False)]
        # FOV boxes of one rescaled size differ by a few pixels: all take their union, so they batch.
        by_size: dict[tuple, list[int]] = {}
        for i, st in enumerate(started):
            if st.box is not None:
                by_size.setdefault(st.scaled_hw, []).append(i)
        for idx in by_size.values():
            boxes = [started[i].box for i in idx]
            if len(set(boxes)) > 1:
                union = (
                    min(b[0] for b in boxes),
                    max(b[1] for b in boxes),
                    min(b[2] for b in boxes),
                    max(b[3] for b in boxes),
                )
                for i in idx:
                    started[i] = self._crop(started[i], union)
        groups: dict[tuple, list[int]] = {}
        for i, st in enumerate(started):
            groups.setdefault(("tiled", i) if self._tiled(st.x) else st.x.shape, []).append(i)
        results: list[Prediction | None] = [None] * len(images)
        for idx in groups.values():
            t0 = time.perf_counter()
            if len(idx) == 1:
                out = self._run_one(started[idx[0]].x)[None, None]
            else:
                out = self._run(np.stack([started[i].x for i in idx]))
            share_s = (time.perf_counter() - t0) / len(idx)
            for k, i in enumerate(idx):
                results[i] = self._finish(out[k, 0], started[i], share_s)
        return results  # type: ignore[return-value]
