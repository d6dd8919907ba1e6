"""Request and response models of the scoring API (pydantic).

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator

from data.schema import Event, LeadProfile, to_utc

__all__ = [
    "BatchScoreRequest",
    "BatchScoreResponse",
    "ErrorDetail",
    "ErrorItem",
    "ErrorResponse",
    "EventIn",
    "FailedItem",
    "FeatureScoreRequest",
    "HeadPrediction",
    "Health",
    "InvocationsRequest",
    "InvocationsResponse",
    "LeadScoreRequest",
    "ModelInfo",
    "ModelRef",
    "Readiness",
    "Reason",
    "Routing",
    "ReloadResponse",
    "Scalar",
    "ScoreRequest",
    "ScoreResponse",
    "ScoredItem",
]

#: A feature value: the model's inputs are numbers, strings, booleans or missing.
Scalar = str | int | float | bool | None

_STRICT = ConfigDict(extra="forbid", str_strip_whitespace=True)


class EventIn(Event):
    """An engagement event inside a scoring request.

    The same fields as :class:`data.schema.Event`; ``lead_id`` may be left out
    (the event belongs to the request's lead) and, when given, must match it.
    """

    lead_id: str | None = Field(default=None, min_length=1, max_length=200)
    event_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="The event's idempotency key; default: derived from its lead, time, type "
        "and properties. An event already stored under its key is not stored again.",
    )


class LeadScoreRequest(BaseModel):
    """Score one lead from its profile and engagement events.

    Features are built by the model's own feature code, the same code that
    built the training set, from the events at or before ``as_of``.
    """

    model_config = _STRICT

    lead: LeadProfile
    events: list[EventIn] = Field(default_factory=list)
    as_of: datetime | None = Field(
        default=None,
        description="Point in time the features describe (ISO 8601); default: now (UTC).",
    )

    @field_validator("as_of")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else to_utc(value)


class FeatureScoreRequest(BaseModel):
    """Score one lead from a ready feature row (the model's input columns).

    Columns left out are missing values; a column the model does not know is an error.
    """

    model_config = _STRICT

    lead_id: str = Field(min_length=1, max_length=200)
    features: dict[str, Scalar]


class ScoreRequest(RootModel[LeadScoreRequest | FeatureScoreRequest]):
    """The body of ``POST /v1/score``: a lead with its events, or a ready feature row."""


class BatchScoreRequest(BaseModel):
    """Score many leads at once; each item is scored or rejected on its own."""

    model_config = _STRICT

    leads: list[LeadScoreRequest | FeatureScoreRequest] = Field(
        min_length=1,
        description="Up to BATCH_LIMIT items, each like the body of POST /v1/score.",
    )


class Reason(BaseModel):
    """One factor behind a prediction, worded for a sales rep.

    Reasons are the input columns with the largest exact TreeSHAP contributions to
    the predicted label's score (log-odds), strongest first. A value the input
    merely left out is worded as such ("created date not given") and ranks by half
    its weight: it leads only when it outweighs every present value twice over.
    """

    feature: str = Field(description="The input column.")
    text: str = Field(description="The column's value as a rep reads it.")
    weight: float = Field(
        description="Signed contribution in log-odds: > 0 raises the predicted label's score."
    )


class HeadPrediction(BaseModel):
    """What one head of the model (stage or persona) predicts."""

    label: str
    confidence: float = Field(ge=0, le=1)
    probabilities: dict[str, float]
    reasons: list[Reason]


class ModelRef(BaseModel):
    """The registered model version that answered."""

    name: str
    version: str


class Routing(BaseModel):
    """The thresholds a route was decided by, and which rule decided it.

    Rules, in order: a nurture persona predicted at least ``min_persona_confidence``
    surely → nurture; no readiness → review; readiness strictly inside
    ``review_band`` (the route itself is in doubt) → review; readiness ≥
    ``sales_at`` → sales; else nurture.
    """

    readiness: float | None = Field(
        description="0..1: probability that the stage is one of sales_ready_stages."
    )
    sales_at: float = Field(description="Readiness at or above which a lead goes to sales.")
    review_band: list[float] = Field(
        min_length=2,
        max_length=2,
        description="[low, high]: readiness strictly inside goes to review.",
    )
    sales_ready_stages: list[str] = Field(description="The stages readiness adds up.")
    nurture_personas: list[str] = Field(description="Personas routed to nurture.")
    min_persona_confidence: float = Field(
        description="How sure the persona head must be for a nurture persona to count."
    )
    rule: str = Field(description="What decided: persona, no_readiness, review_band or readiness.")
    why: str = Field(
        description="e.g. 'readiness 0.97 >= sales threshold 0.50 (review within ±0.10)'."
    )


class ScoreResponse(BaseModel):
    """The prediction for one lead."""

    lead_id: str
    stage: HeadPrediction | None
    persona: HeadPrediction | None
    readiness: float | None = Field(description="0..1: how ready the lead is for sales.")
    route: str | None = Field(
        description="Where the lead goes: sales, nurture, or review when the route "
        "itself is in doubt (see routing)."
    )
    routing: Routing | None = Field(
        default=None, description="The thresholds the route was decided by, and why."
    )
    model: ModelRef


class ErrorItem(BaseModel):
    """One problem with the input."""

    field: str | None
    message: str
    type: str


class ErrorDetail(BaseModel):
    """What is wrong and where: ``field`` names the first offending input."""

    message: str
    field: str | None = Field(description="e.g. events[3].timestamp; null for the whole body.")
    details: list[ErrorItem]


class ErrorResponse(BaseModel):
    """Every error the API answers has this shape."""

    error: ErrorDetail


class ScoredItem(ScoreResponse):
    """A batch item that was scored."""

    index: int = Field(ge=0, description="Position of the item in the request.")


class FailedItem(BaseModel):
    """A batch item that was rejected; the other items are still scored."""

    index: int = Field(ge=0, description="Position of the item in the request.")
    lead_id: str | None
    error: ErrorDetail


class BatchScoreResponse(BaseModel):
    """One result per request item, in request order."""

    model: ModelRef
    scored: int
    failed: int
    results: list[ScoredItem | FailedItem]


class ModelInfo(BaseModel):
    """The model this process serves."""

    name: str
    version: str
    alias: str | None
    uri: str
    run_id: str | None
    trained_at: str | None
    loaded_at: datetime
    metrics: dict[str, Any]
    stages: list[str]
    personas: list[str]
    input_columns: list[str]


class Health(BaseModel):
    """The process is up."""

    status: Literal["ok"]


class Readiness(BaseModel):
    """Whether a model is loaded and the store answers (200) or not (503)."""

    status: Literal["ready", "loading", "failed", "store unavailable"]
    model: ModelRef | None
    error: str | None = None
    store: Literal["ok", "unavailable"] = "ok"


class ReloadResponse(BaseModel):
    """The result of a forced reload."""

    model: ModelRef
    previous: ModelRef | None
    changed: bool


class DataframeSplit(BaseModel):
    """pandas ``orient="split"``: columns, data rows and an optional index."""

    columns: list[str]
    data: list[list[Any]]
    index: list[Any] | None = None


class InvocationsRequest(BaseModel):
    """MLflow's scoring protocol: exactly one of the four input keys, plus optional params.

    ``params`` goes to the model as in ``mlflow models serve`` (``{"reasons": true}``
    adds reason columns). CSV bodies (``text/csv``) are read by pandas as MLflow does.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": [key]}
                for key in ("dataframe_split", "dataframe_records", "instances", "inputs")
            ]
        }
    )

    dataframe_split: DataframeSplit | None = None
    dataframe_records: list[dict[str, Any]] | None = None
    instances: list[Any] | dict[str, Any] | None = None
    inputs: list[Any] | dict[str, Any] | None = None
    params: dict[str, Any] | None = None


class InvocationsResponse(BaseModel):
    """The model's output frame as records, as ``mlflow models serve`` answers."""

    predictions: list[dict[str, Any]]
