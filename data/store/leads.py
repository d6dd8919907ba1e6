"""Leads and their engagement events: upserts, idempotent appends, look-ups and search."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from data.schema import EVENT_COLUMNS, EVENT_TYPES, Checked
from data.store.checks import _extra_value, _opt_int, _opt_str, _opt_ts, _req_str, _req_ts
from data.store.queue import QueueUpkeep
from data.store.tables import (
    _CHUNK,
    _EVENT_ID_MAX,
    _EVENT_PROPERTIES,
    _EVENTS,
    _LEAD_ID_MAX,
    _LEAD_TEXT_COLUMNS,
    _LEADS,
    _QUEUE_LEAD_COLUMNS,
)
from data.text import check_text, like_pattern
from data.values import chunks, finite, is_missing, utc_now


def _checked_values(record: Checked) -> dict[str, Any]:
    """Column values of a record the schema's models validated: no check again, only the
    store's spelling of a value (blank text and non-finite numbers are NULL)."""
    out = {
        k: (v or None) if isinstance(v, str) and k != "lead_id" else v for k, v in record.items()
    }
    if "extra" in out:
        out["extra"] = finite(out["extra"] or {})
    return out


def _lead_values(record: Mapping[str, Any], position: int) -> dict[str, Any]:
    """One lead record as column values: only the columns the record carries."""
    if isinstance(record, Checked):
        return _checked_values(record)
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
        if key in _LEAD_TEXT_COLUMNS or key in ("marketing_stage", "marketing_persona"):
            out[key] = _opt_str(value, f"{where}: {key}")
        elif key == "company_size":
            out[key] = _opt_int(value, f"{where}: {key}")
        elif key == "created_at":
            out[key] = _opt_ts(value, f"{where}: {key}")
        elif key in ("stage", "persona"):
            if f"marketing_{key}" not in record:
                out[f"marketing_{key}"] = _opt_str(value, f"{where}: {key}")
        elif key == "extra":
            has_extra = True
            if is_missing(value):
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
    """One event record as column values, its ``event_id`` derived when not given."""
    if isinstance(record, Checked):
        out = _checked_values(record)
        out["event_id"] = out.get("event_id") or event_id_of(out)
        return out
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
    given = _opt_str(record.get("event_id"), f"{where}: event_id", _EVENT_ID_MAX)
    out["event_id"] = given or event_id_of(out)
    return out


def _lead_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["extra"] = dict(out.get("extra") or {})
    return out


def _event_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in EVENT_COLUMNS}


class LeadsRoom(QueueUpkeep):
    """Leads (profile, firmographics, marketing's labels) and their events."""

    def upsert_leads(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Insert new leads and update known ones (profile and marketing labels); returns
        the number of distinct leads written.

        A record (a ``df.to_dict("records")`` row too) has ``lead_id``, any column of
        :data:`data.schema.LEAD_COLUMNS`, marketing's ``stage``/``persona`` (or
        ``marketing_stage``/``marketing_persona``) and other keys (kept in ``extra``).
        Missing values are NULL; a column a record does not carry is left as it is; later
        records of an id win. Each chunk of 5000 is one upsert transaction, with the queue
        rows it changes. ``ValueError`` (nothing of the chunk written) for a bad record.
        """
        merged: dict[str, dict[str, Any]] = {}
        for position, record in enumerate(records, start=1):
            values = _lead_values(record, position)
            merged.setdefault(values["lead_id"], {}).update(values)
        if not merged:
            return 0
        now = utc_now()
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for values in merged.values():
            values.update(first_seen=now, updated_at=now)
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

            for chunk in chunks(sorted(rows, key=lambda row: row["lead_id"]), _CHUNK):
                self._write(functools.partial(work, chunk=chunk, stmt=stmt, queued=queued))
        return len(merged)

    def add_events(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Append engagement events of leads already in the store; returns the number given.

        A record has :data:`data.schema.EVENT_COLUMNS` (properties flattened, or under a
        ``properties`` mapping) and optionally its idempotency key ``event_id`` (at most 64
        characters; default :func:`event_id_of` its content): an event sent again, by any
        process, is stored once. ``ValueError`` for an unknown event type, a missing
        timestamp or an unknown field; ``KeyError`` for an event of an unknown lead.
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

        for chunk in chunks(rows, _CHUNK):
            self._write(lambda conn, chunk=chunk: work(conn, chunk))
        return len(rows)

    def get_lead(self, lead_id: str) -> dict[str, Any] | None:
        """A lead's stored profile, marketing labels and timestamps, or None."""
        row = self._read_first(sa.select(_LEADS).where(_LEADS.c.lead_id == lead_id))
        return None if row is None else _lead_dict(row)

    def events_for(self, lead_id: str, limit: int | None = None) -> list[dict[str, Any]]:
        """A lead's events (keys :data:`data.schema.EVENT_COLUMNS`), oldest first; with
        ``limit``, only the ``limit`` most recent (still oldest first).
        """
        order = (_EVENTS.c.timestamp.desc(), _EVENTS.c.id.desc())
        stmt = sa.select(_EVENTS).where(_EVENTS.c.lead_id == lead_id).order_by(*order)
        if limit is not None:
            stmt = stmt.limit(max(int(limit), 0))
        return [_event_dict(row) for row in reversed(self._read(stmt))]

    def search_leads(self, text: str, limit: int = 20) -> list[dict[str, Any]]:
        """Leads whose id, company or job title contains ``text`` (case-insensitive).

        An exact id match comes first, then by company and id. ``%`` and ``_`` in
        ``text`` match themselves. Blank text finds nothing.
        """
        needle = (text or "").strip().lower()
        if not needle:
            return []
        check_text(needle, "search")
        pattern = like_pattern(needle)
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
        return [_lead_dict(row) for row in self._read(stmt)]
