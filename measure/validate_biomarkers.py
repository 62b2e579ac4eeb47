"""Validate the biomarkers on DRIVE test and write the generated table (docs/biomarkers.md) and the bench's
tolerances (measure/tolerance.py).

    python -m fundus_edge.measure.validate_biomarkers --data DRIVE --models default,small,... \\
        --pred build/pred-{name} --out docs/biomarkers.md [--pvbm DIR] [--force]

Each model's masks are the files ``fundus-edge predict models/NAME DRIVE/test/images -o build/pred-NAME
--fov DRIVE/test/mask`` wrote (made once; this script reads them, it runs no model). Against the 1st
manual labels, per biomarker: Pearson r, ICC(A,1), mean bias with 95 % limits of agreement, and the mean
absolute difference relative to the reference (%); the 2nd observer against the 1st is the human reference.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import cv2
import numpy as np
from fundus_edge.runtime.errors import FundusEdgeError, InputError
from fundus_edge.runtime.images import read_binary

from .biomarkers import BIOMARKERS, NAMES, Biomarkers, compare_biomarkers, compute_biomarkers

# An engine x precision change should stay well inside what separates two human readers: a quarter of
# the inter-observer difference. Differences adding in quadrature, that raises a model's total
# disagreement with a reader by at most sqrt(1 + 1/16) - 1 = 3 %.
TOLERANCE_SHARE = 0.25

# The generated page and tolerance.py are committed, so the command they quote must not carry one machine's
# folders (issue 42): a path option's absolute value outside the checkout is shown as this placeholder.
# --pred is the scratch folder the page's own predict lines write, so a value under the temp folder, which
# every machine has, is shown as given.
PATH_PLACEHOLDERS = {
    "--data": "DRIVE",
    "--pvbm": "PVBM_DIR",
    "--pred": "PRED-{name}",
    "--out": "OUT.md",
    "--tolerance-out": "TOLERANCE.py",
}


def icc_a1(x: np.ndarray, y: np.ndarray) -> float:
    """ICC(A,1), two-way, absolute agreement, single measures (McGraw & Wong 1996) of paired x, y."""
    data = np.stack([x, y], axis=1)
    n, k = data.shape
    grand = data.mean()
    msr = k * ((data.mean(axis=1) - grand) ** 2).sum() / (n - 1)
    msc = n * ((data.mean(axis=0) - grand) ** 2).sum() / (k - 1)
    sse = ((data - data.mean(axis=1, keepdims=True) - data.mean(axis=0, keepdims=True) + grand) ** 2).sum()
    mse = sse / ((n - 1) * (k - 1))
    den = msr + (k - 1) * mse + k * (msc - mse) / n
    return float((msr - mse) / den) if den > 0 else float("nan")


def agreement(values: list[Biomarkers], reference: list[Biomarkers]) -> dict[str, dict]:
    """Per biomarker: means, Pearson r, ICC(A,1), bias (values - reference), limits of agreement, MARD %."""
    mard = compare_biomarkers(values, reference)
    out = {}
    for n in NAMES:
        v = np.array([getattr(b, n) for b in values], float)
        r = np.array([getattr(b, n) for b in reference], float)
        ok = np.isfinite(v) & np.isfinite(r)
        v, r = v[ok], r[ok]
        d = v - r
        sd = float(d.std(ddof=1)) if d.size > 1 else float("nan")
        pearson = (
            float(np.corrcoef(v, r)[0, 1]) if d.size > 2 and v.std() > 0 and r.std() > 0 else float("nan")
        )
        out[n] = {
            "mean": float(v.mean()),
            "ref_mean": float(r.mean()),
            "r": pearson,
            "icc": icc_a1(v, r),
            "bias": float(d.mean()),
            "loa": (float(d.mean() - 1.96 * sd), float(d.mean() + 1.96 * sd)),
            "mard": mard[n],
            "n": int(d.size),
        }
    return out


def _drive_test(data: Path) -> list[tuple[str, Path, Path, Path]]:
    test = data / "test"
    rows = []
    for img in sorted((test / "images").glob("*_test.tif")):
        num = img.stem.split("_")[0]
        paths = (
            test / "1st_manual" / f"{num}_manual1.gif",
            test / "2nd_manual" / f"{num}_manual2.gif",
            test / "mask" / f"{num}_test_mask.gif",
        )
        for p in paths:
            if not p.is_file():
                raise InputError(f"{p}: missing (DRIVE test with both observers expected)")
        rows.append((img.stem, *paths))
    if not rows:
        raise InputError(f"{test / 'images'}: no DRIVE test images")
    return rows


def _resize2(mask: np.ndarray, fov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2x: the label bilinear then >= 0.5 (smooth edges, as a sharper camera would see), the FOV nearest."""
    h, w = mask.shape
    m = cv2.resize(mask.astype(np.float32), (2 * w, 2 * h), interpolation=cv2.INTER_LINEAR) >= 0.5
    f = cv2.resize(fov.astype(np.uint8), (2 * w, 2 * h), interpolation=cv2.INTER_NEAREST).astype(bool)
    return m, f


