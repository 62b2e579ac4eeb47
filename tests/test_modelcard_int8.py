"""The INT8-build card writer (``python -m fundus_edge.modelcard --model models/X-int8-litert --int8-build``,
issue #40): every figure from the INT8 manifest, the float model's manifest and card, the per-image validation
statistics where kept, and the ledger; an existing card is replaced only with --force."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from fundus_edge.runtime.errors import InputError

from fundus_edge.modelcard import int8_build
from fundus_edge.modelcard.int8_build import int8_build_card, write_int8_card
from fundus_edge.modelcard.intended_use import card_f1_text
from fundus_edge.modelcard.write import main
from tests.test_intervals_everywhere import offenders

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
LITERT = ("s2d-fast", "s2d-wnet", "wnet", "default")
LEDGER_HEAD = (
    "date,lineage,scored,weights_sha256,run,command,data,f1,auc,why,rule_before,source,note,search\n"
)


def _copy(tmp_path: Path, name: str, f1: float = 0.81234) -> Path:
    """models/NAME and models/NAME-int8-litert copied into tmp_path (manifests, card, the INT8 file), the
    INT8 manifest's validated F1 set to ``f1`` so that the card is seen to read it from there."""
    models = tmp_path / "models"
    src = models / name
    src.mkdir(parents=True)
    for f in ("manifest.yaml", "MODEL_CARD.md"):
        shutil.copy(MODELS / name / f, src / f)
    q = shutil.copytree(MODELS / f"{name}-int8-litert", models / f"{name}-int8-litert")
    (q / "MODEL_CARD.md").unlink(missing_ok=True)
    man = yaml.safe_load((q / "manifest.yaml").read_text())
    man["validated"]["litert"]["int8"]["f1"] = f1
    (q / "manifest.yaml").write_text(yaml.safe_dump(man, sort_keys=False))
    return q


@pytest.fixture
def ledger(tmp_path):
    path = tmp_path / "test-reads.csv"
    path.write_text(LEDGER_HEAD)
    return path


def test_card_reads_every_figure_from_the_manifests(tmp_path, ledger, monkeypatch):
    monkeypatch.setattr(int8_build, "VALIDATION_STATS", tmp_path / "none")
    q = _copy(tmp_path, "wnet")
    man = yaml.safe_load((q / "manifest.yaml").read_text())
    v = man["validated"]["litert"]["int8"]
    text = "\n".join(int8_build_card(q, ledger))
    # the validation figures and the difference are the manifest's (the F1 was changed above)
    assert f"through LiteRT: 0.8123 (int8) against {v['f1_reference']:.4f}" in text
    assert f"Δ {0.81234 - v['f1_reference']:+.4f}, within ±{v['tolerance']}: validated" in text
    assert "no interval: validate keeps no per-image counts" in text
    # the command carries the options the quantization record names; calibration and threshold from it
    assert (
        "python -m fundus_edge.export.litert models/wnet --precisions int8 --float-layers first-last "
        "--float-ops CONCATENATION,SOFTMAX --data DRIVE --int8-out models/wnet-int8-litert" in text
    )
    assert f"- Calibration: {man['quantization']['calibration_images']} DRIVE training images" in text
    assert f"threshold {man['threshold']:.3f}" in text
    assert f"manifest sha256 `{man['source']['float_model']['manifest_sha256']}`." in text
    # the float model's test figure from its card, with its interval; no test read for the INT8 files
    f1 = card_f1_text((MODELS / "wnet" / "MODEL_CARD.md").read_text().splitlines())
    assert "95 % CI" in f1 and f"The float model's DRIVE test F1 is {f1} (through ONNX Runtime" in text
    assert "no DRIVE test figure of their own" in text
    assert "`fundus-edge predict models/wnet-int8-litert IMAGES -o OUT --backend litert`" in text
    assert "## Intended use and limits" in text and "its source `wnet`" in text
    assert not offenders(text)


