"""Import reps' corrections from a CRM export, and export the correction history.
Design notes: ``docs/design/training.md``."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from data.labels import label_key
from data.readers import InputError, RowError, read_table
from data.schema import CORRECTION_REASONS
from data.values import is_missing

if TYPE_CHECKING:
    from data.store import Store

__all__ = [
    "IMPORT_COLUMNS",
    "ImportResult",
    "export_corrections",
    "import_corrections",
    "known_labels",
]

#: Columns of a corrections import (``created_at`` optional).
IMPORT_COLUMNS: tuple[str, ...] = ("lead_id", "stage", "persona", "reviewer", "reason", "note")
_OPTIONAL_COLUMNS: tuple[str, ...] = ("created_at",)
_FIELDS: tuple[str, ...] = ("stage", "persona")
_REPORT_COLUMNS: tuple[str, ...] = ("file", "row", "column", "value", "message")
_SHOWN = 20


@dataclass
class ImportResult:
    """What an import did."""

    path: Path
    n_rows: int = 0
    written: int = 0
    confirmed: int = 0
    skipped: int = 0
    conflicts: int = 0
    rejected: list[RowError] = field(default_factory=list)
    rejected_rows: pd.DataFrame = field(default_factory=pd.DataFrame)
    ignored_columns: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        """True when no row was rejected."""
        return not self.rejected

    @property
    def n_rejected(self) -> int:
        """Distinct rejected rows (a row may carry several errors)."""
        return len({e.row for e in self.rejected if e.row is not None}) + sum(
            1 for e in self.rejected if e.row is None
        )

    def report(self, limit: int = _SHOWN) -> str:
        """A short text report: counts, then up to ``limit`` errors."""
        verb = "would write" if self.dry_run else "wrote"
        lines = [
            f"{self.path.name}: {self.n_rows} rows read; {verb} {self.written} correction(s) "
            f"({self.confirmed} confirming the current label), skipped {self.skipped} already "
            f"imported, rejected {self.n_rejected} row(s)"
        ]
        lines += [f"  {e}" for e in self.rejected[:limit]]
        if len(self.rejected) > limit:
            lines.append(f"  ... and {len(self.rejected) - limit} more (see the report file)")
        return "\n".join(lines)

    def write_report(self, path: str | Path) -> Path:
        """Write every error as CSV: the error, then the row's import columns as read."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        records = self.rejected_rows.to_dict("records") if "row" in self.rejected_rows else []
        by_row = {int(record["row"]): record for record in records}
        from data.personal import open_private

        with open_private(path) as fh:  # owner only: the values are the user's data
            writer = csv.writer(fh)
            writer.writerow([*_REPORT_COLUMNS, *IMPORT_COLUMNS])
            for e in self.rejected:
                raw = by_row.get(e.row or -1, {})
                cells = (e.file, e.row, e.column, e.value, e.message)
                given = (_text(raw.get(c)) or "" for c in IMPORT_COLUMNS)
                writer.writerow([*("" if cell is None else cell for cell in cells), *given])
        return path


@dataclass(frozen=True)
class _Row:
    """One validated row, ready to be written."""

    row: int
    lead_id: str
    labels: dict[str, str]
    reviewer: str
    reason: str | None
    note: str | None
    created_at: datetime | None


