"""Reps' corrections: appended, never updated (an undo is a new row), one lead's labels
written one transaction at a time; read back as histories, current labels and a frame."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from data.store.base import _first, _newest
from data.store.checks import _choice, _opt_str, _opt_ts, _req_str
from data.store.queue import QueueUpkeep
from data.store.tables import (
    _CORRECTIONS,
    _LABEL_MAX,
    _LEADS,
    _NAME_MAX,
    _NOTE_MAX,
    _PREDICTIONS,
    _REASON_MAX,
    CORRECTION_FIELDS,
    CORRECTION_KINDS,
    CORRECTION_SOURCES,
)
from data.values import utc_now

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class CorrectionResult:
    """What ``add_correction`` / ``undo_correction`` stored; ``conflict``: the label the
    caller expected to replace was not current any more (stored anyway; tell the rep?)."""

    id: int
    old_label: str | None
    new_label: str | None
    conflict: bool
    created_at: datetime
    lead_id: str
    field: str
    kind: str


class _Missing(enum.Enum):
    MISSING = enum.auto()


_MISSING: Final = _Missing.MISSING


def _note(note: Any) -> str | None:
    if note is not None and not isinstance(note, str):
        raise ValueError("note: expected text")
    if note is not None and len(note) > _NOTE_MAX:
        raise ValueError(f"note: longer than {_NOTE_MAX} characters")
    return note


def _lead_labels(lead_id: str) -> sa.Select[Any]:
    """The lead's id and marketing labels."""
    columns = (_LEADS.c.lead_id, _LEADS.c.marketing_stage, _LEADS.c.marketing_persona)
    return sa.select(*columns).where(_LEADS.c.lead_id == lead_id)


def _latest_correction(lead_id: str, field: str, *columns: Any) -> sa.Select[Any]:
    """The newest correction row of one field of a lead (``columns``, default all)."""
    return (
        sa.select(*(columns or (_CORRECTIONS,)))
        .where(_CORRECTIONS.c.lead_id == lead_id, _CORRECTIONS.c.field == field)
        .order_by(_CORRECTIONS.c.id.desc())
        .limit(1)
    )


def _check_scored(conn: Connection, lead_id: str) -> None:
    """``KeyError`` for a lead that has no stored prediction."""
    stmt = sa.select(_PREDICTIONS.c.id).where(_PREDICTIONS.c.lead_id == lead_id).limit(1)
    if conn.execute(stmt).first() is None:
        raise KeyError(f"unknown lead {lead_id!r}")


