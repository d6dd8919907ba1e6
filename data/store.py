"""The store: leads, events, predictions, reps' corrections, users and API keys.

One :class:`Store` wraps a SQLAlchemy engine for a database URL: a SQLite file by
default, PostgreSQL for anything shared. The schema is owned by the Alembic
migrations in ``data/migrations`` (``Store.upgrade()`` applies them, from any
working directory and from an installed package); the ORM classes below describe
the same tables and are what new migrations are generated against.

Every method opens and closes its own connection, so one ``Store`` can be shared
by threads (API workers, a background prediction writer). Methods return plain
dicts or small frozen dataclasses, never ORM objects.

Corrections are append-only: nothing in this module updates or deletes a
correction row, and the migration adds triggers that make the database refuse
it too. A correction records the label it replaces (``old_label``), the label it
sets (``new_label``), who, when, why, and which prediction was reviewed. Writes
to one lead's labels are serialised (a row lock on the lead on PostgreSQL,
``BEGIN IMMEDIATE`` on SQLite), so two reps correcting the same lead at the same
moment both get their row stored, in a definite order.

The review queue is materialized in ``lead_queue`` (:class:`QueueRow`, one row
per scored lead): ``record_predictions``, ``upsert_leads``, ``add_correction``
and ``undo_correction`` keep it current in their own transaction, with the
formula of :mod:`data.review_queue`, so a queue page is an index walk instead
of a ranking of every lead's latest prediction.

Methods
-------
Schema
    ``upgrade``, ``current_revision``, ``head_revision``, ``ping``, ``dispose``
Leads and events
    ``upsert_leads``, ``add_events``, ``get_lead``, ``events_for``, ``search_leads``
Predictions
    ``record_predictions``, ``predictions_for``, ``latest_prediction``,
    ``latest_predictions``
Corrections
    ``add_correction``, ``undo_correction``, ``corrections_for``, ``labels_for``,
    ``current_labels``, ``corrections_frame``
Users
    ``create_user``, ``authenticate``, ``get_user``, ``get_user_by_name``,
    ``list_users``, ``set_password``, ``set_role``, ``end_sessions``, ``deactivate_user``
API keys
    ``create_api_key``, ``verify_api_key``, ``revoke_api_key``, ``list_api_keys``
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import math
import random
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import event
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import URL, Connection, Dialect, Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from data.schema import EVENT_COLUMNS, EVENT_TYPES
from data.text import check_text, name_skeleton, user_name_problem

if TYPE_CHECKING:
    import pandas as pd
    from alembic.config import Config

__all__ = [
    "API_KEY_PREFIX",
    "API_KEY_ROLES",
    "CORRECTION_FIELDS",
    "CORRECTION_KINDS",
    "CORRECTION_SOURCES",
    "MIGRATIONS_DIR",
    "PREDICTION_SOURCES",
    "USER_ROLES",
    "ApiKeyInfo",
    "ApiKeyRow",
    "Base",
    "CorrectionResult",
    "CorrectionRow",
    "EventRow",
    "LeadRow",
    "PredictionRow",
    "QueueRow",
    "Store",
    "SuggestionRow",
    "SuggestionSetRow",
    "User",
    "UserRow",
    "UTCDateTime",
    "alembic_config",
]

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
MIGRATIONS_DIR: Final[Path] = Path(__file__).resolve().parent / "migrations"

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
_LEAD_TEXT_COLUMNS: Final[tuple[str, ...]] = (
    "job_title",
    "seniority",
    "department",
    "company",
    "industry",
    "country",
    "lead_source",
)
_EVENT_PROPERTIES: Final[tuple[str, ...]] = EVENT_COLUMNS[3:]

T = TypeVar("T")


# --------------------------------------------------------------------------- types


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware timestamp stored as UTC on every backend.

    Naive datetimes are taken as UTC; aware ones are converted to UTC. Values read
    back are always aware and in UTC (SQLite keeps no zone, PostgreSQL answers in
    the session's zone: both are normalised).
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Convert to UTC before writing."""
        if value is None:
            return None
        value = _as_utc(value)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Attach (or convert to) UTC after reading."""
        if value is None:
            return None
        return _as_utc(value)


def _json_type() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True)


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
    extra: Mapped[dict[str, Any] | None] = mapped_column(_json_type())
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
    probabilities: Mapped[dict[str, Any] | None] = mapped_column(_json_type())
    readiness: Mapped[float | None] = mapped_column(sa.Float())
    route: Mapped[str | None] = mapped_column(sa.String())
    reasons: Mapped[Any | None] = mapped_column(_json_type())
    features: Mapped[dict[str, Any] | None] = mapped_column(_json_type())
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
    """The review queue, materialized: one row per scored lead, from its latest prediction.

    Written only by the store's own write paths, in the transaction of the write
    that changes it (:meth:`Store.record_predictions`, :meth:`Store.upsert_leads`,
    :meth:`Store.add_correction`, :meth:`Store.undo_correction`); the values come
    from :func:`data.review_queue.queue_rows`. ``sort_key`` is minus the queue
    priority without its time-dependent stage-change term (the queue adds that
    term at read time from ``changed_at``, the time of a stage change). It is
    stored negated so that the queue's order (unreviewed first, priority
    descending, lead id) is one ascending index on every backend: SQLite's
    schema reflection does not report descending index columns, so a DESC
    index would read as drift in the migration check.

    Two indexes serve every page: ``ix_lead_queue_rank`` over all rows and
    ``ix_lead_queue_changed_rank``, the same columns over the rows whose stage
    changed (partial), so the few recent changes are found without walking
    every lead. Both end with the columns the filters test (stage, persona,
    route, change time, company, scoring time): a filtered page is an
    index-only walk too. ``ix_lead_queue_filters`` (stage, persona, route,
    reviewed) counts a filtered page without reading the table (PostgreSQL
    would scan it: ~10x slower). Few indexes keep batch scoring cheap, as each
    rescoring moves every row in the rank indexes (and on PostgreSQL adds an
    entry to every index); for the same reason ``prediction_id`` carries no
    foreign key (the check reads the large predictions table once per row:
    about half the upkeep's cost on SQLite). Predictions are never deleted,
    and only the store writes this table.
    """

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
#: PostgreSQL element types of the queue's columns, for ``unnest`` of one array per column.
_PG_ARRAY_TYPES: Final[dict[str, str]] = {
    "String": "text",
    "BigInteger": "bigint",
    "UTCDateTime": "timestamptz",
    "Float": "double precision",
    "Boolean": "boolean",
}
#: From this many rows on, PostgreSQL gets the review queue's rows by ``COPY``.
_QUEUE_COPY_MIN_ROWS = 500
#: Prediction columns a queue row is built from.
_QUEUE_PREDICTION_COLUMNS: Final[tuple[str, ...]] = (
    "id",
    "lead_id",
    "created_at",
    "model_version",
    "stage",
    "stage_confidence",
    "stage_margin",
    "persona",
    "persona_confidence",
    "persona_margin",
    "probabilities",
    "readiness",
    "route",
)


# ------------------------------------------------------------------ result records


@dataclass(frozen=True)
class CorrectionResult:
    """What ``add_correction`` / ``undo_correction`` stored.

    ``conflict`` is true when the label the caller expected to replace was not
    the current one any more (another rep changed it first). The row is stored
    anyway; the caller decides whether to tell the rep.
    """

    id: int
    old_label: str | None
    new_label: str | None
    conflict: bool
    created_at: datetime
    lead_id: str
    field: str
    kind: str


@dataclass(frozen=True)
class User:
    """A review UI user (never carries the password hash)."""

    id: int
    name: str
    role: str
    active: bool
    created_at: datetime
    #: Sessions started under another generation have ended (logout, password, role).
    session_generation: int = 0


@dataclass(frozen=True)
class ApiKeyInfo:
    """An API key as callers may see it: never the key itself.

    Callers answer 401 for an unknown key and 403 for a revoked one.
    """

    name: str
    role: str
    revoked: bool
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class _Missing(enum.Enum):
    MISSING = enum.auto()


_MISSING: Final = _Missing.MISSING


# ----------------------------------------------------------------- value helpers


def _now() -> datetime:
    return datetime.now(UTC)


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _is_missing(value: Any) -> bool:
    """None, NaN, NaT and pandas.NA are missing; everything else is a value."""
    if value is None:
        return True
    try:
        return bool(value != value)
    except (TypeError, ValueError):
        # pandas.NA refuses bool(); array-likes are not scalars (not missing).
        return type(value).__name__ in {"NAType", "NaTType"}


def _plain(value: Any) -> Any:
    """A numpy scalar as the matching Python scalar; other values unchanged."""
    if hasattr(value, "item") and not isinstance(value, str | bytes | datetime):
        try:
            return value.item()
        except (TypeError, ValueError):
            return value
    return value


def _opt_str(value: Any, name: str) -> str | None:
    if _is_missing(value):
        return None
    value = _plain(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, str | int | float | bool):
        raise ValueError(f"{name}: expected text, got {type(value).__name__}")
    text = check_text(str(value), name).strip()
    return text or None


def _req_str(value: Any, name: str, max_len: int) -> str:
    text = _opt_str(value, name)
    if text is None:
        raise ValueError(f"{name}: must not be empty")
    if len(text) > max_len:
        raise ValueError(f"{name}: longer than {max_len} characters")
    return text


def _opt_int(value: Any, name: str) -> int | None:
    if _is_missing(value):
        return None
    value = _plain(value)
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
    if _is_missing(value):
        return None
    value = _plain(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: expected a number, got {value!r}")
    value = float(value)
    return value if math.isfinite(value) else None


def _opt_ts(value: Any, name: str) -> datetime | None:
    if _is_missing(value):
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
        return _as_utc(value)
    except OverflowError:
        raise ValueError(
            f"{name}: {value.isoformat()} is outside the range of timestamps"
        ) from None


def _req_ts(value: Any, name: str) -> datetime:
    ts = _opt_ts(value, name)
    if ts is None:
        raise ValueError(f"{name}: must not be empty")
    return ts


def _extra_value(value: Any, name: str) -> str | int | float | bool | None:
    if _is_missing(value):
        return None
    value = _plain(value)
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


def _finite(value: Any) -> Any:
    """Replace NaN and infinities (which JSON cannot carry) by None, recursively."""
    value = _plain(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        return _finite(value.tolist())
    return value


_JSON_ENCODER: Final = json.JSONEncoder(allow_nan=False, default=_json_default, ensure_ascii=False)


def _json_dumps(value: Any) -> str:
    """JSON for the database: numpy values become Python ones, NaN becomes null."""
    try:
        return _JSON_ENCODER.encode(value)
    except ValueError:
        return _JSON_ENCODER.encode(_finite(value))


def _chunks(items: Sequence[T], size: int = _CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _lead_values(record: Mapping[str, Any], position: int) -> dict[str, Any]:
    """One lead record as column values: only the columns the record carries."""
    where = f"lead {position}"
    if "lead_id" not in record:
        raise ValueError(f"{where}: lead_id is missing")
    out: dict[str, Any] = {
        "lead_id": _req_str(record["lead_id"], f"{where}: lead_id", _LEAD_ID_MAX)
    }
    where = f"lead {out['lead_id']!r}"
    extra: dict[str, Any] = {}
    has_extra = False
    for key, value in record.items():
        if key == "lead_id":
            continue
        if key in _LEAD_TEXT_COLUMNS:
            out[key] = _opt_str(value, f"{where}: {key}")
        elif key == "company_size":
            out[key] = _opt_int(value, f"{where}: {key}")
        elif key == "created_at":
            out[key] = _opt_ts(value, f"{where}: {key}")
        elif key in ("marketing_stage", "marketing_persona"):
            out[key] = _opt_str(value, f"{where}: {key}")
        elif key in ("stage", "persona"):
            if f"marketing_{key}" not in record:
                out[f"marketing_{key}"] = _opt_str(value, f"{where}: {key}")
        elif key == "extra":
            has_extra = True
            if _is_missing(value):
                continue
            if not isinstance(value, Mapping):
                raise ValueError(f"{where}: extra must be a mapping of scalar values")
            for k, v in value.items():
                extra[str(k)] = _extra_value(v, str(k))
        else:
            has_extra = True
            extra[str(key)] = _extra_value(value, str(key))
    if has_extra:
        out["extra"] = extra
    return out


def event_id_of(values: Mapping[str, Any]) -> str:
    """The derived idempotency key of an event: SHA-256 of its lead, UTC time, type, properties.

    The same event sent again (a client re-sending a lead's history) gets the
    same key, whichever process stores it.
    """
    ts = values["timestamp"]
    parts = [values["lead_id"], ts.isoformat(), values["type"]]
    parts += ["" if values.get(n) is None else str(values[n]) for n in _EVENT_PROPERTIES]
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def _event_values(record: Mapping[str, Any], position: int) -> dict[str, Any]:
    where = f"event {position}"
    unknown = set(record) - set(EVENT_COLUMNS) - {"properties", "event_id"}
    if unknown:
        raise ValueError(
            f"{where}: unknown fields {sorted(unknown)}; allowed: {list(EVENT_COLUMNS)}"
        )
    out: dict[str, Any] = {
        "lead_id": _req_str(record.get("lead_id"), f"{where}: lead_id", _LEAD_ID_MAX),
        "timestamp": _req_ts(record.get("timestamp"), f"{where}: timestamp"),
    }
    kind = record.get("type")
    if kind not in EVENT_TYPES:
        raise ValueError(f"{where}: unknown event type {kind!r}; allowed: {list(EVENT_TYPES)}")
    out["type"] = kind
    props = record.get("properties")
    props = props if isinstance(props, Mapping) else {}
    for name in _EVENT_PROPERTIES:
        value = record[name] if name in record else props.get(name)
        out[name] = _opt_str(value, f"{where}: {name}")
    given = _opt_str(record.get("event_id"), f"{where}: event_id")
    if given is not None and len(given) > _EVENT_ID_MAX:
        raise ValueError(f"{where}: event_id longer than {_EVENT_ID_MAX} characters")
    out["event_id"] = given or event_id_of(out)
    return out


def _prediction_values(record: Mapping[str, Any], position: int, now: datetime) -> dict[str, Any]:
    where = f"prediction {position}"
    unknown = set(record) - _PREDICTION_KEYS
    if unknown:
        raise ValueError(
            f"{where}: unknown fields {sorted(unknown)}; allowed: {sorted(_PREDICTION_KEYS)}"
        )
    out: dict[str, Any] = {
        "lead_id": _req_str(record.get("lead_id"), f"{where}: lead_id", _LEAD_ID_MAX),
        "created_at": _opt_ts(record.get("created_at"), f"{where}: created_at") or now,
        "model_name": _req_str(record.get("model_name"), f"{where}: model_name", _LABEL_MAX),
        "model_version": _req_str(
            record.get("model_version"), f"{where}: model_version", _LABEL_MAX
        ),
        "source": _choice(record.get("source"), f"{where}: source", PREDICTION_SOURCES),
    }
    for name in ("stage", "persona", "route"):
        out[name] = _opt_str(record.get(name), f"{where}: {name}")
    for name in (
        "stage_confidence",
        "stage_margin",
        "persona_confidence",
        "persona_margin",
        "readiness",
    ):
        out[name] = _opt_float(record.get(name), f"{where}: {name}")
    for name in ("probabilities", "reasons", "features"):
        value = record.get(name)
        out[name] = None if value is None else value
    return out


def _lead_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["extra"] = dict(out.get("extra") or {})
    return out


def _event_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in EVENT_COLUMNS}


def _safe_url(url: URL) -> str:
    return url.render_as_string(hide_password=True)


# ---------------------------------------------------------------- engine set-up


def _install_sqlite_listeners(engine: Engine) -> None:
    """WAL, foreign keys, a busy timeout and a 32 MiB page cache on every connection.

    pysqlite's own transaction handling is switched off (``isolation_level =
    None``) so that SQLAlchemy's ``begin`` decides: ``BEGIN IMMEDIATE`` for
    connections carrying the ``leadready_write`` option (it takes the write lock
    up front, so a transaction never fails half-way upgrading a read lock), plain
    ``BEGIN`` otherwise. This also makes DDL transactional for the migrations.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute(f"PRAGMA cache_size = -{_SQLITE_CACHE_KIB}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("leadready_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _sqlite_file(url: URL) -> Path | None:
    database = url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _retryable(exc: DBAPIError) -> bool:
    """SQLite lock contention, PostgreSQL serialization failures and deadlocks."""
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in ("40001", "40P01"):
        return True
    message = str(orig).lower()
    return "database is locked" in message or "database is busy" in message


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic ``Config`` built in code: no ini file, works from any directory.

    Parameters
    ----------
    connection
        An open connection the migrations run on (``Store.upgrade`` passes its own).
    url
        A database URL, for running Alembic commands (``revision --autogenerate``,
        ``history``) outside a ``Store``.

    Returns
    -------
    alembic.config.Config
        ``script_location`` points at :data:`MIGRATIONS_DIR`.
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


# ----------------------------------------------------------------------- store


class Store:
    """The leadready database: one engine, plain methods, sessions managed inside.

    Parameters
    ----------
    url
        A SQLAlchemy URL: ``sqlite:///path/to/file.db`` (the folder is created) or
        ``postgresql+psycopg://user@host/db``; a ``search_path`` in the URL's
        ``options`` puts every table, and Alembic's version table, in that schema.
    pool_size, max_overflow
        Connection pool sizes (SQLAlchemy's defaults when None).
    echo
        Log every SQL statement (debugging).
    password_hasher
        The argon2 hasher for user passwords (default: argon2-cffi's
        recommended argon2id parameters). Hashes made with other parameters are
        replaced at the user's next successful login.

    Notes
    -----
    Call :meth:`upgrade` once before use. A ``Store`` is safe to share between
    threads; call :meth:`dispose` when done (or use it as a context manager).
    """

    def __init__(
        self,
        url: str | URL,
        *,
        pool_size: int | None = None,
        max_overflow: int | None = None,
        echo: bool = False,
        password_hasher: PasswordHasher | None = None,
    ) -> None:
        self._url = make_url(url)
        kwargs: dict[str, Any] = {"echo": echo, "json_serializer": _json_dumps}
        if pool_size is not None:
            kwargs["pool_size"] = pool_size
        if max_overflow is not None:
            kwargs["max_overflow"] = max_overflow
        self._sqlite = self._url.get_backend_name() == "sqlite"
        if self._sqlite:
            path = _sqlite_file(self._url)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                # Created private (0600): the file holds password and API-key hashes.
                # SQLite gives its -wal and -shm files the database file's mode.
                path.touch(mode=0o600, exist_ok=True)
        else:
            kwargs["pool_pre_ping"] = True
            if "connect_timeout" not in self._url.query:
                # An unreachable server fails a connect in seconds, not at the TCP timeout.
                kwargs["connect_args"] = {"connect_timeout": _PG_CONNECT_TIMEOUT_S}
        self._engine = sa.create_engine(self._url, **kwargs)
        if self._sqlite:
            _install_sqlite_listeners(self._engine)
        self._write_engine = self._engine.execution_options(leadready_write=True)
        self._hasher = password_hasher or PasswordHasher()
        self._dummy_hash: str | None = None

    def __repr__(self) -> str:
        return f"Store({_safe_url(self._url)!r})"

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.dispose()

    @property
    def url(self) -> str:
        """The database URL with any password hidden (for messages and logs)."""
        return _safe_url(self._url)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for health checks and tests; prefer the methods)."""
        return self._engine

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    def dispose(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    # ----------------------------------------------------------- transactions

    def _write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one write transaction, retrying lock contention.

        On SQLite the transaction starts with ``BEGIN IMMEDIATE``; "database is
        locked" (past the 30 s busy timeout) and PostgreSQL serialization failures
        or deadlocks roll back and retry a few times with jittered backoff. The
        transaction is rolled back before a retry, so a write lands exactly once.
        """
        for attempt in range(_WRITE_RETRIES):
            try:
                with self._write_engine.begin() as conn:
                    return work(conn)
            except DBAPIError as exc:
                if attempt == _WRITE_RETRIES - 1 or not _retryable(exc):
                    raise
                time.sleep(0.02 * 2**attempt * (1 + random.random()))
        raise AssertionError("unreachable")

    def _bulk_insert(
        self, conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]
    ) -> None:
        """Append rows that all carry the same keys, values already normalised.

        PostgreSQL through psycopg 3 gets ``COPY … FROM STDIN`` (several times
        faster than its executemany; JSON columns go as JSON text, timestamps are
        already UTC); other drivers get an executemany.
        """
        if not rows:
            return
        if conn.dialect.driver != "psycopg":
            conn.execute(sa.insert(table), list(rows))
            return
        names = list(rows[0])
        json_names = {n for n in names if isinstance(table.c[n].type, sa.JSON)}
        quoted = ", ".join(conn.dialect.identifier_preparer.quote(n) for n in names)
        target = conn.dialect.identifier_preparer.format_table(table)
        statement = f"COPY {target} ({quoted}) FROM STDIN"
        dbapi_error = conn.dialect.loaded_dbapi.Error
        cursor = conn.connection.driver_connection.cursor()
        try:
            with cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(
                        [
                            _json_dumps(row[n])
                            if n in json_names and row[n] is not None
                            else row[n]
                            for n in names
                        ]
                    )
        except dbapi_error as exc:
            # Raised by psycopg directly: wrap it as SQLAlchemy would (IntegrityError, …).
            raise DBAPIError.instance(statement, None, exc, dbapi_error) from exc
        finally:
            cursor.close()

    def _insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT (with ON CONFLICT support)."""
        if self._sqlite:
            return sqlite_dialect.insert(table)
        return pg_dialect.insert(table)

    def _reserve_ids(self, conn: Connection, table: sa.Table, n: int) -> list[int]:
        """``n`` new ascending ids of ``table`` (so a bulk insert knows its rows' ids).

        PostgreSQL draws them from the column's sequence; on SQLite the write
        transaction holds the database lock, so the ids after the largest are free.
        """
        if self._sqlite:
            start = conn.execute(sa.select(sa.func.max(table.c.id))).scalar() or 0
            return list(range(start + 1, start + 1 + n))
        ids = conn.execute(
            sa.text("SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"),
            {"t": table.name, "n": n},
        ).scalars()
        return sorted(ids)

    # ------------------------------------------------------------ review queue

    def _among(self, column: Any, ids: Sequence[str]) -> Any:
        """``column IN ids`` as one parameter (a JSON array on SQLite, an array on PostgreSQL).

        A 5000-id ``IN (…)`` list costs more to render and parse than to run.
        """
        if self._sqlite:
            values = sa.func.json_each(sa.literal(json.dumps(list(ids)))).table_valued("value")
            return column.in_(sa.select(values.c.value))
        return column == sa.any_(sa.literal(list(ids), type_=pg_dialect.ARRAY(sa.String())))

    def _rep_labelled(self, conn: Connection, lead_ids: Sequence[str]) -> set[str]:
        """Leads whose latest correction of some field leaves a rep's label current."""
        if not lead_ids:
            return set()
        newer = _CORRECTIONS.alias("newer")
        latest = (
            sa.select(sa.func.max(newer.c.id))
            .where(newer.c.lead_id == _CORRECTIONS.c.lead_id, newer.c.field == _CORRECTIONS.c.field)
            .scalar_subquery()
        )
        out: set[str] = set()
        for chunk in _chunks(sorted(lead_ids)):
            stmt = (
                sa.select(_CORRECTIONS.c.lead_id)
                .where(
                    self._among(_CORRECTIONS.c.lead_id, chunk),
                    _CORRECTIONS.c.is_rep_label.is_(True),
                    _CORRECTIONS.c.id == latest,
                )
                .distinct()
            )
            out.update(conn.execute(stmt).scalars())
        return out

    def _queue_upsert(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Insert or replace queue rows; a row is only replaced by a newer prediction's.

        ``reviewed`` of an existing row is left alone (corrections own it). Rows
        go in lead id order, so concurrent writers lock them in the same order.
        Batch scoring writes tens of thousands of rows, so the statement runs at
        the driver level: SQLite gets an ``executemany`` of plain tuples;
        PostgreSQL gets one ``INSERT … SELECT FROM unnest(<one array per
        column>)`` for a few rows (the API's writer), and for a batch a ``COPY``
        into a temporary table and one ``INSERT … SELECT`` from it (dumping
        arrays costs the client about four times what ``COPY`` does).
        """
        if not rows:
            return
        rows = sorted(rows, key=lambda row: row["lead_id"])
        dialect = conn.dialect
        quote = dialect.identifier_preparer.quote
        columns = list(_QUEUE.c)
        names = ", ".join(quote(c.name) for c in columns)
        updates = ", ".join(
            f"{quote(c.name)} = excluded.{quote(c.name)}"
            for c in columns
            if c.name not in ("lead_id", "reviewed")
        )
        table = dialect.identifier_preparer.format_table(_QUEUE)
        conflict = (
            f"ON CONFLICT (lead_id) DO UPDATE SET {updates} "
            f"WHERE {table}.prediction_id < excluded.prediction_id"
        )
        processors = [c.type.bind_processor(dialect) for c in columns]

        def values(row: Mapping[str, Any]) -> list[Any]:
            return [
                row[c.name] if process is None else process(row[c.name])
                for c, process in zip(columns, processors, strict=True)
            ]

        if self._sqlite:
            marks = ", ".join("?" for _ in columns)
            statement = f"INSERT INTO {table} ({names}) VALUES ({marks}) {conflict}"
            conn.exec_driver_sql(statement, [tuple(values(row)) for row in rows])
            return
        if len(rows) < _QUEUE_COPY_MIN_ROWS:
            arrays = ", ".join(
                f"CAST(%({c.name})s AS {_PG_ARRAY_TYPES[type(c.type).__name__]}[])" for c in columns
            )
            table_values = [values(row) for row in rows]
            conn.exec_driver_sql(
                f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) {conflict}",
                {c.name: [row[i] for row in table_values] for i, c in enumerate(columns)},
            )
            return
        batch = quote("lead_queue_batch")
        statements = (
            f"CREATE TEMPORARY TABLE {batch} (LIKE {table}) ON COMMIT DROP",
            f"COPY {batch} ({names}) FROM STDIN",
            f"INSERT INTO {table} ({names}) SELECT {names} FROM {batch} "
            f"ORDER BY lead_id {conflict}",
            f"DROP TABLE {batch}",
        )
        dbapi_error = dialect.loaded_dbapi.Error
        cursor = conn.connection.driver_connection.cursor()
        statement = statements[0]
        try:
            cursor.execute(statement)
            statement = statements[1]
            with cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row(values(row))
            for statement in statements[2:]:
                cursor.execute(statement)
        except dbapi_error as exc:
            # Raised by psycopg directly: wrap it as SQLAlchemy would.
            raise DBAPIError.instance(statement, None, exc, dbapi_error) from exc
        finally:
            cursor.close()

    def _queue_predictions(self, conn: Connection, values: Sequence[Mapping[str, Any]]) -> None:
        """Bring the queue rows of a batch's leads to their newest prediction of the batch.

        On SQLite writers are serialised, so a row is always exact. On
        PostgreSQL (READ COMMITTED) the newest prediction always wins (the
        upsert only replaces an older ``prediction_id``), but two transactions
        writing the same lead at the same moment (two scorings; a scoring and a
        change of marketing's label; a lead's first scoring and a correction)
        can leave that row's previous stage, doubt term or reviewed flag one
        write behind, until the lead's next write of that kind.
        """
        from data.review_queue import queue_rows

        latest: dict[str, Mapping[str, Any]] = {}
        before: dict[str, str | None] = {}
        for row in values:
            prior = latest.get(row["lead_id"])
            if prior is not None:
                before[row["lead_id"]] = prior["stage"]
            latest[row["lead_id"]] = row
        rows: list[dict[str, Any]] = []
        for chunk in _chunks(sorted(latest)):
            existing = {
                row.lead_id: row
                for row in conn.execute(
                    sa.select(
                        _QUEUE.c.lead_id,
                        _QUEUE.c.prediction_id,
                        _QUEUE.c.stage,
                        _QUEUE.c.reviewed,
                    ).where(self._among(_QUEUE.c.lead_id, chunk))
                )
            }
            leads = {
                row["lead_id"]: row
                for row in conn.execute(
                    sa.select(
                        _LEADS.c.lead_id,
                        *(_LEADS.c[name] for name in sorted(_QUEUE_LEAD_COLUMNS)),
                    ).where(self._among(_LEADS.c.lead_id, chunk))
                ).mappings()
            }
            reviewed = self._rep_labelled(conn, [i for i in chunk if i not in existing])
            previous: dict[str, str | None] = {}
            predictions = []
            for lead_id in chunk:
                prediction, old = latest[lead_id], existing.get(lead_id)
                if old is not None and old.prediction_id > prediction["id"]:
                    continue
                if old is not None and old.reviewed:
                    reviewed.add(lead_id)
                if lead_id in before:
                    previous[lead_id] = before[lead_id]
                elif old is not None:
                    previous[lead_id] = old.stage
                predictions.append(prediction)
            rows.extend(
                queue_rows(predictions, leads=leads, previous_stages=previous, reviewed=reviewed)
            )
        self._queue_upsert(conn, rows)

    def _queue_leads(self, conn: Connection, lead_ids: Sequence[str]) -> None:
        """Rebuild the queue rows whose copy of the lead's company or labels is stale."""
        from data.review_queue import queue_rows

        differs = sa.or_(
            *(_QUEUE.c[name].is_distinct_from(_LEADS.c[name]) for name in _QUEUE_LEAD_COLUMNS)
        )
        stmt = (
            sa.select(
                *(_PREDICTIONS.c[name] for name in _QUEUE_PREDICTION_COLUMNS),
                *(_LEADS.c[name] for name in sorted(_QUEUE_LEAD_COLUMNS)),
                _QUEUE.c.previous_stage,
                _QUEUE.c.reviewed,
            )
            .select_from(
                _QUEUE.join(_LEADS, _LEADS.c.lead_id == _QUEUE.c.lead_id).join(
                    _PREDICTIONS, _PREDICTIONS.c.id == _QUEUE.c.prediction_id
                )
            )
            .where(self._among(_QUEUE.c.lead_id, lead_ids), differs)
        )
        stale = conn.execute(stmt).mappings().all()
        if not stale:
            return
        rows = queue_rows(
            stale,
            leads={row["lead_id"]: row for row in stale},
            previous_stages={row["lead_id"]: row["previous_stage"] for row in stale},
            reviewed={row["lead_id"] for row in stale if row["reviewed"]},
        )
        doubt = ("p_marketing_stage", "p_marketing_persona", "sort_key")
        changed = (*sorted(_QUEUE_LEAD_COLUMNS), *doubt)
        update = (
            sa.update(_QUEUE)
            .where(
                _QUEUE.c.lead_id == sa.bindparam("q_lead_id"),
                _QUEUE.c.prediction_id == sa.bindparam("q_prediction_id"),
            )
            .values({name: sa.bindparam(f"q_{name}") for name in changed})
        )
        conn.execute(
            update,
            [
                {
                    "q_lead_id": row["lead_id"],
                    "q_prediction_id": row["prediction_id"],
                    **{f"q_{name}": row[name] for name in changed},
                }
                for row in sorted(rows, key=lambda row: row["lead_id"])
            ],
        )

    def _queue_reviewed(self, conn: Connection, lead_id: str) -> None:
        """Set the queue row's reviewed flag from the lead's corrections."""
        reviewed = lead_id in self._rep_labelled(conn, [lead_id])
        conn.execute(sa.update(_QUEUE).where(_QUEUE.c.lead_id == lead_id).values(reviewed=reviewed))

    # ------------------------------------------------------------------ schema

    def upgrade(self, revision: str = "head") -> None:
        """Apply the Alembic migrations up to ``revision`` (idempotent).

        On PostgreSQL an advisory lock per schema makes concurrent upgrades (many
        workers starting at once) wait for each other instead of colliding.
        """
        from alembic import command

        with self._write_engine.begin() as conn:
            if not self._sqlite:
                conn.execute(
                    sa.text(
                        "SELECT pg_advisory_xact_lock(hashtext('leadready:migrate:' || current_schema()))"
                    )
                )
            command.upgrade(alembic_config(conn), revision)

    def current_revision(self) -> str | None:
        """The revision the database is at (None before the first upgrade)."""
        from alembic.runtime.migration import MigrationContext

        with self._engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str | None:
        """The newest revision the code knows."""
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(alembic_config()).get_current_head()

    def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            with self._engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except DBAPIError:
            return False
        return True

    # ----------------------------------------------------------- leads/events

    def upsert_leads(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Insert new leads and update known ones (profile and marketing labels).

        Parameters
        ----------
        records
            Mappings with ``lead_id`` and any of the profile columns
            (:data:`data.schema.LEAD_COLUMNS`), marketing labels as ``stage`` /
            ``persona`` (or ``marketing_stage`` / ``marketing_persona``), an
            ``extra`` mapping, and other keys (kept in ``extra``). Missing values
            (None, NaN, NaT) are stored as NULL. A column a record does not carry
            is left as it is on an existing lead. Rows of a DataFrame
            (``df.to_dict("records")``) are accepted as they are.

        Returns
        -------
        int
            The number of distinct leads written.

        Raises
        ------
        ValueError
            A record without a lead id or with a value of the wrong kind (nothing
            of that chunk is written).

        Notes
        -----
        Duplicated ids within ``records`` are merged, later values winning. Rows go
        in chunks of 5000, one transaction each, through the dialect's
        ``INSERT … ON CONFLICT DO UPDATE`` (fast at 100k rows; re-running an import
        is harmless). In the same transaction, the review queue rows of scored
        leads whose company or marketing labels changed are brought up to date
        (the model's probability of marketing's label, the priority).
        """
        merged: dict[str, dict[str, Any]] = {}
        for position, record in enumerate(records, start=1):
            values = _lead_values(record, position)
            merged.setdefault(values["lead_id"], {}).update(values)
        if not merged:
            return 0
        now = _now()
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for values in merged.values():
            values["first_seen"] = now
            values["updated_at"] = now
            groups.setdefault(tuple(sorted(values)), []).append(values)
        for columns, rows in groups.items():
            stmt = self._insert(_LEADS)
            updates = {c: stmt.excluded[c] for c in columns if c not in ("lead_id", "first_seen")}
            stmt = stmt.on_conflict_do_update(index_elements=["lead_id"], set_=updates)
            queued = not _QUEUE_LEAD_COLUMNS.isdisjoint(columns)

            def work(
                conn: Connection, chunk: Sequence[dict[str, Any]], stmt: Any, queued: bool
            ) -> None:
                conn.execute(stmt, list(chunk))
                if queued:
                    self._queue_leads(conn, [row["lead_id"] for row in chunk])

            for chunk in _chunks(sorted(rows, key=lambda row: row["lead_id"])):
                self._write(
                    lambda conn, chunk=chunk, stmt=stmt, queued=queued: work(
                        conn, chunk, stmt, queued
                    )
                )
        return len(merged)

    def add_events(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Append engagement events (their leads must be in the store).

        Parameters
        ----------
        records
            Mappings with :data:`data.schema.EVENT_COLUMNS` (properties flattened,
            or under a ``properties`` mapping). Timestamps are stored as UTC.

        Returns
        -------
        int
            The number of events given (those already stored are skipped).

        Raises
        ------
        ValueError
            An unknown event type, a missing timestamp or an unknown field.

        Notes
        -----
        Each event has an idempotency key, ``event_id``: the record's own (at most
        64 characters) or :func:`event_id_of` its content. A unique index on
        ``(lead_id, event_id)`` and ``INSERT … ON CONFLICT DO NOTHING`` (SQLite
        and PostgreSQL) store an event sent again, by any process, only once.
        KeyError
            An event of a lead that is not in the store (upsert the lead first).
        """
        rows = [_event_values(record, i) for i, record in enumerate(records, start=1)]

        def work(conn: Connection, chunk: Sequence[dict[str, Any]]) -> None:
            ids = sorted({row["lead_id"] for row in chunk})
            known = set(
                conn.execute(sa.select(_LEADS.c.lead_id).where(_LEADS.c.lead_id.in_(ids))).scalars()
            )
            missing = [lead_id for lead_id in ids if lead_id not in known]
            if missing:
                shown = ", ".join(repr(m) for m in missing[:5])
                more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
                raise KeyError(f"events of unknown leads: {shown}{more}")
            # Idempotent: an event already stored (same lead and event id) is skipped.
            stmt = self._insert(_EVENTS).on_conflict_do_nothing(
                index_elements=["lead_id", "event_id"]
            )
            conn.execute(stmt, list(chunk))

        for chunk in _chunks(rows):
            self._write(lambda conn, chunk=chunk: work(conn, chunk))
        return len(rows)

    def get_lead(self, lead_id: str) -> dict[str, Any] | None:
        """A lead's stored profile, marketing labels and timestamps, or None."""
        with self._engine.connect() as conn:
            row = (
                conn.execute(sa.select(_LEADS).where(_LEADS.c.lead_id == lead_id))
                .mappings()
                .first()
            )
        return None if row is None else _lead_dict(row)

    def events_for(self, lead_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        """A lead's events, oldest first.

        Parameters
        ----------
        lead_id
            The lead.
        limit
            Keep only the ``limit`` most recent events (still returned oldest first).

        Returns
        -------
        list of dict
            Keys: :data:`data.schema.EVENT_COLUMNS`.
        """
        order = (_EVENTS.c.timestamp.desc(), _EVENTS.c.id.desc())
        stmt = sa.select(_EVENTS).where(_EVENTS.c.lead_id == lead_id).order_by(*order)
        if limit is not None:
            stmt = stmt.limit(max(int(limit), 0))
        with self._engine.connect() as conn:
            rows = conn.execute(stmt).mappings().all()
        return [_event_dict(row) for row in reversed(rows)]

    def search_leads(self, text: str, limit: int = 20) -> list[dict[str, Any]]:
        """Leads whose id, company or job title contains ``text`` (case-insensitive).

        An exact id match comes first, then by company and id. ``%`` and ``_`` in
        ``text`` match themselves. Blank text finds nothing.
        """
        needle = (text or "").strip().lower()
        if not needle:
            return []
        check_text(needle, "search")
        escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        columns = (_LEADS.c.lead_id, _LEADS.c.company, _LEADS.c.job_title)
        stmt = (
            sa.select(_LEADS)
            .where(sa.or_(*(sa.func.lower(c).like(pattern, escape="\\") for c in columns)))
            .order_by(
                sa.case((sa.func.lower(_LEADS.c.lead_id) == needle, 0), else_=1),
                _LEADS.c.company,
                _LEADS.c.lead_id,
            )
            .limit(max(1, min(int(limit), 1000)))
        )
        with self._engine.connect() as conn:
            return [_lead_dict(row) for row in conn.execute(stmt).mappings()]

    # ------------------------------------------------------------- predictions

    def record_predictions(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Store scored leads in one bulk insert (``COPY`` on PostgreSQL).

        Parameters
        ----------
        rows
            Mappings with ``lead_id``, ``model_name``, ``model_version``,
            ``source`` (one of :data:`PREDICTION_SOURCES`) and any of ``stage``,
            ``stage_confidence``, ``stage_margin``, ``persona``,
            ``persona_confidence``, ``persona_margin``, ``probabilities``
            (``{"stage": {label: p}, "persona": {...}}``), ``readiness``,
            ``route``, ``reasons``, ``features`` (the feature snapshot),
            ``created_at`` (default: now). JSON values may hold numpy scalars;
            NaN is stored as null. The lead need not be in the leads table.

        Returns
        -------
        int
            The number of rows written.

        Raises
        ------
        ValueError
            An unknown key, a missing required value or a bad source; nothing is
            written then.

        Notes
        -----
        The review queue (``lead_queue``) follows in the same transaction: each
        lead's row is replaced by one built from its newest prediction of this
        batch (rows are numbered up front, so within a batch the later row of a
        lead is the newer), with the stage before it, marketing's labels and the
        reviewed flag (kept from the lead's row, else read from the corrections).
        A row is only ever replaced by a newer prediction's.
        """
        now = _now()
        values = [_prediction_values(row, i, now) for i, row in enumerate(rows, start=1)]
        if not values:
            return 0

        def work(conn: Connection) -> None:
            ids = self._reserve_ids(conn, _PREDICTIONS, len(values))
            numbered = [{"id": new_id, **row} for new_id, row in zip(ids, values, strict=True)]
            self._bulk_insert(conn, _PREDICTIONS, numbered)
            self._queue_predictions(conn, numbered)

        self._write(work)
        return len(values)

    def predictions_for(self, lead_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        """A lead's predictions, newest first (all columns)."""
        stmt = (
            sa.select(_PREDICTIONS)
            .where(_PREDICTIONS.c.lead_id == lead_id)
            .order_by(_PREDICTIONS.c.id.desc())
        )
        if limit is not None:
            stmt = stmt.limit(max(int(limit), 0))
        with self._engine.connect() as conn:
            return [dict(row) for row in conn.execute(stmt).mappings()]

    def latest_prediction(self, lead_id: str) -> dict[str, Any] | None:
        """A lead's newest prediction, or None."""
        rows = self.predictions_for(lead_id, limit=1)
        return rows[0] if rows else None

    def latest_predictions(
        self, lead_ids: Iterable[str] | None = None, *, with_features: bool = True
    ) -> dict[str, dict[str, Any]]:
        """The newest prediction of each lead, keyed by lead id.

        Parameters
        ----------
        lead_ids
            Only these leads (default: every lead with a prediction).
        with_features
            Include the ``features`` snapshot (leave it out for listings of many
            leads: it is the bulk of each row).

        Notes
        -----
        One ``max(id) … GROUP BY lead_id`` pass over the ``(lead_id, id)`` index,
        joined back to the rows; ids are asked for in chunks.
        """
        columns = [c for c in _PREDICTIONS.c if with_features or c.name != "features"]

        def query(ids: Sequence[str] | None) -> sa.Select[Any]:
            newest = sa.select(sa.func.max(_PREDICTIONS.c.id).label("id")).group_by(
                _PREDICTIONS.c.lead_id
            )
            if ids is not None:
                newest = newest.where(_PREDICTIONS.c.lead_id.in_(ids))
            sub = newest.subquery()
            return sa.select(*columns).join(sub, _PREDICTIONS.c.id == sub.c.id)

        out: dict[str, dict[str, Any]] = {}
        with self._engine.connect() as conn:
            if lead_ids is None:
                statements = [query(None)]
            else:
                ids = sorted(set(lead_ids))
                statements = [query(chunk) for chunk in _chunks(ids)]
            for stmt in statements:
                for row in conn.execute(stmt).mappings():
                    out[row["lead_id"]] = dict(row)
        return out

    # ------------------------------------------------------------- corrections

    def _lock_lead(self, conn: Connection, lead_id: str) -> Mapping[str, Any]:
        """Lock the lead's row for this transaction and return its marketing labels.

        A lead that was scored but never stored as a profile gets a bare row first
        (so there is a row to lock and a target for the foreign key). Unknown
        leads raise ``KeyError``.
        """
        stmt = (
            sa.select(_LEADS.c.lead_id, _LEADS.c.marketing_stage, _LEADS.c.marketing_persona)
            .where(_LEADS.c.lead_id == lead_id)
            .with_for_update()
        )
        row = conn.execute(stmt).mappings().first()
        if row is not None:
            return row
        scored = conn.execute(
            sa.select(_PREDICTIONS.c.id).where(_PREDICTIONS.c.lead_id == lead_id).limit(1)
        ).first()
        if scored is None:
            raise KeyError(f"unknown lead {lead_id!r}")
        now = _now()
        insert = self._insert(_LEADS).values(lead_id=lead_id, first_seen=now, updated_at=now)
        conn.execute(insert.on_conflict_do_nothing(index_elements=["lead_id"]))
        return conn.execute(stmt).mappings().one()

    def _label_state(
        self, conn: Connection, lead: Mapping[str, Any], field: str
    ) -> tuple[str | None, Mapping[str, Any] | None, Mapping[str, Any] | None]:
        """(current label, latest correction row, latest prediction row) of one field."""
        lead_id = lead["lead_id"]
        correction = (
            conn.execute(
                sa.select(_CORRECTIONS)
                .where(_CORRECTIONS.c.lead_id == lead_id, _CORRECTIONS.c.field == field)
                .order_by(_CORRECTIONS.c.id.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
        prediction = (
            conn.execute(
                sa.select(
                    _PREDICTIONS.c.id,
                    _PREDICTIONS.c.model_version,
                    _PREDICTIONS.c[field].label("label"),
                )
                .where(_PREDICTIONS.c.lead_id == lead_id)
                .order_by(_PREDICTIONS.c.id.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
        if correction is not None and correction["is_rep_label"]:
            return correction["new_label"], correction, prediction
        if prediction is not None and prediction["label"] is not None:
            return prediction["label"], correction, prediction
        return lead[f"marketing_{field}"], correction, prediction

    def _append(self, conn: Connection, values: dict[str, Any]) -> int:
        result = conn.execute(sa.insert(_CORRECTIONS).returning(_CORRECTIONS.c.id), values)
        return int(result.scalar_one())

    def add_correction(
        self,
        lead_id: str,
        field: str,
        new_label: str,
        *,
        reviewer: str,
        kind: str = "reclassify",
        reason: str | None = None,
        note: str | None = None,
        source: str = "ui",
        prediction_id: int | None = None,
        model_version: str | None = None,
        expected_label: str | None | _Missing = _MISSING,
        created_at: datetime | None = None,
        api_key: str | None = None,
        batch_id: str | None = None,
        suggestion_id: int | None = None,
    ) -> CorrectionResult:
        """Append a rep's correction of one label of one lead.

        Parameters
        ----------
        lead_id
            The lead (in the leads table, or at least scored).
        field
            ``"stage"`` or ``"persona"``.
        new_label
            The label the rep sets (labels are open: any non-empty text).
        reviewer
            Who corrected (user name, or API key name for CRM corrections).
        kind
            ``"reclassify"`` (default), ``"confirm"`` (the rep checked the current
            label and agrees) or ``"undo"`` (imports only; use
            :meth:`undo_correction`).
        reason, note
            A short reason code and a free note.
        source
            ``"ui"``, ``"api"`` or ``"import"``.
        prediction_id, model_version
            The prediction the rep reviewed. Default: the lead's newest prediction
            at this moment (so retraining finds the feature snapshot the rep saw).
        expected_label
            The label the caller believes is current. When given and different,
            the correction is stored all the same and ``conflict`` is true.
        created_at
            When the rep corrected (imports); default now.
        api_key
            The name of the API key that sent the correction (API corrections).
        batch_id
            The bulk action this row belongs to (see :meth:`undo_batch`).
        suggestion_id
            The suggestion the rep confirmed (see :mod:`training.similar`).

        Returns
        -------
        CorrectionResult
            ``old_label`` is the label that was current: the latest correction's,
            else the latest prediction's, else marketing's.

        Raises
        ------
        KeyError
            Unknown lead.
        ValueError
            Bad field, kind, source, empty label or reviewer, or a prediction of
            another lead.
        """
        field = _choice(field, "field", CORRECTION_FIELDS)
        kind = _choice(kind, "kind", CORRECTION_KINDS)
        source = _choice(source, "source", CORRECTION_SOURCES)
        label = _req_str(new_label, "new_label", _LABEL_MAX)
        who = _req_str(reviewer, "reviewer", _LABEL_MAX)
        why = _opt_str(reason, "reason")
        if why is not None and len(why) > _REASON_MAX:
            raise ValueError(f"reason: longer than {_REASON_MAX} characters")
        if note is not None and not isinstance(note, str):
            raise ValueError("note: expected text")
        if note is not None and len(note) > _NOTE_MAX:
            raise ValueError(f"note: longer than {_NOTE_MAX} characters")
        when = _opt_ts(created_at, "created_at")
        key_name = None if api_key is None else _req_str(api_key, "api_key", _NAME_MAX)

        def work(conn: Connection) -> CorrectionResult:
            lead = self._lock_lead(conn, lead_id)
            current, _, latest_prediction = self._label_state(conn, lead, field)
            pred_id, version = prediction_id, model_version
            if pred_id is not None:
                reviewed = conn.execute(
                    sa.select(_PREDICTIONS.c.lead_id, _PREDICTIONS.c.model_version).where(
                        _PREDICTIONS.c.id == pred_id
                    )
                ).first()
                if reviewed is None or reviewed.lead_id != lead["lead_id"]:
                    raise ValueError(
                        f"prediction {pred_id} is not a prediction of lead {lead_id!r}"
                    )
                version = version if version is not None else reviewed.model_version
            elif latest_prediction is not None:
                pred_id = latest_prediction["id"]
                version = version if version is not None else latest_prediction["model_version"]
            stamp = when or _now()
            new_id = self._append(
                conn,
                {
                    "lead_id": lead["lead_id"],
                    "field": field,
                    "old_label": current,
                    "new_label": label,
                    "kind": kind,
                    "is_rep_label": True,
                    "reviewer": who,
                    "created_at": stamp,
                    "reason": why,
                    "note": note,
                    "source": source,
                    "prediction_id": pred_id,
                    "model_version": version,
                    "undo_of": None,
                    "api_key": key_name,
                    "batch_id": batch_id,
                    "suggestion_id": suggestion_id,
                },
            )
            self._queue_reviewed(conn, lead["lead_id"])
            conflict = expected_label is not _MISSING and expected_label != current
            return CorrectionResult(new_id, current, label, conflict, stamp, lead_id, field, kind)

        return self._write(work)

    def undo_correction(
        self,
        correction_id: int,
        *,
        reviewer: str,
        reason: str | None = None,
        note: str | None = None,
        source: str = "ui",
        batch_id: str | None = None,
    ) -> CorrectionResult:
        """Append an ``undo`` row that restores the label from before a correction.

        Nothing is overwritten: the undone row stays, and the new row points at it
        (``undo_of``). When the undone correction was the first rep label of the
        field, the lead goes back to the model's (else marketing's) label and no
        longer counts as rep-labelled in :meth:`current_labels`. Undoing an undo
        restores what the undo replaced.

        Returns
        -------
        CorrectionResult
            ``conflict`` is true when the label had changed since the undone
            correction (someone corrected the lead after it); the undo is stored
            all the same.

        Raises
        ------
        KeyError
            Unknown correction id.
        """
        who = _req_str(reviewer, "reviewer", _LABEL_MAX)
        source = _choice(source, "source", CORRECTION_SOURCES)
        why = _opt_str(reason, "reason")
        if note is not None and len(note) > _NOTE_MAX:
            raise ValueError(f"note: longer than {_NOTE_MAX} characters")

        def work(conn: Connection) -> CorrectionResult:
            target = (
                conn.execute(sa.select(_CORRECTIONS).where(_CORRECTIONS.c.id == correction_id))
                .mappings()
                .first()
            )
            if target is None:
                raise KeyError(f"unknown correction {correction_id}")
            field = target["field"]
            lead = self._lock_lead(conn, target["lead_id"])
            current, _, latest_prediction = self._label_state(conn, lead, field)
            before = (
                conn.execute(
                    sa.select(_CORRECTIONS.c.is_rep_label)
                    .where(
                        _CORRECTIONS.c.lead_id == target["lead_id"],
                        _CORRECTIONS.c.field == field,
                        _CORRECTIONS.c.id < target["id"],
                    )
                    .order_by(_CORRECTIONS.c.id.desc())
                    .limit(1)
                )
                .scalars()
                .first()
            )
            rep_label = bool(before)
            if rep_label:
                restored = target["old_label"]
            elif latest_prediction is not None and latest_prediction["label"] is not None:
                restored = latest_prediction["label"]
            else:
                restored = lead[f"marketing_{field}"]
            stamp = _now()
            new_id = self._append(
                conn,
                {
                    "lead_id": target["lead_id"],
                    "field": field,
                    "old_label": current,
                    "new_label": restored,
                    "kind": "undo",
                    "is_rep_label": rep_label,
                    "reviewer": who,
                    "created_at": stamp,
                    "reason": why,
                    "note": note,
                    "source": source,
                    "prediction_id": target["prediction_id"],
                    "model_version": target["model_version"],
                    "undo_of": target["id"],
                    "batch_id": batch_id,
                },
            )
            self._queue_reviewed(conn, target["lead_id"])
            conflict = current != target["new_label"]
            return CorrectionResult(
                new_id, current, restored, conflict, stamp, target["lead_id"], field, "undo"
            )

        return self._write(work)

    # ------------------------------------------------- batches (issue #18: bulk undo)

    def corrections_in_batch(self, batch_id: str) -> list[dict[str, Any]]:
        """The corrections one bulk action made, oldest first (every column)."""
        stmt = (
            sa.select(_CORRECTIONS)
            .where(_CORRECTIONS.c.batch_id == batch_id)
            .order_by(_CORRECTIONS.c.id)
        )
        with self._engine.connect() as conn:
            return [dict(row) for row in conn.execute(stmt).mappings()]

    def undo_batch(
        self, batch_id: str, *, reviewer: str, undo_batch_id: str, source: str = "ui"
    ) -> list[CorrectionResult]:
        """Undo every correction of a bulk action not undone yet (append-only).

        Each undo row carries ``undo_batch_id``. Rows of the batch that an earlier
        undo already took back are left alone, so running it again after an
        interruption finishes the job instead of undoing twice.

        Raises
        ------
        KeyError
            No correction carries ``batch_id``.
        """
        rows = self.corrections_in_batch(batch_id)
        if not rows:
            raise KeyError(f"unknown batch {batch_id!r}")
        ids = [r["id"] for r in rows if r["kind"] != "undo"]
        with self._engine.connect() as conn:
            undone = set(
                conn.execute(
                    sa.select(_CORRECTIONS.c.undo_of).where(_CORRECTIONS.c.undo_of.in_(ids))
                ).scalars()
            )
        return [
            self.undo_correction(cid, reviewer=reviewer, source=source, batch_id=undo_batch_id)
            for cid in ids
            if cid not in undone
        ]

    # ------------------------------------------------------------------------

    def corrections_for(self, lead_id: str) -> list[dict[str, Any]]:
        """A lead's complete correction history, oldest first (every column)."""
        stmt = (
            sa.select(_CORRECTIONS)
            .where(_CORRECTIONS.c.lead_id == lead_id)
            .order_by(_CORRECTIONS.c.id)
        )
        with self._engine.connect() as conn:
            return [dict(row) for row in conn.execute(stmt).mappings()]

    def labels_for(self, lead_id: str) -> dict[str, str | None]:
        """The current stage and persona of a lead, by the rule corrections use.

        The latest rep label, else the latest prediction's, else marketing's. Use
        it as ``expected_label`` when a rep opens a lead.

        Raises
        ------
        KeyError
            The lead is neither stored nor scored.
        """
        with self._engine.connect() as conn:
            lead = (
                conn.execute(
                    sa.select(
                        _LEADS.c.lead_id, _LEADS.c.marketing_stage, _LEADS.c.marketing_persona
                    ).where(_LEADS.c.lead_id == lead_id)
                )
                .mappings()
                .first()
            )
            if lead is None:
                scored = conn.execute(
                    sa.select(_PREDICTIONS.c.id).where(_PREDICTIONS.c.lead_id == lead_id).limit(1)
                ).first()
                if scored is None:
                    raise KeyError(f"unknown lead {lead_id!r}")
                lead = {"lead_id": lead_id, "marketing_stage": None, "marketing_persona": None}
            return {field: self._label_state(conn, lead, field)[0] for field in CORRECTION_FIELDS}

    def current_labels(
        self, lead_ids: Iterable[str] | None = None
    ) -> dict[str, dict[str, str | None]]:
        """Reps' current labels: the latest correction per lead and field wins.

        Returns
        -------
        dict
            ``{lead_id: {"stage": label or None, "persona": label or None}}`` for
            leads with at least one rep label; None for a field no rep labelled (or
            whose corrections were all undone).
        """

        def query(ids: Sequence[str] | None) -> sa.Select[Any]:
            newest = sa.select(sa.func.max(_CORRECTIONS.c.id).label("id")).group_by(
                _CORRECTIONS.c.lead_id, _CORRECTIONS.c.field
            )
            if ids is not None:
                newest = newest.where(_CORRECTIONS.c.lead_id.in_(ids))
            sub = newest.subquery()
            return sa.select(
                _CORRECTIONS.c.lead_id,
                _CORRECTIONS.c.field,
                _CORRECTIONS.c.new_label,
            ).join(
                sub,
                sa.and_(_CORRECTIONS.c.id == sub.c.id, _CORRECTIONS.c.is_rep_label.is_(True)),
            )

        out: dict[str, dict[str, str | None]] = {}
        with self._engine.connect() as conn:
            if lead_ids is None:
                statements = [query(None)]
            else:
                statements = [query(chunk) for chunk in _chunks(sorted(set(lead_ids)))]
            for stmt in statements:
                for lead_id, field, label in conn.execute(stmt):
                    out.setdefault(lead_id, dict.fromkeys(CORRECTION_FIELDS))[field] = label
        return out

    def corrections_frame(self, *, with_features: bool = False) -> pd.DataFrame:
        """Every correction row, oldest first, for retraining and export.

        Parameters
        ----------
        with_features
            Add a ``features`` column: the feature snapshot of the reviewed
            prediction (None when the correction names none).

        Returns
        -------
        pandas.DataFrame
            One row per correction, the table's columns (``created_at`` as UTC
            datetimes); empty with the same columns when there are none.
        """
        import pandas as pd

        columns = list(_CORRECTIONS.c)
        stmt = sa.select(*columns)
        if with_features:
            stmt = stmt.add_columns(_PREDICTIONS.c.features).outerjoin(
                _PREDICTIONS, _PREDICTIONS.c.id == _CORRECTIONS.c.prediction_id
            )
        stmt = stmt.order_by(_CORRECTIONS.c.id)
        names = [c.name for c in columns] + (["features"] if with_features else [])
        with self._engine.connect() as conn:
            rows = [tuple(row) for row in conn.execute(stmt)]
        frame = pd.DataFrame.from_records(rows, columns=names)
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
        return frame

    # -------------------------------------------------------------------- users

    def _user(self, row: Mapping[str, Any]) -> User:
        return User(
            row["id"],
            row["name"],
            row["role"],
            bool(row["active"]),
            row["created_at"],
            int(row.get("session_generation") or 0),
        )

    @staticmethod
    def _password(password: str) -> str:
        if not isinstance(password, str) or not password:
            raise ValueError("the password must not be empty")
        if len(password) > _PASSWORD_MAX:
            raise ValueError(f"the password is longer than {_PASSWORD_MAX} characters")
        return password

    @staticmethod
    def _user_name(name: str) -> str:
        text = _req_str(name, "user name", _NAME_MAX)
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
            raise ValueError("user name: control characters are not allowed")
        problem = user_name_problem(text)
        if problem is not None:
            raise ValueError(f"user name {text!r}: {problem}")
        if text.startswith("ext:"):
            raise ValueError("user name: 'ext:' marks reviewers named by API clients")
        return text

    def create_user(self, name: str, role: str, password: str) -> User:
        """Add a review UI user with an argon2id password hash.

        Raises
        ------
        ValueError
            A role outside :data:`USER_ROLES`, a name already taken, an empty name
            or password.
        """
        name = self._user_name(name)
        role = _choice(role, "role", USER_ROLES)
        skeleton = name_skeleton(name)
        for other in self.list_users():
            if other.name != name and name_skeleton(other.name) == skeleton:
                raise ValueError(f"user name {name!r} looks like the existing user {other.name!r}")
        password_hash = self._hasher.hash(self._password(password))
        values = {
            "name": name,
            "role": role,
            "password_hash": password_hash,
            "created_at": _now(),
            "active": True,
        }

        def work(conn: Connection) -> User:
            new_id = conn.execute(sa.insert(_USERS).returning(_USERS.c.id), values).scalar_one()
            return self._user({**values, "id": new_id})

        try:
            return self._write(work)
        except IntegrityError:
            raise ValueError(f"a user named {name!r} already exists") from None

    def _user_row(self, name: str) -> Mapping[str, Any] | None:
        with self._engine.connect() as conn:
            return conn.execute(sa.select(_USERS).where(_USERS.c.name == name)).mappings().first()

    def authenticate(self, name: str, password: str) -> User | None:
        """The active user with this name and password, else None.

        Unknown and disabled users cost the same argon2 verification as known ones
        (no timing hint about which names exist). A hash made with weaker
        parameters than the current ones is replaced on success.
        """
        if not isinstance(name, str) or not isinstance(password, str) or not password:
            return None
        row = self._user_row(name.strip())
        if row is None or not row["active"]:
            if self._dummy_hash is None:
                self._dummy_hash = self._hasher.hash(secrets.token_hex(16))
            with contextlib.suppress(VerificationError):
                self._hasher.verify(self._dummy_hash, password)
            return None
        try:
            self._hasher.verify(row["password_hash"], password)
        except (VerificationError, InvalidHashError):
            return None
        if self._hasher.check_needs_rehash(row["password_hash"]):
            new_hash = self._hasher.hash(password)
            self._write(
                lambda conn: conn.execute(
                    sa.update(_USERS)
                    .where(
                        _USERS.c.id == row["id"],
                        _USERS.c.password_hash == row["password_hash"],
                    )
                    .values(password_hash=new_hash)
                )
            )
        return self._user(row)

    def get_user(self, user_id: int) -> User | None:
        """The user with this id (active or not), or None."""
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(_USERS).where(_USERS.c.id == user_id)).mappings().first()
        return None if row is None else self._user(row)

    def get_user_by_name(self, name: str) -> User | None:
        """The user with this name (active or not), or None."""
        row = self._user_row(name)
        return None if row is None else self._user(row)

    def list_users(self) -> list[User]:
        """Every user, by name."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(_USERS).order_by(_USERS.c.name)).mappings().all()
        return [self._user(row) for row in rows]

    def _update_user(self, name: str, **values: Any) -> User:
        def work(conn: Connection) -> User:
            row = (
                conn.execute(
                    sa.update(_USERS)
                    .where(_USERS.c.name == name)
                    .values(**values)
                    .returning(*_USERS.c)
                )
                .mappings()
                .first()
            )
            if row is None:
                raise KeyError(f"no user named {name!r}")
            return self._user(row)

        return self._write(work)

    def set_password(self, name: str, password: str) -> User:
        """Replace a user's password.

        Raises
        ------
        KeyError
            No such user.
        ValueError
            An empty password.
        """
        return self._update_user(
            name,
            password_hash=self._hasher.hash(self._password(password)),
            session_generation=_USERS.c.session_generation + 1,
        )

    def set_role(self, name: str, role: str) -> User:
        """Change a user's role; their open sessions end (they log in again).

        Raises
        ------
        KeyError
            No such user.
        ValueError
            A role outside :data:`USER_ROLES`.
        """
        role = _choice(role, "role", USER_ROLES)
        return self._update_user(
            name, role=role, session_generation=_USERS.c.session_generation + 1
        )

    def end_sessions(self, name: str) -> User:
        """End every session of a user, on every server (logout; a stolen cookie).

        Raises
        ------
        KeyError
            No such user.
        """
        return self._update_user(name, session_generation=_USERS.c.session_generation + 1)

    def deactivate_user(self, name: str) -> User:
        """Disable a user: they can no longer log in. The row (and history) stays.

        Raises
        ------
        KeyError
            No such user.
        """
        return self._update_user(name, active=False)

    # ----------------------------------------------------------------- API keys

    @staticmethod
    def _key_hash(token: str) -> str:
        return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()

    @staticmethod
    def _key_info(row: Mapping[str, Any]) -> ApiKeyInfo:
        return ApiKeyInfo(
            name=row["name"],
            role=row["role"],
            revoked=row["revoked_at"] is not None,
            prefix=row["prefix"],
            created_at=row["created_at"],
            revoked_at=row["revoked_at"],
        )

    def create_api_key(self, name: str, role: str = "client") -> str:
        """Create an API key and return it: the only time the key is available.

        Only its SHA-256 (a key is 32 random bytes, so a fast hash is enough, and
        a request's key is found by an index lookup on the hash) and its first ten
        characters (to recognise it in listings) are stored.

        Raises
        ------
        ValueError
            A role outside :data:`API_KEY_ROLES`, an empty or taken name.
        """
        name = self._user_name(name)
        role = _choice(role, "role", API_KEY_ROLES)
        token = API_KEY_PREFIX + secrets.token_urlsafe(32)
        values = {
            "name": name,
            "prefix": token[:10],
            "key_hash": self._key_hash(token),
            "role": role,
            "created_at": _now(),
            "revoked_at": None,
        }
        try:
            self._write(lambda conn: conn.execute(sa.insert(_API_KEYS), values))
        except IntegrityError:
            raise ValueError(f"an API key named {name!r} already exists") from None
        return token

    def verify_api_key(self, token: str) -> ApiKeyInfo | None:
        """The key's name, role and revocation, or None for an unknown key."""
        if not isinstance(token, str) or not token or len(token) > 512:
            return None
        with self._engine.connect() as conn:
            row = (
                conn.execute(
                    sa.select(_API_KEYS).where(_API_KEYS.c.key_hash == self._key_hash(token))
                )
                .mappings()
                .first()
            )
        return None if row is None else self._key_info(row)

    def revoke_api_key(self, name: str) -> ApiKeyInfo:
        """Revoke a key by name (idempotent: the first revocation time is kept).

        Raises
        ------
        KeyError
            No key with this name.
        """

        def work(conn: Connection) -> ApiKeyInfo:
            conn.execute(
                sa.update(_API_KEYS)
                .where(_API_KEYS.c.name == name, _API_KEYS.c.revoked_at.is_(None))
                .values(revoked_at=_now())
            )
            row = (
                conn.execute(sa.select(_API_KEYS).where(_API_KEYS.c.name == name))
                .mappings()
                .first()
            )
            if row is None:
                raise KeyError(f"no API key named {name!r}")
            return self._key_info(row)

        return self._write(work)

    def list_api_keys(self) -> list[ApiKeyInfo]:
        """Every key (revoked ones too), by name; never the keys themselves."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(_API_KEYS).order_by(_API_KEYS.c.name)).mappings().all()
        return [self._key_info(row) for row in rows]
