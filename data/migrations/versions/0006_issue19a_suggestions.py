"""Suggestions (#19, "leads like this one"): suggestion sets, suggestions, a marker on corrections.

- ``suggestion_sets``: one row per reclassify correction that suggestions were
  built for: the change (field, from, to), the method (``correction_model`` or
  ``neighbours``), the counts (leads served the same answer, how many are
  likely), how long it took.
- ``suggestions``: one row per suggested lead, ``open`` until a rep accepts or
  dismisses it. An open suggestion is not a correction.
- ``corrections.suggestion_id``: the suggestion a rep confirmed to make this
  correction (NULL for every other correction). Plain ``ADD COLUMN`` (no batch
  copy): on SQLite a table copy would drop the append-only triggers.

Revision ID: issue19a_suggestions
Revises: issue18_correction_batch
Create Date: 2026-12-04 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "issue19a_suggestions"
down_revision: str | Sequence[str] | None = "issue18_correction_batch"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create the two tables and add the column."""
    op.create_table(
        "suggestion_sets",
        sa.Column("correction_id", BigId, nullable=False),
        sa.Column("lead_id", sa.String(length=200), nullable=False),
        sa.Column("field", sa.String(length=20), nullable=False),
        sa.Column("from_label", sa.String(), nullable=False),
        sa.Column("to_label", sa.String(), nullable=False),
        sa.Column("method", sa.String(length=20), nullable=False),
        sa.Column("n_candidates", sa.Integer(), nullable=False),
        sa.Column("n_likely", sa.Integer(), nullable=True),
        sa.Column("n_reviewed", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("field IN ('stage', 'persona')", name=op.f("ck_suggestion_sets_field")),
        sa.CheckConstraint(
            "method IN ('correction_model', 'neighbours')", name=op.f("ck_suggestion_sets_method")
        ),
        sa.ForeignKeyConstraint(
            ["correction_id"],
            ["corrections.id"],
            name=op.f("fk_suggestion_sets_correction_id_corrections"),
        ),
        sa.PrimaryKeyConstraint("correction_id", name=op.f("pk_suggestion_sets")),
    )
    op.create_table(
        "suggestions",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("source_correction_id", BigId, nullable=False),
        sa.Column("lead_id", sa.String(length=200), nullable=False),
        sa.Column("field", sa.String(length=20), nullable=False),
        sa.Column("from_label", sa.String(), nullable=False),
        sa.Column("to_label", sa.String(), nullable=False),
        sa.Column("prediction_id", BigId, nullable=True),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("probability", sa.Float(), nullable=True),
        sa.Column("distance", sa.Float(), nullable=True),
        sa.Column("method", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("decided_by", sa.String(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("correction_id", BigId, nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'accepted', 'dismissed')", name=op.f("ck_suggestions_status")
        ),
        sa.CheckConstraint("field IN ('stage', 'persona')", name=op.f("ck_suggestions_field")),
        sa.ForeignKeyConstraint(
            ["source_correction_id"],
            ["suggestion_sets.correction_id"],
            name=op.f("fk_suggestions_source_correction_id_suggestion_sets"),
        ),
        sa.ForeignKeyConstraint(
            ["correction_id"],
            ["corrections.id"],
            name=op.f("fk_suggestions_correction_id_corrections"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suggestions")),
    )
    op.create_index(
        "ix_suggestions_set_rank", "suggestions", ["source_correction_id", "rank"], unique=False
    )
    op.create_index(op.f("ix_suggestions_lead_id"), "suggestions", ["lead_id"], unique=False)
    op.add_column("corrections", sa.Column("suggestion_id", BigId, nullable=True))
    op.create_index(
        op.f("ix_corrections_suggestion_id"), "corrections", ["suggestion_id"], unique=False
    )


def downgrade() -> None:
    """Drop the column (plain ``DROP COLUMN``, SQLite 3.35+) and the tables."""
    op.drop_index(op.f("ix_corrections_suggestion_id"), table_name="corrections")
    op.drop_column("corrections", "suggestion_id")
    op.drop_index(op.f("ix_suggestions_lead_id"), table_name="suggestions")
    op.drop_index("ix_suggestions_set_rank", table_name="suggestions")
    op.drop_table("suggestions")
    op.drop_table("suggestion_sets")
