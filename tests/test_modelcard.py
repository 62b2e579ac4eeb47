import re
from pathlib import Path

import numpy as np
import pytest

from fundus_edge.modelcard import replace_section, update_card

CARD = [
    "# Model card",
    "",
    "## Latency (old)",
    "| a |",
    "",
    "## DRIVE test",
    "F1",
    "",
    "Reproduce: `x`",
    "",
    "## Experiments",
    "stale row",
]


def test_replace_section_swaps_one_section_and_adds_missing_ones_before_reproduce():
    out = replace_section(list(CARD), "## Latency", ["## Latency (new)", "| b |", ""])
    assert out[2:5] == ["## Latency (new)", "| b |", ""] and "| a |" not in out and "## DRIVE test" in out
    out = replace_section(list(CARD), "## Camera perturbations", ["## Camera perturbations", "rows", ""])
    assert out.index("## Camera perturbations") < out.index("Reproduce: `x`") and out.index(
        "## DRIVE test"
    ) < out.index("## Camera perturbations")


def test_update_card_rewrites_notes_and_refuses_unknown_sections(tmp_path):
    (tmp_path / "MODEL_CARD.md").write_text("\n".join(CARD) + "\n")
    notes = tmp_path / "docs" / "experiments-x.md"
    notes.parent.mkdir()
    notes.write_text("## Diary of x\nnew row\n### 2026-12-04 09:40: a refit (rules first)\nmore\n")
    update_card(tmp_path, "unused", 1, ["notes"], str(notes))
    text = (tmp_path / "MODEL_CARD.md").read_text()
    # the card links to the diary and its headings instead of copying it
    assert "stale row" not in text and "new row" not in text and "## Latency (old)" in text
    assert text.endswith(
        "- [Diary of x](docs/experiments-x.md#diary-of-x)\n"
        "  - [2026-12-04 09:40: a refit (rules first)]"
        "(docs/experiments-x.md#2026-12-04-0940-a-refit-rules-first)\n"
    )
    with pytest.raises(SystemExit, match="unknown section"):
        update_card(tmp_path, "unused", 1, ["bogus"], "")


def test_card_names_the_architecture_and_schedule():
    from types import SimpleNamespace

    from fundus_edge.modelcard import architecture, schedule

    wnet = {"arch": "wnet", "base": 6, "depth": 2, "act": "leaky", "residual": True, "bridge": True}
    assert architecture(wnet) == (
        "W-Net (two stacked U-Nets, the second reading the image and the first one's vessel probability; "
        "widths 6/12/24, LeakyReLU, residual 1x1 shortcuts, conv bridges on the skips)"
    )
    assert (
        architecture({"arch": "vessel-unet", "base": 8, "depth": 3, "act": "relu"})
        == "U-Net (vessel-unet, base 8, depth 3)"
    )
    assert architecture({"arch": "wnet", "base": 16, "depth": 2, "act": "relu", "s2d": 2}) == (
        "W-Net (two stacked U-Nets, the second reading the image and the first one's vessel probability; "
        "widths 16/32/64, space-to-depth by 2 in, depth-to-space out (no full-resolution layer))"
    )
    assert (
        schedule(SimpleNamespace(schedule="cosine-restarts", cycles=4, iters=16100, warmup=100))
        == "cosine-restarts (4 cycles of 4000 iterations)"
    )
    assert schedule(SimpleNamespace(schedule="cosine", cycles=1, iters=3000, warmup=50)) == "cosine"


def _row(variant, backend, precision, p50, f1, requested=None, status="ok"):
    return {
        "variant": variant,
        "backend": backend,
        "precision": precision,
        "precision_requested": requested,
        "p50_ms": p50,
        "f1": f1,
        "status": status,
    }


