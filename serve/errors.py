"""Errors of the scoring API: one JSON shape for every client error, HTML for browsers.

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from flask import Flask, Response, jsonify, request
from markupsafe import escape
from pydantic import ValidationError
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

__all__ = [
    "API_PATH_PREFIXES",
    "ApiError",
    "error_body",
    "format_loc",
    "init_app",
    "json_response",
    "prefers",
    "store_unavailable",
    "validation_details",
    "wants_json",
]

_log = logging.getLogger(__name__)

#: Paths whose clients are programs: errors there are always JSON.
API_PATH_PREFIXES: tuple[str, ...] = (
    "/v1/",
    "/invocations",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
)

# pydantic names the member of a union in the error location ("str", "int",
# "function-after[...]"); such a trailing element is a type, not a field.
_UNION_TAG = re.compile(
    r"^(constrained-)?(str|int|float|bool|none|datetime|date|list|dict|decimal)$"
    r"|^[a-z-]+\[.*\]$"
)


class ApiError(Exception):
    """A client error with an HTTP status, a message and the offending field.

    ``field`` names the input (``events[3].timestamp``; None: the body); ``details`` lists every
    problem as ``{"field", "message", "type"}`` (default: one entry from field and message).
    """

    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        details: Sequence[Mapping[str, Any]] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.details = _details(message, field, details)
        self.headers = dict(headers or {})

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of this error."""
        return error_body(self.message, self.field, self.details)

    @classmethod
    def from_validation(
        cls, exc: ValidationError, *, prefix: str = "", status: int = 400
    ) -> ApiError:
        """An :class:`ApiError` naming the first invalid field of a pydantic error.

        ``prefix`` is prepended to every field (``leads[3]`` for a batch item).
        """
        details = validation_details(exc.errors(include_url=False), prefix=prefix)
        first = details[0] if details else {"field": prefix or None, "message": str(exc)}
        message = first["message"]
        if first["field"]:
            message = f"{first['field']}: {message}"
        if len(details) > 1:
            message += f" (and {len(details) - 1} more problem{'s' if len(details) > 2 else ''})"
        return cls(status, message, first["field"], details)


