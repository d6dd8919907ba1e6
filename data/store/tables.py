"""The store's tables: the ORM classes the Alembic migrations are generated against,
the limits of their columns and the vocabularies their checks allow."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from data.schema import EVENT_COLUMNS, LEAD_COLUMNS
from data.values import as_utc

#: Label fields a rep can correct.
CORRECTION_FIELDS: Final[tuple[str, ...]] = ("stage", "persona")
#: Kinds of correction rows.
CORRECTION_KINDS: Final[tuple[str, ...]] = ("reclassify", "confirm", "undo")
#: Where a correction came from.
CORRECTION_SOURCES: Final[tuple[str, ...]] = ("ui", "api", "import")
#: Where a prediction was made.
PREDICTION_SOURCES: Final[tuple[str, ...]] = ("api", "batch", "invocations", "rescore")
#: Roles of review UI users.
USER_ROLES: Final[tuple[str, ...]] = ("rep", "analyst", "admin")
#: Roles of API keys.
API_KEY_ROLES: Final[tuple[str, ...]] = ("client", "admin")
#: Every API key starts with this, so a leaked one is easy to recognise.
API_KEY_PREFIX: Final[str] = "lr_"
#: The Alembic script directory (env.py, versions/).
MIGRATIONS_DIR: Final[Path] = Path(__file__).resolve().parent.parent / "migrations"

_LEAD_ID_MAX = 200
_EVENT_ID_MAX = 64
_LABEL_MAX = 200
_NAME_MAX = 100
_REASON_MAX = 200
_NOTE_MAX = 10_000
_PASSWORD_MAX = 1024
_CHUNK = 5000
_SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Page cache per SQLite connection, in KiB (SQLite's default is 2 MiB). Batch
#: scoring rewrites rows all over the review queue's indexes; with 2 MiB most of
#: those page reads miss, and the queue's upkeep takes about twice as long.
_SQLITE_CACHE_KIB = 32 * 1024
_WRITE_RETRIES = 6
_PG_CONNECT_TIMEOUT_S = 5
_LEAD_TEXT_COLUMNS: Final[tuple[str, ...]] = tuple(
    c for c in LEAD_COLUMNS if c not in ("lead_id", "company_size", "created_at")
)
_EVENT_PROPERTIES: Final[tuple[str, ...]] = EVENT_COLUMNS[3:]


# --------------------------------------------------------------------------- types


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware timestamp stored as UTC on every backend (naive means UTC); read
    back aware and in UTC whatever the backend keeps."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert to UTC before writing."""
        if value is None:
            return None
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Attach (or convert to) UTC after reading."""
        return None if value is None else as_utc(value)


_JSON = sa.JSON(none_as_null=True)
_NAMING: Final[dict[str, str]] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base of the store's tables (the metadata Alembic compares against)."""

    metadata = sa.MetaData(naming_convention=_NAMING)


class LeadRow(Base):
    """A lead's profile, firmographics and the labels marketing gave it."""

    __tablename__ = "leads"

    lead_id: Mapped[str] = mapped_column(sa.String(_LEAD_ID_MAX), primary_key=True)
    job_title: Mapped[str | None] = mapped_column(sa.String())
    seniority: Mapped[str | None] = mapped_column(sa.String())
    department: Mapped[str | None] = mapped_column(sa.String())
    company: Mapped[str | None] = mapped_column(sa.String(), index=True)
    company_size: Mapped[int | None] = mapped_column(sa.Integer())
    industry: Mapped[str | None] = mapped_column(sa.String())
    country: Mapped[str | None] = mapped_column(sa.String())
    lead_source: Mapped[str | None] = mapped_column(sa.String())
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    extra: Mapped[dict[str, Any] | None] = mapped_column(_JSON)
    marketing_stage: Mapped[str | None] = mapped_column(sa.String())
    marketing_persona: Mapped[str | None] = mapped_column(sa.String())
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class EventRow(Base):
    """One engagement event of a lead, properties flattened into columns.

    ``event_id`` is the event's idempotency key (client-supplied, or derived from
    its lead, time, type and properties): a history sent again is stored once.
    """

    __tablename__ = "events"
    __table_args__ = (
        sa.Index("ix_events_lead_id_timestamp", "lead_id", "timestamp"),
        sa.Index("ux_events_lead_id_event_id", "lead_id", "event_id", unique=True),
    )

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    lead_id: Mapped[str] = mapped_column(sa.String(_LEAD_ID_MAX), sa.ForeignKey("leads.lead_id"))
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime())
    type: Mapped[str] = mapped_column(sa.String(50))
    page_category: Mapped[str | None] = mapped_column(sa.String())
    content_type: Mapped[str | None] = mapped_column(sa.String())
    content_topic: Mapped[str | None] = mapped_column(sa.String())
    channel: Mapped[str | None] = mapped_column(sa.String())
    event_id: Mapped[str | None] = mapped_column(sa.String(64))


