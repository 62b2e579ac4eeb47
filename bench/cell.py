"""One benchmark cell, run in its own process so peak memory is the cell's own and a crashing
engine cannot stop the sweep: ``python -m fundus_edge.bench.cell SPEC.json OUT.json`` (the accuracy pass,
which is also the first timing round). The later timing rounds: ``python -m fundus_edge.bench.cell --round
SPECS.json OUT.jsonl`` times a list of cells of one engine in turn, one JSON line per cell as it finishes,
so a crash loses only the cell that crashed (the sweep restarts the round's process after it)."""

from __future__ import annotations

import itertools
import json
import resource
import statistics
import sys
import time
import traceback
from collections import Counter
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np


class _JsonCrossing:
    """to_json / from_json for a spec that crosses into the cell process; an unknown or missing key is
    refused (a TypeError), so the sweep and the cell cannot drift apart silently."""

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict):
        return cls(**d)

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class CellSpec(_JsonCrossing):
    """One cell of the accuracy pass (the first timing round), as the sweep sends it to the cell process."""

    variant: str
    backend: str
    model_dir: str
    images: str  # the .npz of test images (+ labels and FOV masks with DRIVE)
    threads: int
    batch: int  # the throughput run's batch
    warmup: int
    runs: int
    min_runs: int
    budget_s: float
    precision: str | None = None  # an explicit precision request (OpenVINO bf16 row)
    device: str = "cpu"
    accuracy: bool = False  # score the masks against the labels
    reference_mask: str | None = None  # the variant's reference cell's masks: the agreement
    save_mask: str | None = None  # where this cell's masks go
    float_reference_mask: str | None = None  # the float model's reference masks: agreement_float
    save_prob: str | None = None  # where the first image's probability map goes (the overlays)
    shape: str | None = None  # "static" / "dynamic": a shape row
    shapes: dict | None = None  # the engine's shape options (static_hw / dynamic_shape)
    slow_ms: float = 2000.0  # a model slower than this per image is timed as a slow one
    window_s: float = 1.0  # each round times a cell for at least this long (see timing_policy)
    # A call at least this long is "heavy": one warm-up (the format check's call came before it), three
    # calls at least in a later round (three fill the window already), one timed throughput batch. On an
    # AVX2-only CPU two thirds of the cells are heavy, and the fixed counts made of the bench a 30-minute run.
    heavy_ms: float = 100.0

    def round_spec(
        self, key: str, fmt: str | None, slow: bool, scored: bool, heavy: bool = False
    ) -> RoundSpec:
        """A later round's spec of this cell, with what the accuracy pass found (the format that ran,
        whether the model is slow, whether it was scored), so every round times the cell the same way."""
        keep = {f.name for f in fields(RoundSpec)}
        return RoundSpec(
            key=key,
            format=fmt,
            slow=slow,
            scored=scored,
            heavy=heavy,
            **{k: v for k, v in self.to_dict().items() if k in keep},
        )


@dataclass(frozen=True)
class RoundSpec(_JsonCrossing):
    """One cell of a later timing round (``--round``): load the format that ran, time as round 1 did."""

    key: str
    variant: str
    backend: str
    model_dir: str
    images: str
    threads: int
    warmup: int
    runs: int
    min_runs: int
    budget_s: float
    format: str | None
    slow: bool
    scored: bool
    precision: str | None = None
    device: str = "cpu"
    shapes: dict | None = None
    window_s: float = 1.0
    heavy: bool = False  # the accuracy pass found the model heavy (CellSpec.heavy_ms)


def _test_images(path: str):
    """The cell's images with their labels and FOV masks (None where absent), in name order."""
    z = np.load(path, allow_pickle=False)
    names = sorted(k for k in z.files if k.startswith("img_"))
    imgs = [z[k] for k in names]
    labels = [z[k.replace("img_", "lab_")] if k.replace("img_", "lab_") in z.files else None for k in names]
    fovs = [z[k.replace("img_", "fov_")] if k.replace("img_", "fov_") in z.files else None for k in names]
    return names, imgs, labels, fovs


