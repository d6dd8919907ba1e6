"""The review queue's upkeep: the store's write paths keep ``lead_queue`` current in their own
transaction, with the rows :func:`data.priority.queue_rows` builds (see docs/design/data.md)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from data.priority import PREDICTION_NUMBERS, queue_rows
from data.store.base import StoreBase, _copy
from data.store.tables import (
    _CHUNK,
    _CORRECTIONS,
    _LEADS,
    _PREDICTIONS,
    _QUEUE,
    _QUEUE_LEAD_COLUMNS,
)
from data.values import chunks

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
    *("id", "lead_id", "created_at", "model_version", "stage", "persona", "probabilities"),
    *PREDICTION_NUMBERS,
    "route",
)


class QueueUpkeep(StoreBase):
    """The write paths' share of the review queue (``lead_queue``), one method per kind of write."""

    def _rep_labelled(self, conn: Connection, lead_ids: Sequence[str]) -> set[str]:
        """Leads (a chunk at most) whose latest correction of some field leaves a rep's label
        current."""
        if not lead_ids:
            return set()
        newer = _CORRECTIONS.alias("newer")
        latest = (
            sa.select(sa.func.max(newer.c.id))
            .where(newer.c.lead_id == _CORRECTIONS.c.lead_id, newer.c.field == _CORRECTIONS.c.field)
            .scalar_subquery()
        )
        stmt = sa.select(_CORRECTIONS.c.lead_id).where(
            self._among(_CORRECTIONS.c.lead_id, lead_ids),
            _CORRECTIONS.c.is_rep_label.is_(True),
            _CORRECTIONS.c.id == latest,
        )
        return set(conn.execute(stmt.distinct()).scalars())

    def _by_lead(
        self, conn: Connection, table: sa.Table, names: Sequence[str], lead_ids: Sequence[str]
    ) -> dict[str, Mapping[str, Any]]:
        """The ``lead_id`` and ``names`` columns of these leads' rows of ``table``, by lead id."""
        columns = (table.c[name] for name in ("lead_id", *names))
        stmt = sa.select(*columns).where(self._among(table.c.lead_id, lead_ids))
        return {row["lead_id"]: row for row in conn.execute(stmt).mappings()}

    def _queue_upsert(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Insert or replace queue rows, in lead id order; a row is only replaced by one of the
        same or a newer prediction, and its ``reviewed`` flag is left alone (corrections own it). Runs at
        the driver level: executemany on SQLite; ``unnest`` of arrays, or from 500 rows a
        ``COPY`` into a temporary table, on PostgreSQL (docs/design/data.md).
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
            f"WHERE {table}.prediction_id <= excluded.prediction_id"
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
        batch = quote("lead_queue_batch")  # COPY into it, then one INSERT … SELECT
        _copy(
            conn,
            f"COPY {batch} ({names}) FROM STDIN",
            (values(row) for row in rows),
            before=(f"CREATE TEMPORARY TABLE {batch} (LIKE {table}) ON COMMIT DROP",),
            after=(
                f"INSERT INTO {table} ({names}) SELECT {names} FROM {batch} "
                f"ORDER BY lead_id {conflict}",
                f"DROP TABLE {batch}",
            ),
        )

    def _queue_predictions(self, conn: Connection, values: Sequence[Mapping[str, Any]]) -> None:
        """Bring the queue rows of a batch's leads to their newest prediction of the batch
        (on PostgreSQL a concurrent write of the same lead may leave the previous stage,
        doubt term or reviewed flag one write behind: docs/design/data.md).
        """
        latest: dict[str, Mapping[str, Any]] = {}
        before: dict[str, str | None] = {}
        for row in values:
            prior = latest.get(row["lead_id"])
            if prior is not None:
                before[row["lead_id"]] = prior["stage"]
            latest[row["lead_id"]] = row
        rows: list[dict[str, Any]] = []
        for chunk in chunks(sorted(latest), _CHUNK):
            existing = self._by_lead(conn, _QUEUE, ("prediction_id", "stage", "reviewed"), chunk)
            leads = self._by_lead(conn, _LEADS, sorted(_QUEUE_LEAD_COLUMNS), chunk)
            reviewed = self._rep_labelled(conn, [i for i in chunk if i not in existing])
            previous: dict[str, str | None] = {}
            predictions = []
            for lead_id in chunk:
                prediction, old = latest[lead_id], existing.get(lead_id)
                if old is not None and old["prediction_id"] > prediction["id"]:
                    continue
                if old is not None and old["reviewed"]:
                    reviewed.add(lead_id)
                if lead_id in before:
                    previous[lead_id] = before[lead_id]
                elif old is not None:
                    previous[lead_id] = old["stage"]
                predictions.append(prediction)
            rows.extend(
                queue_rows(predictions, leads=leads, previous_stages=previous, reviewed=reviewed)
            )
        self._queue_upsert(conn, rows)

    def _queue_leads(self, conn: Connection, lead_ids: Sequence[str]) -> None:
        """Rebuild the queue rows whose copy of the lead's company or labels is stale."""
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
        rows = queue_rows(
            stale,
            leads={row["lead_id"]: row for row in stale},
            previous_stages={row["lead_id"]: row["previous_stage"] for row in stale},
            reviewed={row["lead_id"] for row in stale if row["reviewed"]},
        )
        self._queue_upsert(conn, rows)

    def _queue_reviewed(self, conn: Connection, lead_id: str) -> None:
        """Set the queue row's reviewed flag from the lead's corrections."""
        reviewed = lead_id in self._rep_labelled(conn, [lead_id])
        conn.execute(sa.update(_QUEUE).where(_QUEUE.c.lead_id == lead_id).values(reviewed=reviewed))
