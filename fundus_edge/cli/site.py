"""``fundus-edge evaluate MODEL|BUNDLE --data SITE``: evaluate's site-report path (options added to evaluate's
parser; the work is fundus_edge.site_report)."""

from __future__ import annotations

import json
from pathlib import Path

from fundus_edge.runtime.errors import FundusEdgeError
from fundus_edge.runtime.manifest import is_model_dir


def add_site_options(e) -> None:
    """evaluate's options for the site report."""
    e.add_argument(
        "--report",
        metavar="DIR",
        help="write the site report here (report.md, report.html, report.json, overlays/); a model folder or "
        "bundle on a site folder (images/ + labels, e.g. STARE) writes one by default to "
        "build/site-report/<model>-<site>/; on DRIVE's root this option asks for one",
    )
    e.add_argument(
        "--precision",
        help="for a model folder: the precision to run (default: the model's own); a bundle runs its own",
    )
    e.add_argument(
        "--worst",
        type=int,
        default=4,
        metavar="N",
        help="site report: overlays of the N worst images (default 4)",
    )


def wants_site_report(a) -> bool:
    """The site report runs for a bundle, for ``--report``, and for a model folder on a site folder that is
    not DRIVE's root or a file list (whose plain evaluation the cards, --per-image-out and the ledger build
    on)."""
    from fundus_edge.site_report import is_bundle

    source, data = Path(a.source), Path(a.data)
    if is_bundle(source) or a.report:
        return a.perturb is None
    site = (
        a.perturb is None
        and is_model_dir(source)
        and a.layout == "auto"
        and data.is_dir()
        and _layout(data) == "folders"
    )
    if a.precision and not site:
        raise FundusEdgeError(
            "--precision is an option of the site report (a bundle, a site folder, or --report DIR);"
            " the plain evaluation runs the model's own precision"
        )
    return site


def _layout(data: Path) -> str | None:
    from fundus_edge.train.data import detect_layout

    try:
        return detect_layout(data)
    except FundusEdgeError:
        return None


def evaluate_site_cmd(a, record_read) -> int:
    """Score, record the held-out read (``record_read(a, report)``), write the report, print the figures."""
    from fundus_edge.site_report import (
        check_folder,
        default_folder,
        evaluate_site,
        read_labelled_site,
        summary_lines,
        write_site_report,
    )

    if a.best_threshold:
        raise FundusEdgeError(
            "--best-threshold chooses a threshold: do that on training images (evaluate --split train), "
            "not in a site report"
        )
    site = read_labelled_site(a.data, a.split)
    folder = Path(a.report) if a.report else default_folder(a.source, a.data, site)
    check_folder(folder, a.force)  # before any image is read: nothing is lost to a refusal
    if a.per_image_out and Path(a.per_image_out).exists() and not a.force:
        raise FundusEdgeError(f"{a.per_image_out}: exists (pass --force to overwrite)")
    report = evaluate_site(
        a.source,
        a.data,
        split=a.split,
        backend=a.backend,
        precision=a.precision,
        threshold=a.threshold,
        threads=a.threads,
        worst=max(0, a.worst),
        progress=not a.no_progress,
        site=site,
    )
    record_read(a, report)
    write_site_report(report, folder, force=a.force)
    if a.per_image_out:
        out = Path(a.per_image_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report.to_dict(), separators=(",", ":")) + "\n")
    if a.json:
        print(json.dumps({**report.to_dict(with_stats=False), "report": str(folder)}, indent=2))
        return 0
    for line in summary_lines(report):
        print(line)
    if a.per_image:
        for name, m in report.score.model.per_image:
            print(f"  {name:>12}  F1 {m.f1:.4f}  IoU {m.iou:.4f}  Se {m.se:.4f}  Sp {m.sp:.4f}")
    print(f"  report: {folder / 'report.md'} and report.html (worst {len(report.score.worst)} with overlays)")
    return 0