class PredictionRow(Base):
    """One scored lead: labels, confidences, margins, readiness, route and the inputs used."""

    __tablename__ = "predictions"
    __table_args__ = (sa.Index("ix_predictions_lead_id_id", "lead_id", "id"),)

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    lead_id: Mapped[str] = mapped_column(sa.String(_LEAD_ID_MAX))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    model_name: Mapped[str] = mapped_column(sa.String())
    model_version: Mapped[str] = mapped_column(sa.String())
    stage: Mapped[str | None] = mapped_column(sa.String())
    stage_confidence: Mapped[float | None] = mapped_column(sa.Float())
    stage_margin: Mapped[float | None] = mapped_column(sa.Float())
    persona: Mapped[str | None] = mapped_column(sa.String())
    persona_confidence: Mapped[float | None] = mapped_column(sa.Float())
    persona_margin: Mapped[float | None] = mapped_column(sa.Float())
    probabilities: Mapped[dict[str, Any] | None] = mapped_column(_JSON)
    readiness: Mapped[float | None] = mapped_column(sa.Float())
    route: Mapped[str | None] = mapped_column(sa.String())
    reasons: Mapped[Any | None] = mapped_column(_JSON)
    features: Mapped[dict[str, Any] | None] = mapped_column(_JSON)
    source: Mapped[str] = mapped_column(sa.String(20))


class CorrectionRow(Base):
    """A rep's correction of one label of one lead. Rows are only ever appended.

    ``is_rep_label`` says whether the label this row leaves current is a rep's:
    true for reclassify/confirm, and for an undo that returns to an earlier rep
    label; false for an undo that returns the lead to the model's or marketing's
    label (so retraining never takes the model's own output as a rep's label).
    """

    __tablename__ = "corrections"
    __table_args__ = (
        sa.Index("ix_corrections_lead_id_field_id", "lead_id", "field", "id"),
        sa.CheckConstraint("field IN ('stage', 'persona')", name="field"),
        sa.CheckConstraint("kind IN ('reclassify', 'confirm', 'undo')", name="kind"),
    )

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    lead_id: Mapped[str] = mapped_column(sa.String(_LEAD_ID_MAX), sa.ForeignKey("leads.lead_id"))
    field: Mapped[str] = mapped_column(sa.String(20))
    old_label: Mapped[str | None] = mapped_column(sa.String())
    new_label: Mapped[str | None] = mapped_column(sa.String())
    kind: Mapped[str] = mapped_column(sa.String(20))
    is_rep_label: Mapped[bool] = mapped_column(sa.Boolean())
    reviewer: Mapped[str] = mapped_column(sa.String())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str | None] = mapped_column(sa.String())
    note: Mapped[str | None] = mapped_column(sa.Text())
    source: Mapped[str] = mapped_column(sa.String(20))
    prediction_id: Mapped[int | None] = mapped_column(_BigId, sa.ForeignKey("predictions.id"))
    model_version: Mapped[str | None] = mapped_column(sa.String())
    undo_of: Mapped[int | None] = mapped_column(_BigId, sa.ForeignKey("corrections.id"))
    #: The API key that sent the correction (NULL for the UI and imports).
    api_key: Mapped[str | None] = mapped_column(sa.String(_NAME_MAX))
    #: The bulk action (or batch undo) that made this row, so it can be undone as one step.
    batch_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    #: The "leads like this one" suggestion a rep confirmed to make this row (NULL: none).
    #: No foreign key: ``suggestions`` refers to ``corrections`` (see SuggestionRow).
    suggestion_id: Mapped[int | None] = mapped_column(_BigId, index=True)