def _load_predictor(spec: CellSpec, shapes: dict | None, imgs: list):
    """The engine on the first format it both loads and runs the first image on: (predictor or None,
    the first call's ms, [(format, error)] of the formats that failed before it)."""
    from fundus_edge.runtime.errors import EngineUnavailable, FundusEdgeError, IntegrityError, one_line
    from fundus_edge.runtime.formats import formats_for
    from fundus_edge.runtime.manifest import read_manifest
    from fundus_edge.runtime.predictor import Predictor

    try:
        fmts = formats_for(spec.backend, list(read_manifest(spec.model_dir).formats)) or [None]
    except (FundusEdgeError, Exception):  # noqa: BLE001 - Predictor.load below reports it
        fmts = [None]
    # An engine that fails on its preferred format gets the next one it reads (Paddle: PIR, then the
    # legacy program); the row says which ran and why, so nothing falls back silently.
    failed, p, first_ms = [], None, None
    for fmt in fmts:
        try:
            p = Predictor.load(
                spec.model_dir,
                backend=spec.backend,
                device=spec.device,
                threads=spec.threads,
                precision=spec.precision,
                fmt=fmt,
                shapes=shapes,
            )
        except (FundusEdgeError, Exception) as exc:  # noqa: BLE001 - any engine failure is this cell's record
            failed.append((fmt, f"load: {one_line(exc)}"))
            if isinstance(exc, (IntegrityError, EngineUnavailable)):
                break  # a file that fails its check, or a missing engine, is not a format problem
            continue
        try:
            t0 = time.perf_counter()
            p.predict(imgs[0])  # the format check: an engine may load a graph it cannot run
            first_ms = (time.perf_counter() - t0) * 1e3
            break
        except Exception as exc:  # noqa: BLE001
            failed.append((fmt, one_line(exc)))
            traceback.print_exc()
            p = None  # the failed attempt's memory still counts in the cell's peak (a high-water mark)
    return p, first_ms, failed


def _timed_pass(p, spec: CellSpec, images, policy, keep: int, acc):
    """The accuracy pass, which is also the first timing round: ``images`` (names, images, labels, FOVs)
    in turn under ``policy``; the first ``keep`` images' masks kept (and scored into ``acc``). Returns
    (timing, end-to-end ms, masks, their FOVs, input sizes)."""
    from fundus_edge.measure.timing import time_calls

    names, imgs, labels, fovs = images
    e2e: list[float] = []
    masks: list[np.ndarray] = []
    masked_fovs: list[np.ndarray | None] = []
    in_shapes: list[tuple] = []
    calls = itertools.count(-policy.warmup)

    def one() -> float:
        k = next(calls)
        i = max(k, 0) % len(imgs)
        r = p.predict(imgs[i])
        if k >= 0:
            e2e.append(r.total_ms)
            in_shapes.append(tuple(r.input_hw))
            if k < keep:
                masks.append(r.mask)
                masked_fovs.append(fovs[i])
                if acc is not None:
                    acc.add(r.prob, labels[i], fovs[i], names[i])
                if k == 0 and spec.save_prob:
                    np.save(spec.save_prob, r.prob)
        return r.engine_ms

    t = time_calls(one, policy)
    return t, e2e, masks, masked_fovs, in_shapes


def _throughput(
    p, spec: CellSpec, imgs: list, shapes: dict | None, slow: bool, e2e: list[float], heavy: bool = False
) -> dict:
    """The cell's images/s (and batch size, for a slow model) as record fields; {} when it has none."""
    if slow:
        # Seconds per image: a batch of 4 would only repeat the single-image figure at 8 more runs of
        # about 2 s in each of the seed U-Net's cells, so its rate is taken one image at a time.
        return {"throughput_ips": 1000.0 / statistics.fmean(e2e), "batch_size": 1}
    # A static engine takes batch 1 only.
    if spec.batch > 1 and len(imgs) >= 1 and not (shapes or {}).get("static_hw"):
        batch = [imgs[i % len(imgs)] for i in range(spec.batch)]
        if len({b.shape for b in batch}) == 1:
            p.predict_batch(batch)
            timed = 1 if heavy else 2  # a heavy model's one batch is already several tenths of a second
            t0 = time.perf_counter()
            for _ in range(timed):
                p.predict_batch(batch)
            return {"throughput_ips": timed * len(batch) / (time.perf_counter() - t0)}
    return {}