def error_body(
    message: str, field: str | None = None, details: Sequence[Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """``{"error": {"message", "field", "details"}}``, the one error shape of the API."""
    return {
        "error": {
            "message": message,
            "field": field,
            "details": _details(message, field, details),
        }
    }


def _details(
    message: str, field: str | None, details: Sequence[Mapping[str, Any]] | None
) -> list[dict[str, Any]]:
    """``details`` as a list of dicts; by default the one problem ``field`` and ``message`` say."""
    if details is None:
        return [{"field": field, "message": message, "type": "invalid"}]
    return [dict(d) for d in details]


def format_loc(loc: Iterable[str | int], prefix: str = "") -> str | None:
    """``("events", 3, "timestamp")`` → ``"events[3].timestamp"`` (after ``prefix``)."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or None


def validation_details(
    errors: Sequence[Mapping[str, Any]], *, prefix: str = ""
) -> list[dict[str, Any]]:
    """pydantic errors as ``{"field", "message", "type"}``, one per field."""
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for err in errors:
        groups.setdefault(tuple(err["loc"][:-1]), []).append(err)
    out: list[dict[str, Any]] = []
    seen: set[str | None] = set()
    for err in errors:
        loc = tuple(err["loc"])
        siblings = groups.get(loc[:-1], [])
        is_union = (
            len(siblings) > 1
            and loc
            and all(
                isinstance(s["loc"][-1], str) and _UNION_TAG.match(s["loc"][-1]) for s in siblings
            )
        )
        if is_union:
            loc = loc[:-1]
        field = format_loc(loc, prefix)
        if field in seen:
            continue
        seen.add(field)
        message = _message(err)
        if is_union:
            message = "Input should be a string, a number, a boolean or null"
        out.append({"field": field, "message": message, "type": err.get("type", "invalid")})
    return out


def _message(err: Mapping[str, Any]) -> str:
    kind = err.get("type")
    if kind == "extra_forbidden":
        return "Unknown field"
    if kind == "missing":
        return "Field required"
    if kind == "json_invalid":
        detail = (err.get("ctx") or {}).get("error", "")
        return f"Body is not valid JSON: {detail}" if detail else "Body is not valid JSON"
    return str(err.get("msg", "Invalid value"))


def prefers(mimetype: str) -> bool:
    """True when the request's ``Accept`` ranks ``mimetype`` (JSON or HTML) above the other."""
    other = "text/html" if mimetype == "application/json" else "application/json"
    accept = request.accept_mimetypes
    best = accept.best_match(["application/json", "text/html"])
    return best == mimetype and accept[mimetype] > accept[other]


def wants_json() -> bool:
    """True when the current request is an API client's (JSON errors), not a browser's."""
    return request.path.startswith(API_PATH_PREFIXES) or prefers("application/json")


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    """``body`` as JSON with ``status`` and ``headers``."""
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers or {})
    return response


#: Seconds a client is told to wait when the store cannot take a request now.
STORE_RETRY_AFTER = "2"

#: SQLSTATEs that mean "the database cannot serve now" rather than "this input is wrong":
#: connection exceptions (class 08), read-only transaction, admin/crash shutdown,
#: cannot connect now, too many connections.
_UNAVAILABLE_SQLSTATES = ("25006", "57P01", "57P02", "57P03", "53300")


def store_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` says the store is unreachable, read-only or shutting down."""
    if isinstance(exc, sa_exc.TimeoutError | sa_exc.InterfaceError):
        return True
    if not isinstance(exc, sa_exc.DBAPIError):
        return False
    if exc.connection_invalidated or isinstance(exc, sa_exc.OperationalError):
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None) or ""
    return sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_SQLSTATES


def _answer(status: int, message: str, body: Any, headers: Mapping[str, str]) -> Response:
    """``body`` as JSON for an API client; for a browser, a self-contained page saying
    ``message`` (no template, no session, no store: works in an outage)."""
    if wants_json():
        return json_response(status, body, headers)
    title = escape({400: "Bad request", 503: "Service unavailable"}.get(status, "Error"))
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{status} {title}</title></head><body>"
        f"<h1>{title}</h1><p>{escape(message)}</p></body></html>"
    )
    return Response(page, status=status, mimetype="text/html", headers=dict(headers))


def _handle_api_error(exc: ApiError) -> Response:
    return _answer(exc.status, exc.message, exc.to_dict(), exc.headers)


def _handle_store_error(exc: Exception) -> Response | tuple[str, int]:
    if not store_unavailable(exc):
        return _handle_unexpected(exc)
    _log.warning("store unavailable on %s %s: %s", request.method, request.path, exc)
    message = "The store is unavailable right now; retry shortly"
    body = error_body(message, None)
    return _answer(503, f"{message}.", body, {"Retry-After": STORE_RETRY_AFTER})


def _handle_http_exception(exc: HTTPException) -> Response | HTTPException:
    if not wants_json():
        return exc
    status = exc.code or 500
    messages = {
        404: "No such endpoint",
        405: f"Method {request.method} is not allowed here",
        413: "Request body is too large",
    }
    message = messages.get(status) or exc.description or exc.name
    headers: dict[str, str] = {}
    if status == 405 and exc.response is None:
        valid = getattr(exc, "valid_methods", None)
        if valid:
            headers["Allow"] = ", ".join(valid)
    return json_response(status, error_body(message, None), headers)


def _handle_unexpected(exc: Exception) -> Response | tuple[str, int]:
    _log.exception("Unhandled error on %s %s", request.method, request.path)
    if not wants_json():
        return "Internal Server Error", 500
    return json_response(500, error_body("Internal server error: the failure has been logged"))


def init_app(app: Flask) -> None:
    """Register the error handlers on ``app`` (JSON for API clients, HTML for browsers)."""
    app.register_error_handler(ApiError, _handle_api_error)
    app.register_error_handler(sa_exc.SQLAlchemyError, _handle_store_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)
