"""Where a card's model came from: the Provenance section (checkpoint, config, log, exported files'
sha256) and the Experiments section (links into the experiment diary)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from fundus_edge.runtime.manifest import read_manifest

NOTES_HEAD = "## Experiments"


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def notes_section(notes: str | Path, card_dir: Path) -> list[str]:
    """A link to the experiment diary and its headings, not the diary itself: the diary lives in docs/
    and grows; the card stays short (under 200 lines)."""
    notes = Path(notes)
    if not notes.is_file():
        raise SystemExit(f"{notes}: no such notes file")
    rel = Path(os.path.relpath(notes.resolve(), card_dir.resolve())).as_posix()
    heads = [m.groups() for m in re.finditer(r"^(#{2,3}) (.+)$", notes.read_text(), re.M)]
    return [
        NOTES_HEAD,
        "",
        "The experiment diary of this model's runs (protocols, rules fixed before each test read, "
        f"validation curves, candidates) is [{notes.name}]({rel}):",
        "",
        *[f"{'  ' if len(h) == 3 else ''}- [{title}]({rel}#{_anchor(title)})" for h, title in heads],
    ]


def _git_last_commit(path: Path) -> str:
    """The last commit that holds ``path`` (empty outside a git checkout)."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "log", "-1", "--format=%h", "--", path.name],
            cwd=path.parent,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def provenance_section(model: Path, run: Path | None = None) -> list[str]:
    """Where the shipped weights came from: the checkpoint (and the sha256 of its weights, when the run
    folder is at hand), the config and the training log, and the exported files' sha256."""
    from fundus_edge.runtime.manifest import sha256

    man = read_manifest(model)
    src = man.source or {}
    ckpt = src.get("checkpoint")
    out = ["## Provenance"]
    best = Path(run) / "best" if run else None
    if best is not None and (best / "model.pdparams").is_file():
        commit = _git_last_commit(best / "model.pdparams")
        at = f" as committed in {commit}" if commit else ""
        out.append(
            f"- Weights: exported from `{ckpt or best}` (iteration {src.get('iteration')}); "
            f"its `model.pdparams` sha256 `{sha256(best / 'model.pdparams')}` (computed from `{best}`{at})."
        )
    elif ckpt:
        out.append(
            f"- Weights: exported from `{ckpt}` (iteration {src.get('iteration')}); that checkpoint's sha256 "
            "was not recorded and the run folder is gone, so the exported files below are the reference."
        )
    elif isinstance(src.get("pruning"), dict):
        s = src["pruning"].get("source")
        name = s.get("path") or s.get("name") if isinstance(s, dict) else s
        sha = (
            f" (its manifest's sha256 `{s['manifest_sha256']}`)"
            if isinstance(s, dict) and s.get("manifest_sha256")
            else ""
        )
        out.append(
            f"- Weights: pruned and fine-tuned from `{name}`{sha}; the fine-tune's record is "
            "`source.pruning` in `manifest.yaml`."
        )
    out.append(
        "- Exported files (sha256, as `manifest.yaml` pins them): "
        + ", ".join(f"`{f}` `{h}`" for f, h in man.files.items())
        + "."
    )
    if run and (Path(run) / "config.yaml").is_file():
        cfg = Path(run) / "config.yaml"
        commit = _git_last_commit(cfg)
        kept = f"`git show {commit}:{cfg}`" if commit else f"`{cfg}`"
        out.append(f"- Config: {kept} (the YAML under Training; also `source.config` in `manifest.yaml`).")
    else:
        out.append(
            "- Config: `source.config` in `manifest.yaml` (the training config as the checkpoint stored it)."
        )
    log = Path(run) / "log.csv" if run else None
    if log is not None and log.is_file():
        commit = _git_last_commit(log)
        kept = f"; in git: `git show {commit}:{log}`" if commit else ""
        out.append(f"- Training log: `{log}` ({sum(1 for _ in open(log)) - 1} rows{kept}).")
    out.append("")
    return out
