"""Initial schema: leads, events, predictions, corrections, users, api_keys.

Corrections are append-only: triggers make the database refuse UPDATE and DELETE
on them (and TRUNCATE on PostgreSQL), whatever client writes.

Revision ID: 0001
Revises:
Create Date: 2025-01-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create every table, index, constraint and the append-only triggers."""
    op.create_table(
        "leads",
        sa.Column("lead_id", sa.String(length=200), nullable=False),
        sa.Column("job_title", sa.String(), nullable=True),
        sa.Column("seniority", sa.String(), nullable=True),
        sa.Column("department", sa.String(), nullable=True),
        sa.Column("company", sa.String(), nullable=True),
        sa.Column("company_size", sa.Integer(), nullable=True),
        sa.Column("industry", sa.String(), nullable=True),
        sa.Column("country", sa.String(), nullable=True),
        sa.Column("lead_source", sa.String(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("extra", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("marketing_stage", sa.String(), nullable=True),
        sa.Column("marketing_persona", sa.String(), nullable=True),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("lead_id", name=op.f("pk_leads")),
    )
    op.create_index(op.f("ix_leads_company"), "leads", ["company"])

    op.create_table(
        "events",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("lead_id", sa.String(length=200), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("type", sa.String(length=50), nullable=False),
        sa.Column("page_category", sa.String(), nullable=True),
        sa.Column("content_type", sa.String(), nullable=True),
        sa.Column("content_topic", sa.String(), nullable=True),
        sa.Column("channel", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["lead_id"], ["leads.lead_id"], name=op.f("fk_events_lead_id_leads")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_lead_id_timestamp", "events", ["lead_id", "timestamp"])

    op.create_table(
        "predictions",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("lead_id", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(), nullable=False),
        sa.Column("model_version", sa.String(), nullable=False),
        sa.Column("stage", sa.String(), nullable=True),
        sa.Column("stage_confidence", sa.Float(), nullable=True),
        sa.Column("stage_margin", sa.Float(), nullable=True),
        sa.Column("persona", sa.String(), nullable=True),
        sa.Column("persona_confidence", sa.Float(), nullable=True),
        sa.Column("persona_margin", sa.Float(), nullable=True),
        sa.Column("probabilities", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("readiness", sa.Float(), nullable=True),
        sa.Column("route", sa.String(), nullable=True),
        sa.Column("reasons", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("features", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_predictions")),
    )
    op.create_index(op.f("ix_predictions_created_at"), "predictions", ["created_at"])
    op.create_index("ix_predictions_lead_id_id", "predictions", ["lead_id", "id"])

    op.create_table(
        "corrections",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("lead_id", sa.String(length=200), nullable=False),
        sa.Column("field", sa.String(length=20), nullable=False),
        sa.Column("old_label", sa.String(), nullable=True),
        sa.Column("new_label", sa.String(), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("is_rep_label", sa.Boolean(), nullable=False),
        sa.Column("reviewer", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("prediction_id", BigId, nullable=True),
        sa.Column("model_version", sa.String(), nullable=True),
        sa.Column("undo_of", BigId, nullable=True),
        sa.CheckConstraint("field IN ('stage', 'persona')", name=op.f("ck_corrections_field")),
        sa.CheckConstraint(
            "kind IN ('reclassify', 'confirm', 'undo')", name=op.f("ck_corrections_kind")
        ),
        sa.ForeignKeyConstraint(
            ["lead_id"], ["leads.lead_id"], name=op.f("fk_corrections_lead_id_leads")
        ),
        sa.ForeignKeyConstraint(
            ["prediction_id"],
            ["predictions.id"],
            name=op.f("fk_corrections_prediction_id_predictions"),
        ),
        sa.ForeignKeyConstraint(
            ["undo_of"], ["corrections.id"], name=op.f("fk_corrections_undo_of_corrections")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_corrections")),
    )
    op.create_index(
        "ix_corrections_lead_id_field_id", "corrections", ["lead_id", "field", "id"]
    )

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.CheckConstraint("role IN ('rep', 'analyst', 'admin')", name=op.f("ck_users_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("name", name=op.f("uq_users_name")),
    )

    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("role IN ('client', 'admin')", name=op.f("ck_api_keys_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
        sa.UniqueConstraint("name", name=op.f("uq_api_keys_name")),
    )

    _create_append_only_guard()


def _create_append_only_guard() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION corrections_append_only() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'corrections are append-only: % refused', TG_OP;
            END
            $$
            """
        )
        op.execute(
            "CREATE TRIGGER corrections_no_change BEFORE UPDATE OR DELETE ON corrections "
            "FOR EACH ROW EXECUTE FUNCTION corrections_append_only()"
        )
        op.execute(
            "CREATE TRIGGER corrections_no_truncate BEFORE TRUNCATE ON corrections "
            "FOR EACH STATEMENT EXECUTE FUNCTION corrections_append_only()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER corrections_no_{action.lower()} BEFORE {action} ON corrections "
                f"BEGIN SELECT RAISE(ABORT, 'corrections are append-only: {action} refused'); END"
            )


def downgrade() -> None:
    """Drop everything (data included)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS corrections_no_truncate ON corrections")
        op.execute("DROP TRIGGER IF EXISTS corrections_no_change ON corrections")
        op.execute("DROP FUNCTION IF EXISTS corrections_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS corrections_no_update")
        op.execute("DROP TRIGGER IF EXISTS corrections_no_delete")
    op.drop_table("api_keys")
    op.drop_table("users")
    op.drop_index("ix_corrections_lead_id_field_id", table_name="corrections")
    op.drop_table("corrections")
    op.drop_index("ix_predictions_lead_id_id", table_name="predictions")
    op.drop_index(op.f("ix_predictions_created_at"), table_name="predictions")
    op.drop_table("predictions")
    op.drop_index("ix_events_lead_id_timestamp", table_name="events")
    op.drop_table("events")
    op.drop_index(op.f("ix_leads_company"), table_name="leads")
    op.drop_table("leads")
