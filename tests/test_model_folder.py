"""One model-folder check (runtime/manifest.py: is_model_dir, manifest_path, manifest_sha256), and the
manifest's file name written in one place: the source tree names "manifest.yaml" in at most 3 lines
outside it."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from fundus_edge.runtime.manifest import MANIFEST, is_model_dir, manifest_path, manifest_sha256

ROOT = Path(__file__).resolve().parents[1]
# The project's packages (pyproject's package-dir); tests and runtime/manifest.py itself are not counted.
PACKAGES = (
    "runtime",
    "measure",
    "train",
    "export",
    "quantize",
    "bench",
    "deploy",
    "archive",
    "serve",
    "fundus_edge",
)
LITERAL = re.compile(r"""["']manifest\.yaml["']""")
MOST = 3


def test_a_model_folder_is_a_folder_with_a_manifest(tiny_model, tmp_path):
    assert is_model_dir(tiny_model) and is_model_dir(str(tiny_model))
    assert manifest_path(tiny_model) == tiny_model / MANIFEST == tiny_model / "manifest.yaml"
    assert not is_model_dir(tmp_path)  # an empty folder
    assert not is_model_dir(tmp_path / "absent")
    assert not is_model_dir(manifest_path(tiny_model))  # the manifest file itself is no folder
    fake = tmp_path / "fake"
    (fake / MANIFEST).mkdir(parents=True)  # a folder named like the manifest is not one
    assert not is_model_dir(fake)


def test_manifest_sha256_is_the_manifest_file_s_digest(tiny_model):
    want = hashlib.sha256((tiny_model / "manifest.yaml").read_bytes()).hexdigest()
    assert manifest_sha256(tiny_model) == want


def _literal_lines() -> list[str]:
    hits = []
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            if f == ROOT / "runtime" / "manifest.py":
                continue
            for i, line in enumerate(f.read_text().splitlines(), 1):
                if LITERAL.search(line):
                    hits.append(f"{f.relative_to(ROOT)}:{i}: {line.strip()}")
    return hits


def test_the_manifest_s_name_is_written_in_runtime_manifest_only():
    hits = _literal_lines()
    assert len(hits) <= MOST, (
        f"{len(hits)} lines name manifest.yaml (use is_model_dir / manifest_path):\n" + ("\n".join(hits))
    )
