"""Reliability (#17): session generations, the API key behind a correction, event ids.

- ``users.session_generation``: bumped on logout, password change and role
  change; a session carries the generation it was started with and ends when
  they differ (server-side invalidation of copied cookies).
- ``corrections.api_key``: the name of the API key that sent a correction
  (NULL for the UI and imports), so a CRM correction is attributed to its key.
- ``events.event_id`` with a unique index on ``(lead_id, event_id)``: the
  idempotency key of an event (client-supplied, or derived from its content),
  so a re-sent history is stored once (``ON CONFLICT DO NOTHING``). Rows stored
  before keep NULL (NULLs never conflict).

Revision ID: issue17_reliability
Revises: 0003
Create Date: 2026-12-04 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "issue17_reliability"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the three columns and the events' idempotency index.

    Plain ``ADD COLUMN`` (no batch copy): on SQLite a table copy would drop the
    triggers that keep ``corrections`` append-only.
    """
    op.add_column(
        "users",
        sa.Column("session_generation", sa.Integer(), nullable=False, server_default=sa.text("0")),
    )
    op.add_column("corrections", sa.Column("api_key", sa.String(length=100), nullable=True))
    op.add_column("events", sa.Column("event_id", sa.String(length=64), nullable=True))
    op.create_index("ux_events_lead_id_event_id", "events", ["lead_id", "event_id"], unique=True)


def downgrade() -> None:
    """Drop them again (``DROP COLUMN``: SQLite 3.35 or later; no table copy)."""
    op.drop_index("ux_events_lead_id_event_id", table_name="events")
    op.drop_column("events", "event_id")
    op.drop_column("corrections", "api_key")
    op.drop_column("users", "session_generation")