def test_bench_section_takes_the_models_own_rows_and_its_int8_variants_against_its_float_rows(tmp_path):
    import json

    from fundus_edge.modelcard import bench_section, family_rows

    res = {
        "meta": {
            "date": "2026-12-03 16:46",
            "threads": 2,
            "machine": {"cpu": "Xeon", "isa_flags": ["avx2", "amx_int8"]},
        },
        "results": [
            _row("small", "openvino", "fp32", 42.3, 0.8160),
            _row("wnet-small", "openvino", "fp32", 63.7, 0.8209),
            _row("wnet-small", "openvino", "bf16", 37.0, 0.8211, "bf16"),
            _row("wnet-small-int8-nncf", "openvino", "int8+bf16", 42.4, 0.8173),
            _row("wnet-small-int8-ort", "onnxruntime", None, None, None, status="run_failed"),
            _row("fp32", "openvino", "fp32", 91.3, 0.8223),
            _row("int8-nncf", "openvino", "int8+fp32", 21.2, 0.8206),
        ],
    }
    assert [r["variant"] for r in family_rows(res, "wnet-small")] == [
        "wnet-small",
        "wnet-small",
        "wnet-small-int8-nncf",
        "wnet-small-int8-ort",
    ]
    assert [r["variant"] for r in family_rows(res, "default")] == [
        "fp32",
        "int8-nncf",
    ]  # the bench names the default's variants bare
    path = tmp_path / "results.json"
    path.write_text(json.dumps(res))
    text = "\n".join(bench_section(path, "wnet-small"))
    assert (
        "| wnet-small-int8-nncf | openvino | int8+bf16 | 42.4 | 0.8173 | -0.0036 | ok |" in text
    )  # against the FP32 row, not the bf16 one
    assert "| wnet-small-int8-ort | onnxruntime | n/a | n/a | n/a | n/a | run_failed |" in text
    assert (
        "2026-12-03 16:46" in text
        and "amx_int8" in text
        and "small |" not in text.replace("wnet-small |", "")
    )
    with pytest.raises(SystemExit, match="no rows of model 'tiny'"):
        bench_section(path, "tiny")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SystemExit, match="bad.json: not a bench results.json"):
        bench_section(tmp_path / "bad.json", "wnet-small")


def test_refit_card_says_where_its_threshold_came_from(tmp_path, tiny_config):
    """A refit's card checks its threshold against the training images instead of assuming the
    validation run's: --threshold train is recognised, a fixed threshold is not called F1-optimal."""
    from fundus_edge.export.exporter import export_checkpoint
    from fundus_edge.train.trainer import Trainer

    from fundus_edge.modelcard import main

    texts = {}
    for thr in ("train", 0.37):
        cfg = tiny_config.with_overrides(data={"val_count": 0}, optim={"iters": 6, "threshold": thr})
        run, model = tmp_path / f"run-{thr}", tmp_path / f"model-{thr}"
        Trainer(cfg, run, device="cpu", progress=False).fit()
        export_checkpoint(run / "best", model, formats=("onnx",))
        assert main(["--run", str(run), "--model", str(model), "--data", cfg.data.root]) == 0
        texts[thr] = (model / "MODEL_CARD.md").read_text()
    assert (
        "F1-optimal threshold on the" in texts["train"]
        and "the threshold on all training images" in texts["train"]
    )
    # The card's own test read is a report: listed in the ledger, not counted.
    from fundus_edge.measure.ledger import count_lineage, ledger_path, read_ledger

    c = count_lineage(
        read_ledger(ledger_path()), "model-train"
    )  # a card's lineage is its model folder's name
    assert (
        (c.reads, c.reports) == (0, 1)
        and "DRIVE test reads: 0" in texts["train"]
        and "used once" not in texts["train"]
    )
    assert "## Provenance" in texts["train"] and "model.pdparams` sha256" in texts["train"]
    assert "taken from the validation run" in texts[0.37] and "F1-optimal threshold on the" not in texts[0.37]


def test_update_reads_counts_the_ledger_and_drops_the_used_once_sentence(tmp_path, monkeypatch):
    from fundus_edge.measure.ledger import TestRead, append_read, ledger_path

    card = [
        "# Model card",
        "",
        "## Training",
        "- Data: DRIVE training images only; the 20 test images were used once, for the figures below.",
        "",
        "## DRIVE test (20 images)",
        "F1",
        "",
        "Reproduce: `x`",
    ]
    model = tmp_path / "m"
    model.mkdir()
    (model / "MODEL_CARD.md").write_text("\n".join(card) + "\n")
    for why, f1, date in (
        ("candidate", "0.8300", "2026-12-01 00:00"),
        ("gate", "0.8100", "2026-12-02 00:00"),
        ("shipped", "0.8200", "2026-12-03 00:00"),
        ("report", "0.8200", "2026-12-04 00:00"),
    ):
        append_read(
            ledger_path(), TestRead(date, "m", "x", "", "", "cmd", "DRIVE test", f1, "", why, "yes", "src")
        )
    update_card(model, "unused", 1, ["reads"], "")
    text = (model / "MODEL_CARD.md").read_text()
    assert "used once" not in text and "how often they were read is under Test reads" in text
    assert "\nDRIVE test reads: 3\n" in text and text.index("## Test reads") < text.index("## DRIVE test")
    assert (
        "(2 candidate scores, 1 gate check before shipping); "
        "re-scores of models already fixed (bench runs) are listed there and not counted" in text
    )
    assert (
        "the shipped figure (F1 0.8200, no interval: per-image statistics not kept) is the second best of "
        "the 2 "
        "candidate scores" in text
    )
    update_card(model, "unused", 1, ["reads"], "")  # idempotent: one section
    assert (model / "MODEL_CARD.md").read_text() == text


