"""The shared value helpers keep one meaning each."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from data.values import as_utc, chunks, finite, is_missing, percent


@pytest.mark.parametrize("value", [None, float("nan"), np.float32("nan"), pd.NA, pd.NaT])
def test_missing_scalars(value):
    assert is_missing(value)
    assert is_missing(value, blank=True)


@pytest.mark.parametrize("value", [0, 0.0, "x", "0", False, np.array([np.nan, 1.0])])
def test_values_are_not_missing(value):
    assert not is_missing(value)


def test_blank_text_is_missing_only_when_asked():
    assert not is_missing("  ")
    assert is_missing("  ", blank=True)
    assert is_missing("", blank=True)


def test_as_utc_naive_aware_and_date():
    assert as_utc(datetime(2026, 1, 2, 3)) == datetime(2026, 1, 2, 3, tzinfo=UTC)
    plus2 = timezone(timedelta(hours=2))
    converted = as_utc(datetime(2026, 1, 2, 3, tzinfo=plus2))
    assert converted.tzinfo is UTC and converted.hour == 1
    assert as_utc(date(2026, 1, 2)) == datetime(2026, 1, 2, tzinfo=UTC)


def test_finite_recurses_and_plains():
    out = finite(
        {"a": [1.0, math.inf, np.float64("nan")], 2: np.int64(3), "b": np.array([1.5, 2.5])}
    )
    assert out == {"a": [1.0, None, None], "2": 3, "b": [1.5, 2.5]}
    assert type(out["2"]) is int


def test_chunks_and_bad_size():
    assert [list(c) for c in chunks([1, 2, 3, 4, 5], 2)] == [[1, 2], [3, 4], [5]]
    with pytest.raises(ValueError, match="at least 1"):
        list(chunks([1], 0))


def test_percent():
    assert percent(0.254) == "25%"
    assert percent(0.2546, digits=1) == "25.5%"
    assert percent(None) == "?"
    assert percent(None, missing="—") == "—"
