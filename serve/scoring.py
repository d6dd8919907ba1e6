"""Scoring as plain functions: parse, build features, predict, shape the answer.

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from data.schema import Checked
from data.values import finite
from serve.errors import ApiError, format_loc
from serve.guard import check_json_body
from serve.schemas import FeatureScoreRequest, LeadScoreRequest

__all__ = [
    "ScoreItem",
    "ScoringModel",
    "Prepared",
    "FastInvocation",
    "fast_invocations",
    "input_rows",
    "invocation_records",
    "invocations",
    "loads_json",
    "margin",
    "parse_batch",
    "parse_item",
    "prediction_rows",
    "result_from_frame_row",
    "prepare",
    "prepare_batch",
    "score",
]

#: A validated scoring request: a lead with events, or a ready feature row.
ScoreItem = LeadScoreRequest | FeatureScoreRequest

#: What scoring needs from ``LeadReadinessModel`` (duck-typed, for tests with fakes).
ScoringModel = Any


@dataclass
class Prepared:
    """One request item ready to predict: its lead id, feature row and what to store."""

    index: int
    lead_id: str
    features: dict[str, Any]
    lead: dict[str, Any] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def loads_json(body: bytes | str) -> Any:
    """Parse a JSON body strictly (no NaN/Infinity); :class:`ApiError` 400 otherwise."""
    try:
        value = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(400, f"Body is not valid JSON: {exc}", None) from None
    return check_json_body(body, value)


def parse_item(obj: Any, *, prefix: str = "") -> ScoreItem:
    """Validate one scoring request (``{"lead", "events"?, "as_of"?}`` or ``{"lead_id", "features"}``).

    :class:`ApiError` 400 names the offending field (``events[3].timestamp``, after ``prefix``).
    """
    if not isinstance(obj, dict):
        raise ApiError(
            400,
            f"{prefix or 'Body'} must be a JSON object, not {_json_kind(obj)}",
            prefix or None,
        )
    kind: type[ScoreItem]
    if "features" in obj:
        kind = FeatureScoreRequest
    elif "lead" in obj:
        kind = LeadScoreRequest
    else:
        field_name = format_loc(["lead"], prefix)
        raise ApiError(
            400,
            "Give either 'lead' (the profile, with optional 'events' and 'as_of') "
            "or 'lead_id' and 'features' (a ready feature row)",
            field_name,
            [{"field": field_name, "message": "Field required", "type": "missing"}],
        )
    try:
        item = kind.model_validate(obj)
    except ValidationError as exc:
        raise ApiError.from_validation(exc, prefix=prefix) from None
    if isinstance(item, LeadScoreRequest):
        lead_id = item.lead.lead_id
        for i, event in enumerate(item.events):
            if event.lead_id is not None and event.lead_id != lead_id:
                raise ApiError(
                    400,
                    f"Event of lead {event.lead_id!r} in the request of lead {lead_id!r}",
                    format_loc(["events", i, "lead_id"], prefix),
                )
    return item


def parse_batch(obj: Any, *, limit: int) -> list[Any]:
    """Check the batch envelope ``{"leads": [...]}``; the items are validated one by one.

    :class:`ApiError` 400 for a wrong envelope or an empty list, 413 above ``limit`` items.
    """
    if not isinstance(obj, dict):
        raise ApiError(400, f"Body must be a JSON object, not {_json_kind(obj)}", None)
    unknown = sorted(set(obj) - {"leads"})
    if unknown:
        raise ApiError(400, f"Unknown field {unknown[0]!r}", unknown[0])
    if "leads" not in obj:
        raise ApiError(400, "Field required: a list of leads to score", "leads")
    leads = obj["leads"]
    if not isinstance(leads, list):
        raise ApiError(400, f"'leads' must be a list, not {_json_kind(leads)}", "leads")
    if not leads:
        raise ApiError(400, "'leads' is empty: send at least one lead", "leads")
    if len(leads) > limit:
        raise ApiError(
            413, f"Too many leads in one batch: {len(leads)} > {limit}; split the batch", "leads"
        )
    return leads


def prepare(
    item: ScoreItem,
    model: ScoringModel,
    *,
    now: datetime | None = None,
    index: int = 0,
    prefix: str = "",
) -> Prepared:
    """Build the feature row of one validated item with the model's own feature code.

    A feature-row item is checked against the model's input columns (unknown
    column → 400; a column left out is a missing value).
    """
    if isinstance(item, FeatureScoreRequest):
        columns = model.input_columns
        known = set(columns)
        for name in item.features:
            if name not in known:
                raise ApiError(
                    400,
                    f"Unknown feature {name!r}: the model's input columns are listed by GET /v1/model",
                    format_loc(["features", name], prefix),
                )
        features = {col: item.features.get(col) for col in columns}
        return Prepared(index=index, lead_id=item.lead_id, features=features)

    profile = item.lead.model_dump()
    events = [event.model_dump() for event in item.events]
    # The idempotency key is the store's, not a feature: kept aside while features are built.
    event_ids = [event.pop("event_id", None) for event in events]
    as_of = item.as_of or now or datetime.now(UTC)
    try:
        features = model.features_from_profile(profile, events, as_of)
    except ValueError as exc:
        raise ApiError(400, f"Cannot build features: {exc}", format_loc(["lead"], prefix)) from None
    lead_id = item.lead.lead_id
    for event, event_id in zip(events, event_ids, strict=True):
        event["lead_id"] = lead_id
        if event_id is not None:
            event["event_id"] = event_id
    return Prepared(
        index=index,
        lead_id=lead_id,
        features=features,
        lead=Checked(item.lead.model_dump(exclude_unset=True)),
        events=[Checked(event) for event in events],
    )


def prepare_batch(
    items: Sequence[Any], model: ScoringModel, *, now: datetime | None = None
) -> tuple[list[Prepared], list[dict[str, Any]]]:
    """Validate and prepare every batch item; returns ``(prepared, failed)``.

    ``failed`` holds ``{"index", "lead_id", "error"}`` for each rejected item,
    whose field is named from the body root (``leads[3].events[0].type``).
    """
    now = now or datetime.now(UTC)
    prepared: list[Prepared] = []
    failed: list[dict[str, Any]] = []
    for index, raw in enumerate(items):
        prefix = f"leads[{index}]"
        try:
            item = parse_item(raw, prefix=prefix)
            prepared.append(prepare(item, model, now=now, index=index, prefix=prefix))
        except ApiError as exc:
            failed.append({"index": index, "lead_id": _raw_lead_id(raw), **exc.to_dict()})
    return prepared, failed


def score(prepared: Sequence[Prepared], model: ScoringModel) -> list[dict[str, Any]]:
    """Predict prepared items in one ``predict_records`` call.

    One ``{"lead_id", "stage", "persona", "readiness", "route", "routing"}`` per item, in
    order (a head the model lacks is None; ``routing``: ``model.routing.routing_answers``).
    """
    if not prepared:
        return []
    outputs = model.predict_records([p.features for p in prepared], reasons=True)
    routing = routing_of(model, outputs)
    return [
        {
            "lead_id": p.lead_id,
            "stage": out.get("stage"),
            "persona": out.get("persona"),
            "readiness": out.get("readiness"),
            "route": out.get("route"),
            "routing": why,
        }
        for p, out, why in zip(prepared, outputs, routing, strict=True)
    ]


def routing_of(
    model: ScoringModel, outputs: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any] | None]:
    """Per answer: the model's routing thresholds, the lead's readiness, the rule and why.

    None per answer for a model without routing settings (a stand-in scoring object).
    """
    from model.routing import RoutingConfig, routing_answers

    if not isinstance(getattr(model, "routing", None), RoutingConfig):
        return [None] * len(outputs)
    config = replace(model.routing, sales_ready_stages=tuple(model.sales_ready_stages))
    has_stage = any(out.get("stage") is not None for out in outputs)
    persona = [(out.get("persona") or {}) for out in outputs]
    return routing_answers(
        config,
        ready=[out.get("readiness") for out in outputs] if has_stage else None,
        persona=[p.get("label") for p in persona],
        persona_confidence=[p.get("confidence") for p in persona],
    )


def margin(probabilities: Mapping[str, float] | None) -> float | None:
    """Top probability minus the runner-up (how clear-cut a prediction is)."""
    if not probabilities:
        return None
    top = sorted((float(p) for p in probabilities.values()), reverse=True)
    return top[0] - (top[1] if len(top) > 1 else 0.0)


def prediction_rows(
    prepared: Sequence[Prepared],
    results: Sequence[Mapping[str, Any]],
    *,
    model_name: str,
    model_version: str,
    source: str,
    created_at: datetime | None = None,
) -> list[dict[str, Any]]:
    """Rows for ``Store.record_predictions``: labels, confidences, margins, the feature snapshot."""
    created_at = created_at or datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for p, res in zip(prepared, results, strict=True):
        stage = res.get("stage") or {}
        persona = res.get("persona") or {}
        rows.append(
            {
                "lead_id": p.lead_id,
                "created_at": created_at,
                "model_name": model_name,
                "model_version": model_version,
                "source": source,
                "stage": stage.get("label"),
                "stage_confidence": stage.get("confidence"),
                "stage_margin": margin(stage.get("probabilities")),
                "persona": persona.get("label"),
                "persona_confidence": persona.get("confidence"),
                "persona_margin": margin(persona.get("probabilities")),
                "probabilities": {
                    "stage": stage.get("probabilities"),
                    "persona": persona.get("probabilities"),
                },
                "readiness": res.get("readiness"),
                "route": res.get("route"),
                "reasons": {"stage": stage.get("reasons"), "persona": persona.get("reasons")},
                "features": {k: finite(v) for k, v in p.features.items()},
            }
        )
    return rows


@dataclass
class FastInvocation:
    """An ``/invocations`` request answered without MLflow's parsing (see :func:`fast_invocations`)."""

    body: str
    rows: list[dict[str, Any]]
    predictions: list[dict[str, Any]]


