"""The door: text no store can hold is refused before any view runs.

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Flask, request

from data.text import bad_text_reason, find_bad_text
from serve.errors import ApiError, format_loc

__all__ = ["check_invocations_body", "check_json", "check_json_body", "init_app"]

#: What a JSON body needs to carry for a parsed string to hold NUL or a lone
#: surrogate: a raw NUL byte or a ``\\u0000`` / ``\\uD800``–``\\uDFFF`` escape.
_SUSPECT = re.compile(rb"\x00|\\u0000|\\u[dD][89a-fA-F]")


def check_json_body(raw: bytes | str, value: Any) -> Any:
    """:func:`check_json` on ``value`` parsed from ``raw``, skipped when ``raw`` cannot hold bad text.

    The scan of the raw bytes is one regular-expression pass in C, so bodies
    without any escape of that kind (nearly all) cost no walk over the parsed value.
    """
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if _SUSPECT.search(data) is None:
        return value
    return check_json(value)


def check_json(value: Any, prefix: str = "") -> Any:
    """``value`` unchanged, or :class:`ApiError` 400 naming the first unstorable string."""
    found = find_bad_text(value)
    if found is None:
        return value
    loc, reason = found
    field = format_loc(loc, prefix)
    raise ApiError(400, f"{field or 'body'}: {reason}", field)


def check_invocations_body(raw: bytes, content_type: str | None) -> None:
    """400 when an ``/invocations`` body (JSON or CSV) holds text no store can keep."""
    if _SUSPECT.search(raw) is None:
        return
    mime = (content_type or "").split(";")[0].strip().lower()
    if mime.endswith("json"):
        try:
            value = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return  # not JSON: MLflow's parser words that error
        check_json(value)
        return
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return
    reason = bad_text_reason(text)
    if reason is not None:
        raise ApiError(400, f"body: {reason}", None)


def _check_request() -> None:
    for name, value in (request.view_args or {}).items():
        if isinstance(value, str):
            _refuse(name, value)
    for source in (request.args, request.form) if request.method == "POST" else (request.args,):
        for name, value in source.items(multi=True):
            _refuse(name, name)
            _refuse(name, value)


def _refuse(name: str, value: str) -> None:
    reason = bad_text_reason(value)
    if reason is not None:
        shown = name if bad_text_reason(name) is None else repr(name)
        raise ApiError(400, f"{shown}: {reason}", shown)


def init_app(app: Flask) -> None:
    """Check every request's path parameters, query and form before its view."""
    app.before_request(_check_request)
