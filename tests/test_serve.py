"""fundus-edge serve over FastAPI's TestClient (no socket): the served mask is predict's file byte for byte,
a bad image gets predict's one-line error as 400, an oversized body 413, a full queue 429."""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.conftest import synthetic_fundus

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
pytest.importorskip("multipart", reason="the serve extra (python-multipart) is not installed")

from fastapi.testclient import TestClient  # noqa: E402
from fundus_edge.runtime.batch import predict_files  # noqa: E402
from fundus_edge.runtime.manifest import sha256  # noqa: E402
from fundus_edge.runtime.predictor import Predictor  # noqa: E402
from fundus_edge.serve.app import ServeOptions, create_app  # noqa: E402

MODEL = Path(__file__).resolve().parents[1] / "models" / "small"


@pytest.fixture(scope="module")
def predictor():
    if not (MODEL / "manifest.yaml").is_file():
        pytest.fail("models/small is not shipped")
    return Predictor.load(MODEL, backend="onnxruntime", threads=1)


@pytest.fixture(scope="module")
def client(predictor):
    with TestClient(create_app(predictor, ServeOptions(max_body_bytes=4 << 20))) as c:
        yield c


@pytest.fixture(scope="module")
def fundus_tif(tmp_path_factory) -> Path:
    """A fundus-like photo large enough for the FOV search and the network (a few vessels on a disc)."""
    rgb, _, _ = synthetic_fundus(3, 200, 190)
    p = tmp_path_factory.mktemp("img") / "eye.tif"
    Image.fromarray(rgb).save(p)
    return p


def predict_mask(predictor, image: Path, out: Path) -> bytes:
    """What `fundus-edge predict` writes for this image (its own loop and writer)."""
    [o] = predict_files(predictor, [image], out, progress=False)
    assert o.error is None, o.error
    return (out / f"{image.stem}_mask.png").read_bytes()


def test_served_mask_is_predicts_file(client, predictor, fundus_tif, tmp_path):
    expected = predict_mask(predictor, fundus_tif, tmp_path)
    raw = client.post(
        "/v1/segment/mask.png", content=fundus_tif.read_bytes(), params={"name": fundus_tif.name}
    )
    assert raw.status_code == 200 and raw.headers["content-type"] == "image/png"
    assert raw.content == expected
    form = client.post(
        "/v1/segment",
        files={"image": (fundus_tif.name, fundus_tif.read_bytes(), "image/tiff")},
        params={"include": "mask,prob,overlay"},
    )
    assert form.status_code == 200, form.text
    j = form.json()
    assert base64.b64decode(j["mask_png"]) == expected
    m = cv2.imdecode(np.frombuffer(expected, np.uint8), cv2.IMREAD_UNCHANGED) > 0
    prob = cv2.imdecode(np.frombuffer(base64.b64decode(j["prob_png"]), np.uint8), cv2.IMREAD_UNCHANGED)
    over = cv2.imdecode(np.frombuffer(base64.b64decode(j["overlay_png"]), np.uint8), cv2.IMREAD_UNCHANGED)
    assert prob.shape == m.shape == (200, 190) and over.shape == (200, 190, 3)
    assert m.any(), "the synthetic photo's vessels should give some vessel pixels"
    # vessel share: vessel pixels over FOV pixels; the FOV is the disc, so the share is above the whole-image
    # share
    assert j["fov_found"] is True and j["vessel_share"] > m.mean()
    assert j["width"] == 190 and j["height"] == 200 and j["image"] == "eye.tif"
    assert j["engine"] == "onnxruntime" and j["precision"] == predictor.precision
    assert j["model"]["sha256"] == sha256(MODEL / "manifest.yaml")
    assert {"engine", "segment", "read", "encode", "total"} <= set(j["timings_ms"])


def test_json_only_by_default_and_unknown_output_refused(client, fundus_tif):
    r = client.post("/v1/segment", content=fundus_tif.read_bytes())
    assert r.status_code == 200 and not any(k.endswith("_png") for k in r.json())
    assert r.json()["image"] == "upload"
    bad = client.post("/v1/segment", content=fundus_tif.read_bytes(), params={"include": "mask,heatmap"})
    assert bad.status_code == 400 and "heatmap" in bad.json()["error"]
    assert client.post("/v1/segment/heatmap.png", content=b"x").status_code == 404


