"""Re-scoring bookkeeping: which stored leads still show another model version than the
champion, read from ``lead_queue`` itself so the work resumes anywhere (docs/design/data.md).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from data.locks import file_lock
from data.store import PredictionRow, QueueRow

if TYPE_CHECKING:
    from data.store import Store

__all__ = ["RescoreLock", "VersionCounts", "snapshots", "stale_leads", "version_counts"]

_QUEUE = QueueRow.__table__
_PREDICTIONS = PredictionRow.__table__


@dataclass(frozen=True)
class VersionCounts:
    """Stored (scored) leads per model version of their newest prediction."""

    by_version: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_version.values())

    def on(self, version: str) -> int:
        """Leads whose newest prediction comes from ``version``."""
        return self.by_version.get(str(version), 0)

    def share(self, version: str) -> float:
        """Share of stored leads on ``version`` (1.0 when there are none)."""
        return 1.0 if self.total == 0 else self.on(version) / self.total


def version_counts(store: Store) -> VersionCounts:
    """Stored leads per model version (one ``GROUP BY`` over the queue table)."""
    stmt = sa.select(_QUEUE.c.model_version, sa.func.count()).group_by(_QUEUE.c.model_version)
    with store.engine.connect() as conn:
        return VersionCounts({str(v): int(n) for v, n in conn.execute(stmt)})


def stale_leads(store: Store, version: str, *, after: str | None, limit: int) -> list[str]:
    """Up to ``limit`` lead ids after ``after`` whose newest prediction is not from ``version``."""
    stmt = (
        sa.select(_QUEUE.c.lead_id)
        .where(_QUEUE.c.model_version != str(version))
        .order_by(_QUEUE.c.lead_id)
        .limit(int(limit))
    )
    if after is not None:
        stmt = stmt.where(_QUEUE.c.lead_id > after)
    with store.engine.connect() as conn:
        return [str(r) for r in conn.execute(stmt).scalars()]


def snapshots(store: Store, lead_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Lead id → the feature snapshot of its newest prediction (leads without one are absent)."""
    if not lead_ids:
        return {}
    newest = (
        sa.select(_QUEUE.c.lead_id, _QUEUE.c.prediction_id)
        .where(_QUEUE.c.lead_id.in_(list(lead_ids)))
        .subquery()
    )
    stmt = sa.select(_PREDICTIONS.c.lead_id, _PREDICTIONS.c.features).join(
        newest, _PREDICTIONS.c.id == newest.c.prediction_id
    )
    with store.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    return {str(lead_id): features for lead_id, features in rows if isinstance(features, dict)}


class RescoreLock:
    """One re-scoring runner per database at a time.

    The lock file of a SQLite database lives in ``folder`` (default: next to the database
    file; an in-memory database takes no lock).
    """

    def __init__(self, store: Store, folder: Path | str | None = None) -> None:
        self.store = store
        self._folder = Path(folder) if folder is not None else None
        self._conn: Any = None
        self._held: contextlib.ExitStack | None = None

    def _key(self) -> int:
        digest = hashlib.sha1(b"leadready.rescore").digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def _path(self) -> Path | None:
        if self._folder is not None:
            return self._folder / "rescore.lock"
        database = self.store.engine.url.database
        if not database or database == ":memory:":
            return None
        return Path(database).with_suffix(".rescore.lock")

    def acquire(self, *, blocking: bool = False) -> bool:
        """Take the lock; False when another runner holds it (and not ``blocking``)."""
        if self.store.dialect == "postgresql":
            conn = self.store.engine.connect()
            fn = "pg_advisory_lock" if blocking else "pg_try_advisory_lock"
            got = conn.execute(sa.text(f"SELECT {fn}(:k)"), {"k": self._key()}).scalar()
            if blocking or got:
                conn.commit()
                self._conn = conn
                return True
            conn.close()
            return False
        path = self._path()
        if path is None:
            return True
        held = contextlib.ExitStack()
        try:
            held.enter_context(file_lock(path, blocking=blocking))
        except BlockingIOError:
            return False
        self._held = held
        return True

    def release(self) -> None:
        """Give the lock back (idempotent)."""
        if self._conn is not None:
            try:
                self._conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self._key()})
                self._conn.commit()
            finally:
                self._conn.close()
                self._conn = None
        if self._held is not None:
            self._held.close()
            self._held = None
