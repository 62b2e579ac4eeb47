"""A Ray resume that knows what it resumes: the resume key (model + output-changing options) recorded at the
output location, refusal of another job's location or a foreign results table, rows keyed by input path,
atomic table files. Ray is not started here; test_archive.py holds the end-to-end Ray run."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from fundus_edge.archive.job import SegmentOptions, job_key, plan
from fundus_edge.archive.resume import KEY_FILE, JobKey, claim, read_key
from fundus_edge.archive.storage import Storage
from fundus_edge.archive.table import ImageRow, read_rows, row_name, write_row, write_table
from fundus_edge.runtime.batch import output_paths
from fundus_edge.runtime.errors import InputError
from PIL import Image

from .conftest import synthetic_fundus

SHIPPED_MANIFEST = Path(__file__).resolve().parents[1] / "models" / "default" / "manifest.yaml"


def _model(folder: Path, name: str) -> Path:
    """A model folder as far as the key reads it: a real manifest under another name (so another sha256)."""
    folder.mkdir(parents=True)
    text = SHIPPED_MANIFEST.read_text()
    first = next(line for line in text.splitlines() if line.startswith("name:"))
    (folder / "manifest.yaml").write_text(text.replace(first, f"name: {name}", 1))
    return folder


def _key(name: str = "small", sha: str = "a" * 64, **kw) -> JobKey:
    base = dict(
        model=f"{name} (fp32)",
        model_sha256=sha,
        backend="onnxruntime",
        device="cpu",
        precision="",
        rescale=True,
        crop_fov=True,
        fov="auto",
        tool_version="0.1.0",
    )
    return JobKey(**{**base, **kw})


def _image(path: Path, seed: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(synthetic_fundus(seed)[0]).save(path)
    return path


def test_job_key_is_the_model_and_the_options_that_change_outputs(tmp_path, monkeypatch):
    from fundus_edge.runtime.manifest import read_manifest

    small, wnet = _model(tmp_path / "small", "small"), _model(tmp_path / "wnet", "wnet")
    a = job_key(SegmentOptions(small, backend="onnxruntime"))
    assert (
        a.model == f"small ({read_manifest(small).variant})"
        and len(a.model_sha256) == 64
        and a.precision == "auto"
        and a.fov == "auto"
    )
    assert job_key(SegmentOptions(wnet, backend="onnxruntime")).model_sha256 != a.model_sha256
    moved = shutil.copytree(small, tmp_path / "elsewhere")
    assert (
        job_key(SegmentOptions(moved, backend="onnxruntime")) == a
    )  # where the model lies is not part of it
    assert (
        job_key(SegmentOptions(small, backend="onnxruntime", save_prob=True, save_overlay=True)) == a
    )  # outputs asked: per row
    masks = tmp_path / "masks"
    masks.mkdir()
    monkeypatch.chdir(tmp_path)
    assert job_key(SegmentOptions(small, fov="masks")).fov == str(masks.resolve())
    for change in (
        {"backend": "openvino"},
        {"precision": "fp16"},
        {"rescale": False},
        {"crop_fov": False},
        {"fov": "none"},
        {"device": "gpu"},
    ):
        assert job_key(SegmentOptions(small, **{"backend": "onnxruntime", **change})) != a, change


def test_another_model_or_option_is_refused_in_one_line_naming_both(tmp_path):
    store = Storage(tmp_path / "out")
    small = _key("small", "1" * 64)
    assert claim(store, small, force=False) is False
    write_row(store, ImageRow("/in/01_test.tif", "ok", outputs="01_test_mask.png"))
    assert claim(store, small, force=False) is False  # the same job resumes
    with pytest.raises(InputError) as e:
        claim(store, _key("wnet", "2" * 64), force=False)
    msg = str(e.value)
    assert (
        "\n" not in msg
        and "small (fp32) [manifest sha256 111111111111] there" in msg
        and "wnet (fp32) [manifest sha256 222222222222] now" in msg
    )
    assert "--force" in msg
    with pytest.raises(
        InputError, match="precision the model's own there, fp16 now; rescale on there, off now"
    ):
        claim(store, replace(small, precision="fp16", rescale=False), force=False)
    with pytest.raises(InputError, match="fundus-edge 0.1.0 there, 0.2.0 now"):
        claim(store, replace(small, tool_version="0.2.0"), force=False)
    # refused: the location is as it was
    assert read_key(store) == small and list(read_rows(store)) == ["/in/01_test.tif"]
    # --force: the old job's rows go, the new key is recorded
    assert claim(store, _key("wnet", "2" * 64), force=True) is True
    assert read_key(store).model == "wnet (fp32)" and read_rows(store) == {}


def test_rows_without_a_key_and_an_unreadable_key_are_refused(tmp_path):
    store = Storage(tmp_path / "out")
    write_row(store, ImageRow("/in/a.png", "ok", outputs="a_mask.png"))  # an older tool's job: rows, no key
    with pytest.raises(InputError, match="without a resume key"):
        claim(store, _key(), force=False)
    assert claim(store, _key(), force=True) is True and read_rows(store) == {}
    (tmp_path / "out" / KEY_FILE).write_text("{not json")
    with pytest.raises(InputError, match=r"job.json: unreadable resume key"):
        claim(store, _key(), force=False)
    claim(store, _key(), force=True)
    assert read_key(store) == _key()


def test_a_foreign_table_is_never_overwritten_without_force(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = tmp_path / "out"
    out.mkdir()
    store = Storage(out)
    (out / "results.csv").write_text("eye,score\n01,0.8\n")  # a user's table
    with pytest.raises(InputError, match=r"out/results.csv: not a fundus-edge results table \(use --force"):
        claim(store, _key(), force=False)
    assert (out / "results.csv").read_text() == "eye,score\n01,0.8\n" and not (out / KEY_FILE).exists()
    (out / "results.csv").unlink()
    pq.write_table(pa.table({"eye": ["01"]}), out / "results.parquet")  # parquet without our metadata
    with pytest.raises(InputError, match="results.parquet: not a fundus-edge results table"):
        claim(store, _key(), force=False)
    claim(store, _key(), force=True)
    write_table(store, [ImageRow("/in/a.png", "ok", outputs="a_mask.png")], _key().to_json())
    assert claim(store, _key(), force=False) is False  # our own tables: fine
    # the table carries the key: with job.json gone, the parquet metadata still says whose location this is
    (out / KEY_FILE).unlink()
    assert read_key(store) == _key()
    assert (
        json.loads(pq.read_schema(out / "results.parquet").metadata[b"fundus-edge"])["model_sha256"]
        == "a" * 64
    )


def test_a_refused_input_never_touches_the_row_of_an_input_of_the_same_name(tmp_path):
    a, b = _image(tmp_path / "in" / "01_test.png"), _image(tmp_path / "in2" / "01_test.png", seed=2)
    out = tmp_path / "out"
    store = Storage(out)
    output_paths(a, out)[0].parent.mkdir()
    output_paths(a, out)[0].write_bytes(b"a's mask")
    row_a = ImageRow(str(a.resolve()), "ok", outputs="01_test_mask.png", model="small (fp32)")
    write_row(store, row_a)
    row_file = out / row_name(str(a.resolve()))
    before = row_file.read_bytes()
    p = plan([b], store, SegmentOptions(tmp_path), force=False)
    assert (
        not p.todo
        and len(p.refused) == 1
        and "01_test_mask.png: exists" in p.refused[0].error
        and not p.displaced
    )
    write_row(store, p.refused[0])
    rows = read_rows(store)
    assert (
        row_file.read_bytes() == before
        and rows[str(a.resolve())].status == "ok"
        and rows[str(b.resolve())].status == "error"
    )
    # --force: b takes the mask over, so a's row (which would now describe b's file) is displaced
    p = plan([b], store, SegmentOptions(tmp_path), force=True)
    assert p.todo == [b] and p.displaced == [str(a.resolve())]


def test_asking_for_more_outputs_redoes_an_input_without_refusing_its_own_mask(tmp_path):
    a = _image(tmp_path / "in" / "eye.png")
    out = tmp_path / "out"
    out.mkdir()
    store = Storage(out)
    output_paths(a, out)[0].write_bytes(b"mask")
    write_row(store, ImageRow(str(a.resolve()), "ok", outputs="eye_mask.png"))
    assert plan([a], store, SegmentOptions(tmp_path), force=False).done == [a]
    p = plan([a], store, SegmentOptions(tmp_path, save_prob=True), force=False)
    assert p.todo == [a] and not p.refused and not p.displaced
    (out / "eye_prob.png").write_bytes(b"someone else's")  # not in its row: not its own
    assert (
        plan([a], store, SegmentOptions(tmp_path, save_prob=True), force=False)
        .refused[0]
        .error.endswith("eye_prob.png: exists (use --force to overwrite)")
    )


def test_a_failed_table_write_leaves_the_old_table_and_no_debris(tmp_path, monkeypatch):
    store = Storage(tmp_path)
    write_table(store, [ImageRow("/in/a.png", "ok")], _key().to_json())
    before = {n: (tmp_path / n).read_bytes() for n in ("results.csv", "results.parquet")}

    def disk_full(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError):
        write_table(store, [ImageRow("/in/a.png", "ok"), ImageRow("/in/b.png", "error")], _key().to_json())
    assert {n: (tmp_path / n).read_bytes() for n in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "results.parquet"]
