"""The archive path (predict --ray): input listing, resume rules, the results table, and a Ray Data run
on a local Ray (marked ``ray``: the one Ray test CI runs); the two-node run is marked slow."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fundus_edge.archive.storage import Storage
from fundus_edge.archive.table import COLUMNS, ImageRow, read_rows, row_name, write_row, write_table
from fundus_edge.runtime.batch import expand_inputs, output_paths
from fundus_edge.runtime.errors import InputError
from PIL import Image

from .conftest import synthetic_fundus


def _images(folder: Path, n: int, corrupt: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(synthetic_fundus(100 + i, 90, 84)[0]).save(folder / f"eye{i}.jpg", quality=92)
    if corrupt:
        (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return folder


def test_inputs_from_folder_list_and_glob(tmp_path):
    inp = _images(tmp_path / "in", 3, corrupt=False)
    (inp / "sub").mkdir()
    Image.fromarray(synthetic_fundus(9)[0]).save(inp / "sub" / "deep.png")
    # PaddleSeg list: "image label" per line, relative to the list's folder; a missing entry stays (its own
    # error row)
    lst = tmp_path / "in" / "val.txt"
    lst.write_text("# comment\neye0.jpg labels/eye0.png\n\nsub/deep.png labels/deep.png\nmissing.jpg x\n")
    assert [p.name for p in expand_inputs([lst])] == ["eye0.jpg", "deep.png", "missing.jpg"]
    assert [p.name for p in expand_inputs([str(inp / "**" / "*.png")])] == ["deep.png"]
    assert [p.name for p in expand_inputs([inp])] == [
        "eye0.jpg",
        "eye1.jpg",
        "eye2.jpg",
    ]  # a folder is not recursive
    with pytest.raises(InputError, match="no images match"):
        expand_inputs([str(inp / "*.tif")])
    Image.fromarray(synthetic_fundus(9)[0]).save(inp / "sub" / "eye1.png")
    with pytest.raises(InputError, match="outputs would collide"):
        expand_inputs([inp, inp / "sub" / "eye1.png"])


def test_plan_skips_done_retries_own_partial_refuses_foreign(tmp_path):
    from fundus_edge.archive.job import SegmentOptions, plan

    inp = _images(tmp_path / "in", 4, corrupt=False)
    files = expand_inputs([inp])
    out = tmp_path / "out"
    out.mkdir()
    store = Storage(out)
    opts = SegmentOptions(tmp_path)
    for f in files[:3]:
        output_paths(f, out)[0].write_bytes(b"png")
    write_row(store, ImageRow(str(files[0].resolve()), "ok", outputs=f"{files[0].stem}_mask.png"))  # done
    write_row(
        store, ImageRow(str(files[1].resolve()), "writing", outputs=f"{files[1].stem}_mask.png")
    )  # killed while writing
    # files[2]: an output without a row (not ours to overwrite); files[3]: nothing yet
    p = plan(files, store, opts, force=False)
    assert p.done == [files[0]] and p.todo == [files[1], files[3]]
    assert len(p.refused) == 1 and "eye2_mask.png: exists (use --force" in p.refused[0].error
    p = plan(files, store, opts, force=True)
    assert p.todo == files and not p.done and not p.refused
    (out / f"{files[0].stem}_mask.png").unlink()  # its row says ok but the output is gone: redo
    assert files[0] in plan(files, store, opts, force=False).todo


def test_table_has_every_column_in_csv_and_parquet(tmp_path):
    import csv

    import pyarrow.parquet as pq

    rows = [
        ImageRow(
            "/a/x.jpg",
            "ok",
            width=10,
            height=8,
            fov_found=True,
            fov_diameter_px=7.0,
            scale=1.0,
            vessel_share=0.1,
            outputs="x_mask.png",
        ),
        ImageRow("/a/y.jpg", "error", error="/a/y.jpg: not a readable image"),
    ]
    csv_path, pq_path = write_table(Storage(tmp_path), rows, "{}")
    t = pq.read_table(pq_path)
    assert tuple(t.column_names) == COLUMNS and t.num_rows == 2
    assert t.column("width").to_pylist() == [10, 0] and t.schema.field("fov_found").type == "bool"
    with open(csv_path) as fh:
        got = list(csv.DictReader(fh))
    assert [r["status"] for r in got] == ["ok", "error"] and got[1]["error"].endswith("not a readable image")


def test_biomarkers_spread_over_their_columns_and_make_a_row_undone_until_computed(tmp_path):
    """--ray --biomarkers: the row's biomarkers become one biomarker_* column each (NaN without them), and a
    rerun that asks for them redoes the rows that lack them."""
    import math

    import pyarrow.parquet as pq
    from fundus_edge.archive.job import SegmentOptions, plan
    from fundus_edge.archive.table import BIOMARKER_COLUMNS
    from fundus_edge.measure.biomarkers import NAMES, biomarker_dict

    mask = np.zeros((64, 64), bool)
    mask[30:33, 5:60] = True
    bm = {k: v for k, v in biomarker_dict(mask).items() if k in NAMES}
    out = Storage(tmp_path / "out")
    img = _images(tmp_path / "in", 1, corrupt=False) / "eye0.jpg"
    names = [p.name for p in output_paths(img, Path("."), False, False)]
    for n in names:
        out.write_bytes(n, b"png")
    write_row(out, ImageRow(str(img.resolve()), "ok", outputs=";".join(names)))
    assert plan([img], out, SegmentOptions(tmp_path, biomarkers=False), force=False).done == [img]
    assert plan([img], out, SegmentOptions(tmp_path, biomarkers=True), force=False).todo == [img]
    write_row(out, ImageRow(str(img.resolve()), "ok", outputs=";".join(names), biomarkers=bm))
    assert read_rows(out)[str(img.resolve())].biomarkers == bm
    assert plan([img], out, SegmentOptions(tmp_path, biomarkers=True), force=False).done == [img]
    _, pq_path = write_table(
        out, [ImageRow("/a/x.jpg", "ok", biomarkers=bm), ImageRow("/a/y.jpg", "ok")], "{}"
    )
    t = pq.read_table(pq_path)
    assert set(BIOMARKER_COLUMNS) <= set(t.column_names) and "biomarkers" not in t.column_names
    assert t.column("biomarker_vessel_density").to_pylist()[0] == pytest.approx(bm["vessel_density"])
    assert math.isnan(t.column("biomarker_vessel_density").to_pylist()[1])


def test_outputs_rows_and_table_through_a_pyarrow_file_system_uri(tmp_path):
    """An output location given as a URI (here file://; s3://, gs:// go through the same pyarrow calls):
    the write task's outputs and row, resume planning and the table all use it."""
    import pyarrow.parquet as pq
    from fundus_edge.archive.job import SegmentOptions, plan, write_row_outputs

    inp = _images(tmp_path / "in", 2, corrupt=False)
    files = expand_inputs([inp])
    store = Storage(f"file://{tmp_path}/remote/job")
    store.mkdir()
    mask = np.zeros((90, 84), np.uint8)
    mask[40:50, :] = 1
    row = {
        "path": str(files[0].resolve()),
        "error": "",
        "mask": mask,
        "prob": mask * 200,
        "rgb": np.zeros((90, 84, 3), np.uint8),
        "width": 84,
        "height": 90,
    }
    rec = write_row_outputs(row, store, save_prob=True, save_overlay=False)
    assert rec["status"] == "ok" and rec["outputs"] == "eye0_mask.png;eye0_prob.png"
    got = np.array(Image.open(tmp_path / "remote" / "job" / "eye0_mask.png"))
    assert got.shape == (90, 84) and set(np.unique(got)) == {0, 255} and (got[45] == 255).all()
    p = plan(files, store, SegmentOptions(tmp_path, save_prob=True), force=False)
    assert p.done == [files[0]] and p.todo == [files[1]]
    tables = write_table(store, list(read_rows(store).values()), "{}")
    assert (
        tables[-1].startswith("file://")
        and pq.read_table(tmp_path / "remote" / "job" / "results.parquet").num_rows == 1
    )


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.ray
def test_ray_job_matches_predict_records_errors_and_resumes(tiny_model, tmp_path, local_ray):
    from fundus_edge.archive.job import RayOptions, SegmentOptions, run_archive
    from fundus_edge.runtime.batch import predict_files
    from fundus_edge.runtime.predictor import Predictor

    inp = _images(tmp_path / "in", 4)
    files = expand_inputs([inp])
    assert files[0].name == "corrupt.jpg"
    files = files[1:] + files[:1]  # the four good ones first
    opts = SegmentOptions(tiny_model, backend="onnxruntime", save_prob=True, save_overlay=True)
    out = tmp_path / "ray"
    s = run_archive(files, out, opts, RayOptions(workers=2, threads_per_worker=1), progress=False)
    assert (s.inputs, s.ok, s.failed, s.done_before) == (5, 4, 1, 0)
    rows = read_rows(Storage(out))
    bad = rows[str((inp / "corrupt.jpg").resolve())]
    assert (
        bad.status == "error"
        and "corrupt.jpg" in bad.error
        and "readable" in bad.error
        and "\n" not in bad.error
    )
    # the same files as plain predict, byte-identical masks
    ref = tmp_path / "plain"
    predict_files(
        Predictor.load(tiny_model, backend="onnxruntime"),
        files,
        ref,
        save_prob=True,
        save_overlay=True,
        progress=False,
    )
    for f in files[:4]:
        for a, b in zip(output_paths(f, out, True, True), output_paths(f, ref, True, True), strict=False):
            assert np.array_equal(np.array(Image.open(a)), np.array(Image.open(b))), a.name
        r = rows[str(f.resolve())]
        assert (
            r.status == "ok"
            and (r.width, r.height) == (84, 90)
            and r.fov_found
            and 60 < r.fov_diameter_px <= 90
        )
        assert r.engine == "onnxruntime" and r.precision == "fp32" and len(r.model_sha256) == 64 and r.node
        assert 0 < r.vessel_share < 1 and r.segment_ms > 0 and r.read_ms > 0 and r.write_ms > 0
        assert r.output_names() == [p.name for p in output_paths(f, out, True, True)]
    import pyarrow.parquet as pq

    assert pq.read_table(out / "results.parquet").num_rows == 5
    # A job killed half-way: eye1 never done, eye2 stopped while writing (row "writing", mask cut short)
    for p in output_paths(files[1], out, True, True):
        p.unlink()
    (out / row_name(str(files[1].resolve()))).unlink()
    write_row(
        Storage(out),
        ImageRow(str(files[2].resolve()), "writing", outputs=rows[str(files[2].resolve())].outputs),
    )
    output_paths(files[2], out)[0].write_bytes(b"\x89PNG cut")
    before = {f: os.stat(output_paths(f, out)[0]).st_mtime_ns for f in (files[0], files[3])}
    s = run_archive(files, out, opts, RayOptions(workers=2, threads_per_worker=1), progress=False)
    assert (s.done_before, s.ok, s.failed) == (
        2,
        2,
        1,
    )  # eye0, eye3 skipped; eye1, eye2 done; corrupt retried
    assert all(os.stat(output_paths(f, out)[0]).st_mtime_ns == t for f, t in before.items())  # untouched
    for f in files[1:3]:
        assert np.array_equal(
            np.array(Image.open(output_paths(f, out)[0])), np.array(Image.open(output_paths(f, ref)[0]))
        )
    assert all(r.status in ("ok", "error") for r in read_rows(Storage(out)).values())


@pytest.mark.ray
def test_ray_rerun_with_another_model_refuses_in_one_line_or_redoes_with_force(
    tiny_model, tmp_path, local_ray, capsys
):
    """The issue's reproduction: predict MODEL_A DIR -o OUT --ray, then MODEL_B into the same OUT."""
    from fundus_edge.cli import main

    other = shutil.copytree(tiny_model, tmp_path / "other")
    man = other / "manifest.yaml"
    name_line = next(line for line in man.read_text().splitlines() if line.startswith("name:"))
    man.write_text(
        man.read_text().replace(name_line, "name: other", 1)
    )  # another manifest: another model to the key
    inp = _images(tmp_path / "in", 2, corrupt=False)
    out = tmp_path / "out"
    run = [
        "predict",
        str(inp),
        "-o",
        str(out),
        "--ray",
        "--workers",
        "1",
        "--threads-per-worker",
        "1",
        "--backend",
        "onnxruntime",
        "--no-progress",
    ]
    assert main(run[:1] + [str(tiny_model)] + run[1:]) == 0
    first = {
        p.name: p.stat().st_ino for p in out.glob("*_mask.png")
    }  # each write is a new file (temporary name, then rename)
    capsys.readouterr()
    assert main(run[:1] + [str(other)] + run[1:]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        "results of another job (model " in err[-1]
        and "[manifest sha256" in err[-1]
        and " there, other (" in err[-1]
        and "--force" in err[-1]
    )
    assert (
        len(first) == 2 and {p.name: p.stat().st_ino for p in out.glob("*_mask.png")} == first
    )  # refused before anything was written
    assert main(run[:1] + [str(other)] + run[1:] + ["--force"]) == 0
    rows = read_rows(Storage(out))
    assert (
        len(rows) == 2
        and {r.model.split(" ")[0] for r in rows.values()} == {"other"}
        and all(r.status == "ok" for r in rows.values())
    )
    assert all(p.stat().st_ino != first[p.name] for p in out.glob("*_mask.png"))  # redone
    capsys.readouterr()
    assert main(run[:1] + [str(other)] + run[1:]) == 0
    assert "2 done before (skipped)" in capsys.readouterr().err  # and it resumes its own


def test_ray_options_belong_to_ray(tiny_model, tmp_path, capsys):
    from fundus_edge.cli import main

    _images(tmp_path / "in", 1, corrupt=False)
    assert (
        main(["predict", str(tiny_model), str(tmp_path / "in"), "-o", str(tmp_path / "o"), "--workers", "2"])
        == 2
    )
    assert "options of --ray" in capsys.readouterr().err


def test_a_cluster_address_that_does_not_answer_is_one_line_at_once(tiny_model, tmp_path, capsys):
    from fundus_edge.cli import main

    _images(tmp_path / "in", 1, corrupt=False)
    rc = main(
        [
            "predict",
            str(tiny_model),
            str(tmp_path / "in"),
            "-o",
            str(tmp_path / "o"),
            f"--ray=127.0.0.1:{_free_port()}",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "nothing answers there" in err[-1] and not (tmp_path / "o").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_node_cluster_both_nodes_segment(tiny_model, tmp_path):
    """A head and a worker node (one CPU each) on 127.0.0.1 as two `ray start` processes; the CLI joins the
    head; Ray places one Predictor actor on each node, so both nodes segment."""
    pytest.importorskip("ray")
    ray_bin = str(Path(sys.executable).parent / "ray")
    port = _free_port()
    # Ray 2.60 clusters use token authentication (the head writes ~/.ray/auth_token); every process must say
    # so.
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    head = [
        ray_bin,
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--num-cpus=1",
        "--include-dashboard=false",
        "--disable-usage-stats",
    ]
    worker = [
        ray_bin,
        "start",
        f"--address=127.0.0.1:{port}",
        "--node-ip-address=127.0.0.1",
        "--num-cpus=1",
        "--disable-usage-stats",
    ]
    try:
        subprocess.run(head, check=True, capture_output=True, env=env, timeout=180)
        subprocess.run(worker, check=True, capture_output=True, env=env, timeout=180)
        inp = _images(tmp_path / "in", 8, corrupt=False)
        out = tmp_path / "out"
        cmd = [
            str(Path(sys.executable).parent / "fundus-edge"),
            "predict",
            str(tiny_model),
            str(inp),
            "-o",
            str(out),
            f"--ray=127.0.0.1:{port}",
            "--workers",
            "2",
            "--threads-per-worker",
            "1",
            "--backend",
            "onnxruntime",
            "--no-progress",
        ]
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        rows = read_rows(Storage(out))
        assert len(rows) == 8 and all(x.status == "ok" for x in rows.values())
        nodes = {x.node for x in rows.values()}
        assert len(nodes) == 2, nodes  # both the head and the worker node segmented
        status = json.loads(
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    f"import ray, json; ray.init(address='127.0.0.1:{port}'); "
                    "print(json.dumps([n['NodeID'] for n in ray.nodes() if n['Alive']]))",
                ],
                capture_output=True,
                text=True,
                env=env,
                timeout=180,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        assert nodes == set(status)
    finally:
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True, env=env, timeout=120)
        shutil.rmtree(tmp_path / "out", ignore_errors=True)


def _linked(tmp_path: Path, targets: int = 2, links: int = 3) -> tuple[Path, list[Path]]:
    """A deduplicated store's layout: each image once, and a folder of symbolic links to them."""
    store = _images(tmp_path / "store", targets, corrupt=False)
    inp = tmp_path / "links"
    inp.mkdir()
    for t in sorted(store.iterdir()):
        for i in range(links):
            (inp / f"{t.stem}_l{i}{t.suffix}").symlink_to(t)
    return inp, expand_inputs([inp])


def test_a_link_is_an_input_of_its_own_name_not_its_targets(tmp_path):
    from fundus_edge.archive.job import SegmentOptions, plan

    inp, files = _linked(tmp_path)
    assert len(files) == 6 and all(f.is_symlink() for f in files)
    p = plan(files, Storage(tmp_path / "out"), SegmentOptions(tmp_path), force=False)
    assert p.todo == files  # six inputs, not the two targets
    # a link and its target named together are two inputs; the same path twice is one
    target = files[0].resolve()
    assert expand_inputs([files[0], target, files[0]]) == [files[0], target]


@pytest.mark.ray
def test_ray_over_links_writes_every_input_like_plain_predict(tiny_model, tmp_path, local_ray, capsys):
    """The issue's 300 links, small: 2 images x 3 links give 6 masks and 6 rows, each link's own, equal to
    plain predict's files; the summary counts the table's rows."""
    from fundus_edge.cli import main

    inp, files = _linked(tmp_path)
    common = ["--backend", "onnxruntime", "--no-progress"]
    plain = ["predict", str(tiny_model), str(inp), "-o", str(tmp_path / "plain"), "--threads", "1"]
    assert main(plain + common) == 0
    ray = ["--ray", "--workers", "1", "--threads-per-worker", "1"]
    assert main(["predict", str(tiny_model), str(inp), "-o", str(tmp_path / "ray"), *ray, *common]) == 0
    err = capsys.readouterr().err
    assert "6 written, 0 failed" in err and "table: 6 rows (6 ok)" in err and "Ray has one node here" in err
    rows = read_rows(Storage(tmp_path / "ray"))
    assert sorted(rows) == sorted(os.path.abspath(f) for f in files)
    for f in files:
        a, b = output_paths(f, tmp_path / "ray")[0], output_paths(f, tmp_path / "plain")[0]
        assert np.array_equal(np.array(Image.open(a)), np.array(Image.open(b))), a.name
        assert rows[os.path.abspath(f)].output_names() == [a.name]
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "ray" / "results.parquet").num_rows == 6


@pytest.mark.ray
def test_a_run_killed_midway_resumes_without_redoing_finished_work(tiny_model, tmp_path):
    """SIGKILL to a running `predict --ray` (driver and the Ray it started): the rerun skips every input whose
    row said ok at the kill, leaves their masks untouched, and finishes the rest."""
    import signal
    import time

    from fundus_edge.cli import main

    inp = tmp_path / "in"
    inp.mkdir()
    for i in range(40):
        Image.fromarray(synthetic_fundus(i, 160, 150)[0]).save(inp / f"eye{i:02d}.png")
    out = tmp_path / "out"
    cmd = [str(Path(sys.executable).parent / "fundus-edge"), "predict", str(tiny_model), str(inp)]
    cmd += ["-o", str(out), "--ray", "--workers", "1", "--threads-per-worker", "1"]
    cmd += ["--backend", "onnxruntime", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        ok: dict = {}
        while proc.poll() is None and time.monotonic() < deadline:
            ok = {p: r for p, r in read_rows(Storage(out)).items() if r.status == "ok"}
            if len(ok) >= 3:
                break
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and every Ray process it started
        proc.wait(timeout=60)
    if proc.returncode == 0:
        pytest.fail("the run finished before it could be killed midway")
    ok = {p: r for p, r in read_rows(Storage(out)).items() if r.status == "ok"}
    assert 3 <= len(ok) < 40
    masks = {p: os.stat(out / r.output_names()[0]).st_mtime_ns for p, r in ok.items()}
    assert not (out / "results.csv").exists()  # killed: the table was never gathered
    s_rc = main(cmd[1:])
    assert s_rc == 0
    rows = read_rows(Storage(out))
    assert len(rows) == 40 and all(r.status == "ok" for r in rows.values())
    assert all(os.stat(out / rows[p].output_names()[0]).st_mtime_ns == t for p, t in masks.items())
    assert len(list(out.glob("*_mask.png"))) == 40 and not list(out.glob(".*.tmp"))
