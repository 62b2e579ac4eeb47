from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fundus_edge.cli import main

from .conftest import synthetic_fundus


def test_predict_writes_contract_files(tiny_model, tmp_path, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    for i in range(2):
        Image.fromarray(synthetic_fundus(i, 80, 70)[0]).save(inp / f"img{i}.jpg")
    (inp / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "out"
    rc = main(
        [
            "predict",
            str(tiny_model),
            str(inp),
            "--output",
            str(out),
            "--save-prob",
            "--overlay",
            "--backend",
            "onnxruntime",
            "--no-progress",
        ]
    )
    assert rc == 1  # one broken input -> non-zero at the end, the rest still written
    err = capsys.readouterr().err
    assert "broken.png" in err and "Traceback" not in err
    for i in range(2):
        m = np.array(Image.open(out / f"img{i}_mask.png"))
        p = np.array(Image.open(out / f"img{i}_prob.png"))
        assert m.shape == (80, 70) and m.dtype == np.uint8 and set(np.unique(m)) <= {0, 255}
        assert p.shape == (80, 70) and p.dtype == np.uint8
        assert (out / f"img{i}_overlay.png").is_file()
    # nothing overwritten without --force
    rc = main(["predict", str(tiny_model), str(inp / "img0.jpg"), "--output", str(out), "--no-progress"])
    assert rc == 1 and "--force" in capsys.readouterr().err
    assert (
        main(
            [
                "predict",
                str(tiny_model),
                str(inp / "img0.jpg"),
                "--output",
                str(out),
                "--no-progress",
                "--force",
            ]
        )
        == 0
    )


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path), "--data", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "none" in err
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "not a model folder" in capsys.readouterr().err
    assert (
        main(
            [
                "average",
                str(tmp_path),
                str(tmp_path / "b"),
                "--data",
                str(tmp_path),
                "--out",
                str(tmp_path / "avg"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a fundus-edge checkpoint" in err
    with pytest.raises(SystemExit) as exc:  # argparse's usage error
        main(["train", "--data", str(tmp_path), "--threshold", "trian"])
    assert exc.value.code == 2
    assert "neither a number nor 'train'" in capsys.readouterr().err


def test_evaluate_checkpoint_and_model_agree(tiny_run, tiny_model, drive_synth, capsys):
    import json

    assert (
        main(["evaluate", str(tiny_run / "best"), "--data", str(drive_synth), "--json", "--no-progress"]) == 0
    )
    a = json.loads(capsys.readouterr().out)
    assert (
        main(
            [
                "evaluate",
                str(tiny_model),
                "--data",
                str(drive_synth),
                "--json",
                "--backend",
                "openvino",
                "--no-progress",
            ]
        )
        == 0
    )
    b = json.loads(capsys.readouterr().out)
    assert a["images"] == b["images"] == 2
    assert abs(a["pooled"]["f1"] - b["pooled"]["f1"]) < 1e-3


def test_export_refuses_to_overwrite(tiny_run, tmp_path, capsys):
    out = tmp_path / "m"
    out.mkdir()
    (out / "mine.txt").write_text("user file")
    assert main(["export", str(tiny_run / "best"), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and (out / "mine.txt").exists()


def test_evaluate_scores_predict_outputs(tiny_model, drive_synth, tmp_path, capsys):
    import json

    out = tmp_path / "pred"
    # the data set's own FOV masks, as evaluate uses them (they also set the rescaling factor)
    assert (
        main(
            [
                "predict",
                str(tiny_model),
                str(drive_synth / "test" / "images"),
                "--output",
                str(out),
                "--save-prob",
                "--backend",
                "onnxruntime",
                "--fov",
                str(drive_synth / "test" / "mask"),
                "--no-progress",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["evaluate", str(out), "--data", str(drive_synth), "--json", "--no-progress"]) == 0
    files = json.loads(capsys.readouterr().out)
    assert (
        main(
            [
                "evaluate",
                str(tiny_model),
                "--data",
                str(drive_synth),
                "--json",
                "--backend",
                "onnxruntime",
                "--no-progress",
            ]
        )
        == 0
    )
    direct = json.loads(capsys.readouterr().out)
    assert abs(files["pooled"]["f1"] - direct["pooled"]["f1"]) < 1e-6  # masks carry the model's threshold
    assert abs(files["pooled"]["auc"] - direct["pooled"]["auc"]) < 0.01  # 8-bit probabilities
    (out / "01_test_mask.png").unlink()
    assert main(["evaluate", str(out), "--data", str(drive_synth), "--no-progress"]) == 2
    assert "missing prediction" in capsys.readouterr().err


def test_best_threshold_found_on_training_images_can_be_stored_at_export(
    tiny_run, tiny_model, drive_synth, tmp_path, capsys
):
    """evaluate --best-threshold sweeps the pooled F1; export --threshold stores a chosen one and
    keeps the checkpoint's in the manifest."""
    from fundus_edge.runtime.manifest import read_manifest

    assert (
        main(
            [
                "evaluate",
                str(tiny_model),
                "--data",
                str(drive_synth),
                "--split",
                "train",
                "--best-threshold",
                "--backend",
                "onnxruntime",
                "--no-progress",
            ]
        )
        == 0
    )
    line = [x for x in capsys.readouterr().out.splitlines() if "maximising pooled F1" in x][0]
    best = float(line.split(": ")[1].split()[0])
    assert 0.0 < best < 1.0 and "never ship it" not in line  # the caution is for test splits only
    out = tmp_path / "m"
    assert (
        main(
            [
                "export",
                str(tiny_run / "best"),
                "--out",
                str(out),
                "--formats",
                "onnx",
                "--threshold",
                f"{best:.3f}",
            ]
        )
        == 0
    )
    man = read_manifest(out)
    assert (
        man.threshold == round(best, 3)
        and man.source["threshold_replaced"] == read_manifest(tiny_model).threshold
    )
    # the stored threshold is the one the runtime and evaluate use
    assert main(["evaluate", str(out), "--data", str(drive_synth), "--split", "train", "--no-progress"]) == 0
    assert f"threshold {best:.3f}" in capsys.readouterr().out
    assert main(["export", str(tiny_run / "best"), "--out", str(tmp_path / "bad"), "--threshold", "1.5"]) == 2
    assert "(0, 1)" in capsys.readouterr().err


def test_predict_without_a_model_runs_the_predict_model(tmp_path, tiny_model):
    """No model folder: PREDICT_MODEL of the shipped models, ``default`` in a folder that predates it."""
    from fundus_edge.cli.models import PREDICT_MODEL, default_model_dir

    (tmp_path / "default").symlink_to(tiny_model)
    assert default_model_dir(str(tmp_path)) == tmp_path / "default"
    (tmp_path / PREDICT_MODEL).symlink_to(tiny_model)
    assert default_model_dir(str(tmp_path)) == tmp_path / PREDICT_MODEL
    shipped = Path(__file__).resolve().parents[1] / "models"
    assert (shipped / PREDICT_MODEL / "manifest.yaml").is_file()
