"""The events reader's length check: byte lengths first, characters only when needed."""

from __future__ import annotations

import pandas as pd

from data.readers import _EVENT_TEXT, _may_exceed, read_events


def test_a_text_longer_than_its_limit_is_still_rejected_and_multibyte_text_is_counted_in_characters(
    tmp_path,
):
    prop, limit = next(iter(_EVENT_TEXT.items()))
    frame = pd.DataFrame(
        {
            "lead_id": ["L1", "L2", "L3"],
            "timestamp": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03"], utc=True),
            "type": ["page_view"] * 3,
            # L2: over the limit in bytes but not in characters (é is two bytes): kept.
            prop: ["ok", "é" * limit, "x" * (limit + 1)],
        }
    )
    frame.to_parquet(tmp_path / "events.parquet", index=False)
    result = read_events(tmp_path / "events.parquet")
    assert sorted(result.frame["lead_id"]) == ["L1", "L2"]
    [error] = result.rejected
    assert error.column == prop and f"longer than {limit}" in error.message


def test_the_byte_length_shortcut():
    short = pd.Series(["ab", None, "abc"], dtype="str")
    assert not _may_exceed(short, 3)
    assert _may_exceed(short, 2)
    assert _may_exceed(pd.Series(["é"], dtype="str"), 1)  # 2 bytes: characters are counted
    assert _may_exceed(pd.Series([1, 2]), 5)  # not text: the full check runs
