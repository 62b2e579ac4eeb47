import numpy as np
from PIL import Image

from fundus_edge.cli import main
from fundus_edge.runtime.images import read_binary

from .conftest import synthetic_fundus


def test_predict_writes_contract_files(tiny_model, tmp_path, capsys):
    inp = tmp_path / "in"
    inp.mkdir()
    for i in range(2):
        Image.fromarray(synthetic_fundus(i, 80, 70)[0]).save(inp / f"img{i}.jpg")
    (inp / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "out"
    rc = main(["predict", str(tiny_model), str(inp), "--output", str(out), "--save-prob", "--overlay", "--backend", "onnxruntime", "--no-progress"])
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
    assert main(["predict", str(tiny_model), str(inp / "img0.jpg"), "--output", str(out), "--no-progress", "--force"]) == 0


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path), "--data", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "none" in err
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "not a model folder" in capsys.readouterr().err


def test_evaluate_checkpoint_and_model_agree(tiny_run, tiny_model, drive_synth, capsys):
    import json

    assert main(["evaluate", str(tiny_run / "best"), "--data", str(drive_synth), "--json", "--no-progress"]) == 0
    a = json.loads(capsys.readouterr().out)
    assert main(["evaluate", str(tiny_model), "--data", str(drive_synth), "--json", "--backend", "openvino", "--no-progress"]) == 0
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
    assert main(["predict", str(tiny_model), str(drive_synth / "test" / "images"), "--output", str(out), "--save-prob", "--backend", "onnxruntime",
                 "--fov", str(drive_synth / "test" / "mask"), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out), "--data", str(drive_synth), "--json", "--no-progress"]) == 0
    files = json.loads(capsys.readouterr().out)
    assert main(["evaluate", str(tiny_model), "--data", str(drive_synth), "--json", "--backend", "onnxruntime", "--no-progress"]) == 0
    direct = json.loads(capsys.readouterr().out)
    assert abs(files["pooled"]["f1"] - direct["pooled"]["f1"]) < 1e-6  # masks carry the model's threshold
    assert abs(files["pooled"]["auc"] - direct["pooled"]["auc"]) < 0.01  # 8-bit probabilities
    (out / "01_test_mask.png").unlink()
    assert main(["evaluate", str(out), "--data", str(drive_synth), "--no-progress"]) == 2
    assert "missing prediction" in capsys.readouterr().err