def test_update_intervals_adds_the_bootstrap_interval_from_the_per_image_statistics(
    tiny_model, drive_synth, tmp_path
):
    import json

    from fundus_edge.evaluate import evaluate_source
    from fundus_edge.modelcard import main as card_main
    from fundus_edge.readme_tables import card_test_metrics

    rep = evaluate_source(tiny_model, drive_synth, progress=False)
    stats = tmp_path / "tiny.json"
    stats.write_text(json.dumps(rep.to_dict(with_stats=True)))
    m = rep.pooled
    model = tmp_path / "m"
    model.mkdir()
    head = (
        f"F1 **{m.f1:.4f}**, AUC **{m.auc:.4f}**, IoU {m.iou:.4f}, accuracy {m.acc:.4f}, Se {m.se:.4f}, "
        f"Sp {m.sp:.4f}, kappa {m.kappa:.4f}."
    )
    card = ["# Model card", "", "## DRIVE test (2 images)", head, "", "| image | F1 |", "", "Reproduce: `x`"]
    (model / "MODEL_CARD.md").write_text("\n".join(card) + "\n")
    for _ in range(2):  # a second update replaces its own lines
        assert card_main(["--model", str(model), "--update", "intervals", "--stats", str(stats)]) == 0
    text = (model / "MODEL_CARD.md").read_text()
    iv = rep.intervals["f1"]
    assert f"F1 **{m.f1:.4f}** (95 % CI {iv.low:.3f}-{iv.high:.3f})" in text
    assert text.count("Intervals: 95 % bootstrap over the 2 images") == 1 and "| image | F1 |" in text
    got = card_test_metrics(model / "MODEL_CARD.md")
    assert got["f1"] == float(f"{m.f1:.4f}") and got["f1_ci"] == (f"{iv.low:.3f}", f"{iv.high:.3f}")
    # statistics of another read are refused
    (model / "MODEL_CARD.md").write_text(
        "\n".join(card).replace(f"F1 **{m.f1:.4f}**", "F1 **0.1234**") + "\n"
    )
    with pytest.raises(SystemExit, match="not the card's"):
        card_main(["--model", str(model), "--update", "intervals", "--stats", str(stats)])


def test_shipped_cards_state_every_accuracy_figure_with_its_interval():
    from fundus_edge.measure.intervals import load_stats, record_intervals

    from fundus_edge.readme_tables import card_test_metrics, table_folders

    root = Path(__file__).resolve().parents[1]
    for name in table_folders(root / "models")[0]:
        got = card_test_metrics(root / "models" / name / "MODEL_CARD.md")
        st, rec = load_stats(root / "docs" / "test-stats" / f"{name}.json")
        iv = record_intervals(rec, st)
        for k in ("f1", "auc", "iou"):
            assert got[f"{k}_ci"] == (f"{iv[k].low:.3f}", f"{iv[k].high:.3f}"), (name, k)
            assert f"{rec['pooled'][k]:.4f}" == f"{got[k]:.4f}", (name, k)


def _counts(n=12, seed=0, loss=0):
    """n images' (TP, FP, FN, TN), varying in difficulty; ``loss`` vessel pixels moved from TP to FN each."""
    rng = np.random.default_rng(seed)
    return [[int(tp) - loss, 120, 120 + loss, 6000] for tp in rng.integers(300, 700, n)]


