"""``fundus-edge biomarkers``: vessel biomarkers of mask files made elsewhere -> CSV (the work is
fundus_edge.measure.biomarker_files)."""

from __future__ import annotations

import sys
from pathlib import Path

from fundus_edge.runtime.errors import FundusEdgeError


def add(sub) -> None:
    m = sub.add_parser(
        "biomarkers", help="vessel biomarkers of mask files made elsewhere (e.g. manual labels) -> CSV"
    )
    m.add_argument(
        "masks_dir",
        metavar="MASKS_DIR",
        help="folder of binary vessel masks (predict's <stem>_mask.png when present, else every image)",
    )
    m.add_argument(
        "--fov-dir",
        help="folder of FOV masks, matched by stem, stem_mask or leading number (DRIVE's mask/); default: "
        "the whole frame",
    )
    m.add_argument("--output", "-o", help="CSV to write (default MASKS_DIR/biomarkers.csv)")
    m.add_argument("--force", action="store_true", help="overwrite an existing CSV")
    m.set_defaults(func=run)


def run(a) -> int:
    from fundus_edge.measure.biomarker_files import CSV_NAME, folder_biomarkers, write_csv

    out = Path(a.output) if a.output else Path(a.masks_dir) / CSV_NAME
    if out.exists() and not a.force:
        raise FundusEdgeError(f"{out}: exists (use --force to overwrite)")
    if a.fov_dir is None:
        print(
            "biomarkers: no --fov-dir: each mask's whole frame is its FOV (densities per frame area)",
            file=sys.stderr,
        )
    rows = folder_biomarkers(Path(a.masks_dir), Path(a.fov_dir) if a.fov_dir else None)
    write_csv(rows, out)
    print(f"{len(rows)} masks: biomarkers in {out}")
    return 0
