"""File-level prediction: inputs (files, folders, list files, globs) -> <stem>_mask.png / _prob.png /
_overlay.png. The plain ``predict`` loop is here; the Ray path (``fundus_edge.archive``) reuses the same
input listing, output names and writers, so both give the same files.

A bad input is reported and skipped; the caller turns the failures into a non-zero exit. An input is known
by its own path as given (made absolute, links not resolved): a symbolic link is an input of its own name,
never its target's. Outputs are written whole or not at all (a temporary name, then a rename)."""

from __future__ import annotations

import glob
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import FundusEdgeError, InputError
from .fov import match_fov_file
from .images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, ImageTooLarge, encode_png, header_size

# A file with one of these suffixes is a list of inputs (one path per line, or PaddleSeg's
# ``image_path label_path``: the first field), paths relative to the list's folder.
LIST_SUFFIXES = (".txt", ".lst", ".list")


@dataclass(frozen=True)
class FileOutcome:
    input: Path
    outputs: tuple[Path, ...]
    error: str | None
    total_ms: float


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def read_list(path: Path) -> list[Path]:
    files = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line.split()[0])
        files.append(p if p.is_absolute() else path.parent / p)
    if not files:
        raise InputError(f"{path}: list file names no images")
    return files


def expand_inputs(inputs: list[str | Path]) -> list[Path]:
    """Image files, folders (their images, not recursive), list files and globs (``**`` recurses) -> files.
    A listed file that does not exist stays in: it becomes that file's error, not the job's."""
    files: list[Path] = []
    for raw in inputs:
        item = Path(raw)
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InputError(f"{item}: no images in folder")
            files += found
        elif item.is_file() and item.suffix.lower() in LIST_SUFFIXES:
            files += read_list(item)
        elif item.exists():
            files.append(item)
        elif _is_glob(str(raw)):
            found = sorted(
                Path(p)
                for p in glob.glob(str(raw), recursive=True)
                if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_SUFFIXES
            )
            if not found:
                raise InputError(f"{raw}: no images match")
            files += found
        else:
            raise InputError(f"{item}: no such file or folder")
    return check_unique_stems(files)


def input_key(f: str | os.PathLike) -> str:
    """An input's identity: its path as given, made absolute, symbolic links not resolved (a link's outputs
    and row are named after the link, not after its target, which may be another input)."""
    return os.path.abspath(f)


def check_unique_stems(files: list[Path]) -> list[Path]:
    """Outputs are named after the input's stem in one folder: two inputs of one stem would collide. The
    same input named twice (by equal absolute paths) is kept once."""
    seen: dict[str, Path] = {}
    unique: dict[str, Path] = {}
    for f in files:
        if f.stem in seen and input_key(seen[f.stem]) != input_key(f):
            raise InputError(
                f"{f}: same name as {seen[f.stem]}: outputs would collide (<stem>_mask.png); "
                "predict them into different --output folders"
            )
        seen[f.stem] = f
        unique.setdefault(input_key(f), f)
    return list(unique.values())


