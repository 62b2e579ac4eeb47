import numpy as np
import pytest
from fundus_edge.runtime.errors import InputError
from fundus_edge.runtime.images import read_binary, read_image
from fundus_edge.train.data import discover, load_sample, split_train_val
from PIL import Image

from .conftest import synthetic_fundus


def test_drive_layout(drive_synth):
    train = discover(drive_synth, "train")
    test = discover(drive_synth, "test")
    assert [s.name for s in train] == [str(n) for n in range(21, 27)]
    assert (
        len(test) == 2 and test[0].label.name == "01_manual1.gif" and test[0].fov.name == "01_test_mask.gif"
    )
    ls = load_sample(train[0])
    assert ls.rgb.shape == (72, 68, 3) and ls.rgb.dtype == np.uint8
    assert ls.label.dtype == bool and 0 < ls.label.mean() < 0.5
    assert ls.fov.dtype == bool and ls.fov.mean() > 0.5


def test_split_is_fixed_and_disjoint(drive_synth):
    s = discover(drive_synth, "train")
    a, b = split_train_val(s, 2, seed=0)
    a2, b2 = split_train_val(s, 2, seed=0)
    assert [x.name for x in b] == [x.name for x in b2] and len(b) == 2 and len(a) == 4
    assert not {x.name for x in a} & {x.name for x in b}
    with pytest.raises(InputError):
        split_train_val(s, 6)


def test_filelist_and_folders(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    lines = []
    for i in range(3):
        rgb, lab, _ = synthetic_fundus(i)
        Image.fromarray(rgb).save(tmp_path / "images" / f"im{i}.png")
        Image.fromarray(lab.astype(np.uint8)).save(tmp_path / "labels" / f"im{i}.png")  # 0/1 labels
        lines.append(f"images/im{i}.png labels/im{i}.png")
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    fl = discover(tmp_path / "train.txt")
    fo = discover(tmp_path)
    assert [s.name for s in fl] == [s.name for s in fo] == ["im0", "im1", "im2"]
    ls = load_sample(fo[1])
    assert ls.label.any() and ls.label.dtype == bool


def test_label_value_forms(tmp_path):
    lab = np.zeros((8, 8), np.uint8)
    lab[2:4] = 1
    for name, arr in (("a.png", lab), ("b.png", lab * 255)):
        Image.fromarray(arr).save(tmp_path / name)
        assert read_binary(tmp_path / name).sum() == 16
    Image.fromarray(lab * 255).convert("P").save(tmp_path / "c.gif")
    assert read_binary(tmp_path / "c.gif").sum() == 16


@pytest.mark.parametrize(
    "case", ["missing", "empty_folder", "unpaired", "truncated", "size", "multivalue", "orphan_label"]
)
def test_bad_input_is_one_clear_error(tmp_path, case):
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rgb, lab, _ = synthetic_fundus(0)
    if case != "empty_folder":
        Image.fromarray(rgb).save(root / "images" / "a.png")
        Image.fromarray(lab.astype(np.uint8) * 255).save(root / "labels" / "a.png")
    target = root
    if case == "missing":
        target = tmp_path / "nope"
    elif case == "unpaired":
        Image.fromarray(rgb).save(root / "images" / "b.png")
    elif case == "orphan_label":
        Image.fromarray(lab.astype(np.uint8)).save(root / "labels" / "z.png")
    elif case == "truncated":
        data = (root / "images" / "a.png").read_bytes()
        (root / "images" / "a.png").write_bytes(data[: len(data) // 3])
    elif case == "size":
        Image.fromarray(lab[:-4].astype(np.uint8) * 255).save(root / "labels" / "a.png")
    elif case == "multivalue":
        Image.fromarray((np.arange(72 * 68) % 3).reshape(72, 68).astype(np.uint8)).save(
            root / "labels" / "a.png"
        )
    with pytest.raises(InputError) as err:
        for s in discover(target):
            load_sample(s)
    msg = str(err.value)
    assert "\n" not in msg
    expected = {
        "missing": "nope",
        "empty_folder": "no images",
        "unpaired": "b.png",
        "truncated": "a.png",
        "size": "a.png",
        "multivalue": "distinct values",
        "orphan_label": "without an image",
    }[case]
    assert expected in msg


def test_unreadable_files(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(InputError, match="empty"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(InputError, match="text.jpg"):
        read_image(tmp_path / "text.jpg")