class CorrectionsRoom(QueueUpkeep):
    """Append-only corrections of a lead's stage or persona, undos and bulk undos."""

    def _lock_lead(self, conn: Connection, lead_id: str) -> Mapping[str, Any]:
        """Lock the lead's row for this transaction and return its marketing labels.

        A lead that was scored but never stored as a profile gets a bare row first
        (so there is a row to lock and a target for the foreign key). Unknown
        leads raise ``KeyError``.
        """
        stmt = _lead_labels(lead_id).with_for_update()
        row = _first(conn, stmt)
        if row is not None:
            return row
        _check_scored(conn, lead_id)
        now = utc_now()
        insert = self._insert(_LEADS).values(lead_id=lead_id, first_seen=now, updated_at=now)
        conn.execute(insert.on_conflict_do_nothing(index_elements=["lead_id"]))
        return conn.execute(stmt).mappings().one()

    def _label_state(
        self, conn: Connection, lead: Mapping[str, Any], field: str
    ) -> tuple[str | None, Mapping[str, Any] | None, Mapping[str, Any] | None]:
        """(current label, latest correction row, latest prediction row) of one field."""
        lead_id = lead["lead_id"]
        correction = _first(conn, _latest_correction(lead_id, field))
        p = _PREDICTIONS.c
        columns = (p.id, p.model_version, p[field].label("label"))
        newest = sa.select(*columns).where(p.lead_id == lead_id).order_by(p.id.desc()).limit(1)
        prediction = _first(conn, newest)
        if correction is not None and correction["is_rep_label"]:
            return correction["new_label"], correction, prediction
        if prediction is not None and prediction["label"] is not None:
            return prediction["label"], correction, prediction
        return lead[f"marketing_{field}"], correction, prediction

    def _append(self, conn: Connection, row: dict[str, Any], conflict: bool) -> CorrectionResult:
        """Append one correction row and bring the lead's queue row's reviewed flag along."""
        insert = sa.insert(_CORRECTIONS).returning(_CORRECTIONS.c.id)
        new_id = conn.execute(insert, row).scalar_one()
        self._queue_reviewed(conn, row["lead_id"])
        names = ("old_label", "new_label", "created_at", "lead_id", "field", "kind")
        return CorrectionResult(int(new_id), conflict=conflict, **{n: row[n] for n in names})

    def add_correction(
        self,
        lead_id: str,
        field: str,
        new_label: str,
        *,
        reviewer: str,
        kind: str = "reclassify",
        reason: str | None = None,
        note: str | None = None,
        source: str = "ui",
        prediction_id: int | None = None,
        model_version: str | None = None,
        expected_label: str | None | _Missing = _MISSING,
        created_at: datetime | None = None,
        api_key: str | None = None,
        batch_id: str | None = None,
        suggestion_id: int | None = None,
    ) -> CorrectionResult:
        """Append a rep's correction of one label (``field``: stage or persona) of one lead.

        ``kind`` is ``"reclassify"``, ``"confirm"`` (the rep agrees with the current label)
        or ``"undo"`` (imports only: use :meth:`undo_correction`); ``source`` is ``"ui"``,
        ``"api"`` or ``"import"``. ``prediction_id``/``model_version`` name the prediction
        reviewed (default: the lead's newest). When ``expected_label`` is not the current
        label (:meth:`labels_for`, returned as ``old_label``) the row is stored all the same
        and ``conflict`` is true. ``created_at``, ``api_key``, ``batch_id``
        (:meth:`undo_batch`) and ``suggestion_id`` are recorded as given. ``KeyError`` for
        an unknown lead; ``ValueError`` naming the argument for a bad value or a prediction
        of another lead. Long only for its keyword arguments.
        """
        values: dict[str, Any] = {
            "field": _choice(field, "field", CORRECTION_FIELDS),
            "kind": _choice(kind, "kind", CORRECTION_KINDS),
            "source": _choice(source, "source", CORRECTION_SOURCES),
            "new_label": _req_str(new_label, "new_label", _LABEL_MAX),
            "reviewer": _req_str(reviewer, "reviewer", _LABEL_MAX),
            "reason": _opt_str(reason, "reason", _REASON_MAX),
            "note": _note(note),
            "created_at": _opt_ts(created_at, "created_at"),
            "api_key": None if api_key is None else _req_str(api_key, "api_key", _NAME_MAX),
            "is_rep_label": True,
            "undo_of": None,
            "batch_id": batch_id,
            "suggestion_id": suggestion_id,
        }

        def work(conn: Connection) -> CorrectionResult:
            lead = self._lock_lead(conn, lead_id)
            current, _, latest = self._label_state(conn, lead, values["field"])
            reviewed = self._reviewed_prediction(conn, lead_id, prediction_id, latest) or {}
            version = reviewed.get("model_version") if model_version is None else model_version
            row = {
                **values,
                "lead_id": lead_id,
                "old_label": current,
                "created_at": values["created_at"] or utc_now(),
                "prediction_id": reviewed.get("id"),
                "model_version": version,
            }
            conflict = expected_label is not _MISSING and expected_label != current
            return self._append(conn, row, conflict)

        return self._write(work)

    @staticmethod
    def _reviewed_prediction(
        conn: Connection, lead_id: str, prediction_id: int | None, latest: Mapping[str, Any] | None
    ) -> Mapping[str, Any] | None:
        """The prediction a correction reviews: the one named (it must be of this lead),
        else the lead's newest (so retraining finds the feature snapshot the rep saw)."""
        if prediction_id is None:
            return latest
        p = _PREDICTIONS.c
        stmt = sa.select(p.id, p.lead_id, p.model_version).where(p.id == prediction_id)
        reviewed = _first(conn, stmt)
        if reviewed is None or reviewed["lead_id"] != lead_id:
            raise ValueError(f"prediction {prediction_id} is not a prediction of lead {lead_id!r}")
        return reviewed

    def undo_correction(
        self,
        correction_id: int,
        *,
        reviewer: str,
        reason: str | None = None,
        note: str | None = None,
        source: str = "ui",
        batch_id: str | None = None,
    ) -> CorrectionResult:
        """Append an ``undo`` row (``undo_of`` the undone one) restoring the label from before
        a correction: the model's (else marketing's) when it was the field's first rep label,
        so the lead no longer counts as rep-labelled. ``conflict`` is true when the label
        changed since the undone correction. ``KeyError`` for an unknown correction id.
        """
        values = {
            "reviewer": _req_str(reviewer, "reviewer", _LABEL_MAX),
            "source": _choice(source, "source", CORRECTION_SOURCES),
            "reason": _opt_str(reason, "reason"),
            "note": _note(note),
            "kind": "undo",
            "batch_id": batch_id,
        }

        def work(conn: Connection) -> CorrectionResult:
            target = _first(conn, sa.select(_CORRECTIONS).where(_CORRECTIONS.c.id == correction_id))
            if target is None:
                raise KeyError(f"unknown correction {correction_id}")
            field = target["field"]
            lead = self._lock_lead(conn, target["lead_id"])
            current, _, latest_prediction = self._label_state(conn, lead, field)
            rep_label, restored = self._restored(conn, target, lead, latest_prediction)
            row = {
                **values,
                "lead_id": target["lead_id"],
                "field": field,
                "old_label": current,
                "new_label": restored,
                "is_rep_label": rep_label,
                "created_at": utc_now(),
                "prediction_id": target["prediction_id"],
                "model_version": target["model_version"],
                "undo_of": target["id"],
            }
            return self._append(conn, row, conflict=current != target["new_label"])

        return self._write(work)

    @staticmethod
    def _restored(
        conn: Connection,
        target: Mapping[str, Any],
        lead: Mapping[str, Any],
        latest_prediction: Mapping[str, Any] | None,
    ) -> tuple[bool, str | None]:
        """(whether the label an undo of ``target`` restores is a rep's, that label):
        the label ``target`` replaced when a rep's label came before it, else the
        model's newest, else marketing's."""
        field = target["field"]
        latest = _latest_correction(target["lead_id"], field, _CORRECTIONS.c.is_rep_label)
        before = conn.execute(latest.where(_CORRECTIONS.c.id < target["id"])).scalar()
        if before:
            return True, target["old_label"]
        if latest_prediction is not None and latest_prediction["label"] is not None:
            return False, latest_prediction["label"]
        return False, lead[f"marketing_{field}"]

    # ------------------------------------------------- batches (issue #18: bulk undo)

    def corrections_in_batch(self, batch_id: str) -> list[dict[str, Any]]:
        """The corrections one bulk action made, oldest first (every column)."""
        return self._corrections_where(_CORRECTIONS.c.batch_id == batch_id)

    def _corrections_where(self, condition: Any) -> list[dict[str, Any]]:
        stmt = sa.select(_CORRECTIONS).where(condition).order_by(_CORRECTIONS.c.id)
        return [dict(row) for row in self._read(stmt)]

    def undo_batch(
        self, batch_id: str, *, reviewer: str, undo_batch_id: str, source: str = "ui"
    ) -> list[CorrectionResult]:
        """Undo every correction of a bulk action not undone yet (append-only).

        Each undo row carries ``undo_batch_id``. Rows of the batch that an earlier undo
        already took back are left alone, so running it again after an interruption finishes
        the job instead of undoing twice. ``KeyError`` when no correction carries ``batch_id``.
        """
        rows = self.corrections_in_batch(batch_id)
        if not rows:
            raise KeyError(f"unknown batch {batch_id!r}")
        ids = [r["id"] for r in rows if r["kind"] != "undo"]
        stmt = sa.select(_CORRECTIONS.c.undo_of).where(_CORRECTIONS.c.undo_of.in_(ids))
        undone = {row["undo_of"] for row in self._read(stmt)}
        return [
            self.undo_correction(cid, reviewer=reviewer, source=source, batch_id=undo_batch_id)
            for cid in ids
            if cid not in undone
        ]

    # ------------------------------------------------------------------------

    def corrections_for(self, lead_id: str) -> list[dict[str, Any]]:
        """A lead's complete correction history, oldest first (every column)."""
        return self._corrections_where(_CORRECTIONS.c.lead_id == lead_id)

    def labels_for(self, lead_id: str) -> dict[str, str | None]:
        """The current stage and persona of a lead, by the rule corrections use.

        The latest rep label, else the latest prediction's, else marketing's. Use it as
        ``expected_label`` when a rep opens a lead. ``KeyError`` when the lead is neither
        stored nor scored.
        """
        with self._engine.connect() as conn:
            lead = _first(conn, _lead_labels(lead_id))
            if lead is None:
                _check_scored(conn, lead_id)
                lead = {"lead_id": lead_id, "marketing_stage": None, "marketing_persona": None}
            return {field: self._label_state(conn, lead, field)[0] for field in CORRECTION_FIELDS}

    def current_labels(
        self, lead_ids: Iterable[str] | None = None
    ) -> dict[str, dict[str, str | None]]:
        """Reps' current labels, ``{lead_id: {"stage": label or None, "persona": ...}}``:
        the latest correction per lead and field wins; only leads with a rep label, and
        None for a field no rep labelled (or whose corrections were all undone).
        """

        def query(ids: Sequence[str] | None) -> sa.Select[Any]:
            sub = _newest(_CORRECTIONS, ids, "lead_id", "field")
            rep = sa.and_(_CORRECTIONS.c.id == sub.c.id, _CORRECTIONS.c.is_rep_label.is_(True))
            columns = (_CORRECTIONS.c.lead_id, _CORRECTIONS.c.field, _CORRECTIONS.c.new_label)
            return sa.select(*columns).join(sub, rep)

        out: dict[str, dict[str, str | None]] = {}
        for row in self._read_by_ids(query, lead_ids):
            labels = out.setdefault(row["lead_id"], dict.fromkeys(CORRECTION_FIELDS))
            labels[row["field"]] = row["new_label"]
        return out

    def corrections_frame(self, *, with_features: bool = False) -> pd.DataFrame:
        """Every correction row, oldest first, as a DataFrame of the table's columns
        (``created_at`` as UTC datetimes; empty with the same columns when there are none),
        for retraining and export; ``with_features`` adds the reviewed prediction's feature
        snapshot as ``features`` (None when the correction names none).
        """
        import pandas as pd

        stmt = sa.select(_CORRECTIONS)
        if with_features:
            stmt = stmt.add_columns(_PREDICTIONS.c.features).outerjoin(
                _PREDICTIONS, _PREDICTIONS.c.id == _CORRECTIONS.c.prediction_id
            )
        with self._engine.connect() as conn:
            result = conn.execute(stmt.order_by(_CORRECTIONS.c.id))
            frame = pd.DataFrame.from_records(result.all(), columns=list(result.keys()))
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
        return frame
