"""Confined model folders (issue #32): every file a manifest names is one of its format's files, a plain name
inside the folder, no symlink; ONNX external data is listed and hashed. One hostile folder per case, each
refused with one line by Predictor.load, `predict` and `bench --models`; hostile PaddleSeg exports by
`import-paddleseg`. Also: rewriting a manifest never re-blesses a changed file; OpenVINO refuses a precision
its device cannot compute."""

import re
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from fundus_edge.runtime.errors import EngineUnavailable, IntegrityError
from fundus_edge.runtime.manifest import read_manifest, sha256, verify_files, write_manifest
from fundus_edge.runtime.predictor import Predictor
from onnx import external_data_helper

from fundus_edge.cli import main
from tests.conftest import synthetic_fundus


def _edit(folder: Path, fn) -> None:
    """Change the manifest's raw YAML, as a hostile hand would (no hashing, no checks)."""
    path = folder / "manifest.yaml"
    d = yaml.safe_load(path.read_text())
    fn(d)
    path.write_text(yaml.safe_dump(d, sort_keys=False))


def _onnx_only(folder: Path, name: str, sha: str) -> None:
    """The manifest names ``name`` as its only ONNX file, hashed right, and nothing else."""

    def fn(d):
        d["formats"] = {"onnx": [name]}
        d["files"] = {name: sha}

    _edit(folder, fn)


def _external(folder: Path, location: str) -> Path:
    """Rewrite the folder's model.onnx so its weights live in ``location`` (ONNX external data), written
    where that location points from the folder; the manifest keeps model.onnx with its new hash.
    paddle2onnx writes weights as Constant nodes, which ONNX Runtime cannot read from external data: they
    become initializers first."""
    m = onnx.load(str(folder / "model.onnx"))
    nodes = []
    for n in m.graph.node:
        if n.op_type == "Constant" and n.attribute[0].name == "value":
            t = onnx.TensorProto()
            t.CopyFrom(n.attribute[0].t)
            t.name = n.output[0]
            m.graph.initializer.append(t)
        else:
            nodes.append(n)
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    external_data_helper.convert_model_to_external_data(
        m, all_tensors_to_one_file=True, location="weights.data", size_threshold=1024
    )
    onnx.save(m, str(folder / "model.onnx"))  # writes weights.data beside it
    target = folder / location
    if location != "weights.data":
        (folder / "weights.data").rename(target)
        m = onnx.load(str(folder / "model.onnx"), load_external_data=False)
        for t in m.graph.initializer:
            for e in t.external_data:
                if e.key == "location":
                    e.value = location
        onnx.save(m, str(folder / "model.onnx"))  # the graph alone: its data is already where it points
    _edit(folder, lambda d: d["files"].update({"model.onnx": sha256(folder / "model.onnx")}))
    return target


def _case(name: str, root: Path, model: Path) -> tuple[Path, str]:
    """A hostile copy of ``model`` in ``root`` / "m" and the text its refusal must contain."""
    h = root / "m"
    shutil.copytree(model, h)
    outside = root / "outside.onnx"
    shutil.copy(model / "model.onnx", outside)
    if name == "dotdot":
        _onnx_only(h, "../outside.onnx", sha256(outside))
        return h, "names '../outside.onnx', which is not a plain file name"
    if name == "absolute":
        _onnx_only(h, str(outside), sha256(outside))
        return h, "which is not a plain file name"
    if name == "symlink-out":
        (h / "model.onnx").unlink()
        (h / "model.onnx").symlink_to(outside)
        return h, "model.onnx: a symlink"
    if name == "symlink-in":  # decided: refused too (a link can be re-pointed between the check and the read)
        (h / "model.onnx").rename(h / "real.onnx")
        (h / "model.onnx").symlink_to("real.onnx")
        return h, "model.onnx: a symlink"
    if name == "other-name":
        shutil.copy(outside, h / "evil.onnx")
        _onnx_only(h, "evil.onnx", sha256(outside))
        return h, r"format onnx lists \['evil.onnx'\]; its files are model.onnx"
    if name == "hash-unlisted":
        _edit(h, lambda d: d["files"].update({"../outside.onnx": sha256(outside)}))
        return h, "hashes '../outside.onnx', which no format lists"
    if name == "external-outside":
        _external(h, "../outside.data")
        return h, "names '../outside.data', which is not a plain file name"
    if name == "external-unlisted":
        _external(h, "weights.data")
        return h, "keeps tensors in weights.data, not listed under formats.onnx"
    if name == "external-changed":
        data = _external(h, "weights.data")
        _edit(
            h,
            lambda d: (
                d["formats"]["onnx"].append("weights.data"),
                d["files"].update({"weights.data": sha256(data)}),
            ),
        )
        with open(data, "r+b") as f:  # one weight changed after hashing
            f.seek(8)
            b = f.read(1)
            f.seek(8)
            f.write(bytes([b[0] ^ 0x40]))
        return h, "weights.data: sha256 does not match"
    raise AssertionError(name)


