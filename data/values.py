"""One helper per small idea that every layer needs: missing values, UTC times,
JSON-safe numbers, chunks, percentages and counted nouns. Each has one meaning, said here, so a
module never needs its own copy with a slightly different one."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any, TypeVar

__all__ = ["as_utc", "chunks", "count_words", "finite", "is_missing", "percent", "plain", "utc_now"]

T = TypeVar("T")


def is_missing(value: Any, *, blank: bool = False) -> bool:
    """Whether a scalar is missing: None, NaN, NaT and ``pandas.NA`` always are;
    a blank string is missing only with ``blank=True`` (a cell read from a file,
    where an empty field means "no value"); array-likes are values."""
    if value is None:
        return True
    if isinstance(value, str):
        return blank and not value.strip()
    try:
        return bool(value != value)
    except (TypeError, ValueError):
        # pandas.NA refuses bool(); array-likes are not scalars (not missing).
        return type(value).__name__ in {"NAType", "NaTType"}


def utc_now() -> datetime:
    """Now, timezone-aware in UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime | date) -> datetime:
    """A time as an aware UTC datetime: a naive one is taken to be UTC already,
    an aware one is converted, and a date is its midnight in UTC."""
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def plain(value: Any) -> Any:
    """A numpy scalar as the matching Python scalar; other values unchanged."""
    if hasattr(value, "item") and not isinstance(value, str | bytes | datetime):
        try:
            return value.item()
        except (TypeError, ValueError):
            return value
    return value


def finite(value: Any) -> Any:
    """``value`` with NaN and infinities (which JSON cannot carry) replaced by
    None, recursively through mappings, sequences and arrays; numpy scalars
    become Python ones."""
    value = plain(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        return finite(value.tolist())
    return value


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``."""
    if size < 1:
        raise ValueError(f"chunk size must be at least 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def percent(value: float | None, *, digits: int = 0, missing: str = "?") -> str:
    """A share (0.25) as text ("25%"), or ``missing`` when there is none."""
    return missing if value is None else f"{value * 100:.{digits}f}%"


def count_words(n: int, word: str) -> str:
    """A count with its noun: ``1 lead``, ``3 leads``."""
    return f"{n} {word}{'' if n == 1 else 's'}"
