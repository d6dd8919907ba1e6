"""The review loop over the API: corrections from a CRM and the review queue.

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from flask import Blueprint, Response, current_app, g, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy.exc import OperationalError

from data.labels import match_label
from data.review_queue import review_queue
from data.schema import CORRECTION_REASONS
from serve.api import authenticate, json_body, nosniff
from serve.errors import ApiError
from serve.openapi import operation
from serve.schemas import ErrorResponse
from serve.state import get_state

__all__ = [
    "EXTERNAL_PREFIX",
    "CorrectionRequest",
    "CorrectionResponse",
    "external_reviewer",
    "QueueResponse",
    "bp",
]

bp = Blueprint("review_api", __name__)
bp.before_request(authenticate)
bp.after_request(nosniff)

_REASON_CODES = tuple(code for code, _ in CORRECTION_REASONS)
_STRICT = ConfigDict(extra="forbid", str_strip_whitespace=True)
#: Most queue items one request may ask for.
QUEUE_LIMIT_MAX = 500


class ExpectedLabels(BaseModel):
    """The labels the reviewer saw; a mismatch marks the correction as a conflict."""

    model_config = _STRICT

    stage: str | None = None
    persona: str | None = None


class CorrectionRequest(BaseModel):
    """A rep's correction of a lead's stage and/or persona (or a confirmation)."""

    model_config = _STRICT

    stage: str | None = Field(default=None, min_length=1, max_length=200)
    persona: str | None = Field(default=None, min_length=1, max_length=200)
    reviewer: str = Field(min_length=1, max_length=100, description="Who made the call.")
    kind: Literal["reclassify", "confirm"] = "reclassify"
    reason: Literal[_REASON_CODES] | None = Field(  # type: ignore[valid-type]
        default=None, description="Why: " + ", ".join(_REASON_CODES)
    )
    note: str | None = Field(default=None, max_length=2000)
    expected: ExpectedLabels | None = Field(
        default=None,
        description="The labels the reviewer saw; if the lead changed since, the "
        "correction is still kept and `conflict` is true.",
    )

    @model_validator(mode="after")
    def _some_label(self) -> CorrectionRequest:
        if self.stage is None and self.persona is None:
            raise ValueError("give a stage, a persona or both")
        return self


class _Correction(BaseModel):
    """The fields of a correction row in every answer."""

    id: int
    field: str
    old_label: str | None
    new_label: str
    kind: str


class CorrectionOut(_Correction):
    conflict: bool
    created_at: datetime


class CorrectionResponse(BaseModel):
    lead_id: str
    reviewer: str = Field(
        description="As stored: the given reviewer marked external (`ext:<name>`); an API "
        "correction never counts as, or can be undone by, the UI user of that name."
    )
    api_key: str | None = Field(description="The API key the correction is attributed to.")
    conflict: bool = Field(description="True when the lead changed under the reviewer.")
    corrections: list[CorrectionOut]


class CorrectionHistoryItem(_Correction):
    reviewer: str
    reason: str | None
    note: str | None
    source: str
    created_at: datetime
    model_version: str | None
    api_key: str | None = None


class CorrectionHistory(BaseModel):
    lead_id: str
    current: dict[str, str | None]
    corrections: list[CorrectionHistoryItem]


class QueueReasonOut(BaseModel):
    code: str
    text: str


class QueueItemOut(BaseModel):
    lead_id: str
    priority: float
    priority_method: str = Field(
        default="formula",
        description="formula (today's weighted sum) or learned (after a refit: 3 × p_wrong)",
    )
    p_wrong: float | None = Field(
        default=None,
        description="learned: estimated probability that the served stage or persona is wrong",
    )
    reasons: list[QueueReasonOut]
    stage: str | None
    stage_confidence: float | None
    persona: str | None
    persona_confidence: float | None
    readiness: float | None
    route: str | None
    company: str | None
    reviewed: bool
    model_version: str
    scored_at: datetime


class QueueResponse(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[QueueItemOut]


def _known_labels(field: str) -> tuple[str, ...]:
    """The serving model's labels of ``field``; while none is loaded, the last one's."""
    state = get_state()
    loaded = state.holder.current
    if loaded is not None:
        return tuple(getattr(loaded.model, f"{field}_labels", None) or ())
    book = state.labels.load(state.holder.name) if state.labels is not None else None
    if book is None:
        raise ApiError(
            503,
            "The model's labels are not known yet (no model loaded); retry shortly",
            field,
            headers={"Retry-After": "2"},
        )
    return book.get(field, ())


#: Marks a reviewer named by an API client (not a review UI user; user names cannot start so).
EXTERNAL_PREFIX = "ext:"


def external_reviewer(name: str) -> str:
    """``name`` as stored for an API correction: marked external (``ext:<name>``)."""
    return name if name.startswith(EXTERNAL_PREFIX) else f"{EXTERNAL_PREFIX}{name}"


def _body(model: type[BaseModel]) -> Any:
    payload = json_body(any_json=False)
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise ApiError.from_validation(exc) from None


def _label_changes(body: CorrectionRequest) -> list[tuple[str, str]]:
    """``(field, label)`` of each head the request changes, in the model's spelling."""
    changes = [(f, getattr(body, f)) for f in ("stage", "persona") if getattr(body, f) is not None]
    for i, (field, label) in enumerate(changes):
        known = _known_labels(field)
        if known:
            # One label policy (data.labels): "Decision", " decision" are the model's "decision".
            match = match_label(label, known)
            if match is None:
                raise ApiError(
                    400, f"{field}: unknown label {label!r}; use one of {', '.join(known)}", field
                )
            changes[i] = (field, match)
    return changes