def _agreements(rec: dict, spec: CellSpec, masks: list, masked_fovs: list, scored: bool) -> None:
    """Into ``rec``: the cell's masks' agreement with the reference cells' (and save its own masks)."""
    if spec.reference_mask:
        rec["agreement"] = vessel_dice(*_common(load_masks(spec.reference_mask), masks, scored), masked_fovs)
    # Every cell's masks: the reference's for the agreement checks, all for the biomarker drift.
    if spec.save_mask:
        save_masks(spec.save_mask, masks)
    if spec.float_reference_mask:
        rec["agreement_float"] = vessel_dice(
            *_common(load_masks(spec.float_reference_mask), masks, scored), masked_fovs
        )


def run_cell(spec: CellSpec) -> dict:
    from fundus_edge.measure.metrics import MetricAccumulator
    from fundus_edge.measure.timing import Timing
    from fundus_edge.runtime.errors import one_line

    rec = {
        "variant": spec.variant,
        "backend": spec.backend,
        "threads": spec.threads,
        "batch_size": spec.batch,
        "precision_requested": spec.precision,
        "shape_requested": spec.shape,
    }
    shapes = shape_options(spec)
    if spec.shape == "static" and not (shapes or {}).get("static_hw"):
        return {
            **rec,
            "status": "run_failed",
            "error": "no static input size: the variant's reference cell did not run",
        }

    names, imgs, labels, fovs = _test_images(spec.images)
    p, first_ms, failed = _load_predictor(spec, shapes, imgs)
    if p is None:
        return {**rec, "status": "run_failed", "error": "; ".join(f"{f}: {e}" if f else e for f, e in failed)}
    rec.update(
        load_ms=p.load_ms,
        device=p.device,
        precision=p.precision,
        format=p.format,
        first_ms=first_ms,
        shape=p.engine.shape,
    )
    if failed:
        rec["note"] = "; ".join(f"{f} failed ({e[:300]})" for f, e in failed) + f"; ran {p.format}"
    try:
        # The timed calls are the accuracy pass: every test image once, after warm-up on the first (DRIVE's
        # FOV boxes pad to one input size, 560x560 for 19 of the 20 test images). Without labels, the images
        # in turn within the time budget. A model slower than 2 s per image (the 13.4 M seed U-Net) gets one
        # warm-up run and at least 3 timed; with nothing to score it keeps only its first image's mask (every
        # image would add over a minute to each of its cells).
        slow = rec["first_ms"] >= spec.slow_ms
        heavy = rec["first_ms"] >= spec.heavy_ms
        scored = spec.accuracy and labels[0] is not None
        keep = len(imgs) if scored or not slow else 1  # images whose masks the agreement checks compare
        policy = timing_policy(spec, slow, scored, len(imgs), heavy=heavy)
        rec["_slow"] = slow  # the later rounds time this cell the same way
        rec["_heavy"] = heavy
        acc = MetricAccumulator(threshold=p.threshold, per_image_auc=False) if scored else None
        t, e2e, masks, masked_fovs, in_shapes = _timed_pass(
            p, spec, (names, imgs, labels, fovs), policy, keep, acc
        )
        rec["input_hw"] = "x".join(map(str, Counter(in_shapes).most_common(1)[0][0]))
        rec["_max_hw"] = [
            max(h for h, _ in in_shapes),
            max(w for _, w in in_shapes),
        ]  # a static row's size: every image fits
        rec.update(
            p50_ms=t.p50,
            p90_ms=t.p90,
            p99_ms=t.p99,
            mean_ms=t.mean,
            std_ms=t.std,
            e2e_p50_ms=Timing(tuple(e2e)).p50,
            timed_runs=t.runs,
        )
        rec["_round"] = round_result(t, e2e)
        rec.update(_throughput(p, spec, imgs, shapes, slow, e2e, heavy))
        if acc is not None:
            m = acc.pooled()
            rec.update(f1=m.f1, iou=m.iou, auc=m.auc, acc=m.acc, se=m.se, sp=m.sp)
            rec.update(accuracy_intervals(acc, m))
        _agreements(rec, spec, masks, masked_fovs, scored)
        rec["status"] = "ok"
    except Exception as exc:  # noqa: BLE001
        rec.update(status="run_failed", error=one_line(exc))
        traceback.print_exc()
    rec["peak_rss_mb"] = peak_rss_mb()
    return rec