def refuse_oversized(files: list[Path], max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
    """Before anything runs: every input's header (Pillow reads it without decoding); one that declares more
    than ``max_pixels`` refuses the job in one line naming it, its size and how many more are over. A file
    without a readable header is left to the reader, which fails it alone."""
    if max_pixels is None:
        return
    over: list[str] = []
    for f in files:
        try:
            if f.is_file():
                header_size(f, str(f), max_pixels)
        except ImageTooLarge as exc:
            over.append(str(exc))
        except OSError:
            continue  # unreadable here: the reader reports it as that file's error
    if over:
        more = f" (and {len(over) - 1} more inputs over it)" if len(over) > 1 else ""
        raise ImageTooLarge(f"{over[0]}{more}; nothing was run")


def output_paths(
    f: Path, out_dir: Path, save_prob: bool = False, save_overlay: bool = False
) -> tuple[Path, ...]:
    targets = [out_dir / f"{f.stem}_mask.png"]
    if save_prob:
        targets.append(out_dir / f"{f.stem}_prob.png")
    if save_overlay:
        targets.append(out_dir / f"{f.stem}_overlay.png")
    return tuple(targets)


def prob_to_uint8(prob: np.ndarray) -> np.ndarray:
    return np.clip(prob * 255.0 + 0.5, 0, 255).astype(np.uint8)


def encode_outputs(
    mask: np.ndarray, prob_u8: np.ndarray | None = None, rgb: np.ndarray | None = None
) -> list[bytes]:
    """PNG bytes of the mask, then (when given) the probability x 255 and the overlay: the order of
    ``output_paths``. One encoder for plain predict and the archive path, so their files are identical."""
    out = [encode_png(mask.astype(np.uint8) * 255, "mask")]
    if prob_u8 is not None:
        out.append(encode_png(prob_u8, "probability"))
    if rgb is not None:
        out.append(encode_png(overlay(rgb, mask.astype(bool)), "overlay"))
    return out


def write_outputs(
    targets: tuple[Path, ...],
    mask: np.ndarray,
    prob_u8: np.ndarray | None = None,
    rgb: np.ndarray | None = None,
) -> None:
    """The mask, then (when given) the probability x 255 and the overlay, in ``targets``' order."""
    for path, data in zip(targets, encode_outputs(mask, prob_u8, rgb), strict=False):
        write_whole(path, data)


def write_whole(path: Path, data: bytes) -> None:
    """Whole or not at all: a killed run leaves no truncated PNG under an output's name, only (at worst) a
    hidden temporary file beside it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"{path}: could not write image ({exc.strerror or exc})") from None
    finally:
        tmp.unlink(missing_ok=True)


def overlay(rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = rgb.copy()
    green = np.array([0, 255, 0], np.float32)
    out[mask] = (0.45 * out[mask] + 0.55 * green).astype(np.uint8)
    return out


def file_error(path, exc: BaseException) -> str:
    """One line for a failed input, naming it once: our errors as they are (most already name the file),
    anything else as ``ClassName: message``."""
    from .errors import one_line

    text = str(exc) if isinstance(exc, FundusEdgeError) else one_line(exc)
    return text if str(path) in text else f"{path}: {text}"


def resolve_fov(fov: str, image: Path):
    """The ``--fov`` value for one image: auto / none as given, a mask file, or its mask in a folder."""
    if fov in ("auto", "none"):
        return fov
    return match_fov_file(Path(fov), image) if Path(fov).is_dir() else Path(fov)


def predict_files(
    predictor,
    files: list[Path],
    out_dir: Path,
    save_prob: bool = False,
    save_overlay: bool = False,
    fov: str = "auto",
    force: bool = False,
    progress: bool = True,
    after=None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> list[FileOutcome]:
    """``after``: an optional writer of more outputs per image (``predict --biomarkers``), with
    ``targets(f, out_dir)`` (checked against --force with the images) and ``write(f, prediction, targets)``;
    it lives above the runtime, so the runtime imports nothing of it. ``max_pixels``: the decoded-pixel cap
    of each input (None: none)."""
    from tqdm import tqdm

    from .images import read_image

    out_dir.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for f in tqdm(files, desc="predict", unit="img", disable=not progress):
        images = output_paths(f, out_dir, save_prob, save_overlay)
        targets = images + (tuple(after.targets(f, out_dir)) if after is not None else ())
        try:
            existing = [t for t in targets if t.exists()]
            if existing and not force:
                raise InputError(f"{existing[0]}: exists (use --force to overwrite)")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # reported below, one line per file
                # The path, not its pixels: a large JPEG is decoded reduced (runtime/images.read_decoded).
                res = predictor.predict(f, fov=resolve_fov(fov, f), max_pixels=max_pixels)
            rgb = read_image(f, max_pixels) if save_overlay else None
            if res.warning:
                tqdm.write(f"warning: {f}: {res.warning}", file=sys.stderr)
            write_outputs(
                images,
                res.mask,
                prob_to_uint8(res.prob) if save_prob else None,
                rgb if save_overlay else None,
            )
            if after is not None:
                after.write(f, res, targets[len(images) :])
            outcomes.append(FileOutcome(f, targets, None, res.total_ms))
        except FundusEdgeError as exc:
            msg = file_error(f, exc)
            tqdm.write(f"error: {msg}", file=sys.stderr)
            outcomes.append(FileOutcome(f, (), msg, 0.0))
    return outcomes