def test_bad_image_gets_predicts_one_line_error(client, predictor, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("garbage.png").write_bytes(b"\x89PNG not really" + bytes(range(256)) * 4)
    [o] = predict_files(predictor, [Path("garbage.png")], tmp_path / "out", progress=False)
    assert o.error and "\n" not in o.error
    r = client.post(
        "/v1/segment", files={"image": ("garbage.png", Path("garbage.png").read_bytes(), "image/png")}
    )
    assert r.status_code == 400
    assert r.json() == {"error": o.error}
    assert client.post("/v1/segment", content=b"").json()["error"] == "upload: empty file"
    nofile = client.post("/v1/segment", data={"comment": "no image"}, files={"other": ("a.txt", b"abc")})
    assert nofile.status_code == 400 and "'image'" in nofile.json()["error"]


def test_oversized_body_is_413_by_header_and_while_streaming(predictor):
    with TestClient(create_app(predictor, ServeOptions(max_body_bytes=1000))) as c:
        r = c.post("/v1/segment", content=b"x" * 5000)
        assert r.status_code == 413 and "5000 bytes" in r.json()["error"]

        def chunks():  # no Content-Length: the limit is found while reading
            for _ in range(10):
                yield b"y" * 400

        r = c.post("/v1/segment", content=chunks())
        assert r.status_code == 413 and "over the limit of 1000 bytes" in r.json()["error"]
        assert c.get("/health").json()["in_flight"] == 0  # the slot was given back


class _Gated:
    """The Predictor with its predict held until released: fills the queue deterministically."""

    def __init__(self, pred):
        self._pred, self.release = pred, threading.Event()

    def __getattr__(self, name):
        return getattr(self._pred, name)

    def predict(self, *a, **k):
        self.release.wait(60)
        return self._pred.predict(*a, **k)


def test_full_queue_answers_429_with_retry_after(predictor, fundus_tif):
    gated = _Gated(predictor)
    with TestClient(create_app(gated, ServeOptions(queue=1))) as c:  # 1 running + 1 waiting
        assert c.get("/health").json()["capacity"] == 2
        body = fundus_tif.read_bytes()
        codes = []
        held = [
            threading.Thread(target=lambda: codes.append(c.post("/v1/segment", content=body).status_code))
            for _ in range(2)
        ]
        for t in held:
            t.start()
        deadline = time.monotonic() + 60
        while c.get("/health").json()["in_flight"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        refused = [c.post("/v1/segment", content=body) for _ in range(3)]
        gated.release.set()
        for t in held:
            t.join(60)
    assert [r.status_code for r in refused] == [429] * 3
    assert all(int(r.headers["retry-after"]) >= 1 and "busy" in r.json()["error"] for r in refused)
    assert sorted(codes) == [200, 200]


def test_health_model_and_page(client):
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["model_sha256"] == sha256(MODEL / "manifest.yaml")
    m = client.get("/v1/model").json()
    assert (
        m["name"] == "small"
        and m["threshold"] > 0
        and m["engine"] == "onnxruntime"
        and "onnx" in m["formats"]
    )
    page = client.get("/")
    assert page.status_code == 200 and 'type="file"' in page.text and "/v1/segment" in page.text


def test_serve_binds_loopback_by_default():
    from fundus_edge.cli import build_parser

    a = build_parser().parse_args(["serve", str(MODEL)])
    assert a.host == "127.0.0.1" and a.func.__module__ == "fundus_edge.cli.serve"


def test_served_drive_mask_is_predicts_file(client, predictor, drive_root, tmp_path):
    image = drive_root / "test" / "images" / "01_test.tif"
    expected = predict_mask(predictor, image, tmp_path)
    r = client.post("/v1/segment/mask.png", files={"image": (image.name, image.read_bytes(), "image/tiff")})
    assert r.status_code == 200 and r.content == expected


def test_loadtest_counts_statuses_and_compares_masks_with_predict(tmp_path):
    """The load test end to end on loopback, tiny: a real server process, a 1-slot queue flooded by 3
    clients."""
    import json

    from fundus_edge.serve.loadtest import main

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for k in (1, 2):
        Image.fromarray(synthetic_fundus(k, 160, 150)[0]).save(imgs / f"eye{k}.png")
    out = tmp_path / "load.json"
    rc = main(
        [
            str(MODEL),
            "--images",
            str(imgs),
            "--requests",
            "4",
            "--concurrency",
            "1,3",
            "--queue",
            "0",
            "--threads",
            "1",
            "--backend",
            "onnxruntime",
            "--max-seconds",
            "60",
            "--json",
            str(out),
        ]
    )
    levels = json.loads(out.read_text())["levels"]
    assert rc == 0
    one, three = levels
    assert (one["requests"], one["ok"], one["too_many"], one["masks_equal"]) == (4, 4, 0, 4)
    assert (
        three["requests"] == 4
        and three["ok"] + three["too_many"] == 4
        and three["server_errors"] == three["other"] == 0
    )
    assert three["masks_equal"] == three["ok"] >= 1 and one["peak_rss_mb"] > 0


def test_biomarkers_when_asked_are_the_served_masks(client, predictor, fundus_tif):
    """?biomarkers=1 adds the mask's vessel biomarkers (inside the FOV the predictor used); absent
    otherwise."""
    import io

    import numpy as np
    from fundus_edge.measure.biomarkers import NAMES, biomarker_dict
    from fundus_edge.runtime.images import read_image

    assert "biomarkers" not in client.post("/v1/segment", content=fundus_tif.read_bytes()).json()
    r = client.post(
        "/v1/segment", content=fundus_tif.read_bytes(), params={"biomarkers": "1", "include": "mask"}
    )
    body = r.json()
    assert (
        r.status_code == 200
        and set(NAMES) <= set(body["biomarkers"])
        and body["timings_ms"]["biomarkers"] > 0
    )
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["mask_png"])))) > 0
    res = predictor.predict(read_image(fundus_tif), fov="auto")
    assert np.array_equal(mask, res.mask)
    assert body["biomarkers"] == biomarker_dict(res.mask, res.fov)
    assert body["biomarkers_within"] == ("fov" if res.fov is not None else "whole frame (no FOV found)")