def _pvbm_rows(pvbm_dir: Path, labels: list[np.ndarray], fovs: list[np.ndarray]) -> list[dict]:
    """PVBM 3.0.1.8's GeometricalAnalysis on the same skeletons (its package folder on sys.path, not
    installed: it pulls torchvision and opencv-python)."""
    sys.path.insert(0, str(pvbm_dir))
    import warnings

    from PVBM.GeometricalAnalysis import GeometricalVBMs
    from skimage.morphology import skeletonize

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its notice that the class moves to PVBM.GeometryAnalysis
        g = GeometricalVBMs()
    rows = []
    for lab, fov in zip(labels, fovs, strict=False):
        skel = skeletonize(lab & fov).astype(np.uint8)
        ends, inters, _, _ = g.compute_particular_points(skel)
        median_tor, length, _, _, _ = g.compute_tortuosity_length(skel)
        rows.append(
            {
                "end_points": float(ends),
                "intersection_pixels": float(inters),
                "length": float(length),
                "median_tortuosity": float(median_tor),
            }
        )
    return rows


def _f(x, spec=".3g") -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    return format(x, spec)


def _table(title: str, stats: dict[str, dict]) -> list[str]:
    lines = [
        f"#### {title}",
        "",
        "| biomarker | unit | mean | 1st manual mean | Pearson r | ICC(A,1) | bias | 95 % limits of agreement"
        " | MARD % |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for b in BIOMARKERS:
        s = stats[b.name]
        lines.append(
            f"| {b.name} | {b.unit} | {_f(s['mean'], '.4g')} | {_f(s['ref_mean'], '.4g')}"
            f" | {_f(s['r'], '.3f')} | {_f(s['icc'], '.3f')} | {_f(s['bias'], '+.3g')}"
            f" | {_f(s['loa'][0], '+.3g')} to {_f(s['loa'][1], '+.3g')} | {_f(s['mard'], '.1f')} |"
        )
    return lines + [""]


def portable_path(value: str, option: str, cwd: Path | None = None) -> str:
    """``value`` of the path option ``option`` as the committed pages show it: relative paths as given,
    an absolute path inside ``cwd`` (the checkout) relative to it, anything else (a temp folder included) as
    the option's placeholder: a committed page names no machine's folder."""
    path = Path(value)
    if not path.is_absolute():
        return value
    here = (cwd or Path.cwd()).absolute()
    if path.is_relative_to(here):
        return path.relative_to(here).as_posix()
    return PATH_PLACEHOLDERS[option]


def portable_command(argv: list[str], cwd: Path | None = None) -> str:
    """The command line quoted in the generated pages, every path option's value made portable."""
    out, it = [], iter(argv)
    for arg in it:
        opt, eq, val = arg.partition("=")
        if opt in PATH_PLACEHOLDERS and eq:
            out.append(f"{opt}={portable_path(val, opt, cwd)}")
        elif arg in PATH_PLACEHOLDERS:
            out += [arg, *(portable_path(v, arg, cwd) for v in [next(it, "")] if v)]
        else:
            out.append(arg)
    return " ".join(["python -m fundus_edge.measure.validate_biomarkers", *out])


def _command_lines(command: str, width: int = 98) -> list[str]:
    """``command`` cut before its options into lines of at most ``width`` characters where it can (an option
    stays on the line of its value), so the generated tolerance.py keeps to the project's line length."""
    lines: list[str] = []
    for part in re.split(r" (?=--)", command):
        if lines and len(lines[-1]) + 1 + len(part) <= width:
            lines[-1] += " " + part
        else:
            lines.append(part)
    return lines


def write_tolerance(path: Path, inter: dict[str, float | None], command: str) -> None:
    cmd = _command_lines(command)
    lines = [
        '"""GENERATED by this command: do not edit by hand.',
        "",
        # A shell continuation (an escaped backslash in the generated source) ends every line but the last.
        *[
            ("    " if i == 0 else "        ") + c + (" \\\\" if i < len(cmd) - 1 else "")
            for i, c in enumerate(cmd)
        ],
        "",
        "INTER_OBSERVER_MARD_PCT: per biomarker, the mean absolute difference of DRIVE test's 2nd observer"
        " from the",
        "1st (20 images, % of the 1st's mean; measure.biomarkers.compare_biomarkers). TOLERANCE_PCT:"
        " the bench's",
        f"tolerance for an engine x precision against the fp32 model, {TOLERANCE_SHARE} of it",
        "(validate_biomarkers.TOLERANCE_SHARE says why).",
        '"""',
        "",
        "INTER_OBSERVER_MARD_PCT = {",
    ]
    # Double-quoted keys, as ruff format writes them (the biomarker names hold no quote or backslash).
    lines += [f'    "{n}": {round(v, 3)!r},' for n, v in inter.items() if v is not None]
    lines += ["}", "TOLERANCE_PCT = {"]
    lines += [f'    "{n}": {round(TOLERANCE_SHARE * v, 3)!r},' for n, v in inter.items() if v is not None]
    lines += ["}", ""]
    path.write_text("\n".join(lines))


def _model_agreement(
    name: str, cases: list, data: Path, pred: str, fovs: list[np.ndarray], b1: list[Biomarkers]
) -> dict[str, dict]:
    """One model's masks (the files ``predict`` wrote under ``pred``) against the 1st manual's biomarkers."""
    folder = Path(pred.format(name=name))
    masks = []
    for stem, *_ in cases:
        f = folder / f"{stem}_mask.png"
        if not f.is_file():
            raise InputError(
                f"{f}: missing: make it with `fundus-edge predict models/{name} {data}/test/images"
                f" -o {folder} --fov {data}/test/mask`"
            )
        masks.append(read_binary(f, "vessel mask"))
    return agreement([compute_biomarkers(m, f) for m, f in zip(masks, fovs, strict=False)], b1)


def _intro_lines(data: str, models: list[str], pred: str, command: str) -> list[str]:
    """The page's head: what the biomarkers are, where to get them and the commands that made the page."""
    L = [
        "# Vessel biomarkers: definitions and validation on DRIVE test",
        "",
        f"GENERATED by `{command}`; do not edit by hand (prose lives in measure/validate_biomarkers.py).",
        "",
        "Definitions, formulas and units: `measure/biomarkers.py` (docstring)."
        " D is the FOV diameter in pixels, A the FOV area;",
        "lengths are in px and in D, areas per A, so values are comparable across camera resolutions."
        " Computed with",
        "scikit-image (skeletonize), skan (skeleton graph) and SciPy (distance transform);"
        " box counting and curvature in numpy.",
        "",
        "How to get them: `fundus-edge predict MODEL IMAGES -o OUT --biomarkers`"
        " (OUT/<stem>_biomarkers.json, OUT/biomarkers.csv),",
        "`fundus-edge biomarkers MASKS_DIR --fov-dir FOVS -o CSV` for masks made elsewhere;"
        " `evaluate --perturb ... --biomarkers`",
        "for their change under camera perturbations.",
        "",
        "## How these figures were made",
        "",
        "The 20 DRIVE test images, FOV = DRIVE's test/mask. Reference: the 1st manual labels."
        " Model masks (a report on the shipped, fixed models: read once, no choice made on them):",
        "",
        "```",
    ]
    L += [
        f"fundus-edge predict models/{n} {data}/test/images -o {portable_path(pred, '--pred').format(name=n)}"
        f" --fov {data}/test/mask --threads 1"
        for n in models
    ]
    L += [
        command,
        "```",
        "",
        "Columns: mean over the 20 images, Pearson r and ICC(A,1)"
        " (two-way, absolute agreement, single measures) against the",
        "1st manual, bias = mean(source - 1st manual) with 95 % limits of agreement"
        " (bias +- 1.96 SD of the differences),",
        "MARD = 100 sum|source - 1st| / sum|1st| (measure.biomarkers.compare_biomarkers).",
        "",
    ]
    return L


def _resize_lines(resize: dict[str, float | None], inter_mard: dict[str, float | None]) -> list[str]:
    """The 2x-resizing section: each biomarker's MARD next to the inter-observer one; the unstable ones."""
    L = [
        "## Stability under 2x resizing",
        "",
        "Each 1st-manual label resized 2x (bilinear, then >= 0.5; the FOV nearest), biomarkers recomputed:"
        " MARD % of the 2x",
        "values from the 1x values."
        " Stable = the resize moves it less than the 2nd observer differs from the 1st.",
        "",
        "| biomarker | normalised by construction | 2x vs 1x MARD % | inter-observer MARD %"
        " | stable under 2x |",
        "| --- | --- | --- | --- | --- |",
    ]
    for b in BIOMARKERS:
        r, h = resize[b.name], inter_mard[b.name]
        stable = "n/a" if r is None or h is None else ("yes" if r < h else "**no**")
        L.append(
            f"| {b.name} | {'yes' if b.normalised else 'no (px or count)'} | {_f(r, '.1f')} | {_f(h, '.1f')}"
            f" | {stable} |"
        )
    unstable = [
        b.name
        for b in BIOMARKERS
        if resize[b.name] is not None
        and inter_mard[b.name] is not None
        and resize[b.name] >= inter_mard[b.name]
    ]
    L += [
        "",
        "Not stable under 2x resizing, by this rule: "
        + ", ".join(f"`{n}`" for n in unstable)
        + ". Pixel lengths and counts are not",
        "meant to be; junction and end counts change because thinning a smoother, larger mask"
        " leaves other spurs; compare",
        "those only between images of one resolution.",
        "",
    ]
    return L


def _tolerance_lines() -> list[str]:
    return [
        "",
        "## Tolerance for the bench",
        "",
        f"`measure/tolerance.py` (generated with this page): TOLERANCE_PCT = {TOLERANCE_SHARE} x"
        " the inter-observer MARD above, per",
        "biomarker. An engine x precision should move a biomarker well inside what separates"
        " two human readers: at a quarter",
        "of it, differences adding in quadrature,"
        " a model's total disagreement with a reader grows by at most 3 %.",
        "",
    ]


# (title, key of ``ours`` in _pvbm_lines, key of a _pvbm_rows row, note)
_PVBM_PAIRS = [
    ("end points (pixels of one neighbour)", "end_points", "end_points", "same definition"),
    (
        "skeleton length (ours) vs PVBM's length, px",
        "length",
        "length",
        "PVBM's length is the sum of its segments' chords (segments over 10 px), not arcs",
    ),
    (
        "branch points vs PVBM intersection pixels",
        "branch_points",
        "intersection_pixels",
        "we count junction clusters, PVBM junction pixels",
    ),
    (
        "tortuosity: ours (length-weighted, smoothed arc) vs PVBM median arc/chord",
        "tortuosity_distance",
        "median_tortuosity",
        "different summaries",
    ),
]


def _pvbm_lines(pvbm: Path, m1: list[np.ndarray], fovs: list[np.ndarray], b1: list[Biomarkers]) -> list[str]:
    """The section comparing ours with PVBM's on the 1st manual labels."""
    rows = _pvbm_rows(pvbm, m1, fovs)
    ours = {
        "end_points": [b.end_points for b in b1],
        "length": [b.skeleton_length_px for b in b1],
        "branch_points": [b.branch_points for b in b1],
        "tortuosity_distance": [b.tortuosity_distance for b in b1],
    }
    L = [
        "## Against PVBM on the 1st manual labels",
        "",
        "PVBM 3.0.1.8 (`pip download --no-deps pvbm==3.0.1.8`,"
        " its `PVBM.GeometricalAnalysis` on sys.path, not installed:",
        "it pulls torchvision and opencv-python), on the same scikit-image skeletons."
        " Its fractal analysis is multifractal",
        "(D0, D1, D2 over rotations), not comparable with our single box count, so it is left out.",
        "",
        "| quantity | ours, mean | PVBM, mean | Pearson r | MARD % of PVBM | note |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for title, a, b, note in _PVBM_PAIRS:
        x, y = np.array(ours[a], float), np.array([r[b] for r in rows], float)
        r = float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else float("nan")
        L.append(
            f"| {title} | {x.mean():.4g} | {y.mean():.4g} | {_f(r, '.3f')}"
            f" | {100 * np.abs(x - y).sum() / np.abs(y).sum():.1f} | {note} |"
        )
    L.append("")
    return L


def run(
    data: Path,
    models: list[str],
    pred: str,
    out: Path,
    tolerance_out: Path,
    pvbm: Path | None,
    command: str,
    cwd: Path | None = None,
) -> None:
    cases = _drive_test(data)
    m1, m2, fovs = [], [], []
    for _, p1, p2, pf in cases:
        m1.append(read_binary(p1, "label"))
        m2.append(read_binary(p2, "label"))
        fovs.append(read_binary(pf, "FOV mask"))
    b1 = [compute_biomarkers(m, f) for m, f in zip(m1, fovs, strict=False)]
    b2 = [compute_biomarkers(m, f) for m, f in zip(m2, fovs, strict=False)]
    inter = agreement(b2, b1)
    per_model = {name: _model_agreement(name, cases, data, pred, fovs, b1) for name in models}
    big = [compute_biomarkers(*_resize2(m, f)) for m, f in zip(m1, fovs, strict=False)]
    resize = compare_biomarkers(big, b1)
    inter_mard = {n: inter[n]["mard"] for n in NAMES}

    shown_data, shown_pred = portable_path(str(data), "--data", cwd), portable_path(pred, "--pred", cwd)
    L = _intro_lines(shown_data, models, shown_pred, command)
    L += ["## Human reference: 2nd observer against the 1st", ""]
    L += _table("2nd manual vs 1st manual", inter)
    L += ["## Shipped models against the 1st manual", ""]
    for name, st in per_model.items():
        L += _table(f"models/{name}", st)
    L += _resize_lines(resize, inter_mard)
    L += _tolerance_lines()
    if pvbm is not None:
        L += _pvbm_lines(pvbm, m1, fovs, b1)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(L))
    write_tolerance(tolerance_out, inter_mard, command)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m fundus_edge.measure.validate_biomarkers", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--data", required=True, help="DRIVE folder (test/ with 1st_manual, 2nd_manual, mask)")
    p.add_argument("--models", required=True, help="comma list of model names (their masks under --pred)")
    p.add_argument(
        "--pred",
        default="build/pred-{name}",
        help="folder of each model's predict outputs, {name} replaced (default build/pred-{name})",
    )
    p.add_argument("--out", default="docs/biomarkers.md")
    p.add_argument("--tolerance-out", default=str(Path(__file__).with_name("tolerance.py")))
    p.add_argument(
        "--pvbm", help="folder holding PVBM's package folder (unzipped wheel) for the comparison section"
    )
    p.add_argument("--force", action="store_true", help="overwrite --out")
    a = p.parse_args(argv)
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    command = portable_command(argv if argv is not None else sys.argv[1:])
    try:
        if Path(a.out).exists() and not a.force:
            raise InputError(f"{a.out}: exists (use --force to regenerate)")
        run(
            Path(a.data),
            models,
            a.pred,
            Path(a.out),
            Path(a.tolerance_out),
            Path(a.pvbm) if a.pvbm else None,
            command,
        )
    except FundusEdgeError as exc:
        print(f"validate_biomarkers: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {a.out} and {a.tolerance_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
