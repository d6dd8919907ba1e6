"""``/openapi.json``: an OpenAPI 3.1 document generated from the code.

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from serve.auth import Need
from serve.examples import EXAMPLES, KNOWN_VALUES, PATH_EXAMPLES
from serve.schemas import ErrorResponse

__all__ = ["Body", "Operation", "build_openapi", "get_operation", "operation"]

F = TypeVar("F", bound=Callable[..., Any])

_REF = "#/components/schemas/{model}"
_RULE_ARG = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")

#: A request or response body: a pydantic model, or a media type's plain schema.
Body = type[BaseModel] | Mapping[str, Any] | None


@dataclass(frozen=True)
class Operation:
    """What the OpenAPI document says about one view, and who may call it.

    ``responses`` maps a status to ``(description, body)``; ``body`` is a
    pydantic model (JSON), a ``{media type: JSON schema}`` mapping, or ``None``.
    Error responses for auth (401/403) and for request bodies (400/413/415)
    are added from ``auth`` and ``request``.
    """

    summary: str
    description: str = ""
    auth: Need = "none"
    request: Body = None
    request_media: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    responses: Mapping[int, tuple[str, Body]] = field(default_factory=dict)
    tags: tuple[str, ...] = ()


def operation(**spec: Any) -> Callable[[F], F]:
    """Attach an :class:`Operation` to a view function (see its fields)."""
    op = Operation(**spec)

    def decorate(view: F) -> F:
        view.__openapi__ = op  # type: ignore[attr-defined]
        return view

    return decorate


def get_operation(view: Callable[..., Any] | None) -> Operation | None:
    """The :class:`Operation` of a view, or ``None`` for undocumented views (UI pages)."""
    return getattr(view, "__openapi__", None)


def _models_of(op: Operation) -> list[tuple[type[BaseModel], str]]:
    out: list[tuple[type[BaseModel], str]] = []
    if isinstance(op.request, type) and issubclass(op.request, BaseModel):
        out.append((op.request, "validation"))
    for _, body in op.responses.values():
        if isinstance(body, type) and issubclass(body, BaseModel):
            out.append((body, "serialization"))
    return out


def _error_responses(op: Operation) -> dict[int, tuple[str, Body]]:
    errors: dict[int, tuple[str, Body]] = {}
    if op.request is not None or op.request_media:
        errors[400] = ("Invalid input: `error.field` names the offending field.", ErrorResponse)
        errors[413] = ("Request body (or batch) too large.", ErrorResponse)
        errors[415] = ("Unsupported Content-Type.", ErrorResponse)
    if op.auth != "none":
        errors[400] = errors.get(400) or (
            "Invalid input (a path or query parameter): `error.field` names it.",
            ErrorResponse,
        )
        errors[401] = ("Missing or invalid API key.", ErrorResponse)
        errors[403] = (
            "Revoked API key" + (", or not an admin key." if op.auth == "admin" else "."),
            ErrorResponse,
        )
        errors[503] = (
            "Cannot take the request now (no model loaded, the store unreachable or "
            "read-only, or the writer's backlog full); retry after `Retry-After` seconds.",
            ErrorResponse,
        )
    errors[500] = ("Unexpected server error (logged; no details are revealed).", ErrorResponse)
    return errors


def _content(body: Body, refs: Mapping[tuple[type[BaseModel], str], Any], mode: str) -> Any:
    if body is None:
        return None
    if isinstance(body, type) and issubclass(body, BaseModel):
        return {"application/json": {"schema": refs[(body, mode)]}}
    return {media: {"schema": dict(schema)} for media, schema in body.items()}


def _path_of(rule: str) -> tuple[str, list[str]]:
    names = _RULE_ARG.findall(rule)
    return _RULE_ARG.sub(lambda m: "{" + m.group(1) + "}", rule), names


def build_openapi(
    app: Flask, *, title: str = "leadready", version: str = "0.1.0"
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every documented route ``app`` serves."""
    ops: list[tuple[str, str, str, Operation]] = []
    for rule in app.url_map.iter_rules():
        op = get_operation(app.view_functions.get(rule.endpoint))
        if op is None:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            ops.append((rule.rule, method.lower(), rule.endpoint, op))

    models = dict.fromkeys(
        key for *_, op in ops for key in [*_models_of(op), (ErrorResponse, "serialization")]
    )
    key_map, defs = models_json_schema(list(models), ref_template=_REF)  # type: ignore[arg-type]

    paths: dict[str, dict[str, Any]] = {}
    for rule, method, endpoint, op in ops:
        path, params = _path_of(rule)
        paths.setdefault(path, {})[method] = _operation_spec(endpoint, op, params, key_map)

    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": (
                "Buying stage and persona for B2B leads, with readiness, route and reasons. "
                'Errors are always `{"error": {"message", "field", "details"}}`.'
            ),
        },
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": _known_values(defs.get("$defs", {})),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key from `leadready apikey create`.",
                }
            },
        },
    }


def _operation_spec(
    endpoint: str, op: Operation, params: list[str], key_map: Mapping[Any, Any]
) -> dict[str, Any]:
    """The OpenAPI operation object of one view and method."""
    responses: dict[str, Any] = {}
    for status, (description, body) in {**_error_responses(op), **op.responses}.items():
        entry: dict[str, Any] = {"description": description}
        content = _content(body, key_map, "serialization")
        if content:
            entry["content"] = content
        responses[str(status)] = entry
    spec: dict[str, Any] = {
        "operationId": endpoint.replace(".", "_"),
        "summary": op.summary,
        "responses": dict(sorted(responses.items())),
    }
    if op.description:
        spec["description"] = op.description
    if op.tags:
        spec["tags"] = list(op.tags)
    if params:
        spec["parameters"] = [
            {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
            | ({"example": PATH_EXAMPLES[n]} if n in PATH_EXAMPLES else {})
            for n in params
        ]
    if op.request is not None or op.request_media:
        content = _content(op.request, key_map, "validation") or {}
        content.update({media: {"schema": dict(s)} for media, s in op.request_media.items()})
        examples = EXAMPLES.get(spec["operationId"])
        if examples and "application/json" in content:
            content["application/json"]["examples"] = examples
        spec["requestBody"] = {"required": True, "content": content}
    spec["security"] = [{"bearerAuth": []}] if op.auth != "none" else []
    return spec


def _known_values(schemas: dict[str, Any]) -> dict[str, Any]:
    """Open vocabularies (``page_category``, …) list their known values as ``examples``."""
    for schema in schemas.values():
        for name, prop in (schema.get("properties") or {}).items():
            known = KNOWN_VALUES.get(name)
            if known is None or not isinstance(prop, dict):
                continue
            prop["examples"] = list(known)
            prop["description"] = (
                f"Known values: {', '.join(known)}. Other values are accepted "
                "(the model counts them as 'other')."
            )
    return schemas