CASES = [
    "dotdot",
    "absolute",
    "symlink-out",
    "symlink-in",
    "other-name",
    "hash-unlisted",
    "external-outside",
    "external-unlisted",
    "external-changed",
]


@pytest.mark.parametrize("case", CASES)
def test_hostile_model_folder_is_refused_by_load_predict_and_bench(case, tiny_model, tmp_path, capsys):
    h, why = _case(case, tmp_path, tiny_model)
    with pytest.raises(IntegrityError, match=why):
        Predictor.load(h, backend="onnxruntime")
    rgb, _, _ = synthetic_fundus(3)
    import cv2

    cv2.imwrite(str(tmp_path / "img.png"), rgb[..., ::-1])
    capsys.readouterr()
    assert (
        main(
            [
                "predict",
                str(h),
                str(tmp_path / "img.png"),
                "-o",
                str(tmp_path / "out"),
                "--backend",
                "onnxruntime",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1 and err.startswith("fundus-edge predict: error: ") and re.search(why, err)
    )
    assert not list((tmp_path / "out").glob("*_mask.png"))
    assert (
        main(
            [
                "bench",
                "--models",
                str(h),
                "--out",
                str(tmp_path / "bench"),
                "--no-build",
                "--no-progress",
                "--engines",
                "onnxruntime",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("fundus-edge bench: error: ") and re.search(why, err[-1])
    assert not (tmp_path / "bench" / "results.json").exists()


def test_listed_external_data_is_hashed_and_runs(tiny_model, tmp_path):
    h = tmp_path / "m"
    shutil.copytree(tiny_model, h)
    data = _external(h, "weights.data")
    _edit(
        h,
        lambda d: (
            d["formats"]["onnx"].append("weights.data"),
            d["files"].update({"weights.data": sha256(data)}),
        ),
    )
    rgb, _, _ = synthetic_fundus(5)
    ref = Predictor.load(tiny_model, backend="onnxruntime", threads=1).predict(rgb)
    got = Predictor.load(h, backend="onnxruntime", threads=1).predict(rgb)
    np.testing.assert_allclose(got.prob, ref.prob, atol=1e-6)


def test_without_onnx_a_graph_with_external_data_is_refused(tiny_model, tmp_path, monkeypatch):
    h = tmp_path / "m"
    shutil.copytree(tiny_model, h)
    data = _external(h, "weights.data")
    _edit(
        h,
        lambda d: (
            d["formats"]["onnx"].append("weights.data"),
            d["files"].update({"weights.data": sha256(data)}),
        ),
    )
    monkeypatch.setitem(sys.modules, "onnx", None)  # a device without the onnx package
    with pytest.raises(IntegrityError, match="onnx package that reads their names is not installed"):
        Predictor.load(h, backend="onnxruntime")
    assert (
        Predictor.load(tiny_model, backend="onnxruntime", threads=1).format == "onnx"
    )  # no external data: no onnx needed


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink-out", "symlink-in", "params-not-beside"])
def test_hostile_paddleseg_export_is_refused_by_import(case, tiny_model, tmp_path, capsys):
    ex = tmp_path / "export"
    ex.mkdir()
    shutil.copy(tiny_model / "model.onnx", tmp_path / "outside.pdmodel")  # content never read: refused first
    for f in ("model.pdmodel", "model.pdiparams", "other.pdiparams"):
        shutil.copy(tiny_model / "model.onnx", ex / f)
    model, params = {
        "dotdot": ("../outside.pdmodel", "model.pdiparams"),
        "absolute": (str(tmp_path / "outside.pdmodel"), "model.pdiparams"),
        "params-not-beside": ("model.pdmodel", "other.pdiparams"),
    }.get(case, ("model.pdmodel", "model.pdiparams"))
    if case == "symlink-out":
        (ex / "model.pdmodel").unlink()
        (ex / "model.pdmodel").symlink_to(tmp_path / "outside.pdmodel")
    if case == "symlink-in":
        (ex / "model.pdiparams").unlink()
        (ex / "model.pdiparams").symlink_to("other.pdiparams")
    (ex / "deploy.yaml").write_text(
        yaml.safe_dump({"Deploy": {"model": model, "params": params, "transforms": [{"type": "Normalize"}]}})
    )
    why = {
        "dotdot": "names '../outside.pdmodel', which is not a plain file name",
        "absolute": "which is not a plain file name",
        "symlink-out": "model.pdmodel: a symlink",
        "symlink-in": "model.pdiparams: a symlink",
        "params-not-beside": "params other.pdiparams is not model.pdiparams",
    }[case]
    capsys.readouterr()
    assert main(["import-paddleseg", str(ex), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1 and err.startswith("fundus-edge import-paddleseg: error: ") and why in err
    )
    assert not (tmp_path / "out").exists()


def test_rewriting_a_manifest_never_reblesses_a_changed_file(tiny_model, tmp_path):
    from fundus_edge.export.paddleseg import set_threshold

    h = tmp_path / "m"
    shutil.copytree(tiny_model, h)
    before = (h / "manifest.yaml").read_bytes()
    with open(h / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(IntegrityError, match="model.onnx: sha256 does not match .*not re-hashed"):
        set_threshold(h, 0.4, "test")
    assert (h / "manifest.yaml").read_bytes() == before
    # The caller that just wrote the file says so: then it is hashed anew.
    man = read_manifest(h)
    write_manifest(h, man, written=["model.onnx"])
    again = read_manifest(h)
    assert again.files["model.onnx"] == sha256(h / "model.onnx") != man.files["model.onnx"]
    verify_files(h, again, again.formats["onnx"])


def test_writing_a_manifest_refuses_unlisted_external_data(tiny_model, tmp_path):
    h = tmp_path / "m"
    shutil.copytree(tiny_model, h)
    _external(h, "weights.data")
    with pytest.raises(IntegrityError, match="keeps tensors in weights.data, not listed"):
        write_manifest(h, read_manifest(h), written=["model.onnx"])
    man = read_manifest(h)
    write_manifest(
        h,
        replace(man, formats={**man.formats, "onnx": ["model.onnx", "weights.data"]}),
        written=["model.onnx"],
    )
    assert read_manifest(h).files["weights.data"] == sha256(h / "weights.data")


# -- OpenVINO: a precision the device cannot compute is refused -------------------------------------
ov = pytest.importorskip("openvino")


def _caps() -> set[str]:
    from fundus_edge.runtime.engines.openvino import capabilities

    return capabilities(ov.Core(), "CPU")


@pytest.mark.parametrize("precision,lacking", [("bf16", "BF16"), ("fp16", "FP16")])
def test_openvino_refuses_a_precision_the_cpu_lacks(
    precision, lacking, tiny_model, tmp_path, monkeypatch, capsys
):
    import fundus_edge.runtime.engines.openvino as engine

    monkeypatch.setattr(engine, "capabilities", lambda core, device: {"FP32", "INT8"})
    with pytest.raises(
        EngineUnavailable, match=f"precision {precision} cannot be honoured: CPU lacks {lacking}"
    ):
        Predictor.load(tiny_model, backend="openvino", precision=precision)
    assert Predictor.load(tiny_model, backend="openvino", precision="fp32", threads=1).precision == "fp32"
    rgb, _, _ = synthetic_fundus(3)
    import cv2

    cv2.imwrite(str(tmp_path / "img.png"), rgb[..., ::-1])
    capsys.readouterr()
    assert (
        main(
            [
                "predict",
                str(tiny_model),
                str(tmp_path / "img.png"),
                "-o",
                str(tmp_path / "out"),
                "--backend",
                "openvino",
                "--precision",
                precision,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"CPU lacks {lacking}" in err


@pytest.mark.skipif("BF16" not in _caps(), reason="this CPU has no BF16")
def test_openvino_bf16_is_honoured_where_the_cpu_has_it(tiny_model):
    p = Predictor.load(tiny_model, backend="openvino", precision="bf16", threads=1)
    compiled = next(iter(p.engine._compiled.values()))[0]
    assert (
        p.precision == "bf16"
        and str(compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'bfloat16'>"
    )


@pytest.mark.skipif("FP16" in _caps(), reason="this CPU computes FP16")
def test_openvino_refuses_when_the_compiled_precision_differs_from_the_request(tiny_model, monkeypatch):
    """A capability list that claims FP16 on a CPU without it: the compiled model's read-back catches it."""
    import fundus_edge.runtime.engines.openvino as engine

    monkeypatch.setattr(engine, "capabilities", lambda core, device: {"FP32", "FP16", "BF16"})
    with pytest.raises(EngineUnavailable, match="precision fp16 asked, but CPU compiled the model in"):
        Predictor.load(tiny_model, backend="openvino", precision="fp16")