def accuracy_intervals(acc, pooled) -> dict:
    """Record fields of a scored cell: each test image's confusion counts (so rows can be compared by a
    paired bootstrap later without the images) and the 95 % bootstrap interval over images of F1, IoU and AUC
    (measure/intervals.py); no interval from a single image."""
    out = {"per_image_counts": [list(map(int, c)) for c in acc.per_image_counts]}
    if len(acc.per_image_counts) >= 2:
        iv = acc.intervals(pooled)
        for k in ("f1", "iou", "auc"):
            if k in iv and getattr(pooled, k) is not None:
                out.update({f"{k}_low": iv[k].low, f"{k}_high": iv[k].high})
    return out


def shape_options(spec: CellSpec | RoundSpec) -> dict | None:
    """The spec's engine shape options (EngineOptions static_hw / dynamic_shape), the size a tuple again."""
    shapes = spec.shapes
    return (
        {**shapes, "static_hw": tuple(shapes["static_hw"])} if shapes and shapes.get("static_hw") else shapes
    )


MAX_RUNS = 500  # the most timed calls of one cell in one round (a 2 ms model in its window)
LATER_MIN_RUNS = 5  # the fewest a later round times a scored cell (the seed U-Net: 5 x 0.7 s, not 20)


def timing_policy(
    spec: CellSpec | RoundSpec,
    slow: bool,
    scored: bool,
    n_images: int,
    first: bool = True,
    heavy: bool = False,
):
    """How a cell is timed in a round. Scored, round 1 (the accuracy pass): every test image once after
    warm-up on the first, then the images again in turn until ``window_s`` has passed; later rounds: the
    images in turn for ``window_s``, at least 5 calls. A window, not a count, because a 10 ms model's 20
    images are 0.2 s, shorter than the VM's slow spells: one spell over a round moved its p50 by half.
    Unscored: the images in turn within the time budget. A model slower than ``slow_ms`` per image gets
    one warm-up run and at least 3 timed."""
    from fundus_edge.measure.timing import TimingPolicy

    warmup = 1 if slow or heavy else spec.warmup
    if scored:
        least = n_images if first else min(n_images, 3 if slow or heavy else LATER_MIN_RUNS)
        return TimingPolicy(warmup=warmup, runs=max(least, MAX_RUNS), min_runs=least, budget_s=spec.window_s)
    keep = 1 if slow else n_images
    return TimingPolicy(
        warmup=warmup,
        runs=spec.runs,
        min_runs=max(keep, 3 if slow else spec.min_runs),
        budget_s=spec.budget_s,
    )


def round_result(t, e2e: list[float]) -> dict:
    """One round's figures of one cell: what the sweep aggregates over rounds."""
    from fundus_edge.measure.timing import Timing

    return {
        "p50_ms": t.p50,
        "p90_ms": t.p90,
        "e2e_p50_ms": Timing(tuple(e2e)).p50,
        "samples_ms": list(t.samples_ms),
    }