#: The queue's order, then the columns its filters test, so that walking a page
#: (and counting it) reads the index alone.
_QUEUE_RANK_COLUMNS: Final[tuple[str, ...]] = (
    "reviewed",
    "sort_key",
    "lead_id",
    "stage",
    "persona",
    "route",
    "changed_at",
    "company",
    "scored_at",
)


class QueueRow(Base):
    """The review queue, materialized: one row per scored lead, from its latest prediction,
    written by the store's write paths with :func:`data.priority.queue_rows`'s values
    (``sort_key``, the order and the indexes: docs/design/data.md)."""

    __tablename__ = "lead_queue"
    __table_args__ = (
        sa.Index("ix_lead_queue_rank", *_QUEUE_RANK_COLUMNS),
        sa.Index(
            "ix_lead_queue_changed_rank",
            *_QUEUE_RANK_COLUMNS,
            sqlite_where=sa.text("changed_at IS NOT NULL"),
            postgresql_where=sa.text("changed_at IS NOT NULL"),
        ),
        sa.Index("ix_lead_queue_filters", "stage", "persona", "route", "reviewed"),
    )

    lead_id: Mapped[str] = mapped_column(sa.String(_LEAD_ID_MAX), primary_key=True)
    prediction_id: Mapped[int] = mapped_column(_BigId)
    scored_at: Mapped[datetime] = mapped_column(UTCDateTime())
    model_version: Mapped[str] = mapped_column(sa.String())
    stage: Mapped[str | None] = mapped_column(sa.String())
    stage_confidence: Mapped[float | None] = mapped_column(sa.Float())
    stage_margin: Mapped[float | None] = mapped_column(sa.Float())
    stage_runner_up: Mapped[str | None] = mapped_column(sa.String())
    persona: Mapped[str | None] = mapped_column(sa.String())
    persona_confidence: Mapped[float | None] = mapped_column(sa.Float())
    persona_margin: Mapped[float | None] = mapped_column(sa.Float())
    persona_runner_up: Mapped[str | None] = mapped_column(sa.String())
    readiness: Mapped[float | None] = mapped_column(sa.Float())
    route: Mapped[str | None] = mapped_column(sa.String())
    previous_stage: Mapped[str | None] = mapped_column(sa.String())
    changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    company: Mapped[str | None] = mapped_column(sa.String())
    marketing_stage: Mapped[str | None] = mapped_column(sa.String())
    marketing_persona: Mapped[str | None] = mapped_column(sa.String())
    p_marketing_stage: Mapped[float | None] = mapped_column(sa.Float())
    p_marketing_persona: Mapped[float | None] = mapped_column(sa.Float())
    reviewed: Mapped[bool] = mapped_column(sa.Boolean())
    sort_key: Mapped[float] = mapped_column(sa.Float())


class UserRow(Base):
    """A review UI user: name, role and an argon2 password hash."""

    __tablename__ = "users"
    __table_args__ = (sa.CheckConstraint("role IN ('rep', 'analyst', 'admin')", name="role"),)

    id: Mapped[int] = mapped_column(sa.Integer(), primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(_NAME_MAX), unique=True)
    role: Mapped[str] = mapped_column(sa.String(20))
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    active: Mapped[bool] = mapped_column(sa.Boolean())
    #: Bumped on logout, password and role change; sessions of an older one end.
    session_generation: Mapped[int] = mapped_column(sa.Integer(), server_default=sa.text("0"))


