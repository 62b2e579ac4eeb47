"""Site data: a labelled folder of one camera's images, read in one place for evaluate, adapt and training.

A site folder holds an images folder and, optionally, vessel labels, FOV masks and a second observer's
labels, each in a sub-folder named by its role (``ROLE_FOLDERS``). DRIVE (``test/`` or ``training/``, or
its root with a split) and STARE read as distributed, without renaming. Files are matched to images by
name (``match_key``, the runtime's rule, which ``predict --fov DIR`` and ``biomarkers --fov-dir`` use for
FOV masks too): a label whose stem is the image's stem, or begins with it followed by a separator
(STARE's ``im0001.ah`` for ``im0001``), or that shares its leading number (DRIVE's ``21_manual1`` for
``21_training``). Anything left unmatched is one error that lists it. A folder with images and no labels
reads too: its images serve for calibration, not for scoring.

Why by hand: no library reads "a fundus data set as its authors distributed it"; the readers that exist
(PaddleSeg's file lists, torchvision's data sets) need a list or a fixed layout, which is what a site
should not have to write.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fundus_edge.runtime.errors import InputError
from fundus_edge.runtime.fov import match_key
from fundus_edge.runtime.images import IMAGE_SUFFIXES

# Sub-folder names by role, first match wins; compared lower-case. DRIVE: images / 1st_manual / 2nd_manual /
# mask; STARE: images / labels-ah / labels-vk (Hoover is the literature's reference, Kouznetsova the
# second observer).
ROLE_FOLDERS = {
    "images": ("images", "image", "imgs", "img"),
    "labels": ("1st_manual", "labels-ah", "labels", "label", "manual", "vessels", "annotations", "gt"),
    "second": ("2nd_manual", "labels-vk", "second", "labels2", "observer2"),
    "fov": ("mask", "masks", "fov", "fovs"),
}
# Labels may also be PGM (STARE's); OpenCV reads it.
FILE_SUFFIXES = (*IMAGE_SUFFIXES, ".pgm")
DRIVE_SPLITS = {"train": "training", "training": "training", "test": "test"}


@dataclass(frozen=True)
class SiteImage:
    """One image of a site and the files matched to it (paths only; reading is the caller's)."""

    name: str  # the image's stem
    image: Path
    label: Path | None = None
    fov: Path | None = None
    second: Path | None = None  # a second observer's label


@dataclass(frozen=True)
class Site:
    """A site folder as read: its images and what the folder held beside them."""

    root: Path
    images: tuple[SiteImage, ...]
    folders: dict  # role -> the folder read for it (None where absent)

    @property
    def labelled(self) -> bool:
        return all(s.label is not None for s in self.images)

    @property
    def has_second(self) -> bool:
        return bool(self.images) and all(s.second is not None for s in self.images)

    @property
    def fov_source(self) -> str:
        """Where each image's FOV comes from: the site's mask files, or derived from the image."""
        return "files" if self.folders.get("fov") else "derived from each image (red-channel threshold)"


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FILE_SUFFIXES)


def _role_folder(root: Path, role: str) -> Path | None:
    """The sub-folder that holds ``role``'s files (an empty one counts as absent)."""
    subs = {p.name.lower(): p for p in root.iterdir() if p.is_dir() and _image_files(p)}
    return next((subs[n] for n in ROLE_FOLDERS[role] if n in subs), None)


def _stem(p: Path) -> str:
    """The stem without every image suffix (STARE's ``im0001.ah.pgm`` -> ``im0001.ah``)."""
    name = p.name
    while Path(name).suffix.lower() in FILE_SUFFIXES:
        name = Path(name).stem
    return name


def _match(images: list[Path], folder: Path, role: str, unmatched: list[str]) -> dict[str, Path]:
    """image stem -> its file in ``folder``; files matching no image, or two images, go to ``unmatched``."""
    stems = [_stem(p) for p in images]
    out: dict[str, Path] = {}
    for f in _image_files(folder):
        hits = [s for s in stems if match_key(s, _stem(f))]
        if len(hits) > 1:
            # The longest stem is the most specific claim (im0001 and im00012 both prefix im00012.ah).
            hits = [max(hits, key=len)]
        if not hits or hits[0] in out:
            why = "without an image" if not hits else f"a second file for {hits[0]}"
            unmatched.append(f"{role} {f.name} ({why})")
            continue
        out[hits[0]] = f
    return out


def _site_root(path: Path, split: str | None) -> Path:
    """The folder that holds images/: ``path`` itself, or a DRIVE root's split folder."""
    if _role_folder(path, "images") is not None:
        return path
    if (path / "training").is_dir() or (path / "test").is_dir():
        sub = DRIVE_SPLITS.get(split or "test")
        if sub is None:
            raise InputError(f"{path}: unknown split {split!r} (use train or test)")
        if not (path / sub).is_dir():
            raise InputError(f"{path}: no {sub}/ folder")
        return path / sub
    return path


def read_site(path: str | Path, split: str | None = None, require_labels: bool = True) -> Site:
    """Read a site folder (see the module's docstring). ``split`` picks DRIVE's training/ or test/ when
    ``path`` is its root (test by default). ``require_labels``: every image must have a label (scoring,
    adapting); False reads an unlabelled folder (calibration)."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: no such folder")
    root = _site_root(path, split)
    img_dir = _role_folder(root, "images") or root
    images = _image_files(img_dir)
    if not images:
        raise InputError(f"{img_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
    if len({_stem(p).lower() for p in images}) != len(images):
        raise InputError(f"{img_dir}: two images share a name (stem); rename one")
    folders = {role: _role_folder(root, role) for role in ROLE_FOLDERS if role != "images"}
    folders["images"] = img_dir
    unmatched: list[str] = []
    found = {
        role: _match(images, d, role, unmatched) if d else {}
        for role, d in folders.items()
        if role != "images"
    }
    if folders["labels"] is None and require_labels:
        raise InputError(
            f"{root}: no labels folder (one of {', '.join(ROLE_FOLDERS['labels'])}) beside {img_dir.name}/"
        )
    for role in ("labels", "fov", "second"):
        if folders[role] is None:
            continue
        missing = [p.name for p in images if _stem(p) not in found[role]]
        if missing and (role != "labels" or require_labels):
            unmatched.append(
                f"no {role} file for {', '.join(missing[:8])}" + (" ..." if len(missing) > 8 else "")
            )
    if unmatched:
        raise InputError(f"{root}: files that do not pair up: " + "; ".join(unmatched[:12]))
    return Site(
        root=root,
        images=tuple(
            SiteImage(
                _stem(p),
                p,
                found["labels"].get(_stem(p)),
                found["fov"].get(_stem(p)),
                found["second"].get(_stem(p)),
            )
            for p in images
        ),
        folders=folders,
    )


def is_site(path: str | Path, split: str | None = None) -> bool:
    """Does ``path`` read as a site folder (images and labels)? For callers choosing a reader."""
    try:
        read_site(path, split)
        return True
    except InputError:
        return False