def test_bench_section_gives_intervals_from_per_image_counts_and_says_when_a_record_has_none(tmp_path):
    import json

    from fundus_edge.bench.compare import f1_diff
    from fundus_edge.measure.intervals import ImageStats, bootstrap, point

    from fundus_edge.modelcard import NO_BENCH_INTERVAL, bench_section

    base, lossy = _counts(), _counts(loss=40)
    f1 = point(ImageStats(tuple("abcdefghijkl"), np.asarray(base)))["f1"]
    f1q = point(ImageStats(tuple("abcdefghijkl"), np.asarray(lossy)))["f1"]
    rows = [
        {**_row("m", "openvino", "fp32", 10.0, f1), "per_image_counts": base},
        {**_row("m-int8-nncf", "openvino", "int8+fp32", 5.0, f1q), "per_image_counts": lossy},
    ]
    meta = {"date": "2026-12-08 10:00", "threads": 2, "machine": {"cpu": "EPYC", "isa_flags": ["avx2"]}}
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"meta": meta, "results": rows}))
    text = "\n".join(bench_section(path, "m"))
    iv = bootstrap(ImageStats(tuple("abcdefghijkl"), np.asarray(base)), {"f1": f1})["f1"]
    d = f1_diff(base, lossy)
    assert f"| m | openvino | fp32 | 10.0 | {f1:.4f} ({iv.low:.3f}-{iv.high:.3f}) | reference | ok |" in text
    assert (
        f"| m-int8-nncf | openvino | int8+fp32 | 5.0 | {f1q:.4f} (" in text
        and f"| {f1q - f1:+.4f} ({d.low:+.4f} to {d.high:+.4f}) | ok |" in text
    )
    assert d.high < 0 and "ΔF1 (paired 95 % CI)" in text and NO_BENCH_INTERVAL not in text
    # today's records: the figures alone, and the section says why
    for r in rows:
        del r["per_image_counts"]
    path.write_text(json.dumps({"meta": meta, "results": rows}))
    text = "\n".join(bench_section(path, "m"))
    assert NO_BENCH_INTERVAL in text and "| F1 | ΔF1 |" in text
    assert f"| {f1q:.4f} | {f1q - f1:+.4f} | ok |" in text


def _perturbed_file(tmp_path):
    """A perturbed evaluation of synthetic images as `evaluate --perturb --per-image-out` writes it."""
    import json
    from types import SimpleNamespace

    from fundus_edge.measure.robustness import score_perturbations

    from fundus_edge.evaluate import PerturbReport

    rng = np.random.default_rng(3)
    samples = []
    for i in range(8):
        label = rng.random((48, 48)) < 0.2
        green = np.clip(np.where(label, 170, 90) + rng.normal(0, 30 + 8 * i, (48, 48)), 0, 255)
        rgb = np.stack([np.full((48, 48), 120.0), green, np.full((48, 48), 60.0)], -1).astype(np.uint8)
        samples.append(SimpleNamespace(rgb=rgb, label=label, fov=np.ones((48, 48), bool), name=f"{i:02d}"))
    rows = score_perturbations(lambda rgb, fov: rgb[..., 1] / 255.0, samples, ["jpeg30", "scale0.5"], 0.5)
    rep = PerturbReport("models/m", "DRIVE", "test", 8, 0.5, "onnxruntime (cpu, fp32)", True, tuple(rows))
    path = tmp_path / "m-perturb.json"
    path.write_text(json.dumps(rep.to_dict(with_stats=True)))
    return path, rows


def test_update_perturbations_writes_the_table_with_intervals_from_the_per_image_file(tmp_path):
    import json

    from fundus_edge.modelcard import main as card_main

    path, rows = _perturbed_file(tmp_path)
    model = tmp_path / "m"
    model.mkdir()
    card = ["# Model card", "", "## Camera perturbations (old)", "| clean | 0.8 |", "", "Reproduce: `x`"]
    (model / "MODEL_CARD.md").write_text("\n".join(card) + "\n")
    for _ in range(2):  # idempotent
        assert card_main(["--model", str(model), "--update", "perturbations", "--stats", str(path)]) == 0
    text = (model / "MODEL_CARD.md").read_text()
    assert "| clean | 0.8 |" not in text and text.count("## Camera perturbations") == 1
    assert "| perturbation | F1 (95 % CI) | ΔF1 (paired 95 % CI) | AUC (95 % CI) |" in text
    clean, jpeg = rows[0], rows[1]
    f1, d, auc = jpeg.intervals["f1"], jpeg.drop["f1"].diff, jpeg.intervals["auc"]
    assert (
        f"| jpeg30 | {f1.value:.4f} ({f1.low:.3f}-{f1.high:.3f}) | {d.value:+.4f} ({d.low:+.4f} to "
        f"{d.high:+.4f}) | {auc.value:.4f} ({auc.low:.3f}-{auc.high:.3f}) |" in text
    )
    assert f"| clean | {clean.metrics.f1:.4f} (" in text and "| reference |" in text
    assert "OpenVINO" in text and "not re-measured" in text  # the dropped column is explained
    # counts that do not give the row's F1 are another read's: refused in one line
    rec = json.loads(path.read_text())
    rec["rows"][1]["image_stats"]["counts"][0][0] += 50
    path.write_text(json.dumps(rec))
    with pytest.raises(SystemExit, match="jpeg30's counts do not give its F1"):
        card_main(["--model", str(model), "--update", "perturbations", "--stats", str(path)])
    del rec["rows"][0]["image_stats"]
    path.write_text(json.dumps(rec))
    with pytest.raises(SystemExit, match="not an `evaluate --perturb --per-image-out` file"):
        card_main(["--model", str(model), "--update", "perturbations", "--stats", str(path)])


