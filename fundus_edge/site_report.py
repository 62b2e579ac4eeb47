"""``fundus-edge evaluate MODEL|BUNDLE --data SITE``: a model scored on a site's labelled images; the report.

The site folder is read by measure.site (the one reader: DRIVE and STARE as distributed, FOV masks or derived,
a second observer's labels); each image is scored at its own size through the runtime Predictor, the path
``predict`` takes. A bundle runs its own engine, format and precision (bundle.yaml), after its files are
checked against their sha256, so the figures are those of what the device will run. What is computed lives in
measure/site_score.py; the pages (report.md, report.html) in fundus_edge/site_pages.py.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fundus_edge.measure.site import Site, read_site
from fundus_edge.measure.site_score import WORST, SiteCase, SiteScore, score_site
from fundus_edge.runtime.errors import FundusEdgeError, InputError, ModelError

REPORT_ROOT = Path("build") / "site-report"
NO_LABELS = "no labels: a site without labels serves for calibration, not scoring"
OVERLAYS = "overlays"
_FIGURES = (("f1", "F1"), ("auc", "AUC"), ("iou", "IoU"), ("se", "Se"), ("sp", "Sp"))


@dataclass(frozen=True)
class SiteReport:
    """What was scored, on which site, how, and the scores. ``source`` / ``data`` / ``split`` / ``pooled``
    are what the test-read ledger records (measure.ledger.record)."""

    source: str
    data: str
    split: str  # "all" for a site without a train/test split (held out in whole)
    site_root: str
    images: int
    threshold: float
    via: str  # engine (device, precision) and, for a bundle, that it is the bundle's
    fov_source: str
    score: SiteScore

    @property
    def pooled(self):
        return self.score.model.pooled

    @property
    def has_second(self) -> bool:
        return self.score.second is not None

    def to_dict(self, with_stats: bool = True) -> dict:
        head = {
            k: getattr(self, k)
            for k in ("source", "data", "split", "site_root", "images", "threshold", "via", "fov_source")
        }
        return _finite({**head, **self.score.to_dict(with_stats)})


def _finite(x):
    """JSON has no NaN: an undefined figure (a correlation of constant values) becomes null."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def is_bundle(source: str | Path) -> bool:
    return (Path(source) / "bundle.yaml").is_file()


def load_predictor(source: str | Path, backend: str = "auto", precision: str | None = None, threads=None):
    """(Predictor, via) for a model folder (the model's own precision unless ``precision``) or a bundle (its
    engine, format and precision; a conflicting ``backend`` or ``precision`` is refused in one line)."""
    from fundus_edge.runtime.manifest import is_model_dir
    from fundus_edge.runtime.predictor import Predictor

    source = Path(source)
    if not is_bundle(source):
        if not is_model_dir(source):
            raise ModelError(
                f"{source}: a site report runs a model folder (manifest.yaml) or a bundle (bundle.yaml)"
                " through the runtime; export a checkpoint first"
            )
        pred = Predictor.load(source, backend=backend, threads=threads, precision=precision)
        return pred, f"{pred.backend} ({pred.device}, {pred.precision})"
    from fundus_edge.deploy.bundle import read_bundle, verify_bundle

    b = read_bundle(source)
    if backend not in ("auto", b.engine):
        raise FundusEdgeError(f"{source}: a bundle runs {b.engine}; --backend {backend} conflicts with it")
    if precision not in (None, b.precision):
        raise FundusEdgeError(
            f"{source}: a bundle runs {b.engine} at {b.precision}; --precision {precision} conflicts with it"
        )
    verify_bundle(source, b)
    pred = Predictor.load(
        source, backend=b.engine, threads=threads or b.threads, precision=b.precision_request, fmt=b.format
    )
    if pred.precision != b.precision:
        raise ModelError(
            f"{source}: {b.engine} runs {pred.precision} here; the bundle was validated at {b.precision}"
        )
    return pred, f"{pred.backend} ({pred.device}, {pred.precision}), the bundle's engine and precision"


def read_labelled_site(data: str | Path, split: str = "test") -> Site:
    """The site, which must be labelled: an unlabelled one is one line saying what it is for."""
    site = read_site(data, split, require_labels=False)
    if site.folders.get("labels") is None:
        raise InputError(f"{site.root}: {NO_LABELS}")
    return read_site(data, split)  # now every image must have its label (the unmatched ones listed)


def site_split(data: str | Path, site: Site, split: str) -> str:
    """The split for the ledger: DRIVE's folder read from its root, ``train`` when said to be training
    data, else ``all`` (a site without a split is held out in whole: docs/test-reads.md)."""
    from fundus_edge.measure.ledger import is_held_out

    if not is_held_out(split):
        return split
    return site.root.name if site.root != Path(data) else "all"


