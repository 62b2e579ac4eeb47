"""Caps on what an image may cost (issue #42, point 5): headers are read before decoding, an image over
--max-pixels is refused in one line (predict: exit 2 before anything runs; serve: 413), a file that lies about
its size fails in one line, and serve states its worst-case memory and refuses to start beyond the machine's.
The files are built here: a PNG whose header declares a size its data does not hold."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from fundus_edge.runtime import images
from fundus_edge.runtime.batch import refuse_oversized
from fundus_edge.runtime.errors import InputError
from fundus_edge.runtime.images import ImageTooLarge, header_size, read_image
from PIL import Image

from .conftest import synthetic_fundus


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def lying_png(path: Path, width: int, height: int, rows: int = 4) -> Path:
    """A grey PNG whose header declares width x height but whose data holds ``rows`` black rows: a few
    hundred bytes, however large the size it declares (the issue's 194 KB file of 40000 x 40000)."""
    z = zlib.compressobj(9)
    data = b"".join(z.compress(b"\x00" * (width + 1)) for _ in range(rows)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")
    )
    return path


@pytest.mark.parametrize(("w", "h", "mp"), [(40000, 40000, "1600.0 MP"), (20000, 12000, "240.0 MP")])
def test_the_issues_images_are_refused_from_their_header(tmp_path, w, h, mp):
    f = lying_png(tmp_path / "huge.png", w, h)
    assert f.stat().st_size < 2000
    with pytest.raises(ImageTooLarge) as err:
        read_image(f)
    msg = str(err.value)
    assert str(f) in msg and f"{w} x {h} pixels ({mp})" in msg and "40.0 MP (--max-pixels)" in msg
    assert "\n" not in msg


def test_an_honest_image_over_a_lower_cap_names_its_width_and_height(tmp_path):
    f = tmp_path / "eye.png"
    Image.fromarray(synthetic_fundus(1, 90, 120)[0]).save(f)
    assert header_size(f, str(f)) == (120, 90)
    assert read_image(f, max_pixels=120 * 90).shape == (90, 120, 3)  # at the cap: read
    with pytest.raises(ImageTooLarge, match=r"eye.png: declares 120 x 90 pixels \(0.0 MP\), over the cap"):
        read_image(f, max_pixels=120 * 90 - 1)
    assert read_image(f, max_pixels=None).shape == (90, 120, 3)  # None: no cap


def test_a_header_pillow_cannot_read_is_checked_after_decoding(tmp_path, monkeypatch):
    f = tmp_path / "eye.png"
    Image.fromarray(synthetic_fundus(1, 90, 120)[0]).save(f)
    monkeypatch.setattr(images, "header_size", lambda *a, **k: None)  # as for a file Pillow cannot identify
    with pytest.raises(ImageTooLarge, match=r"decodes to 120 x 90 pixels"):
        read_image(f, max_pixels=1000)


def test_a_file_that_lies_about_its_size_fails_in_one_line(tmp_path):
    f = lying_png(tmp_path / "liar.png", 400, 300, rows=3)  # under the cap, its data cut short
    with pytest.raises(InputError) as err:
        read_image(f)
    assert not isinstance(err.value, ImageTooLarge)
    msg = str(err.value)
    assert msg.startswith(f"{f}: not a readable image") and "400 x 300" in msg and "\n" not in msg


def test_refuse_oversized_counts_the_others_and_leaves_unreadable_files_to_the_reader(tmp_path):
    ok = tmp_path / "ok.png"
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(ok)
    (tmp_path / "garbage.png").write_bytes(b"not an image")
    big = [lying_png(tmp_path / f"big{i}.png", 20000, 12000) for i in range(3)]
    refuse_oversized([ok, tmp_path / "garbage.png", tmp_path / "missing.png"])  # nothing over: no error
    with pytest.raises(ImageTooLarge, match=r"big0.png: .*\(and 2 more inputs over it\); nothing was run"):
        refuse_oversized([ok, *big])


def test_predict_refuses_both_images_in_one_line_exit_2_before_anything_runs(tmp_path, capsys):
    from fundus_edge.cli import main

    a = lying_png(tmp_path / "a40k.png", 40000, 40000)
    b = lying_png(tmp_path / "b20k.png", 20000, 12000)
    for f, mp in ((a, "1600.0 MP"), (b, "240.0 MP")):
        out = tmp_path / f"out-{f.stem}"
        assert main(["predict", str(f), "-o", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(f) in err[0] and mp in err[0] and "nothing was run" in err[0]
        assert " x " in err[0]  # the declared width x height, past Pillow's own bomb guard
        assert not out.exists()  # no model loaded, no folder made
    assert main(["predict", str(a), "-o", str(tmp_path / "o"), "--max-pixels", "0"]) == 2
    assert "--max-pixels must be at least 1" in capsys.readouterr().err


def test_predict_reports_a_lying_file_in_one_line_and_writes_the_rest(tmp_path, capsys):
    from fundus_edge.cli import main

    inp = tmp_path / "in"
    inp.mkdir()
    Image.fromarray(synthetic_fundus(2, 120, 110)[0]).save(inp / "eye.png")
    lying_png(inp / "liar.png", 400, 300, rows=3)
    out = tmp_path / "out"
    rc = main(
        ["predict", str(inp), "-o", str(out), "--backend", "onnxruntime", "--threads", "1", "--no-progress"]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    [line] = [x for x in err.splitlines() if x.startswith("error:")]
    assert "liar.png: not a readable image" in line
    assert (out / "eye_mask.png").is_file() and not (out / "liar_mask.png").exists()
    assert not list(out.glob(".*.tmp"))  # outputs are written whole: no temporary file left behind


def test_serve_states_its_worst_case_and_refuses_more_than_the_machine_holds(capsys, monkeypatch):
    pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
    from fundus_edge.serve import app

    from fundus_edge.cli import main

    opts = app.ServeOptions(max_body_bytes=32 << 20, queue=4, max_pixels=40_000_000)
    w = app.worst_case(opts)
    assert w.bodies == 2 * 5 * (32 << 20) and w.image == 40_000_000 * app.BYTES_PER_PIXEL
    assert "5 bodies of up to 32 MiB" in w.line(opts) and "one image of up to 40 MP" in w.line(opts)
    monkeypatch.setattr(app, "machine_memory", lambda: 4 << 30)  # a 4 GiB machine
    assert (
        main(["serve", "--queue", "200"]) == 2
    )  # 201 x 2 x 32 MiB: over 4 GiB, refused before a model loads
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and "worst-case memory" in err[0] and "4.0 GiB" in err[0] and "--overcommit" in err[0]
    )
