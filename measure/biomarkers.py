"""Vessel biomarkers of one binary vessel mask inside its field of view (FOV).

Units. Lengths are given in pixels and in FOV diameters (D = the FOV's diameter in pixels,
``runtime.fov.fov_diameter``); areas are per FOV area A. A quantity built only from those ratios does not
change when the same eye is photographed at another resolution, so a 4 k camera and DRIVE (D ~ 540 px)
give comparable figures. Every scale the definitions use (shortest segment, curvature smoothing, box
sizes) is a fixed fraction of D for the same reason.

Libraries: scikit-image's skeletonize (Zhang's thinning), skan for the skeleton graph (branches, their
pixel paths and lengths, node degrees), SciPy's Euclidean distance transform. Box counting and the
per-segment curvature are a few lines of numpy (no maintained library computes them on a mask).

| name | formula | unit |
| --- | --- | --- |
| vessel_density | vessel pixels in the FOV / A | 1 |
| skeleton_length_px | L = sum of skan branch lengths (steps of 1 or sqrt 2 px) | px |
| length_density | (L / D) / (A / D^2) = L D / A | 1/D |
| branch_points | junction clusters (8-connected pixels of degree >= 3) | count |
| end_points | pixels of degree 1 | count |
| branch_density, end_density | count / (A / D^2) | per D^2 |
| width_mean_px, width_median_px | 2 d - 1 over skeleton pixels, d = distance to nearest background | px |
| width_mean_d, width_median_d | the same / D | D |
| tortuosity_distance | per segment arc / chord, weighted by arc length (arc of the smoothed path) | 1 |
| tortuosity_curvature | per segment total absolute turning / (arc / D), weighted by arc length | rad per D |
| fractal_dimension | slope of log N(s) on log(1/s), boxes s = D/4 ... D/256 | 1 |

A segment is a skan branch (junction or end to junction or end) of at least MIN_SEGMENT_D x D; closed
loops have no chord and are left out of both tortuosities. Both tortuosities read the segment's pixel
path smoothed by a Gaussian of CURVATURE_SIGMA_D x D (ends held), which removes the staircase of a
digital line. The distance transform puts a one-pixel line at
d = 1 and the centre of an odd width w at d = (w + 1) / 2, hence 2 d - 1 (an even width reads w - 1: the
skeleton lies half a pixel off its centre).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from fundus_edge.runtime.errors import InputError
from fundus_edge.runtime.fov import fov_diameter

# Segments shorter than this (0.02 D ~ 11 px on DRIVE) are mostly the stubs thinning leaves at junctions
# and vessel ends: their arc / chord is noise, so tortuosity skips them (lengths and counts keep them).
MIN_SEGMENT_D = 0.02
# Gaussian smoothing of a segment's pixel path (0.01 D ~ 5.4 px on DRIVE), also the step at which its
# turning is sampled. On synthetic arcs (tests) 0.005 D read a half circle's curvature 11-33 % high (the
# staircase's |wiggle| adds up); 0.01 D reads it within 3 %, and a digital straight line at 10-30 degrees
# at 0.2-0.6 rad/D (DRIVE's vessels: ~15).
CURVATURE_SIGMA_D = 0.01
# Box sizes D / 2^k for these k: the same fractions of the FOV at every resolution.
BOX_POWERS = tuple(range(2, 9))


@dataclass(frozen=True)
class BiomarkerDef:
    name: str
    unit: str
    normalised: bool  # comparable across resolutions by construction
    doc: str


BIOMARKERS: tuple[BiomarkerDef, ...] = (
    BiomarkerDef("vessel_density", "1", True, "vessel pixels / FOV pixels"),
    BiomarkerDef("skeleton_length_px", "px", False, "skeleton length L"),
    BiomarkerDef("length_density", "1/D", True, "L D / A: skeleton length per FOV area, in FOV diameters"),
    BiomarkerDef("branch_points", "count", False, "junction clusters of the skeleton"),
    BiomarkerDef("end_points", "count", False, "skeleton pixels with one neighbour"),
    BiomarkerDef("branch_density", "per D^2", True, "branch points / (A / D^2)"),
    BiomarkerDef("end_density", "per D^2", True, "end points / (A / D^2)"),
    BiomarkerDef("width_mean_px", "px", False, "mean of 2 d - 1 along the skeleton"),
    BiomarkerDef("width_median_px", "px", False, "median of 2 d - 1 along the skeleton"),
    BiomarkerDef("width_mean_d", "D", True, "mean width / D"),
    BiomarkerDef("width_median_d", "D", True, "median width / D"),
    BiomarkerDef("tortuosity_distance", "1", True, "arc / chord per segment, length-weighted"),
    BiomarkerDef(
        "tortuosity_curvature", "rad/D", True, "total absolute turning / arc per segment, length-weighted"
    ),
    BiomarkerDef("fractal_dimension", "1", True, "box-counting dimension, boxes D/4 ... D/256"),
)
NAMES: tuple[str, ...] = tuple(b.name for b in BIOMARKERS)


@dataclass(frozen=True)
class Biomarkers:
    """One mask's biomarkers (NaN where undefined: no skeleton, no segment long enough) and the FOV they
    are normalised by."""

    fov_area_px: int
    fov_diameter_px: float
    segments: int  # segments that entered the tortuosities
    vessel_density: float
    skeleton_length_px: float
    length_density: float
    branch_points: int
    end_points: int
    branch_density: float
    end_density: float
    width_mean_px: float
    width_median_px: float
    width_mean_d: float
    width_median_d: float
    tortuosity_distance: float
    tortuosity_curvature: float
    fractal_dimension: float

    def to_dict(self) -> dict:
        """JSON-ready: NaN becomes None."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def _check(mask: np.ndarray, fov: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise InputError(f"vessel mask must be 2-D, got shape {mask.shape}")
    mask = mask.astype(bool)
    fov = np.ones(mask.shape, bool) if fov is None else np.asarray(fov).astype(bool)
    if fov.shape != mask.shape:
        raise InputError(
            f"FOV mask is {fov.shape[1]}x{fov.shape[0]}"
            f" but the vessel mask is {mask.shape[1]}x{mask.shape[0]}"
        )
    if not fov.any():
        raise InputError("FOV mask is empty")
    return mask & fov, fov