def _tables(lines: list[str]):
    """(section heading, header cells, body rows' cells) of each Markdown table of a card."""
    section = ""
    for i, x in enumerate(lines):
        if x.startswith("## "):
            section = x
        if x.startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("| --- |"):
            body = []
            for y in lines[i + 2 :]:
                if not y.startswith("|"):
                    break
                body.append([c.strip() for c in y.strip("|").split("|")])
            yield section, [c.strip() for c in x.strip("|").split("|")], body


def test_every_accuracy_figure_in_the_shipped_cards_tables_carries_an_interval():
    """F1 / ΔF1 / AUC / IoU cells of the shipped cards' tables are ``figure (low-high)``; a bench table from a
    record without per-image counts must say so. Not checked: the per-image table (one image has no interval
    over images) and a training log's validation curve (written while training, no per-image figures)."""
    from fundus_edge.modelcard import NO_BENCH_INTERVAL

    root = Path(__file__).resolve().parents[1]
    with_ci = re.compile(r"[+-]?\d\.\d{4} \([+-]?\d\.\d{3,4}(-| to [+-])\d\.\d{3,4}\)")
    checked = 0
    for card in sorted((root / "models").glob("*/MODEL_CARD.md")):
        lines = card.read_text().splitlines()
        for section, head, body in _tables(lines):
            if head[0] in ("image", "iteration"):
                continue
            cols = [i for i, h in enumerate(head) if re.search(r"(^|\W)(ΔF1|F1|AUC|IoU)(\W|$)", h)]
            if section.startswith("## Every engine and INT8") and not all("95 % CI" in head[i] for i in cols):
                sec = "\n".join(lines[lines.index(section) :])
                assert NO_BENCH_INTERVAL in sec.split("\n## ", 1)[0], (card, section)
                continue
            for row in body:
                for i in cols:
                    assert row[i] in ("n/a", "reference") or with_ci.fullmatch(row[i]), (card, head[i], row)
                    checked += 1
    assert checked > 100  # the perturbation tables of seven cards at least


def test_update_perturb_measures_keeps_the_counts_and_refuses_to_overwrite_them(
    tiny_model, drive_synth, tmp_path, monkeypatch
):
    import fundus_edge.measure.camera as camera

    import fundus_edge.modelcard as mc

    monkeypatch.setattr(camera, "PERTURBATIONS", ("jpeg30", "grey"))
    monkeypatch.setattr(mc.perturbations, "PERTURB_DIR", tmp_path / "perturbations")
    model = tmp_path / "tiny"
    model.mkdir()
    for f in tiny_model.iterdir():
        (model / f.name).write_bytes(f.read_bytes())
    (model / "MODEL_CARD.md").write_text("# Model card\n\nReproduce: `x`\n")
    assert mc.update_card(model, str(drive_synth), 1, ["perturb"], "") == 0
    text = (model / "MODEL_CARD.md").read_text()
    kept = tmp_path / "perturbations" / "tiny.json"
    assert kept.is_file() and f"Per-image counts: `{kept}`" in text
    assert re.search(
        r"\| grey \| 0\.\d{4} \(0\.\d{3}-[01]\.\d{3}\) \| [+-]0\.\d{4} \([+-]0\.\d{4} to [+-]", text
    )
    with pytest.raises(SystemExit, match="exists \\(pass --force"):
        mc.update_card(model, str(drive_synth), 1, ["perturb"], "")
    assert mc.update_card(model, str(drive_synth), 1, ["perturbations"], "") == 0  # from the kept counts
    assert (model / "MODEL_CARD.md").read_text() == text
