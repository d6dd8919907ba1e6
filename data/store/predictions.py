"""Predictions: scored leads appended in bulk, with the review queue following in the same
transaction, and read back per lead or as each lead's newest."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from data.priority import PREDICTION_NUMBERS
from data.store.base import _newest
from data.store.checks import _choice, _opt_float, _opt_str, _opt_ts, _req_str
from data.store.queue import QueueUpkeep
from data.store.tables import (
    _LABEL_MAX,
    _LEAD_ID_MAX,
    _PREDICTION_KEYS,
    _PREDICTIONS,
    PREDICTION_SOURCES,
)
from data.values import utc_now


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
    for name in PREDICTION_NUMBERS:
        out[name] = _opt_float(record.get(name), f"{where}: {name}")
    for name in ("probabilities", "reasons", "features"):
        out[name] = record.get(name)
    return out


class PredictionsRoom(QueueUpkeep):
    """Scored leads: labels, confidences, margins, readiness, route and the inputs used."""

    def record_predictions(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Store scored leads in one bulk insert (``COPY`` on PostgreSQL); returns how many.

        A row has ``lead_id``, ``model_name``, ``model_version``, ``source`` (one of
        :data:`PREDICTION_SOURCES`) and any other column of :class:`~data.store.PredictionRow`
        (``probabilities`` as ``{"stage": {label: p}, "persona": {...}}``, ``created_at``
        default now; numpy scalars and NaN are fine); the lead need not be stored. Each
        lead's queue row follows its newest prediction, in the same transaction.
        ``ValueError``, and nothing written, for an unknown key, a missing value or a bad source.
        """
        now = utc_now()
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
        return [dict(row) for row in self._read(stmt)]

    def latest_prediction(self, lead_id: str) -> dict[str, Any] | None:
        """A lead's newest prediction, or None."""
        rows = self.predictions_for(lead_id, limit=1)
        return rows[0] if rows else None

    def latest_predictions(
        self, lead_ids: Iterable[str] | None = None, *, with_features: bool = True
    ) -> dict[str, dict[str, Any]]:
        """The newest prediction of each lead (of ``lead_ids``, default all), keyed by lead
        id; ``with_features=False`` leaves out the feature snapshot, the bulk of each row.
        One ``max(id) … GROUP BY lead_id`` pass over the ``(lead_id, id)`` index, in chunks of ids.
        """
        columns = [c for c in _PREDICTIONS.c if with_features or c.name != "features"]

        def query(ids: Sequence[str] | None) -> sa.Select[Any]:
            sub = _newest(_PREDICTIONS, ids, "lead_id")
            return sa.select(*columns).join(sub, _PREDICTIONS.c.id == sub.c.id)

        return {row["lead_id"]: dict(row) for row in self._read_by_ids(query, lead_ids)}
