"""Round the numbers of an API answer for people and logs (``API_DIGITS``, default 4).

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["round_floats"]


def round_floats(value: Any, digits: int) -> Any:
    """A copy of ``value`` (dicts, lists, tuples) with every float rounded to ``digits``."""
    if digits < 0:
        return value
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: round_floats(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [round_floats(v, digits) for v in value]
    return value