@bp.post("/v1/leads/<path:lead_id>/corrections")
@operation(
    summary="Correct a lead's stage and/or persona",
    description=(
        "Appends a correction (never overwrites): who, when, old label, new label, "
        "reason and note. `kind: confirm` records that the reviewer agrees with the "
        "current label. Labels must be ones the serving model knows."
    ),
    auth="api_key",
    request=CorrectionRequest,
    responses={
        201: ("The stored correction rows.", CorrectionResponse),
        404: ("No such lead.", ErrorResponse),
        503: (
            "The model's labels are not known yet (no model loaded), or the store is busy, "
            "read-only or unreachable; retry after `Retry-After` seconds.",
            ErrorResponse,
        ),
    },
    tags=("review",),
)
def add_correction(lead_id: str) -> tuple[Response, int]:
    body: CorrectionRequest = _body(CorrectionRequest)
    store = get_state().store
    changes = _label_changes(body)
    if store.get_lead(lead_id) is None and store.latest_prediction(lead_id) is None:
        raise ApiError(404, f"No lead {lead_id!r} is known to the store", "lead_id")
    key_name = getattr(g.get("api_identity"), "name", None)
    # A key cannot prove which rep it speaks for: its reviewer is stored as external,
    # so it never counts as (or can be undone by) the review UI user of that name.
    reviewer = external_reviewer(body.reviewer)
    results = []
    try:
        for field, label in changes:
            kwargs: dict[str, Any] = {}
            if body.expected is not None and field in body.expected.model_fields_set:
                kwargs["expected_label"] = getattr(body.expected, field)
            result = store.add_correction(
                lead_id,
                field,
                label,
                reviewer=reviewer,
                kind=body.kind,
                reason=body.reason,
                note=body.note,
                source="api",
                api_key=key_name,
                **kwargs,
            )
            results.append(result)
    except KeyError:
        raise ApiError(404, f"No lead {lead_id!r} is known to the store", "lead_id") from None
    except OperationalError as exc:
        # Locked, read-only or unreachable: the store's state, not the client's input.
        current_app.logger.warning("correction of %s not stored: %s", lead_id, exc.orig)
        raise ApiError(
            503,
            "The store cannot take the correction right now (busy, read-only or "
            "unreachable); retry the request",
            None,
            headers={"Retry-After": "1"},
        ) from None
    current_app.logger.info("correction of %s by %s via key %s", lead_id, reviewer, key_name)
    out = CorrectionResponse(
        lead_id=lead_id,
        reviewer=reviewer,
        api_key=key_name,
        conflict=any(r.conflict for r in results),
        corrections=[CorrectionOut.model_validate(r, from_attributes=True) for r in results],
    )
    return jsonify(out.model_dump(mode="json")), 201


@bp.get("/v1/leads/<path:lead_id>/corrections")
@operation(
    summary="A lead's correction history and current labels",
    auth="api_key",
    responses={
        200: ("Oldest first; `current` is the latest label per field.", CorrectionHistory),
        404: ("No such lead.", ErrorResponse),
    },
    tags=("review",),
)
def list_corrections(lead_id: str) -> Response:
    store = get_state().store
    if store.get_lead(lead_id) is None and store.latest_prediction(lead_id) is None:
        raise ApiError(404, f"No lead {lead_id!r} is known to the store", "lead_id")
    rows = store.corrections_for(lead_id)
    history = CorrectionHistory(
        lead_id=lead_id,
        current=store.labels_for(lead_id),
        corrections=[CorrectionHistoryItem.model_validate(r, from_attributes=False) for r in rows],
    )
    return jsonify(history.model_dump(mode="json"))


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number, not {raw!r}", name) from None
    if not lo <= value <= hi:
        raise ApiError(400, f"{name} must be between {lo} and {hi}", name)
    return value