def time_round(spec: RoundSpec, images: dict) -> dict:
    """A later timing round of one cell: load the format that ran in the accuracy pass, warm up, time the
    images as that pass did; no scoring, masks or batch run. ``images``: the test images (array list)."""
    from fundus_edge.measure.timing import time_calls
    from fundus_edge.runtime.errors import one_line
    from fundus_edge.runtime.predictor import Predictor

    imgs = images["imgs"]
    try:
        p = Predictor.load(
            spec.model_dir,
            backend=spec.backend,
            device=spec.device,
            threads=spec.threads,
            precision=spec.precision,
            fmt=spec.format,
            shapes=shape_options(spec),
        )
        policy = timing_policy(spec, spec.slow, spec.scored, len(imgs), first=False, heavy=spec.heavy)
        e2e: list[float] = []
        calls = itertools.count(-policy.warmup)

        def one() -> float:
            k = next(calls)
            r = p.predict(imgs[max(k, 0) % len(imgs)])
            if k >= 0:
                e2e.append(r.total_ms)
            return r.engine_ms

        t = time_calls(one, policy)
        p = None  # the engine goes before the next cell loads
        return {"key": spec.key, "status": "ok", **round_result(t, e2e)}
    except Exception as exc:  # noqa: BLE001 - one failed round is that round's gap, the others stand
        traceback.print_exc()
        return {"key": spec.key, "status": "run_failed", "error": one_line(exc)}


def run_round(specs_path: str, out_path: str) -> None:
    """Time the listed cells in turn, appending one JSON line per cell as it finishes."""
    import gc

    specs = [RoundSpec.from_dict(d) for d in json.loads(Path(specs_path).read_text())]
    cache: dict[str, dict] = {}
    with open(out_path, "a") as out:
        for spec in specs:
            if spec.images not in cache:
                with np.load(spec.images, allow_pickle=False) as z:
                    cache[spec.images] = {
                        "imgs": [z[k] for k in sorted(k for k in z.files if k.startswith("img_"))]
                    }
            out.write(json.dumps(time_round(spec, cache[spec.images])) + "\n")
            out.flush()
            gc.collect()  # the last cell's engine goes before the next loads


def save_masks(path: str, masks: list[np.ndarray]) -> None:
    np.savez_compressed(path, **{f"m{i:03d}": m for i, m in enumerate(masks)})


def load_masks(path: str) -> list[np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return [z[k] for k in sorted(z.files)]


def _common(ref: list[np.ndarray], masks: list[np.ndarray], scored: bool):
    """The masks to compare. An unscored cell keeps as many as its own speed allows (a slow one its first
    image only), so its reference may hold more: compare the images both kept. A scored cell keeps every
    image, and any difference in count stays an error."""
    if scored:
        return ref, masks
    n = min(len(ref), len(masks))
    return ref[:n], masks[:n]


def vessel_dice(a: list[np.ndarray], b: list[np.ndarray], fovs: list[np.ndarray | None]) -> float:
    """Dice of two engines' vessel masks inside each image's field of view, pooled over every test image
    (None for an image without a FOV mask: all its pixels). Comparing all pixels would let a cell that
    misses a sixth of the vessels pass (background is ~88 % of a DRIVE image); pixels outside the FOV are
    not scored anywhere else either (the cells predict without the FOV mask, so the dark ring may hold a
    few spurious pixels)."""
    if len(a) != len(b) or len(fovs) < len(a) or any(x.shape != y.shape for x, y in zip(a, b, strict=False)):
        raise ValueError("reference masks do not match this cell's images")
    inter = total = 0
    for x, y, f in zip(a, b, fovs, strict=False):
        if f is not None:
            if f.shape != x.shape:
                raise ValueError(f"FOV mask {f.shape} does not match the vessel masks {x.shape}")
            x, y = x & f.astype(bool), y & f.astype(bool)
        inter += int(np.count_nonzero(x & y))
        total += int(np.count_nonzero(x)) + int(np.count_nonzero(y))
    return 1.0 if total == 0 else 2.0 * inter / total


def peak_rss_mb() -> float | None:
    """This process's own high-water mark. ru_maxrss is inherited from the parent across fork and
    exec on Linux (it read the sweep's 2.7 GB in every cell), VmHWM belongs to this address space."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(spec_path: str, out_path: str) -> None:
    spec = CellSpec.from_json(Path(spec_path).read_text())
    Path(out_path).write_text(json.dumps(run_cell(spec)))


if __name__ == "__main__":
    if sys.argv[1] == "--round":
        run_round(sys.argv[2], sys.argv[3])
    else:
        main(sys.argv[1], sys.argv[2])
