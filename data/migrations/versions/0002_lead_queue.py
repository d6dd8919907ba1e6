"""The review queue, materialized: ``lead_queue``, one row per scored lead, backfilled.

Each row carries the lead's latest prediction (labels, confidences, margins,
the runner-up labels, readiness, route), the stage of the prediction before it
and the time of a stage change, a copy of the lead's company and marketing
labels with the model's probability of those labels, whether a rep labelled
the lead, and ``sort_key`` (minus the priority without the stage-change term)
behind the queue's indexes.

The backfill computes the rows from the predictions, leads and corrections
already stored, with the queue formula as it stands at this revision (copied
here, not imported: a migration keeps meaning what it meant when it was
written). ``tests/test_store.py`` checks that it gives the same rows as the
store's own upkeep.

Revision ID: 0002
Revises: 0001
Create Date: 2025-07-01 00:00:00
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_CHUNK = 5000

# The queue's defaults at this revision (data.review_queue.QueueConfig()).
_SALES_READY = frozenset(("decision", "purchase"))
_MISLABEL_THRESHOLD = 0.2
_W_MARGIN = 1.0
_W_PERSONA_MARGIN = 0.5
_W_SALES = 1.0
_W_MISLABEL = 1.0
_W_PERSONA_MISLABEL = 0.5

_RANK = [
    "reviewed",
    "sort_key",
    "lead_id",
    "stage",
    "persona",
    "route",
    "changed_at",
    "company",
    "scored_at",
]
_CHANGED = "changed_at IS NOT NULL"


def upgrade() -> None:
    """Create ``lead_queue`` and its indexes, then fill it from the stored predictions."""
    queue = op.create_table(
        "lead_queue",
        sa.Column("lead_id", sa.String(length=200), nullable=False),
        sa.Column("prediction_id", BigId, nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_version", sa.String(), nullable=False),
        sa.Column("stage", sa.String(), nullable=True),
        sa.Column("stage_confidence", sa.Float(), nullable=True),
        sa.Column("stage_margin", sa.Float(), nullable=True),
        sa.Column("stage_runner_up", sa.String(), nullable=True),
        sa.Column("persona", sa.String(), nullable=True),
        sa.Column("persona_confidence", sa.Float(), nullable=True),
        sa.Column("persona_margin", sa.Float(), nullable=True),
        sa.Column("persona_runner_up", sa.String(), nullable=True),
        sa.Column("readiness", sa.Float(), nullable=True),
        sa.Column("route", sa.String(), nullable=True),
        sa.Column("previous_stage", sa.String(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("company", sa.String(), nullable=True),
        sa.Column("marketing_stage", sa.String(), nullable=True),
        sa.Column("marketing_persona", sa.String(), nullable=True),
        sa.Column("p_marketing_stage", sa.Float(), nullable=True),
        sa.Column("p_marketing_persona", sa.Float(), nullable=True),
        sa.Column("reviewed", sa.Boolean(), nullable=False),
        sa.Column("sort_key", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("lead_id", name=op.f("pk_lead_queue")),
    )
    _backfill(queue)
    # Indexes after the bulk fill: building them once is cheaper than keeping
    # them up to date row by row.
    op.create_index("ix_lead_queue_rank", "lead_queue", _RANK)
    op.create_index(
        "ix_lead_queue_changed_rank",
        "lead_queue",
        _RANK,
        sqlite_where=sa.text(_CHANGED),
        postgresql_where=sa.text(_CHANGED),
    )


def downgrade() -> None:
    """Drop the queue table (the predictions it was built from stay)."""
    op.drop_index("ix_lead_queue_changed_rank", table_name="lead_queue")
    op.drop_index("ix_lead_queue_rank", table_name="lead_queue")
    op.drop_table("lead_queue")


# ------------------------------------------------------------------ backfill

_predictions = sa.table(
    "predictions",
    sa.column("id", BigId),
    sa.column("lead_id", sa.String()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("model_version", sa.String()),
    sa.column("stage", sa.String()),
    sa.column("stage_confidence", sa.Float()),
    sa.column("stage_margin", sa.Float()),
    sa.column("persona", sa.String()),
    sa.column("persona_confidence", sa.Float()),
    sa.column("persona_margin", sa.Float()),
    sa.column("probabilities", sa.Text()),
    sa.column("readiness", sa.Float()),
    sa.column("route", sa.String()),
)
_leads = sa.table(
    "leads",
    sa.column("lead_id", sa.String()),
    sa.column("company", sa.String()),
    sa.column("marketing_stage", sa.String()),
    sa.column("marketing_persona", sa.String()),
)
_corrections = sa.table(
    "corrections",
    sa.column("id", BigId),
    sa.column("lead_id", sa.String()),
    sa.column("field", sa.String()),
    sa.column("is_rep_label", sa.Boolean()),
)


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _json(value: Any) -> Any:
    """The probabilities column as read through a plain Text column (JSON text or parsed)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _marketing_probability(
    probabilities: Any, head: str, label: Any, predicted: Any, confidence: Any
) -> float | None:
    if label is None:
        return None
    if label == predicted:
        return _number(confidence)
    probs = probabilities.get(head) if isinstance(probabilities, Mapping) else None
    return _number(probs.get(label)) if isinstance(probs, Mapping) else None