def _text(value: Any) -> str | None:
    """A cell as stripped text; None when missing or blank."""
    if is_missing(value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _key(text: str) -> str:
    """A matching key: lower case, runs of non-alphanumerics as one underscore."""
    return re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")


def known_labels(
    store: Store, model_labels: Mapping[str, Iterable[str]] | None = None
) -> dict[str, set[str]]:
    """The labels an import may use, per field: the model's plus those seen in the data."""
    import sqlalchemy as sa

    from data.store import LeadRow

    leads = LeadRow.__table__
    out: dict[str, set[str]] = {f: set() for f in _FIELDS}
    with store.engine.connect() as conn:
        for name in _FIELDS:
            column = leads.c[f"marketing_{name}"]
            stmt = sa.select(column).where(column.is_not(None)).distinct()
            out[name].update(str(v) for v in conn.execute(stmt).scalars())
    corrections = store.corrections_frame()
    if len(corrections):
        rep = corrections[
            corrections["is_rep_label"].astype(bool) & corrections["new_label"].notna()
        ]
        for name in _FIELDS:
            out[name].update(rep.loc[rep["field"] == name, "new_label"].astype(str))
    for name, labels in (model_labels or {}).items():
        if name in out:
            out[name].update(str(v) for v in labels)
    return out


def _reason_lookup(reasons: Mapping[str, str] | Collection[str]) -> dict[str, str]:
    """Matching key of each reason code and each reason's words → the code."""
    lookup: dict[str, str] = {}
    items = reasons.items() if isinstance(reasons, Mapping) else ((r, r) for r in reasons)
    for code, words in items:
        lookup[_key(str(code))] = str(code)
        lookup[_key(str(words))] = str(code)
    return lookup


def _read(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """The file as text cells with normalised headers, and the ignored columns."""
    frame = read_table(path, text_columns=[*IMPORT_COLUMNS, *_OPTIONAL_COLUMNS])
    rename = {c: str(c).strip().lower() for c in frame.columns}
    frame = frame.rename(columns=rename)
    dupes = frame.columns[frame.columns.duplicated()].unique().tolist()
    if dupes:
        raise InputError(
            f"{path.name}: columns differ only in case: {', '.join(map(repr, dupes))}",
            [RowError(path.name, None, d, None, "column given twice") for d in dupes],
        )
    errors = []
    if "lead_id" not in frame.columns:
        errors.append(RowError(path.name, None, "lead_id", None, "missing column 'lead_id'"))
    if not set(_FIELDS) & set(frame.columns):
        message = "missing columns: give 'stage' and/or 'persona'"
        errors.append(RowError(path.name, None, "stage", None, message))
    if errors:
        found = ", ".join(repr(str(c)) for c in frame.columns)
        raise InputError(f"{path.name}: {errors[0].message}; the columns are: {found}", errors)
    known = {*IMPORT_COLUMNS, *_OPTIONAL_COLUMNS}
    ignored = [str(c) for c in frame.columns if c not in known]
    for column in known:
        if column not in frame.columns:
            frame[column] = None
    return frame, ignored


class _Checker:
    """Validates rows one by one against the store, the labels and the reasons."""

    def __init__(
        self,
        name: str,
        store: Store,
        labels: Mapping[str, Collection[str]],
        reasons: Mapping[str, str] | Collection[str],
        reviewer_default: str | None,
    ) -> None:
        self.name = name
        self.store = store
        # One label policy for every entry point (data.labels.label_key).
        self.labels = {f: {label_key(v): str(v) for v in labels.get(f, ())} for f in _FIELDS}
        self.reasons = _reason_lookup(reasons)
        self.reason_codes = sorted(set(self.reasons.values()))
        self.reviewer_default = reviewer_default
        self.present: dict[str, bool] = {}

    def known(self, lead_id: str) -> bool:
        if lead_id not in self.present:
            self.present[lead_id] = _lead_known(self.store, lead_id)
        return self.present[lead_id]

    def check(self, position: int, record: Mapping[str, Any]) -> tuple[_Row | None, list[RowError]]:
        """One row: the validated row, or None and its errors."""
        cells = {c: _text(record.get(c)) for c in (*IMPORT_COLUMNS, *_OPTIONAL_COLUMNS)}
        errors: list[RowError] = []

        def bad(column: str | None, value: Any, message: str) -> None:
            errors.append(RowError(self.name, position, column, value, message))

        if all(v is None for v in cells.values()):
            bad(None, None, "empty row")
            return None, errors
        lead_id = cells["lead_id"]
        if lead_id is None:
            bad("lead_id", None, "no lead id")
        elif not self.known(lead_id):
            bad("lead_id", lead_id, f"unknown lead {lead_id!r}: neither stored nor scored")
        chosen: dict[str, str] = {}
        for f in _FIELDS:
            value = cells[f]
            if value is None:
                continue
            label = self.labels[f].get(label_key(value))
            if label is None:
                known = ", ".join(sorted(self.labels[f].values())) or "none yet"
                bad(f, value, f"unknown {f} {value!r}; known {f} labels: {known}")
            else:
                chosen[f] = label
        if cells["stage"] is None and cells["persona"] is None:
            bad("stage", None, "no stage and no persona: nothing to correct")
        reviewer = cells["reviewer"] or self.reviewer_default
        if reviewer is None:
            bad("reviewer", None, "no reviewer (fill the column or give a default reviewer)")
        reason, given = None, cells["reason"]
        if given is not None:
            reason = self.reasons.get(_key(given))
            if reason is None:
                codes = ", ".join(self.reason_codes)
                bad("reason", given, f"unknown reason {given!r}; use one of {codes}")
        created_at = None
        if cells["created_at"] is not None:
            try:
                created_at = datetime.fromisoformat(cells["created_at"].replace("Z", "+00:00"))
            except ValueError:
                bad("created_at", cells["created_at"], "not an ISO 8601 time")
        if errors:
            return None, errors
        return _Row(
            row=position,
            lead_id=str(lead_id),
            labels=chosen,
            reviewer=str(reviewer),
            reason=reason,
            note=cells["note"],
            created_at=created_at,
        ), errors


def _lead_known(store: Store, lead_id: str) -> bool:
    """True when the store has the lead's profile or a prediction of it."""
    if store.get_lead(lead_id) is not None:
        return True
    return bool(store.latest_predictions([lead_id], with_features=False))


def _store_error(name: str, row: _Row, f: str, exc: Exception) -> RowError:
    """A store refusal as a RowError on the column it names."""
    message = str(exc).strip("'\"")
    prefix = message.split(":", 1)[0].strip()
    column = {"reviewer": "reviewer", "reason": "reason", "note": "note"}.get(prefix, f)
    value = {"reviewer": row.reviewer, "reason": row.reason, "note": row.note}.get(
        column, row.labels.get(f)
    )
    if isinstance(exc, KeyError):
        column, value = "lead_id", row.lead_id
    return RowError(name, row.row, column, value, f"refused by the store: {message}")


def import_corrections(
    path: str | Path,
    store: Store,
    *,
    labels: Mapping[str, Collection[str]],
    reasons: Mapping[str, str] | Collection[str] | None = None,
    reviewer_default: str | None = None,
    dry_run: bool = False,
) -> ImportResult:
    """Validate a corrections export and append its good rows to the store."""
    path = Path(path)
    if reasons is None:
        reasons = dict(CORRECTION_REASONS)
    frame, ignored = _read(path)
    frame = frame.reset_index(drop=True)
    checker = _Checker(path.name, store, labels, reasons, reviewer_default)
    good: list[_Row] = []
    errors: list[RowError] = []
    for position, record in enumerate(frame.to_dict("records"), start=1):
        row, row_errors = checker.check(position, record)
        errors.extend(row_errors)
        if row is not None:
            good.append(row)
    result = ImportResult(path=path, n_rows=len(frame), ignored_columns=ignored, dry_run=dry_run)
    _write(store, good, result, errors)
    errors.sort(key=lambda e: e.row or 0)
    result.rejected = errors
    rows = sorted({e.row for e in errors if e.row is not None})
    rejected = frame.iloc[[r - 1 for r in rows]] if rows else frame.iloc[:0]
    rejected = rejected.drop(columns=["row"], errors="ignore").copy()
    rejected.insert(0, "row", rows)
    result.rejected_rows = rejected.reset_index(drop=True)
    return result


def _write(store: Store, good: list[_Row], result: ImportResult, errors: list[RowError]) -> None:
    """Append the checked rows (counted only on a dry run), skipping what the same import
    wrote before; the store's refusals go to ``errors``."""
    latest = _latest_imports(store) if good else {}
    for row in good:
        current: dict[str, str | None] | None = None
        for f, label in row.labels.items():
            key = (row.lead_id, f)
            signature = (label, row.reviewer, row.reason, row.note)
            if latest.get(key) == signature:
                result.skipped += 1
                continue
            if current is None:
                current = store.labels_for(row.lead_id)
            kind = "confirm" if current.get(f) == label else "reclassify"
            if not result.dry_run:
                try:
                    stored = store.add_correction(
                        row.lead_id,
                        f,
                        label,
                        reviewer=row.reviewer,
                        kind=kind,
                        reason=row.reason,
                        note=row.note,
                        source="import",
                        expected_label=current.get(f),
                        created_at=row.created_at,
                    )
                except (KeyError, ValueError) as exc:
                    errors.append(_store_error(result.path.name, row, f, exc))
                    continue
                latest[key] = signature
                current[f] = label
                result.conflicts += stored.conflict
            result.written += 1
            result.confirmed += kind == "confirm"


def _latest_imports(store: Store) -> dict[tuple[str, str], tuple[Any, ...]]:
    """Per (lead, field): (label, reviewer, reason, note) of the newest row, if an import's."""
    frame = store.corrections_frame()
    if frame.empty:
        return {}
    frame = frame.sort_values("id").groupby(["lead_id", "field"], sort=False).tail(1)
    frame = frame[(frame["source"] == "import") & frame["is_rep_label"].astype(bool)]
    return {
        (str(r["lead_id"]), str(r["field"])): (
            r["new_label"],
            r["reviewer"],
            _text(r["reason"]),
            _text(r["note"]),
        )
        for r in frame.to_dict("records")
    }


#: First characters that make a spreadsheet read a cell as a formula (OWASP CSV injection).
FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formulas(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Text cells that a spreadsheet would run as formulas, prefixed with ``'``."""
    out = frame.copy()
    changed = 0
    for column in out.columns:
        if not (out[column].dtype == object or pd.api.types.is_string_dtype(out[column])):
            continue
        risky = out[column].map(lambda v: isinstance(v, str) and v.startswith(FORMULA_PREFIXES))
        n = int(risky.sum())
        if n:
            out.loc[risky, column] = "'" + out.loc[risky, column]
            changed += n
    return out, changed


def export_corrections(
    store: Store, out: str | Path, *, on_neutralised: Callable[[int], None] | None = None
) -> tuple[Path, int]:
    """Write every correction row, oldest first (the append-only history)."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise ValueError(f"{out.name}: write .csv or .parquet")
    frame = store.corrections_frame()
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        frame = frame.copy()
        frame["created_at"] = frame["created_at"].map(
            lambda t: "" if pd.isna(t) else t.isoformat().replace("+00:00", "Z")
        )
        frame, neutralised = neutralise_formulas(frame)
        if on_neutralised is not None:
            on_neutralised(neutralised)
        frame.to_csv(out, index=False, lineterminator="\n")
    else:
        frame.to_parquet(out, index=False)
    return out, len(frame)
