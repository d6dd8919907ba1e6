"""The API blueprint: ``/v1`` scoring, ``/invocations``, health, metrics and OpenAPI.

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from data.values import finite
from serve import guard, scoring
from serve.errors import ApiError, json_response
from serve.holder import LoadedModel
from serve.openapi import build_openapi, get_operation, operation
from serve.rounding import round_floats
from serve.schemas import (
    BatchScoreRequest,
    BatchScoreResponse,
    ErrorResponse,
    Health,
    InvocationsRequest,
    InvocationsResponse,
    ModelInfo,
    Readiness,
    ReloadResponse,
    ScoreRequest,
    ScoreResponse,
)
from serve.state import get_state

__all__ = ["authenticate", "bp", "json_body", "model_info", "nosniff"]

bp = Blueprint("api", __name__)


@bp.before_request
def authenticate() -> None:
    """Who calls: the API key the endpoint's operation asks for (``api_key`` by default)."""
    view = current_app.view_functions.get(request.endpoint or "")
    op = get_operation(view)
    need = op.auth if op is not None else "api_key"
    g.api_identity = get_state().auth.authenticate(request.headers.get("Authorization"), need)


@bp.after_request
def nosniff(response: Response) -> Response:
    """API answers are JSON or text: browsers must not guess another type."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


def _loaded() -> LoadedModel:
    loaded = get_state().holder.current
    if loaded is None:
        raise ApiError(
            503,
            "No model is loaded yet; GET /readyz says when one is",
            None,
            headers={"Retry-After": "1"},
        )
    return loaded


def json_body(*, any_json: bool = True) -> Any:
    """The request's JSON body, 415 for another type: with ``any_json`` also ``*+json``, UTF-8
    only; without (the review API), only ``application/json``, in any charset."""
    mimetype = request.mimetype
    if mimetype != "application/json" and not (any_json and mimetype.endswith("+json")):
        raise ApiError(
            415,
            f"Content-Type must be application/json, not {request.content_type or 'missing'!r}",
            "Content-Type",
        )
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if any_json and charset not in ("utf-8", "utf8"):
        raise ApiError(415, f"Only UTF-8 JSON is accepted, not {charset!r}", "Content-Type")
    return scoring.loads_json(request.get_data(cache=False))


def _limit_events(body: Any, *, batch: bool = False) -> Any:
    """413 when a request carries more events than ``MAX_EVENTS_PER_REQUEST`` (all leads)."""
    limit = int(current_app.config["MAX_EVENTS_PER_REQUEST"])
    items = body.get("leads") if batch and isinstance(body, dict) else [body]
    if not isinstance(items, list):
        return body
    total = sum(
        len(item["events"])
        for item in items
        if isinstance(item, dict) and isinstance(item.get("events"), list)
    )
    if total > limit:
        raise ApiError(
            413,
            f"Too many events in one request: {total} > {limit} (MAX_EVENTS_PER_REQUEST); "
            "send a lead's history once and only new events afterwards, or split the batch",
            "leads" if batch else "events",
        )
    return body


def _with_model_header(response: Response, loaded: LoadedModel) -> Response:
    response.headers["X-Model-Version"] = f"{loaded.name}/{loaded.version}"
    return response


# -- scoring ---------------------------------------------------------------------------------

_BUSY = (
    "No model loaded yet, the store unreachable, or the writer's backlog full; "
    "retry after `Retry-After` seconds.",
    ErrorResponse,
)


@bp.post("/v1/score")
@operation(
    summary="Score one lead",
    description=(
        "Send the lead's profile and engagement events (features are built by the "
        "model's own feature code, as in training), or a ready feature row "
        "(`lead_id` + `features`). The prediction is recorded with its feature snapshot."
    ),
    auth="api_key",
    request=ScoreRequest,
    responses={
        200: (
            "The lead's stage, persona, readiness, route (with the routing thresholds "
            "it was decided by, `routing`) and reasons (exact TreeSHAP, log-odds).",
            ScoreResponse,
        ),
        503: _BUSY,
    },
    tags=("scoring",),
)
def score_one() -> Response:
    loaded = _loaded()
    item = scoring.parse_item(_limit_events(json_body()))
    prepared = scoring.prepare(item, loaded.model)
    try:
        [result] = scoring.score([prepared], loaded.model)
    except (ValueError, TypeError) as exc:
        field = "features" if prepared.lead is None else "lead"
        raise ApiError(400, f"The model cannot score this input: {exc}", field) from None
    result["model"] = loaded.ref
    get_state().record([prepared], [result], loaded, source="api")
    return _with_model_header(jsonify(round_floats(result, _digits())), loaded)


@bp.post("/v1/score/batch")
@operation(
    summary="Score many leads",
    description=(
        "Up to `BATCH_LIMIT` items, each like the body of `POST /v1/score`. Each "
        "item is validated on its own: a bad item gets an entry with its `index` "
        "and an `error` naming the field (`leads[3].events[0].type`), the others are scored."
    ),
    auth="api_key",
    request=BatchScoreRequest,
    responses={
        200: ("One result per item, in request order.", BatchScoreResponse),
        503: _BUSY,
    },
    tags=("scoring",),
)
def score_batch() -> Response:
    loaded = _loaded()
    items = scoring.parse_batch(
        _limit_events(json_body(), batch=True), limit=int(current_app.config["BATCH_LIMIT"])
    )
    prepared, failed = scoring.prepare_batch(items, loaded.model)
    scored, prepared, more_failed = _score_isolating(prepared, loaded)
    failed.extend(more_failed)
    ref = loaded.ref
    for res, p in zip(scored, prepared, strict=True):
        res["index"] = p.index
        res["model"] = ref
    get_state().record(prepared, scored, loaded, source="batch")
    results = sorted([*scored, *failed], key=lambda r: r["index"])
    body = {"model": ref, "scored": len(scored), "failed": len(failed), "results": results}
    return _with_model_header(jsonify(round_floats(body, _digits())), loaded)


def _digits() -> int:
    """``API_DIGITS``: decimals of the numbers in scoring answers (< 0: full precision)."""
    return int(current_app.config.get("API_DIGITS", 4))


def _score_isolating(
    prepared: list[scoring.Prepared], loaded: LoadedModel
) -> tuple[list[dict[str, Any]], list[scoring.Prepared], list[dict[str, Any]]]:
    """Score all items at once; if the model rejects the batch, find the bad items one by one."""
    try:
        return scoring.score(prepared, loaded.model), prepared, []
    except (ValueError, TypeError):
        pass
    ok: list[dict[str, Any]] = []
    kept: list[scoring.Prepared] = []
    failed: list[dict[str, Any]] = []
    for p in prepared:
        try:
            [res] = scoring.score([p], loaded.model)
        except (ValueError, TypeError) as exc:
            field = f"leads[{p.index}].features" if p.lead is None else f"leads[{p.index}].lead"
            err = ApiError(400, f"The model cannot score this input: {exc}", field)
            failed.append({"index": p.index, "lead_id": p.lead_id, **err.to_dict()})
            continue
        ok.append(res)
        kept.append(p)
    return ok, kept, failed


_CSV_BODY = {"type": "string", "description": "A CSV table with a header row (pandas.read_csv)."}


@bp.post("/invocations")
@operation(
    summary="Score with MLflow's scoring protocol",
    description=(
        "The protocol of `mlflow models serve`: a JSON body with exactly one of "
        "`dataframe_split`, `dataframe_records`, `instances` or `inputs` (and optional "
        '`params`, e.g. `{"reasons": true}`), or a CSV body (`text/csv`). Parsed, '
        "enforced and answered by MLflow's own scoring code with the registered "
        "pyfunc model, so the answer equals `mlflow models serve`'s. Rows with a "
        "`lead_id` column are recorded in the store like /v1 predictions. Errors carry "
        "MLflow's `error_code` and `message` besides the `error` object."
    ),
    auth="api_key",
    request=InvocationsRequest,
    request_media={"text/csv": _CSV_BODY},
    responses={
        200: ("The model's output frame as records.", InvocationsResponse),
        503: _BUSY,
    },
    tags=("scoring",),
)
def invocations() -> Response:
    fast = None
    try:
        loaded = _loaded()
        if loaded.pyfunc is None:
            raise ApiError(503, "This model has no MLflow pyfunc flavour loaded", None)
        data, content_type = request.get_data(), request.headers.get("Content-Type")
        guard.check_invocations_body(data, content_type)
        try:
            # Plain JSON rows: answered without pandas, byte for byte as MLflow would.
            fast = scoring.fast_invocations(data, content_type, loaded.model)
            if fast is None:
                body, status, mimetype = scoring.invocations(data, content_type, loaded.pyfunc)
            rows = fast.rows if fast is not None else scoring.input_rows(data, content_type)
            _refuse_unknown_columns(rows, loaded)
        except RecursionError:
            raise ApiError(400, "Body nests too deeply to be a scoring request", None) from None
    except ApiError as exc:
        payload = exc.to_dict()
        codes = {400: "BAD_REQUEST", 413: "RESOURCE_LIMIT_EXCEEDED", 415: "BAD_REQUEST"}
        payload["error_code"] = codes.get(exc.status, "INTERNAL_ERROR")
        payload["message"] = exc.message
        return json_response(exc.status, payload, exc.headers)
    if fast is not None:
        prepared, results, every = scoring.fast_invocation_records(fast)
        body, status, mimetype = fast.body, 200, "application/json"
    else:
        prepared, results, every = scoring.invocation_records(rows, body)
    get_state().record(prepared, results, loaded, source="invocations", observed=every)
    return _with_model_header(Response(body, status=status, mimetype=mimetype), loaded)


def _refuse_unknown_columns(rows: list[dict[str, Any]] | None, loaded: LoadedModel) -> None:
    """400 naming the columns neither the model nor the store knows (``lead_id`` is the store's)."""
    columns = getattr(loaded.model, "input_columns", None)
    if not rows or not columns:
        return
    known = {str(c) for c in columns} | {"lead_id"}
    unknown = sorted({str(k) for row in rows for k in row} - known)
    if unknown:
        shown = ", ".join(repr(c) for c in unknown[:10])
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise ApiError(
            400,
            f"Unknown column{'s' if len(unknown) > 1 else ''} {shown}{more}: the model's "
            "input columns are listed by GET /v1/model",
            unknown[0],
        )


# -- model and admin -------------------------------------------------------------------------


def model_info(loaded: LoadedModel) -> dict[str, Any]:
    """What ``GET /v1/model`` answers for a loaded model."""
    model = loaded.model
    meta: dict[str, Any] = dict(getattr(model, "metadata", None) or {})
    metrics = meta.get("metrics") or {}
    return {
        "name": loaded.name,
        "version": loaded.version,
        "alias": loaded.alias,
        "uri": loaded.uri,
        "run_id": meta.get("run_id")
        or getattr(getattr(loaded.pyfunc, "metadata", None), "run_id", None),
        "trained_at": _iso(meta.get("trained_at")),
        "loaded_at": loaded.loaded_at.isoformat(),
        "metrics": {k: finite(v) for k, v in metrics.items()},
        "stages": [str(s) for s in (getattr(model, "stage_labels", None) or [])],
        "personas": [str(s) for s in (getattr(model, "persona_labels", None) or [])],
        "input_columns": [str(c) for c in (getattr(model, "input_columns", None) or [])],
    }


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


@bp.get("/v1/model")
@operation(
    summary="The model this process serves",
    description="Name, version, alias, when it was trained, its metrics and label sets.",
    auth="api_key",
    responses={
        200: ("The served model.", ModelInfo),
        503: ("No model loaded yet.", ErrorResponse),
    },
    tags=("model",),
)
def get_model() -> Response:
    return jsonify(model_info(_loaded()))


@bp.post("/v1/admin/reload")
@operation(
    summary="Reload the model now",
    description=(
        "Resolves the alias and loads its version in the worker that takes the "
        "request (the others follow within `MODEL_POLL_SECONDS`). A failed load "
        "keeps the current model and answers 503."
    ),
    auth="admin",
    responses={
        200: ("The model now served and the one before.", ReloadResponse),
        503: ("The load failed; the previous model is still served.", ErrorResponse),
    },
    tags=("admin",),
)
def admin_reload() -> Response:
    try:
        new, previous = get_state().holder.reload()
    except Exception as exc:
        raise ApiError(503, f"Reload failed, the current model stays: {exc}", None) from None
    return jsonify(
        {
            "model": new.ref,
            "previous": previous.ref if previous is not None else None,
            "changed": previous is None or previous.version != new.version,
        }
    )


# -- open endpoints --------------------------------------------------------------------------


@bp.get("/healthz")
@operation(
    summary="Liveness",
    responses={200: ("The process answers.", Health)},
    tags=("health",),
)
def healthz() -> Response:
    """``GET /healthz``: the process is up (says nothing about the model)."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
@operation(
    summary="Readiness",
    description=(
        "200 once a model is loaded and the store answers; 503 (with Retry-After) before "
        "the first load, while the first load fails, and while the store is unreachable "
        "(`store` says which), so a load balancer sends no traffic to a worker that "
        "cannot record it."
    ),
    responses={
        200: ("A model is loaded and the store answers.", Readiness),
        503: ("No model loaded yet, or the store is unreachable.", Readiness),
    },
    tags=("health",),
)
def readyz() -> Response:
    state = get_state()
    holder = state.holder
    loaded = holder.current
    store_ok = state.store.ping()
    ready = loaded is not None and store_ok
    body = {
        "status": holder.status if store_ok else "store unavailable",
        "model": loaded.ref if loaded is not None else None,
        "error": holder.last_error,
        "store": "ok" if store_ok else "unavailable",
    }
    return json_response(200 if ready else 503, body, None if ready else {"Retry-After": "1"})


@bp.get("/metrics")
@operation(
    summary="Prometheus metrics",
    description=(
        "Request counts and latency per endpoint, predictions per class, the model "
        "version served; summed over all gunicorn workers."
    ),
    responses={200: ("Prometheus text exposition format.", {"text/plain": {"type": "string"}})},
    tags=("health",),
)
def metrics() -> Response:
    body, content_type = get_state().metrics.exposition()
    return Response(body, status=200, content_type=content_type)


@bp.get("/openapi.json")
@operation(
    summary="This document",
    responses={200: ("The OpenAPI 3.1 document of this API.", {"application/json": {}})},
    tags=("health",),
)
def openapi() -> Response:
    """``GET /openapi.json``: generated from the routes and the pydantic models."""
    state = get_state()
    if state.openapi is None:
        state.openapi = build_openapi(current_app._get_current_object())  # type: ignore[attr-defined]
    return jsonify(state.openapi)
