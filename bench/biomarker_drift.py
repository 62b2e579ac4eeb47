"""Biomarker drift per cell (issue 31): does an engine x precision change what a clinician would read?

For every scored cell, per biomarker (fundus_edge.measure.biomarkers), the mean absolute difference of its
masks' values from its float model's fp32 masks over the test images, relative to the reference (%), and
the biomarkers beyond the tolerance measure/tolerance.py derives from DRIVE's two human observers. The
reference of a cell is its float model's reference-engine cell (the first engine that ran the float
variant, in fp32): an INT8 variant is compared with its float counterpart's, a float variant's other
engines and its bf16 row with its own.

Computed in the parent after the timing rounds, never beside a timed cell: a mask costs ~0.34 s (skeleton
graph), and each process first pays ~15 s of numba JIT in skan. The float engines often give identical
masks, so each (image, mask) is computed once, keyed by the mask's hash; the rest run in a pool of the
bench's thread count.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np


def _values(job: tuple[np.ndarray, np.ndarray]) -> dict:
    from fundus_edge.measure.biomarkers import biomarker_dict

    mask, fov = job
    return biomarker_dict(mask, fov)


def _key(i: int, mask: np.ndarray) -> str:
    return (
        f"{i}:{mask.shape}:"
        + hashlib.blake2b(np.packbits(mask.astype(bool)).tobytes(), digest_size=16).hexdigest()
    )


def reference_of(variant: str, refs: dict[str, dict]) -> dict | None:
    """The cell a variant's rows are compared with: its float model's fp32 reference-engine record."""
    from fundus_edge.quantize.variants import float_counterpart

    ref = refs.get(float_counterpart(variant) or variant)
    return ref if ref is not None and ref.get("precision") == "fp32" else None


def compute_values(jobs: dict[str, tuple[np.ndarray, np.ndarray]], workers: int) -> dict[str, dict]:
    """key -> biomarker_dict for each distinct (image, mask); in a spawned pool (the parent holds engine
    threads a fork would copy mid-state) when there is more than one to do."""
    keys = list(jobs)
    if len(keys) <= 1 or workers <= 1:
        return {k: _values(jobs[k]) for k in keys}
    with ProcessPoolExecutor(max_workers=min(workers, len(keys)), mp_context=get_context("spawn")) as pool:
        chunksize = max(1, len(keys) // (4 * workers))
        return dict(zip(keys, pool.map(_values, [jobs[k] for k in keys], chunksize=chunksize), strict=False))


def add_drift(raw: list[dict], images: Path, workers: int) -> dict:
    """Add biomarker_ref / _mad_pct / _worst / _worst_pct / _flag to each scored cell's raw record whose
    reference cell ran (its masks in ``_masks``; the reference marked ``_is_ref``). Returns what it cost:
    {"images": masks computed, "reused": masks met again, "cells": cells compared}."""
    from fundus_edge.bench.cell import load_masks
    from fundus_edge.measure.biomarkers import NAMES, beyond_tolerance, compare_biomarkers
    from fundus_edge.measure.tolerance import TOLERANCE_PCT

    with np.load(images, allow_pickle=False) as z:
        fovs = [z[k] for k in sorted(k for k in z.files if k.startswith("fov_"))]
    if not fovs:
        return {"images": 0, "reused": 0, "cells": 0}
    ok = [
        r
        for r in raw
        if r.get("status") == "ok"
        and r.get("f1") is not None
        and r.get("_masks")
        and Path(r["_masks"]).is_file()
    ]
    refs = {r["variant"]: r for r in ok if r.get("_is_ref")}
    pairs = [(r, ref) for r in ok if (ref := reference_of(r["variant"], refs)) is not None and ref is not r]
    keys: dict[str, list[str]] = {}
    jobs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    met = 0
    for rec in {x["_key"]: x for p in pairs for x in p}.values():
        masks = load_masks(rec["_masks"])
        if len(masks) != len(fovs):
            continue  # a scored cell keeps every image; anything else cannot be paired
        keys[rec["_key"]] = []
        for i, (m, f) in enumerate(zip(masks, fovs, strict=False)):
            k = _key(i, m)
            keys[rec["_key"]].append(k)
            met += 1
            jobs.setdefault(k, (m, f))
    values = compute_values(jobs, workers)
    done = 0
    for r, ref in pairs:
        if r["_key"] not in keys or ref["_key"] not in keys:
            continue
        diffs = compare_biomarkers(
            [values[k] for k in keys[r["_key"]]], [values[k] for k in keys[ref["_key"]]], NAMES
        )
        scored = {n: d for n, d in diffs.items() if d is not None}
        worst = (
            max(scored, key=lambda n: scored[n] / TOLERANCE_PCT[n] if n in TOLERANCE_PCT else 0.0)
            if scored
            else None
        )
        r.update(
            biomarker_ref=ref["_key"],
            biomarker_mad_pct={n: round(d, 3) for n, d in scored.items()},
            biomarker_worst=worst,
            biomarker_worst_pct=None if worst is None else round(scored[worst], 3),
            biomarker_flag=list(beyond_tolerance(diffs)),
        )
        done += 1
    return {"images": len(jobs), "reused": met - len(jobs), "cells": done}


def flag_note(r) -> str | None:
    """One line for a row beyond tolerance (reports)."""
    from fundus_edge.measure.tolerance import TOLERANCE_PCT

    if not r.biomarker_flag:
        return None
    got = r.biomarker_mad_pct or {}
    return (
        "biomarkers beyond tolerance against "
        + str(r.biomarker_ref)
        + ": "
        + ", ".join(
            f"{n} {got.get(n, float('nan')):.2f} % (tolerance {TOLERANCE_PCT.get(n, float('nan')):.2f})"
            for n in r.biomarker_flag
        )
    )
