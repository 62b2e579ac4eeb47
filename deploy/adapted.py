"""An adapted model's bundle (issue #43): a folder ``fundus-edge adapt`` wrote (``OUT/model``, or an INT8
build ``OUT/model-int8-nncf`` / ``-ort`` that fundus_edge/adapt_ship.py validated on the site) packs without a
bench row. No DRIVE bench row describes it: its accuracy is the site's cross-validated estimate from
``OUT/adapt.json`` (held-out folds pooled, with the bootstrap interval), plus, for an INT8 build, its check on
the site's images against the float model through the same engine; its speed is timed here at pack time with
the bench's harness (rounds of selftest's golden timing, their median and spread) and recorded with this CPU's
identity. A folder is taken as adapted only when ``OUT/adapt.json`` describes its run: the float model is
``OUT/model`` at the threshold adapt chose; an INT8 build was made from that very float manifest and validated
on the site through the engine asked for.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from fundus_edge.measure.intervals import Interval
from fundus_edge.measure.timing import Rounds
from fundus_edge.runtime.cpu import cpu_identity
from fundus_edge.runtime.errors import InputError
from fundus_edge.runtime.manifest import MANIFEST, read_manifest, sha256
from fundus_edge.runtime.predictor import Predictor

from .bundle import Validated
from .choose import ROUNDS
from .selftest import time_goldens

# The files fundus_edge/adapt.py (RESULTS) and fundus_edge/adapt_ship.py (SHIP) write into OUT. Those
# modules sit above deploy in the layers, so their names are repeated here; tests/test_pack_adapted.py checks
# that they agree.
ADAPT_JSON = "adapt.json"
SHIP_JSON = "ship.json"
FLOAT_FOLDER = "model"
INT8_PREFIX = "model-int8-"
RUNS = 10  # engine calls per timing round, as selftest times a bundle
# The key of an INT8 build's site check under each engine in its manifest's ``validated`` record (a record
# key, not a variant name); fundus_edge/adapt_ship.py writes it under this name.
SITE_CHECK = "int8"


@dataclass(frozen=True)
class Adapted:
    """A folder ``fundus-edge adapt`` wrote, with the figures that describe it."""

    folder: Path
    out: Path  # the adapt run's folder (adapt.json)
    site: str  # the site folder adapt.json names
    images: int  # the site's labelled images
    folds: int
    estimate: dict  # metric -> Interval dict: the held-out folds pooled (adapt.json's cross_validated)
    int8: dict | None  # for an INT8 build: its manifest's site validation, by engine (adapt_ship's record)

    def int8_check(self, engine: str) -> dict | None:
        return None if self.int8 is None else self.int8.get(engine)

    @property
    def line(self) -> str:
        """``site estimate: 4-fold cross-validated F1 0.7865 (95 % CI 0.748-0.808) on stare's 20 images``."""
        f1 = Interval(**self.estimate["f1"]).text()
        return (
            f"site estimate: {self.folds}-fold cross-validated F1 {f1} on {Path(self.site).name}'s"
            f" {self.images} images (held-out folds pooled)"
        )


def _read_json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        raise InputError(f"{path}: not readable JSON (the adapt run's record)") from None
    if not isinstance(d, dict):
        raise InputError(f"{path}: not an adapt record")
    return d