def cases(site: Site) -> Iterator[SiteCase]:
    """Each image read with its label, FOV (mask file, else derived from the image: train.data.load_sample)
    and second observer's label, sizes checked."""
    from fundus_edge.runtime.images import read_binary
    from fundus_edge.train.data import Sample, load_sample

    for s in site.images:
        ls = load_sample(Sample(s.name, s.image, s.label, s.fov))
        second = read_binary(s.second, "second observer's label") if s.second else None
        if second is not None and second.shape != ls.label.shape:
            raise InputError(
                f"{s.second}: label is {second.shape[1]}x{second.shape[0]}"
                f" but image {s.image} is {ls.rgb.shape[1]}x{ls.rgb.shape[0]}"
            )
        yield SiteCase(s.name, ls.rgb, ls.label, ls.fov, second)


def default_folder(source: str | Path, data: str | Path, site: Site) -> Path:
    """build/site-report/<model>-<site>/ (DRIVE read from its root: <site>-<split folder>)."""
    data = Path(data).resolve()
    site_name = data.name + ("" if site.root.resolve() == data else f"-{site.root.name}")
    return REPORT_ROOT / f"{Path(source).resolve().name}-{site_name}"


def check_folder(folder: Path, force: bool) -> None:
    """Refuse to write over a report folder with files in it unless ``force`` (checked before scoring)."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())) and not force:
        raise FundusEdgeError(f"{folder}: exists (pass --force to overwrite)")


def evaluate_site(
    source,
    data,
    split: str = "test",
    backend: str = "auto",
    precision: str | None = None,
    threshold: float | None = None,
    threads: int | None = None,
    worst: int = WORST,
    progress: bool = True,
    site: Site | None = None,
) -> SiteReport:
    """Score ``source`` (a model folder or a bundle) on the site folder ``data``."""
    from tqdm import tqdm

    site = site or read_labelled_site(data, split)
    pred, via = load_predictor(source, backend, precision, threads)
    thr = pred.threshold if threshold is None else float(threshold)
    bar = tqdm(cases(site), total=len(site.images), desc="site", unit="img", disable=not progress)
    score = score_site(bar, lambda rgb, fov: pred.predict(rgb, fov=fov).prob, thr, worst=worst)
    return SiteReport(
        str(source),
        str(data),
        site_split(data, site, split),
        str(site.root),
        len(site.images),
        thr,
        via,
        "mask files" if site.fov_source == "files" else site.fov_source,
        score,
    )


def write_site_report(report: SiteReport, folder: str | Path, force: bool = False) -> Path:
    """report.md, report.html, report.json and overlays/worst-K-<name>.png into ``folder``."""
    from fundus_edge.bench.report import agreement_overlay
    from fundus_edge.runtime.images import write_png

    from .site_pages import render_html, render_markdown

    folder = Path(folder)
    check_folder(folder, force)
    if folder.is_dir() and force:
        shutil.rmtree(folder / OVERLAYS, ignore_errors=True)  # a previous run's worst images
    (folder / OVERLAYS).mkdir(parents=True, exist_ok=True)
    overlays = []
    for k, w in enumerate(report.score.worst, 1):
        path = folder / OVERLAYS / f"worst-{k}-{w.name}.png"
        write_png(path, agreement_overlay(w.rgb, w.pred, w.label, w.fov))
        overlays.append(path)
    (folder / "report.json").write_text(json.dumps(report.to_dict(), separators=(",", ":")) + "\n")
    (folder / "report.md").write_text(render_markdown(report, [p.relative_to(folder) for p in overlays]))
    (folder / "report.html").write_text(render_html(report, overlays), encoding="utf-8")
    return folder


def signed(c) -> str:
    """A paired difference with its signs kept: ``+0.0516 (95 % CI +0.037 to +0.065)``."""
    iv = c.diff
    return f"{iv.value:+.4f} ({iv.level * 100:.0f} % CI {iv.low:+.3f} to {iv.high:+.3f})"


def summary_lines(report: SiteReport) -> list[str]:
    """What evaluate prints: pooled F1, AUC, IoU, Se, Sp with intervals; the second observer's."""
    ivs = report.score.model.intervals
    n, resamples = report.images, next(iter(ivs.values())).resamples
    lines = [
        f"{report.source} on {report.site_root} ({n} images, FOV pixels pooled, FOV {report.fov_source},"
        f" threshold {report.threshold:.3f}, via {report.via})",
        "  " + "  ".join(f"{label} {ivs[k].text()}" for k, label in _FIGURES if k in ivs),
        f"  (bootstrap over the {n} images, {resamples} resamples, percentile interval)",
    ]
    sec = report.score.second
    if sec is None:
        lines.append("  second observer: none in this site (no human reference)")
    else:
        s = sec.intervals
        lines.append(
            "  second observer against the first (human reference): "
            + "  ".join(f"{label} {s[k].text()}" for k, label in _FIGURES if k in s)
        )
        c = report.score.vs_second.get("f1")
        if c is not None:
            lines.append(f"  model - second observer: F1 {signed(c)}: {c.verdict}")
    return lines