_FAST_FORMATS = ("dataframe_records", "dataframe_split")
_SCALARS = (str, int, float, bool, type(None))
#: Largest top_k the fast path answers (MLflow's own path takes anything else).
_FAST_TOP_K = 100


def _scalar_rows(obj: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The rows of a plain ``dataframe_records`` / ``dataframe_split`` payload, else None."""
    if "dataframe_records" in obj:
        rows = obj["dataframe_records"]
        if not isinstance(rows, list) or not rows:
            return None
        for row in rows:
            if type(row) is not dict or not row:  # pandas drops all-empty records
                return None
            for value in row.values():
                if not isinstance(value, _SCALARS):
                    return None
        return rows
    split = obj["dataframe_split"]
    if type(split) is not dict or set(split) != {"columns", "data"}:
        return None
    columns, data = split["columns"], split["data"]
    if not isinstance(columns, list) or not isinstance(data, list) or not data:
        return None
    if not all(type(c) is str for c in columns) or len(set(columns)) != len(columns):
        return None
    width = len(columns)
    rows = []
    for values in data:
        if type(values) is not list or len(values) != width:
            return None
        if not all(isinstance(v, _SCALARS) for v in values):
            return None
        rows.append(dict(zip(columns, values, strict=True)))
    return rows


def _pandas_like(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with the values pandas' column inference would hand the model."""
    n = len(rows)
    keys = rows[0].keys()
    if all(row.keys() == keys for row in rows):
        # The usual shape, every row with the same columns: one type set per column.
        convert = set()
        for key in keys:
            types = set(map(type, [row[key] for row in rows]))
            if int in types and types <= _INT_FLOAT_NONE and (float in types or _NONE in types):
                convert.add(key)
        return _floats_for(rows, convert)
    ints: set[str] = set()
    floats: set[str] = set()
    other: set[str] = set()
    present: dict[str, int] = {}
    for row in rows:
        for key, value in row.items():
            kind = type(value)
            if kind is int:
                ints.add(key)
            elif kind is float:
                floats.add(key)
            elif value is not None:
                other.add(key)
                continue
            else:
                continue
            present[key] = present.get(key, 0) + 1
    convert = {k for k in ints - other if k in floats or present[k] < n}
    return _floats_for(rows, convert)


_NONE = type(None)
_INT_FLOAT_NONE = frozenset({int, float, _NONE})


def _floats_for(rows: list[dict[str, Any]], convert: set[str]) -> list[dict[str, Any]]:
    """``rows`` with the int cells of the ``convert`` columns as floats."""
    if not convert:
        return rows
    return [
        {k: (float(v) if type(v) is int and k in convert else v) for k, v in row.items()}
        for row in rows
    ]


def fast_invocations(
    body: bytes, content_type: str | None, model: ScoringModel
) -> FastInvocation | None:
    """Answer a plain JSON ``/invocations`` request without pandas, byte for byte as MLflow would.

    None for anything else, which goes through MLflow's own parsing (which requests qualify:
    docs/design/serving.md), and for a model without ``predict_rows`` or that refuses the rows.
    """
    if not content_type or not hasattr(model, "predict_rows"):
        return None
    mime, _, rest = content_type.partition(";")
    if mime.strip() != "application/json":
        return None
    if rest.strip():
        key, _, value = rest.strip().partition("=")
        if key.strip() != "charset" or value.strip().lower() != "utf-8" or ";" in value:
            return None
    try:
        obj = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if type(obj) is not dict:
        return None
    formats = [k for k in _FAST_FORMATS if k in obj]
    if len(formats) != 1 or not set(obj) <= {formats[0], "params"}:
        return None
    params = obj.get("params", {})
    if type(params) is not dict or not set(params) <= {"reasons", "top_k"}:
        return None
    reasons, top_k = params.get("reasons", False), params.get("top_k", 3)
    if type(reasons) is not bool or type(top_k) is not int or not 0 <= top_k <= _FAST_TOP_K:
        return None
    rows = _scalar_rows(obj)
    if rows is None:
        return None
    try:
        predictions = model.predict_rows(_pandas_like(rows), reasons=reasons, top_k=top_k)
    except (ValueError, TypeError):
        return None  # MLflow's own path words the error
    return FastInvocation(
        body=json.dumps({"predictions": predictions}), rows=rows, predictions=predictions
    )


def fast_invocation_records(
    fast: FastInvocation, *, id_col: str = "lead_id"
) -> tuple[list[Prepared], list[dict[str, Any]], list[dict[str, Any]]]:
    """:func:`invocation_records` for a request answered by :func:`fast_invocations`."""
    every = [result_from_frame_row(p) for p in fast.predictions]
    return (*_named_rows(fast.rows, every, id_col), every)


def invocations(body: bytes, content_type: str | None, pyfunc_model: Any) -> tuple[str, int, str]:
    """MLflow's scoring protocol, answered by MLflow's own scoring functions.

    Returns ``(body, status, mimetype)``; MLflow's exceptions become :class:`ApiError`. How CSV
    differs (non-primitive schemas) is in docs/design/serving.md.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    if not content_type:
        raise ApiError(
            415, "Content-Type is required: application/json or text/csv", "Content-Type"
        )
    schema = pyfunc_model.metadata.get_input_schema()
    try:
        if content_type.split(";")[0].strip().lower() == scoring_server.CONTENT_TYPE_CSV:
            return _invocations_csv(body, content_type, pyfunc_model, schema)
        result = scoring_server.invocations(body, content_type, pyfunc_model, schema)
    except MlflowException as exc:
        status = exc.get_http_status_code()
        status = status if 400 <= status < 500 else 400
        raise ApiError(status, exc.message, _invocations_field(body, content_type)) from None
    if result.status == 415:
        raise ApiError(415, result.response, "Content-Type")
    return result.response, result.status, result.mimetype


def _invocations_csv(
    body: bytes, content_type: str, pyfunc_model: Any, schema: Any
) -> tuple[str, int, str]:
    """The CSV branch of MLflow's ``invocations()`` (see :func:`invocations`)."""
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server
    from mlflow.types import DataType

    params = dict(
        part.strip().partition("=")[::2] for part in content_type.split(";")[1:] if part.strip()
    )
    charset = params.pop("charset", "utf-8").strip().lower()
    if charset not in ("utf-8", "utf8") or params:
        raise ApiError(
            415, "CSV bodies must be text/csv with no parameter but charset=utf-8", "Content-Type"
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"Body is not valid UTF-8: {exc}", None) from None
    typed = schema is not None and all(isinstance(t, DataType) for t in schema.input_types())
    frame = scoring_server.parse_csv_input(io.StringIO(text), schema=schema if typed else None)
    try:
        raw = pyfunc_model.predict(frame)
    except MlflowException:
        raise
    except Exception as exc:
        raise ApiError(
            400,
            "Encountered an unexpected error while evaluating the model. Verify that the "
            f"serialized input Dataframe is compatible with the model for inference: {exc}",
            None,
        ) from None
    out = io.StringIO()
    scoring_server.predictions_to_json(raw, out)
    return out.getvalue(), 200, "application/json"


def invocation_records(
    rows: list[dict[str, Any]] | None, response_body: str, *, id_col: str = "lead_id"
) -> tuple[list[Prepared], list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``rows`` (:func:`input_rows`) of an answered ``/invocations`` request that carry a
    ``lead_id`` column.

    ``(prepared, results)`` for the store (the row minus the id is the snapshot; unmatched rows
    give none), and every prediction in the ``/v1`` shape, for metrics.
    """
    try:
        predictions = json.loads(response_body)["predictions"]
    except (ValueError, KeyError, TypeError):
        return [], [], []
    if not isinstance(predictions, list):
        return [], [], []
    every = [result_from_frame_row(p) for p in predictions if isinstance(p, Mapping)]
    if rows is None or len(rows) != len(every):
        return [], [], every
    return (*_named_rows(rows, every, id_col), every)


def _named_rows(
    rows: Sequence[Mapping[str, Any]], every: Sequence[dict[str, Any]], id_col: str
) -> tuple[list[Prepared], list[dict[str, Any]]]:
    """The rows with a usable lead id, as ``(prepared, results)`` for the store."""
    prepared: list[Prepared] = []
    results: list[dict[str, Any]] = []
    for index, (row, result) in enumerate(zip(rows, every, strict=True)):
        lead_id = row.get(id_col)
        if isinstance(lead_id, float) and lead_id.is_integer():
            lead_id = int(lead_id)
        if not isinstance(lead_id, str | int) or isinstance(lead_id, bool) or lead_id == "":
            continue
        features = {k: v for k, v in row.items() if k != id_col}
        prepared.append(Prepared(index=index, lead_id=str(lead_id), features=features))
        results.append(result)
    return prepared, results


def result_from_frame_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ``predict_frame`` output row as the ``/v1`` result shape (stage/persona dicts)."""
    out: dict[str, Any] = {"readiness": row.get("readiness"), "route": row.get("route")}
    for head in ("stage", "persona"):
        if head not in row:
            out[head] = None
            continue
        prefix = f"{head}_proba__"
        reasons = row.get(f"{head}_reasons")
        if isinstance(reasons, str):
            try:
                reasons = json.loads(reasons)
            except ValueError:
                reasons = None
        out[head] = {
            "label": row.get(head),
            "confidence": row.get(f"{head}_confidence"),
            "probabilities": {k[len(prefix) :]: v for k, v in row.items() if k.startswith(prefix)},
            "reasons": reasons,
        }
    return out


def input_rows(body: bytes, content_type: str | None) -> list[dict[str, Any]] | None:
    """The request's rows as dicts (JSON formats and CSV), or None when they cannot be read as
    rows (MLflow reports what is wrong with the body)."""
    mime = (content_type or "").split(";")[0].strip().lower()
    if not mime:
        return None
    try:
        if mime == "text/csv":
            import pandas as pd

            frame = pd.read_csv(io.StringIO(body.decode("utf-8")))
            return [
                {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
                for r in frame.to_dict("records")
            ]
        obj = json.loads(body)
        if not isinstance(obj, dict):
            return None
        if "dataframe_split" in obj:
            split = obj["dataframe_split"]
            return [dict(zip(split["columns"], values, strict=True)) for values in split["data"]]
        for key in ("dataframe_records", "instances", "inputs"):
            value = obj.get(key)
            if isinstance(value, list) and all(isinstance(r, dict) for r in value):
                return value
            if isinstance(value, dict) and all(isinstance(v, list) for v in value.values()):
                return [
                    dict(zip(value, vals, strict=True))
                    for vals in zip(*value.values(), strict=True)
                ]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None
    return None


def _invocations_field(body: bytes, content_type: str) -> str | None:
    """The input key of a JSON scoring request (the field MLflow rejected), if one."""
    if not content_type.split(";")[0].strip().lower().endswith("json"):
        return None
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(obj, dict):
        return None
    keys = [k for k in ("dataframe_split", "dataframe_records", "instances", "inputs") if k in obj]
    return keys[0] if len(keys) == 1 else None


def _raw_lead_id(raw: Any) -> str | None:
    if not isinstance(raw, dict):
        return None
    lead = raw.get("lead")
    candidate = lead.get("lead_id") if isinstance(lead, dict) else raw.get("lead_id")
    return candidate if isinstance(candidate, str) else None


def _json_kind(value: Any) -> str:
    kinds: Mapping[type, str] = {
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        dict: "an object",
    }
    if value is None:
        return "null"
    return kinds.get(type(value), type(value).__name__)