def _runner_up(probabilities: Any, head: str, top: Any) -> str | None:
    probs = probabilities.get(head) if isinstance(probabilities, Mapping) else None
    if not isinstance(probs, Mapping):
        return None
    ranked = sorted(
        ((str(k), float(v)) for k, v in probs.items() if _number(v) is not None),
        key=lambda kv: -kv[1],
    )
    others = [label for label, _ in ranked if label != top]
    return others[0] if others else None


def _priority(row: Mapping[str, Any]) -> float:
    """The queue priority without the stage-change term, at this revision's defaults."""
    margin = row["stage_margin"]
    persona_margin = row["persona_margin"]
    confidence = row["stage_confidence"]
    p_stage, p_persona = row["p_marketing_stage"], row["p_marketing_persona"]
    margin = 1.0 if margin is None or math.isnan(margin) else margin
    persona_margin = 1.0 if persona_margin is None or math.isnan(persona_margin) else persona_margin
    sales = (
        1.0 - confidence
        if row["stage"] in _SALES_READY and confidence is not None and not math.isnan(confidence)
        else 0.0
    )
    mislabel = 1.0 - p_stage if p_stage is not None and p_stage < _MISLABEL_THRESHOLD else 0.0
    persona_mislabel = (
        1.0 - p_persona if p_persona is not None and p_persona < _MISLABEL_THRESHOLD else 0.0
    )
    return (
        _W_MARGIN * (1.0 - margin)
        + _W_PERSONA_MARGIN * (1.0 - persona_margin)
        + _W_SALES * sales
        + _W_MISLABEL * mislabel
        + _W_PERSONA_MISLABEL * persona_mislabel
    )


def _rep_labelled(bind: sa.engine.Connection) -> set[str]:
    newer = _corrections.alias("newer")
    latest = (
        sa.select(sa.func.max(newer.c.id))
        .where(newer.c.lead_id == _corrections.c.lead_id, newer.c.field == _corrections.c.field)
        .scalar_subquery()
    )
    stmt = (
        sa.select(_corrections.c.lead_id)
        .where(_corrections.c.is_rep_label.is_(True), _corrections.c.id == latest)
        .distinct()
    )
    return set(bind.execute(stmt).scalars())


def _backfill(queue: sa.Table) -> None:
    bind = op.get_bind()
    ids = (
        bind.execute(
            sa.select(_predictions.c.lead_id)
            .group_by(_predictions.c.lead_id)
            .order_by(_predictions.c.lead_id)
        )
        .scalars()
        .all()
    )
    if not ids:
        return
    reviewed = _rep_labelled(bind)
    for chunk in _chunks(ids):
        # The newest two predictions of each lead of the chunk, newest first.
        ranked = (
            sa.select(
                *_predictions.c,
                sa.func.row_number()
                .over(partition_by=_predictions.c.lead_id, order_by=_predictions.c.id.desc())
                .label("rn"),
            )
            .where(_predictions.c.lead_id.in_(list(chunk)))
            .subquery()
        )
        latest: dict[str, Mapping[str, Any]] = {}
        previous: dict[str, Any] = {}
        for row in bind.execute(sa.select(ranked).where(ranked.c.rn <= 2)).mappings():
            if row["rn"] == 1:
                latest[row["lead_id"]] = row
            else:
                previous[row["lead_id"]] = row["stage"]
        leads = {
            row["lead_id"]: row
            for row in bind.execute(
                sa.select(_leads).where(_leads.c.lead_id.in_(list(chunk)))
            ).mappings()
        }
        rows = []
        for lead_id in chunk:
            p = latest[lead_id]
            lead = leads.get(lead_id) or {}
            probabilities = _json(p["probabilities"])
            stage, persona = p["stage"], p["persona"]
            before = previous.get(lead_id)
            scored_at = _utc(p["created_at"])
            row = {
                "lead_id": lead_id,
                "prediction_id": p["id"],
                "scored_at": scored_at,
                "model_version": p["model_version"],
                "stage": stage,
                "stage_confidence": p["stage_confidence"],
                "stage_margin": p["stage_margin"],
                "stage_runner_up": _runner_up(probabilities, "stage", stage),
                "persona": persona,
                "persona_confidence": p["persona_confidence"],
                "persona_margin": p["persona_margin"],
                "persona_runner_up": _runner_up(probabilities, "persona", persona),
                "readiness": p["readiness"],
                "route": p["route"],
                "previous_stage": before,
                "changed_at": (
                    scored_at
                    if before is not None and stage is not None and before != stage
                    else None
                ),
                "company": lead.get("company"),
                "marketing_stage": lead.get("marketing_stage"),
                "marketing_persona": lead.get("marketing_persona"),
                "p_marketing_stage": _marketing_probability(
                    probabilities,
                    "stage",
                    lead.get("marketing_stage"),
                    stage,
                    p["stage_confidence"],
                ),
                "p_marketing_persona": _marketing_probability(
                    probabilities,
                    "persona",
                    lead.get("marketing_persona"),
                    persona,
                    p["persona_confidence"],
                ),
                "reviewed": lead_id in reviewed,
            }
            row["sort_key"] = -_priority(row)
            if bind.dialect.name == "sqlite":
                # Stored as the store's own UTCDateTime does: naive UTC text.
                for name in ("scored_at", "changed_at"):
                    if row[name] is not None:
                        row[name] = row[name].replace(tzinfo=None)
            rows.append(row)
        bind.execute(sa.insert(queue), rows)
