"""Corrections remember the bulk action that made them, so a batch can be undone at once.

``corrections.batch_id`` (nullable, indexed): the review UI's bulk reclassify and
bulk confirm give every row they append the same id; undoing the batch appends an
``undo`` row per correction, all carrying a new batch id. Older rows keep NULL.

Revision ID: issue18_correction_batch
Revises: 0003
Create Date: 2026-12-04 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "issue18_correction_batch"
down_revision: str | Sequence[str] | None = "issue17_reliability"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the column and its index."""
    op.add_column("corrections", sa.Column("batch_id", sa.String(length=64), nullable=True))
    op.create_index("ix_corrections_batch_id", "corrections", ["batch_id"])


def downgrade() -> None:
    """Drop the index and the column."""
    # Plain ALTER TABLE (SQLite >= 3.35 drops a column in place): a batch copy of the
    # table would trip the corrections' own foreign key (undo_of) on SQLite.
    op.drop_index("ix_corrections_batch_id", table_name="corrections")
    op.drop_column("corrections", "batch_id")
