import pytest

from fundus_edge.modelcard import _replace_section, _update_card

CARD = ["# Model card", "", "## Latency (old)", "| a |", "", "## DRIVE test", "F1", "", "Reproduce: `x`", "", "## Experiments", "stale row"]


def test_replace_section_swaps_one_section_and_adds_missing_ones_before_reproduce():
    out = _replace_section(list(CARD), "## Latency", ["## Latency (new)", "| b |", ""])
    assert out[2:5] == ["## Latency (new)", "| b |", ""] and "| a |" not in out and "## DRIVE test" in out
    out = _replace_section(list(CARD), "## Camera perturbations", ["## Camera perturbations", "rows", ""])
    assert out.index("## Camera perturbations") < out.index("Reproduce: `x`") and out.index("## DRIVE test") < out.index("## Camera perturbations")


def test_update_card_rewrites_notes_and_refuses_unknown_sections(tmp_path):
    (tmp_path / "MODEL_CARD.md").write_text("\n".join(CARD) + "\n")
    notes = tmp_path / "notes.md"
    notes.write_text("## Experiments\nnew row\n")
    _update_card(tmp_path, "unused", 1, ["notes"], str(notes))
    text = (tmp_path / "MODEL_CARD.md").read_text()
    assert text.endswith("## Experiments\nnew row\n") and "stale row" not in text and "## Latency (old)" in text
    with pytest.raises(SystemExit, match="unknown section"):
        _update_card(tmp_path, "unused", 1, ["bogus"], "")


def test_card_names_the_architecture_and_schedule():
    from types import SimpleNamespace

    from fundus_edge.modelcard import architecture, schedule

    wnet = {"arch": "wnet", "base": 6, "depth": 2, "act": "leaky", "residual": True, "bridge": True}
    assert architecture(wnet) == ("W-Net (two stacked U-Nets, the second reading the image and the first one's vessel probability; "
                                  "widths 6/12/24, LeakyReLU, residual 1x1 shortcuts, conv bridges on the skips)")
    assert architecture({"arch": "vessel-unet", "base": 8, "depth": 3, "act": "relu"}) == "U-Net (vessel-unet, base 8, depth 3)"
    assert schedule(SimpleNamespace(schedule="cosine-restarts", cycles=4, iters=16100, warmup=100)) == "cosine-restarts (4 cycles of 4000 iterations)"
    assert schedule(SimpleNamespace(schedule="cosine", cycles=1, iters=3000, warmup=50)) == "cosine"
