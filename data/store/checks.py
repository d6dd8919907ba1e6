"""Checks of the values a caller hands the store: text, numbers, timestamps, choices, JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, Final

from data.schema import to_utc
from data.text import check_text
from data.values import finite, is_missing, plain


def _opt_str(value: Any, name: str, max_len: int | None = None) -> str | None:
    if is_missing(value):
        return None
    value = plain(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, str | int | float | bool):
        raise ValueError(f"{name}: expected text, got {type(value).__name__}")
    text = check_text(str(value), name).strip()
    if max_len is not None and len(text) > max_len:
        raise ValueError(f"{name}: longer than {max_len} characters")
    return text or None


def _req_str(value: Any, name: str, max_len: int) -> str:
    text = _opt_str(value, name, max_len)
    if text is None:
        raise ValueError(f"{name}: must not be empty")
    return text


def _opt_int(value: Any, name: str) -> int | None:
    if is_missing(value):
        return None
    value = plain(value)
    if isinstance(value, bool):
        raise ValueError(f"{name}: expected a whole number, got {value!r}")
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{name}: cannot read {value!r} as a whole number") from None
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{name}: expected a whole number, got {value!r}")
        value = int(value)
    if not isinstance(value, int):
        raise ValueError(f"{name}: expected a whole number, got {type(value).__name__}")
    return value


def _opt_float(value: Any, name: str) -> float | None:
    if is_missing(value):
        return None
    value = plain(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    value = float(value)
    return value if math.isfinite(value) else None


def _opt_ts(value: Any, name: str) -> datetime | None:
    if is_missing(value):
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{name}: cannot parse {text!r} as a timestamp") from None
    elif hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise ValueError(f"{name}: expected a timestamp, got {type(value).__name__}")
    try:
        return to_utc(value)
    except ValueError as exc:  # outside the range of timestamps
        raise ValueError(f"{name}: {exc}") from None


def _req_ts(value: Any, name: str) -> datetime:
    ts = _opt_ts(value, name)
    if ts is None:
        raise ValueError(f"{name}: must not be empty")
    return ts


def _extra_value(value: Any, name: str) -> str | int | float | bool | None:
    if is_missing(value):
        return None
    value = plain(value)
    check_text(name, "extra field name")
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return check_text(value, f"extra field {name!r}")
    if isinstance(value, int | bool):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise ValueError(
        f"extra field {name!r}: only scalar values are kept, got {type(value).__name__}"
    )


def _choice(value: Any, name: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_JSON_ENCODER: Final = json.JSONEncoder(allow_nan=False, default=_json_default, ensure_ascii=False)


def _json_dumps(value: Any) -> str:
    """JSON for the database: numpy values become Python ones, NaN becomes null."""
    try:
        return _JSON_ENCODER.encode(value)
    except ValueError:
        return _JSON_ENCODER.encode(finite(value))