def test_a_default_conversion_keeps_nothing_in_float_and_the_default_is_the_bench_int8_litert(
    tmp_path, ledger
):
    q = _copy(tmp_path, "default")
    text = "\n".join(int8_build_card(q, ledger))
    assert "--precisions int8 --data DRIVE --int8-out models/default-int8-litert`" in text
    assert "- Kept in float: no op of the network" in text
    assert "measures it as `int8-litert`" in text
    # default was trained on 16 of the 20 training images: those calibrate
    assert "16 DRIVE training images (the 16 training images `default` was trained on" in text


def test_a_float_manifest_changed_since_the_conversion_is_named(tmp_path, ledger):
    q = _copy(tmp_path, "s2d-fast")
    flt = tmp_path / "models" / "s2d-fast" / "manifest.yaml"
    flt.write_text(flt.read_text() + "\n# changed\n")
    assert "its manifest has changed since" in "\n".join(int8_build_card(q, ledger))


def test_kept_per_image_counts_give_the_validation_its_intervals(tmp_path, ledger, monkeypatch):
    stats = tmp_path / "validation"
    stats.mkdir()
    monkeypatch.setattr(int8_build, "VALIDATION_STATS", stats)
    rng = np.random.default_rng(0)
    names = [f"{k:02d}_training" for k in range(21, 41)]
    tp = rng.integers(20000, 30000, 20)
    fp, fn = rng.integers(2000, 6000, 20), rng.integers(2000, 6000, 20)
    for name, shift in (("s2d-fast-litert", 0), ("s2d-fast-int8-litert", 50)):
        counts = np.stack([tp - shift, fp + shift, fn + shift, np.full(20, 200000)], 1)
        t, f_p, f_n = counts[:, 0].sum(), counts[:, 1].sum(), counts[:, 2].sum()
        rec = {
            "pooled": {"f1": float(2 * t / (2 * t + f_p + f_n))},
            "image_stats": {"names": names, "counts": counts.tolist()},
        }
        (stats / f"{name}.json").write_text(json.dumps(rec))
    q = _copy(tmp_path, "s2d-fast")
    text = "\n".join(int8_build_card(q, ledger))
    line = next(x for x in text.splitlines() if "from per-image counts recomputed at the same threshold" in x)
    assert "(95 % CI " in line and "; int8) against " in line and "(paired 95 % CI " in line
    assert "no interval" not in line
    assert not offenders(text)


def test_cli_refuses_an_existing_card_without_force_and_a_folder_that_is_no_int8_build(tmp_path, capsys):
    q = _copy(tmp_path, "s2d-wnet")
    assert main(["--model", str(q), "--int8-build"]) == 0
    first = (q / "MODEL_CARD.md").read_text()
    (q / "MODEL_CARD.md").write_text("mine\n")
    with pytest.raises(SystemExit, match="MODEL_CARD.md: exists; pass --force"):
        main(["--model", str(q), "--int8-build"])
    assert (q / "MODEL_CARD.md").read_text() == "mine\n"
    assert main(["--model", str(q), "--int8-build", "--force"]) == 0
    assert (q / "MODEL_CARD.md").read_text() == first
    with pytest.raises(SystemExit, match="s2d-wnet: its manifest records no INT8 build"):
        main(["--model", str(tmp_path / "models" / "s2d-wnet"), "--int8-build", "--force"])
    with pytest.raises(InputError, match="not a model folder"):
        write_int8_card(tmp_path / "nothing")


@pytest.mark.parametrize("name", LITERT)
def test_shipped_litert_cards_are_what_the_writer_writes_from_the_files(name):
    """The shipped cards' made-and-validated sections match the writer's output from the manifests now (the
    test-read and intended-use sections follow the ledger and other cards, rewritten by the same command)."""
    shipped = (MODELS / f"{name}-int8-litert" / "MODEL_CARD.md").read_text()
    now = "\n".join(int8_build_card(MODELS / f"{name}-int8-litert"))

    def part(text: str) -> str:
        return text[text.index("## How it was made") : text.index("## Test reads")]

    assert part(shipped) == part(now)
