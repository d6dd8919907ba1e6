"""Count the review queue's filtered pages through a narrow index.

``ix_lead_queue_filters`` (stage, persona, route, reviewed): PostgreSQL counted
a page filtered by stage, persona or route by scanning the whole queue table.
``IF NOT EXISTS``: a few development homes got this index from an unreleased
draft of 0002.

Revision ID: 0003
Revises: 0002
Create Date: 2025-07-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the filter index."""
    op.create_index(
        "ix_lead_queue_filters",
        "lead_queue",
        ["stage", "persona", "route", "reviewed"],
        if_not_exists=True,
    )


def downgrade() -> None:
    """Drop the filter index."""
    op.drop_index("ix_lead_queue_filters", table_name="lead_queue", if_exists=True)