def adapted_of(folder: Path) -> Adapted | None:
    """The adapted model ``folder`` is, or None for any other folder (a folder named like adapt's whose
    adapt.json does not describe it is an error: it looks adapted, its figures would not be its own)."""
    folder = Path(folder)
    out = folder.resolve().parent
    name = folder.resolve().name
    if not (out / ADAPT_JSON).is_file() or not (name == FLOAT_FOLDER or name.startswith(INT8_PREFIX)):
        return None
    rep = _read_json(out / ADAPT_JSON)
    where = out / ADAPT_JSON
    try:
        estimate, site = rep["cross_validated"], rep["site"]
        images, folds = int(rep["images"]), int(rep["folds"])
        Interval(**estimate["f1"])
    except (KeyError, TypeError, ValueError):
        raise InputError(
            f"{where}: no cross-validated F1 with its interval (an incomplete adapt run)"
        ) from None
    if not rep.get("final"):
        raise InputError(f"{where}: the run has no final model (it ran with --no-final)")
    float_dir = out / FLOAT_FOLDER
    man = read_manifest(float_dir)
    if abs(float(man.threshold) - float(rep["final"].get("threshold", -1))) > 5e-4:
        raise InputError(
            f"{float_dir}: threshold {man.threshold} is not the {rep['final'].get('threshold')} {ADAPT_JSON}"
            " records for the final model (another model in an adapt folder)"
        )
    int8 = None
    if name != FLOAT_FOLDER:
        own = read_manifest(folder)
        made_from = (own.source or {}).get("float_model") or {}
        if made_from.get("manifest_sha256") != sha256(float_dir / MANIFEST):
            raise InputError(
                f"{folder}: not an INT8 build of {float_dir} (its manifest names another float model)"
            )
        int8 = {
            e: v[SITE_CHECK]
            for e, v in (own.validated or {}).items()
            if isinstance(v, dict) and SITE_CHECK in v
        }
    return Adapted(folder, out, str(site), images, folds, estimate, int8)


def _named(path: Path) -> str:
    """The run's record as a bundle names it: its portable path (relative to the working folder), else its
    file name; the sha256 beside it identifies the file either way."""
    from fundus_edge.export.exporter import portable_path

    return portable_path(path) or path.name


def site_refusal(a: Adapted, engine: str) -> str | None:
    """Why ``a`` may not be packed for ``engine``: an INT8 build ships only through an engine it was validated
    on at the site (and passed), or None."""
    if a.int8 is None:
        return None
    check = a.int8_check(engine)
    if check is None:
        done = ", ".join(sorted(a.int8)) or "no engine"
        return f"{a.folder}: an INT8 build validated on the site through {done}, not {engine}"
    if not check.get("passed"):
        return f"{a.folder}: its site validation through {engine} did not pass"
    return None


def time_here(pred: Predictor, images: list, runs: int = RUNS, rounds: int = ROUNDS) -> Rounds:
    """The engine's p50 on the goldens in ``rounds`` rounds of ``runs`` calls (selftest's golden timing, the
    rounds the bench and the device's choice take): the figure a bench row would have given on this CPU."""
    return Rounds(tuple(time_goldens(pred, images, runs).p50 for _ in range(rounds)))


def validated(a: Adapted, engine: str, t: Rounds, threads: int | None) -> Validated:
    """The bundle's figures: the site's estimate (and the INT8 build's check on the site), and the speed
    timed at pack time on this CPU."""
    here = cpu_identity()
    est = a.estimate
    val = lambda k: est[k]["value"] if isinstance(est.get(k), dict) else None  # noqa: E731
    site = {
        "estimate": a.line,
        "f1": est["f1"],
        "folds": a.folds,
        "site": a.site,
        "images": a.images,
        # the record the estimate comes from, by name and hash: an absolute path would tell a device
        # only where the packing machine kept its runs
        "adapt_json": {"file": _named(a.out / ADAPT_JSON), "sha256": sha256(a.out / ADAPT_JSON)},
        "int8_check": a.int8_check(engine),
        "timed": {
            "how": f"timed at pack time: {len(t.timed)} rounds of {RUNS} engine calls on the goldens",
            "p50_rounds_ms": [round(v, 3) for v in t.timed],
            "spread": None if t.spread is None else round(t.spread, 3),
        },
    }
    return Validated(
        f1=val("f1"),
        auc=val("auc"),
        iou=val("iou"),
        p50_ms=None if t.median is None else round(t.median, 3),
        e2e_p50_ms=None,
        threads=threads,
        images=a.line,
        cpu=here.name,
        isa_flags=list(here.flags),
        date=time.strftime("%Y-%m-%d %H:%M"),
        record=_named(a.out / ADAPT_JSON),
        unsteady=t.unsteady,
        cpu_identity=here.to_dict(),
        site=site,
    )


def int8_line(check: dict | None) -> str:
    """The INT8 build's check on the site, for the README (empty for the float model)."""
    if not check:
        return ""
    return (
        f" INT8 checked on {check.get('images')}: F1 {check.get('f1')} against the float model's"
        f" {check.get('f1_reference')} through the same engine, vessel Dice {check.get('vessel_dice')}"
        " (it keeps the float model's masks; the estimate above is the float model's)."
    )
