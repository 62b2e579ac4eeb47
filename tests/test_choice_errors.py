"""An unknown choice is a one-line error naming the nearest choices and where to list them all, never the
whole list (runtime.errors.nearest): upsampling, data layout, a ledger's why (issue #41)."""

from __future__ import annotations

import pytest
from fundus_edge.measure import ledger
from fundus_edge.measure.ledger import COLUMNS, WHY, append_read, read_ledger
from fundus_edge.runtime.errors import InputError
from fundus_edge.runtime.predictor import ScaleOptions
from fundus_edge.runtime.scale import UPSAMPLERS
from fundus_edge.train.data import LAYOUTS, discover


def _named(message: str, choices) -> list[str]:
    return [c for c in choices if f" {c}," in message or f" {c};" in message]


def test_a_mistyped_upsampler_names_the_nearest_and_where_the_list_is():
    with pytest.raises(InputError) as e:
        ScaleOptions(upsample="gided")
    msg = str(e.value)
    assert msg.startswith("unknown upsampling 'gided'; nearest: guided")
    assert msg.endswith("list them all with fundus_edge.runtime.scale.UPSAMPLERS") and "\n" not in msg
    assert len(_named(msg, UPSAMPLERS)) == 3 < len(UPSAMPLERS)


def test_a_mistyped_layout_names_the_nearest(tmp_path):
    with pytest.raises(InputError) as e:
        discover(tmp_path, layout="stair")
    msg = str(e.value)
    assert msg.startswith("unknown layout 'stair'; nearest: stare")
    assert len(_named(msg, LAYOUTS)) == 3 < len(LAYOUTS)


def test_a_ledger_with_an_unknown_why_names_the_file_and_the_nearest(tmp_path):
    bad = tmp_path / "reads.csv"
    row = dict.fromkeys(COLUMNS, "x") | {"why": "gates"}
    bad.write_text(",".join(COLUMNS) + "\n" + ",".join(row[c] for c in COLUMNS) + "\n")
    with pytest.raises(InputError, match=r"reads.csv: unknown why 'gates'; nearest: gate, "):
        read_ledger(bad)
    with pytest.raises(InputError, match=r"^unknown why 'shiped'; nearest: shipped, .*measure.ledger.WHY$"):
        append_read(tmp_path / "new.csv", ledger.TestRead(**(dict.fromkeys(COLUMNS, "") | {"why": "shiped"})))
    assert not (tmp_path / "new.csv").exists() and len(WHY) == 4
