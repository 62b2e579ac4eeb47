"""PaddleSeg interop: a real PaddleSeg export (paddleseg.models.UNet wrapped by WrappedModel, jit.save, and
the deploy.yaml PaddleSeg writes; made in a child process by fundus_edge.export.paddleseg_unet) imported as
one of our model folders and predicted through every engine that reads it, against PaddleSeg's own
inference path (DeployConfig's transforms + Paddle Inference on the original program + argmax)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fundus_edge.runtime.engines import installed_engines
from fundus_edge.runtime.errors import InputError
from fundus_edge.runtime.formats import formats_for
from fundus_edge.runtime.manifest import read_manifest
from PIL import Image

from .conftest import synthetic_fundus

pytest.importorskip("paddleseg")


def _export(out: Path, output_op: str, legacy: bool) -> Path:
    env = {**os.environ, "FLAGS_enable_pir_api": "0" if legacy else "1"}
    r = subprocess.run(
        [sys.executable, "-m", "fundus_edge.export.paddleseg_unet", str(out), output_op],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("paddleseg")
    # Paddle 3.3's legacy mode cannot trace WrappedModel's argmax, so the legacy export is softmax; PIR
    # takes argmax.
    return {
        "softmax-legacy": _export(root / "softmax-legacy", "softmax", legacy=True),
        "argmax-pir": _export(root / "argmax-pir", "argmax", legacy=False),
    }


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("psimg")
    paths = []
    for i in range(2):
        p = root / f"eye{i}.png"  # lossless, multiples of 16: both paths see the same pixels, no padding
        Image.fromarray(synthetic_fundus(40 + i, 96, 80)[0]).save(p)
        paths.append(p)
    return paths


def _paddleseg_labels(export: Path, image: Path) -> np.ndarray:
    """PaddleSeg's own path: DeployConfig rebuilds the transforms (cv2 read, BGR->RGB, Normalize, HWC->CHW),
    Paddle Inference runs the exported program (no oneDNN: PaddleSeg's UNet PIR program cannot use it),
    argmax over classes unless the program did it."""
    from paddle import inference
    from paddleseg.deploy.infer import DeployConfig

    cfg = DeployConfig(str(export / "deploy.yaml"))
    x = cfg.transforms({"img": str(image)})["img"][None].astype(np.float32)
    c = inference.Config(cfg.model, cfg.params)
    c.disable_gpu()
    c.disable_mkldnn()
    c.disable_glog_info()
    pred = inference.create_predictor(c)
    h = pred.get_input_handle(pred.get_input_names()[0])
    h.reshape(list(x.shape))
    h.copy_from_cpu(x)
    pred.run()
    out = pred.get_output_handle(pred.get_output_names()[0]).copy_to_cpu()
    return (out if out.ndim == 3 else out.argmax(axis=1))[0]


@pytest.mark.parametrize("kind", ["softmax-legacy", "argmax-pir"])
def test_imported_paddleseg_export_agrees_with_paddleseg_on_every_engine(kind, exports, images, tmp_path):
    from fundus_edge.export.paddleseg import import_paddleseg
    from fundus_edge.runtime.predictor import Predictor, ScaleOptions

    out = tmp_path / "imported"
    r = import_paddleseg(exports[kind], out)
    man = read_manifest(out)
    assert (
        man.variant == "imported"
        and man.source["output_op"] == kind.split("-")[0]
        and man.source["classes"] == 2
    )
    assert man.threshold == 0.5 and man.preprocess.channels == "rgb"
    assert man.preprocess.scale == pytest.approx((1 / 127.5,) * 3) and man.preprocess.offset == pytest.approx(
        (-1.0,) * 3
    )
    if kind == "softmax-legacy":
        assert r.formats == ("legacy", "onnx")
        assert (
            man.model["params"] > 13_000_000 and man.model["gmac"] > 100
        )  # the seed tutorial's 13.4 M U-Net, counted from the graph
    else:
        # paddle2onnx reads no PIR program here: Paddle only, and without oneDNN (recorded, reported by the
        # engine)
        assert r.formats == ("pir",) and "PIR" in man.source["onnx_not_made"]
        assert man.engines["paddle"]["onednn"] is False
    engines = [e for e in installed_engines() if formats_for(e, list(man.formats))]
    assert engines and ("paddle" in engines)
    refs = [_paddleseg_labels(exports[kind], im) for im in images]
    for ref in refs:
        assert 0.01 < (ref == 1).mean() < 0.99  # a mask worth comparing, not a constant
    for engine in engines:
        p = Predictor.load(out, backend=engine, scale=ScaleOptions(rescale=False, crop_fov=False))
        for im, ref in zip(images, refs, strict=False):
            mask = p.predict(im, fov=None).mask
            agree = float((mask == (ref == 1)).mean())
            assert agree >= 0.999, (engine, im.name, agree)


def test_transforms_we_cannot_rebuild_are_refused_by_name(exports, tmp_path):
    import shutil

    from fundus_edge.export.paddleseg import import_paddleseg

    bad = tmp_path / "bad"
    shutil.copytree(exports["softmax-legacy"], bad)
    text = (
        (bad / "deploy.yaml")
        .read_text()
        .replace("transforms:", "transforms:\n  - type: Resize\n    target_size: [512, 512]")
    )
    (bad / "deploy.yaml").write_text(text)
    with pytest.raises(InputError, match=r"deploy.yaml: transform 'Resize' cannot be reproduced"):
        import_paddleseg(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError, match="no deploy.yaml"):
        import_paddleseg(tmp_path, tmp_path / "out2")


def test_export_for_paddleseg_is_read_back_by_paddleseg(tiny_run, drive_synth, tmp_path, capsys):
    """export --paddleseg: PaddleSeg's DeployConfig reads our deploy.yaml (with our transform registered), and
    PaddleSeg's path (transforms, Paddle Inference on paddleseg.json, reverse_transform's crop of the padding)
    gives the runtime's mask."""
    import fundus_edge.export.paddleseg_transforms  # noqa: F401 - registers FundusEdgePreprocess with PaddleSeg
    from fundus_edge.runtime.manifest import verify_files
    from fundus_edge.runtime.predictor import Predictor, ScaleOptions
    from paddleseg.deploy.infer import DeployConfig

    from fundus_edge.cli import main

    out = tmp_path / "m"
    assert (
        main(["export", str(tiny_run / "best"), "--out", str(out), "--formats", "pir,onnx", "--paddleseg"])
        == 0
    )
    man = read_manifest(out)
    verify_files(out, man, man.formats["paddleseg"])
    cfg = DeployConfig(str(out / "deploy.yaml"))
    assert Path(cfg.model).name == "paddleseg.json" and cfg.dic["Deploy"]["output_op"] == "argmax"
    from paddle import inference

    c = inference.Config(cfg.model, cfg.params)
    c.disable_gpu()
    c.disable_glog_info()
    pred = inference.create_predictor(c)
    p = Predictor.load(out, backend="onnxruntime", scale=ScaleOptions(rescale=False, crop_fov=False))
    for img in sorted((drive_synth / "test" / "images").iterdir()):
        data = cfg.transforms(
            {"img": str(img)}
        )  # 72x68 synthetic: padded to the multiple, trans_info says so
        x = data["img"][None].astype(np.float32)
        assert x.shape[-2] % man.pad_multiple == 0 and ("padding", (72, 68)) in data["trans_info"]
        h = pred.get_input_handle(pred.get_input_names()[0])
        h.reshape(list(x.shape))
        h.copy_from_cpu(x)
        pred.run()
        labels = pred.get_output_handle(pred.get_output_names()[0]).copy_to_cpu()
        assert labels.dtype == np.int32 and labels.ndim == 3
        labels = labels[0, :72, :68]  # what PaddleSeg's reverse_transform does with ('padding', (h, w))
        mask = p.predict(img, fov=None).mask
        assert 0 < mask.mean() < 1
        assert float(((labels == 1) == mask).mean()) >= 0.999


def test_import_cli_chooses_the_threshold_on_training_images(exports, drive_synth, tmp_path, capsys):
    from fundus_edge.cli import main

    out = tmp_path / "m"
    assert (
        main(
            [
                "import-paddleseg",
                str(exports["softmax-legacy"]),
                "--out",
                str(out),
                "--data",
                str(drive_synth),
                "--no-progress",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "softmax over 2 classes" in text and "training images" in text
    man = read_manifest(out)
    assert "F1-maximising on the 6 training images" in man.source["threshold_from"] and 0 < man.threshold < 1
    assert (
        main(["import-paddleseg", str(exports["softmax-legacy"]), "--out", str(out)]) == 2
    )  # nothing overwritten without --force
    assert "--force" in capsys.readouterr().err