class ApiKeyRow(Base):
    """An API key: only its SHA-256 hash and a short display prefix are kept."""

    __tablename__ = "api_keys"
    __table_args__ = (sa.CheckConstraint("role IN ('client', 'admin')", name="role"),)

    id: Mapped[int] = mapped_column(sa.Integer(), primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(_NAME_MAX), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(16))
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    role: Mapped[str] = mapped_column(sa.String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


# ---------------------------------------------------- suggestions (issue #19)


class SuggestionSetRow(Base):
    """One reclassify correction's "leads like this one": the change, the method, the counts.

    ``method`` says how the leads were ranked: ``correction_model`` (the model
    of corrections' probability of the same change) or ``neighbours`` (cold
    start: nearest neighbours in feature space among the leads served the same
    answer). Written by :mod:`training.similar`.
    """

    __tablename__ = "suggestion_sets"
    __table_args__ = (
        sa.CheckConstraint("field IN ('stage', 'persona')", name="field"),
        sa.CheckConstraint("method IN ('correction_model', 'neighbours')", name="method"),
    )

    correction_id: Mapped[int] = mapped_column(
        _BigId, sa.ForeignKey("corrections.id"), primary_key=True
    )
    lead_id: Mapped[str] = mapped_column(sa.String(_LEAD_ID_MAX))
    field: Mapped[str] = mapped_column(sa.String(20))
    from_label: Mapped[str] = mapped_column(sa.String())
    to_label: Mapped[str] = mapped_column(sa.String())
    method: Mapped[str] = mapped_column(sa.String(20))
    #: Not-yet-reviewed leads served ``from_label`` when the set was built.
    n_candidates: Mapped[int] = mapped_column(sa.Integer())
    #: Of those, how many the model of corrections gives >= 50% (NULL for neighbours).
    n_likely: Mapped[int | None] = mapped_column(sa.Integer())
    #: Reviewed leads the model of corrections learned from (0 at cold start).
    n_reviewed: Mapped[int] = mapped_column(sa.Integer())
    note: Mapped[str | None] = mapped_column(sa.Text())
    seconds: Mapped[float] = mapped_column(sa.Float())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SuggestionRow(Base):
    """One suggested lead: "this lead likely carries the same mistake", open until a rep decides.

    An open or dismissed suggestion is *not* a correction: it never changes the
    served answer and never feeds retraining. Accepting one appends a correction
    (``corrections.suggestion_id`` = this id) and records it here.
    """

    __tablename__ = "suggestions"
    __table_args__ = (
        sa.Index("ix_suggestions_set_rank", "source_correction_id", "rank"),
        sa.CheckConstraint("status IN ('open', 'accepted', 'dismissed')", name="status"),
        sa.CheckConstraint("field IN ('stage', 'persona')", name="field"),
    )

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    source_correction_id: Mapped[int] = mapped_column(
        _BigId, sa.ForeignKey("suggestion_sets.correction_id")
    )
    #: No foreign key: a scored lead may have no profile row until a rep corrects it.
    lead_id: Mapped[str] = mapped_column(sa.String(_LEAD_ID_MAX), index=True)
    field: Mapped[str] = mapped_column(sa.String(20))
    from_label: Mapped[str] = mapped_column(sa.String())
    to_label: Mapped[str] = mapped_column(sa.String())
    #: The prediction whose served answer the suggestion is about.
    prediction_id: Mapped[int | None] = mapped_column(_BigId)
    rank: Mapped[int] = mapped_column(sa.Integer())
    #: P(a rep changes from_label → to_label) by the model of corrections (NULL: neighbours).
    probability: Mapped[float | None] = mapped_column(sa.Float())
    #: Standardised feature distance to the corrected lead (neighbours only).
    distance: Mapped[float | None] = mapped_column(sa.Float())
    method: Mapped[str] = mapped_column(sa.String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(sa.String(20))
    decided_by: Mapped[str | None] = mapped_column(sa.String())
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: The correction accepting it made.
    correction_id: Mapped[int | None] = mapped_column(_BigId, sa.ForeignKey("corrections.id"))


_LEADS = LeadRow.__table__
_EVENTS = EventRow.__table__
_PREDICTIONS = PredictionRow.__table__
_CORRECTIONS = CorrectionRow.__table__
_USERS = UserRow.__table__
_API_KEYS = ApiKeyRow.__table__
_QUEUE = QueueRow.__table__
_PREDICTION_KEYS: Final[frozenset[str]] = frozenset(c.name for c in _PREDICTIONS.c) - {"id"}
#: Lead columns the review queue copies (search, the doubt about marketing's labels).
_QUEUE_LEAD_COLUMNS: Final[frozenset[str]] = frozenset(
    ("company", "marketing_stage", "marketing_persona")
)