def _junction_and_end_counts(skel: np.ndarray) -> tuple[int, int]:
    from scipy import ndimage
    from skan.csr import make_degree_image

    deg = np.asarray(make_degree_image(skel))
    junctions = ndimage.label(deg >= 3, structure=np.ones((3, 3)))[1]
    return int(junctions), int(np.count_nonzero(deg == 1))


def smooth_path(path: np.ndarray, sigma: float) -> np.ndarray:
    """A segment's pixel path (N x 2) smoothed by a Gaussian of ``sigma`` px, its ends held: the path is
    continued by point reflection through each end first, so a straight run stays exactly straight and an
    end pixel stays where it is."""
    from scipy.ndimage import gaussian_filter1d

    p = np.asarray(path, float)
    k = min(len(p) - 1, int(4 * sigma) + 1)
    if k < 1:
        return p
    ext = np.concatenate([2 * p[0] - p[k:0:-1], p, 2 * p[-1] - p[-2 : -k - 2 : -1]])
    return gaussian_filter1d(ext, sigma, axis=0, mode="nearest")[k : k + len(p)]


def path_length(p: np.ndarray) -> float:
    return float(np.hypot(*np.diff(p, axis=0).T).sum()) if len(p) > 1 else 0.0


def total_turning(p: np.ndarray, step: float) -> float:
    """Total absolute turning of a (smoothed) path, in radians: the sum of |change of direction| between
    chords of ``step`` px along it. Sampling at the smoothing scale, not at every pixel, keeps what is left
    of the pixel staircase from adding up: |noise| sums, a real bend's turning does not depend on the step."""
    if len(p) < 3:
        return 0.0
    s = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(p, axis=0).T))])
    if s[-1] <= step:
        return 0.0
    g = np.linspace(0.0, s[-1], int(round(s[-1] / step)) + 1)
    d = np.diff(np.stack([np.interp(g, s, p[:, 0]), np.interp(g, s, p[:, 1])], axis=1), axis=0)
    theta = np.unwrap(np.arctan2(d[:, 0], d[:, 1]))
    return float(np.abs(np.diff(theta)).sum())


def box_counting_dimension(mask: np.ndarray, diameter: float, origin: tuple[int, int] = (0, 0)) -> float:
    """Slope of log N(s) against log(1/s), N(s) the boxes of side s = diameter / 2^k (k in BOX_POWERS,
    at least one pixel) holding a mask pixel, the grid anchored at ``origin``. NaN with fewer than three
    scales or an empty mask."""
    ys, xs = np.nonzero(mask)
    sizes = [diameter / 2**k for k in BOX_POWERS if diameter / 2**k >= 1.0]
    if ys.size == 0 or len(sizes) < 3:
        return float("nan")
    ys, xs = ys - origin[0], xs - origin[1]
    counts = []
    for s in sizes:
        by, bx = np.floor(ys / s).astype(np.int64), np.floor(xs / s).astype(np.int64)
        counts.append(np.unique(by * (int(bx.max()) + 1) + bx).size)
    slope = np.polyfit(np.log(1.0 / np.asarray(sizes)), np.log(np.asarray(counts, float)), 1)[0]
    return float(slope)