def test_an_image_over_the_pixel_cap_is_413_before_it_is_queued(client, predictor, tmp_path):
    """The issue's two images (a header declaring 40000 x 40000, and 20000 x 12000) get 413 with the reason,
    and never reach the engine; a file that lies about its size within the cap gets predict's 400."""
    from tests.test_image_caps import lying_png

    for w, h, mp in ((40000, 40000, "1600.0 MP"), (20000, 12000, "240.0 MP")):
        f = lying_png(tmp_path / f"big{w}.png", w, h)
        r = client.post("/v1/segment", files={"image": (f.name, f.read_bytes(), "image/png")})
        assert r.status_code == 413 and r.json()["error"].startswith(
            f"{f.name}: declares {w} x {h} pixels ({mp}), over the cap"
        )
        raw = client.post("/v1/segment/mask.png", content=f.read_bytes(), params={"name": f.name})
        assert raw.status_code == 413 and "--max-pixels" in raw.json()["error"]
    assert client.get("/health").json()["in_flight"] == 0  # their slots were given back
    liar = lying_png(tmp_path / "liar.png", 400, 300, rows=3)
    r = client.post("/v1/segment", files={"image": (liar.name, liar.read_bytes(), "image/png")})
    assert r.status_code == 400 and r.json()["error"].startswith("liar.png: not a readable image")


def test_the_pixel_cap_is_the_services_own(predictor, fundus_tif):
    with TestClient(create_app(predictor, ServeOptions(max_pixels=190 * 200 - 1))) as c:
        r = c.post("/v1/segment", content=fundus_tif.read_bytes(), params={"name": "eye.tif"})
        assert r.status_code == 413 and "eye.tif: declares 190 x 200 pixels" in r.json()["error"]
    with TestClient(create_app(predictor, ServeOptions(max_pixels=190 * 200))) as c:
        assert c.post("/v1/segment", content=fundus_tif.read_bytes()).status_code == 200