_QUEUE_PARAMS = {"limit", "offset", "stage", "persona", "route", "reviewed", "search"}
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


@bp.get("/v1/review/queue")
@operation(
    summary="The review queue, most useful leads to check first",
    description=(
        "The same order as the review UI and `leadready queue`, each lead with the "
        "reasons it is in the queue. Query: limit (1–500, default 50), offset, stage, "
        "persona, route, reviewed (true/false), search (lead id or company)."
    ),
    auth="api_key",
    responses={200: ("A page of the queue.", QueueResponse)},
    tags=("review",),
)
def queue() -> Response:
    unknown = sorted(set(request.args) - _QUEUE_PARAMS)
    if unknown:
        raise ApiError(400, f"unknown query parameter {unknown[0]!r}", unknown[0])
    limit = _int_arg("limit", 50, 1, QUEUE_LIMIT_MAX)
    offset = _int_arg("offset", 0, 0, 10_000_000)
    reviewed = request.args.get("reviewed")
    if reviewed is not None and reviewed.lower() not in _BOOLEANS:
        raise ApiError(400, "reviewed must be true or false", "reviewed")
    page = review_queue(
        get_state().store,
        limit=limit,
        offset=offset,
        reviewed=None if reviewed is None else _BOOLEANS[reviewed.lower()],
        **{
            name: request.args.get(name) or None for name in ("stage", "persona", "route", "search")
        },
    )
    out = QueueResponse(
        total=page.total,
        limit=limit,
        offset=offset,
        items=[QueueItemOut.model_validate(item, from_attributes=True) for item in page.items],
    )
    return jsonify(out.model_dump(mode="json"))


# ------------------------------------------------ "leads like this one" (#19 part A)


class SuggestionOut(BaseModel):
    id: int
    lead_id: str
    rank: int
    probability: float | None = Field(description="P(a rep makes the same change); model only.")
    distance: float | None = Field(
        description="Feature distance to the corrected lead; neighbours."
    )
    status: Literal["open", "accepted", "dismissed"]
    prediction_id: int | None
    correction_id: int | None = Field(description="The correction accepting it made.")


class SuggestionSetOut(BaseModel):
    correction_id: int
    lead_id: str
    field: Literal["stage", "persona"]
    from_label: str
    to_label: str
    method: Literal["correction_model", "neighbours"]
    n_candidates: int = Field(description="Unreviewed leads served `from_label` at build time.")
    n_likely: int | None = Field(description="Of those, how many are >= 50% likely (model only).")
    n_reviewed: int
    note: str | None
    created_at: datetime
    items: list[SuggestionOut] = Field(description="Best first (at most 200 are stored).")


@bp.get("/v1/corrections/<correction_id>/suggestions")
@operation(
    summary="Leads like a corrected one: the suggestions built after a reclassify",
    auth="api_key",
    responses={
        200: (
            "Suggestions, not corrections: an open one changes no label until a rep confirms it.",
            SuggestionSetOut,
        ),
        400: ("correction_id is not a correction number.", ErrorResponse),
        404: ("No suggestions were built for this correction.", ErrorResponse),
    },
    tags=("review",),
)
def suggestions(correction_id: str) -> Response:
    """``GET /v1/corrections/<correction_id>/suggestions``.

    The id is read here, not by a URL converter, so that a request without a
    valid API key is refused (401/403) before its id is looked at.
    """
    if not (correction_id.isascii() and correction_id.isdigit()) or len(correction_id) > 18:
        raise ApiError(400, "correction_id must be a correction number", "correction_id")
    state = get_state()
    if state.suggestion_set is None:
        raise ApiError(404, "Suggestions are not set up on this server", "correction_id")
    found = state.suggestion_set(state.store, int(correction_id))
    if found is None:
        raise ApiError(
            404, f"No suggestions were built for correction {correction_id}", "correction_id"
        )
    out = SuggestionSetOut.model_validate(found, from_attributes=True)
    return jsonify(out.model_dump(mode="json"))