def compute_biomarkers(mask: np.ndarray, fov: np.ndarray | None = None) -> Biomarkers:
    """Biomarkers of a vessel mask (HxW, nonzero = vessel) inside ``fov`` (HxW bool; None = the whole
    frame). Vessel pixels outside the FOV are ignored."""
    from scipy import ndimage
    from skimage.morphology import skeletonize

    vessels, fov = _check(mask, fov)
    area = int(np.count_nonzero(fov))
    diameter = fov_diameter(fov)
    area_d2 = area / diameter**2  # the FOV's area in D^2 (pi / 4 for a full disc)
    nan = float("nan")
    skel = skeletonize(vessels)
    length = 0.0
    widths = np.empty(0)
    tort_d = tort_c = nan
    used = 0
    if np.count_nonzero(skel) >= 2:
        from skan import Skeleton, summarize

        # Pad so the image border counts as background, then d at each skeleton pixel.
        dist = ndimage.distance_transform_edt(np.pad(vessels, 1))[1:-1, 1:-1]
        widths = 2.0 * dist[skel] - 1.0
        sk = Skeleton(skel)
        if sk.n_paths:
            table = summarize(sk, separator="_")
            arc = table["branch_distance"].to_numpy(float)
            chord = table["euclidean_distance"].to_numpy(float)
            length = float(arc.sum())
            ok = (table["branch_type"].to_numpy() != 3) & (chord > 0) & (arc >= MIN_SEGMENT_D * diameter)
            idx = np.flatnonzero(ok)
            used = int(idx.size)
            if used:
                # Arc lengths of the smoothed paths: a digital path's 1 and sqrt 2 steps overstate a curve's
                # length by up to ~8 % (5.5 % on a circle), which would read as tortuosity.
                sigma = max(1.0, CURVATURE_SIGMA_D * diameter)
                paths = [smooth_path(np.asarray(sk.path_coordinates(int(i))), sigma) for i in idx]
                a = np.array([path_length(p) for p in paths])
                turning = np.array([total_turning(p, sigma) for p in paths])
                tort_d = float(np.sum(a * (a / chord[idx])) / a.sum())
                # length-weighted mean of turning_i / (arc_i / D) = sum(turning) D / sum(arc)
                tort_c = float(turning.sum() * diameter / a.sum())
    branch, ends = _junction_and_end_counts(skel) if skel.any() else (0, 0)
    rows, cols = np.flatnonzero(fov.any(axis=1)), np.flatnonzero(fov.any(axis=0))
    w_mean = float(widths.mean()) if widths.size else nan
    w_median = float(np.median(widths)) if widths.size else nan
    return Biomarkers(
        fov_area_px=area,
        fov_diameter_px=float(diameter),
        segments=used,
        vessel_density=float(np.count_nonzero(vessels)) / area,
        skeleton_length_px=length,
        length_density=length * diameter / area,
        branch_points=branch,
        end_points=ends,
        branch_density=branch / area_d2,
        end_density=ends / area_d2,
        width_mean_px=w_mean,
        width_median_px=w_median,
        width_mean_d=w_mean / diameter,
        width_median_d=w_median / diameter,
        tortuosity_distance=tort_d,
        tortuosity_curvature=tort_c,
        fractal_dimension=box_counting_dimension(vessels, diameter, (int(rows[0]), int(cols[0]))),
    )


def biomarker_dict(mask: np.ndarray, fov: np.ndarray | None = None) -> dict:
    """``compute_biomarkers(mask, fov).to_dict()``: the form the bench, the Ray table and serve carry."""
    return compute_biomarkers(mask, fov).to_dict()


def _value(d, name: str) -> float:
    v = d.get(name) if isinstance(d, Mapping) else getattr(d, name, None)
    return float("nan") if v is None else float(v)


def compare_biomarkers(
    values: Sequence, reference: Sequence, names: Sequence[str] = NAMES
) -> dict[str, float | None]:
    """Per biomarker, the mean absolute difference of ``values`` from ``reference`` (paired, image by
    image) relative to the reference's mean magnitude, in %: 100 sum|v - r| / sum|r|. Pooling the
    denominator keeps an image whose reference is near zero from dominating. Pairs where either side is
    undefined are skipped; None when no pair is left. Items are dicts or Biomarkers."""
    if len(values) != len(reference):
        raise ValueError(f"{len(values)} biomarker sets against {len(reference)} reference sets")
    out: dict[str, float | None] = {}
    for n in names:
        v = np.array([_value(d, n) for d in values])
        r = np.array([_value(d, n) for d in reference])
        ok = np.isfinite(v) & np.isfinite(r)
        den = np.abs(r[ok]).sum()
        out[n] = float(100.0 * np.abs(v[ok] - r[ok]).sum() / den) if ok.any() and den > 0 else None
    return out


def beyond_tolerance(
    differences: Mapping[str, float | None], tolerance: Mapping[str, float] | None = None
) -> list[str]:
    """The biomarkers whose relative difference (compare_biomarkers) exceeds their tolerance (default:
    measure.tolerance.TOLERANCE_PCT, derived from DRIVE's inter-observer difference)."""
    if tolerance is None:
        from fundus_edge.measure.tolerance import TOLERANCE_PCT as tolerance
    return [n for n, d in differences.items() if d is not None and n in tolerance and d > tolerance[n]]
