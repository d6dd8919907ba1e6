"""Any lead table → a training set: features, stage and persona labels, slices.
Design notes: ``docs/design/training.md``."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data.coltypes import format_report
from data.labels import describe_variants, merge_label_variants
from data.personal import screen_columns, single_column_leaks
from data.readers import ROW_ID, InputError, RowError, Sample, read_events, read_leads
from data.values import is_missing

__all__ = ["TrainingSet", "holdout_mask", "load_training_table", "normalize_labels"]

#: The slice columns reported when present in a table (besides the labels).
DEFAULT_SLICE_COLUMNS: tuple[str, ...] = ("lead_source",)
#: How many offending ids or rows an error message lists.
_LIST = 10


@dataclass(frozen=True)
class TrainingSet:
    """A table turned into features and labels."""

    X: pd.DataFrame
    y_stage: pd.Series | None
    y_persona: pd.Series | None
    ids: pd.Index
    leads: pd.DataFrame
    slices: pd.DataFrame
    source: str
    name: str
    id_col: str
    stage_col: str | None = None
    persona_col: str | None = None
    exclude: tuple[str, ...] = ()
    as_of: datetime | None = None
    rejected: list[RowError] = field(default_factory=list)
    rejected_events: list[RowError] = field(default_factory=list)
    sample: Sample | None = None
    #: Data rows (records) the leads file had, read or rejected.
    n_rows_read: int = 0
    #: What the reader chose and inferred, to be said (encoding, delimiter, …).
    notes: tuple[str, ...] = ()
    #: What was inferred about the table, one sentence each (column kinds, excluded
    #: columns, merged label spellings), printed by ``train`` and logged to MLflow.
    inferred: tuple[str, ...] = ()
    #: The column report (``data.coltypes.ColumnReport.as_dict`` per column) and the
    #: screening of columns, as logged to MLflow (``input_report.json``).
    input_report: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def labels(self, head: str) -> pd.Series | None:
        """The labels of one head (``"stage"`` or ``"persona"``)."""
        return {"stage": self.y_stage, "persona": self.y_persona}[head]

    def relabelled(self, labels: Mapping[str, pd.Series | None], **changes: Any) -> TrainingSet:
        """A copy with these labels per head (the slices' label columns follow: ``slices``
        in ``changes`` is filled in place) and ``changes``."""
        slices = changes.pop("slices", self.slices)
        for head, y in labels.items():
            if y is not None and head in slices.columns:
                slices[head] = y.to_numpy(dtype=object)
        y_stage, y_persona = labels["stage"], labels["persona"]
        return replace(self, y_stage=y_stage, y_persona=y_persona, slices=slices, **changes)

    def subset(self, mask: np.ndarray | pd.Series) -> TrainingSet:
        """The rows where ``mask`` is true (a boolean array in table order)."""
        mask = np.asarray(mask, dtype=bool)
        ids = self.ids[mask]

        def pick(y: pd.Series | None) -> pd.Series | None:
            return None if y is None else y.loc[ids]

        return replace(
            self,
            X=self.X.loc[ids],
            y_stage=pick(self.y_stage),
            y_persona=pick(self.y_persona),
            ids=ids,
            leads=self.leads.loc[ids],
            slices=self.slices.loc[ids],
        )

    def label_frame(self) -> pd.DataFrame:
        """The features with the labels as ``stage`` / ``persona`` columns (for MLflow)."""
        labels = {f"label_{head}": self.labels(head) for head in ("stage", "persona")}
        return self.X.assign(**{name: y for name, y in labels.items() if y is not None})


def holdout_mask(ids: Iterable[Any], share: float = 0.2) -> np.ndarray:
    """Which leads are held out: ``sha1(id) mod 10_000 < share * 10_000``."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"holdout share must be between 0 and 1, got {share}")
    cut = round(share * 10_000)
    return np.fromiter(
        (
            int.from_bytes(hashlib.sha1(str(i).encode("utf-8")).digest()[:8], "big") % 10_000 < cut
            for i in ids
        ),
        dtype=bool,
    )


def _label_text(value: Any) -> str | None:
    """One label as text; None when missing or blank."""
    if is_missing(value, blank=True):
        return None
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, float | np.floating):
        return str(int(value)) if float(value).is_integer() else str(float(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    return str(value).strip()


def normalize_labels(values: pd.Series) -> pd.Series:
    """Labels of any type as text; missing values (and empty text) as None."""
    if values.dtype == object:
        # Mixed Python values: 1, 1.0 and True hash alike, so each is read by itself.
        out = values.astype(object).map(_label_text)
        return out.astype(object).where(out.notna(), None)
    # One type: each distinct value is read once, then spread over the rows.
    codes, uniques = pd.factorize(values)
    texts = np.array([_label_text(u) for u in uniques] + [None], dtype=object)
    return pd.Series(texts[codes], index=values.index, dtype=object)


def _columns_listed(columns: Sequence[str]) -> str:
    return ", ".join(repr(c) for c in columns)


def _need_column(name: str, columns: Sequence[str], column: str, what: str) -> None:
    if column not in columns:
        raise ValueError(
            f"{name}: no column {column!r} ({what}); the columns are: {_columns_listed(columns)}"
        )


def _id_errors(name: str, id_col: str, rejected: list[RowError]) -> None:
    """Raise a ValueError for empty or repeated ids; they cannot be trained on."""
    errors = [e for e in rejected if e.column == id_col]
    blank = [e for e in errors if e.value is None or not str(e.value).strip()]
    empty = [e.row for e in blank]
    dupes = [e for e in errors if e not in blank and "duplicate" in e.message]
    other = [e for e in errors if e not in blank and "duplicate" not in e.message]
    if empty:
        rows = ", ".join(str(r) for r in empty[:_LIST])
        more = f" and {len(empty) - _LIST} more" if len(empty) > _LIST else ""
        raise ValueError(
            f"{name}: the id column {id_col!r} is empty in {len(empty)} row"
            f"{'s' if len(empty) != 1 else ''} (rows {rows}{more}); every lead needs an id"
        )
    if dupes:
        ids = list(dict.fromkeys(str(e.value) for e in dupes))
        listed = ", ".join(repr(i) for i in ids[:_LIST])
        more = f" and {len(ids) - _LIST} more" if len(ids) > _LIST else ""
        raise ValueError(
            f"{name}: the id column {id_col!r} has {len(ids)} duplicate id"
            f"{'s' if len(ids) != 1 else ''} ({len(dupes)} repeated rows): {listed}{more}; "
            "one row a lead is expected"
        )
    if other:
        raise ValueError(f"{name}: bad ids in column {id_col!r}: " + "; ".join(map(str, other[:3])))


def load_training_table(
    leads_path: str | Path,
    *,
    events_path: str | Path | None = None,
    id_col: str = "lead_id",
    stage_col: str | None = None,
    persona_col: str | None = None,
    exclude: Sequence[str] = (),
    as_of: datetime | None = None,
    slice_cols: Sequence[str] = DEFAULT_SLICE_COLUMNS,
    feature_config: Any | None = None,
    max_rows: int | None = None,
    seed: int = 0,
    strict: bool = False,
    types: Mapping[str, str] | None = None,
    allow_columns: Sequence[str] = (),
    screen: bool = True,
) -> TrainingSet:
    """Read a lead table (and events) and turn it into a :class:`TrainingSet`: read and check
    the table, its labels, the columns screened and typed, leaks dropped, features built.
    ``inferred`` (what a person should know, in words) and ``report`` (the input report)
    gather what each step found; one pass, as each step reads what the one before left."""
    from model.features import FeatureConfig, build_features

    path = Path(leads_path)
    name = path.name
    result = _read_table(path, id_col, stage_col, persona_col, exclude, max_rows, seed, strict)
    frame = result.frame
    ids = pd.Index(frame[id_col].astype(str), name=id_col)
    inferred: list[str] = []
    report: dict[str, Any] = {}
    labels = _read_labels(frame, ids, name, stage_col, persona_col, inferred, report)
    label_cols = {c for c in (stage_col, persona_col) if c is not None}
    frame, dropped, unusable, screened = _screen_and_type(
        frame, result, id_col, label_cols, exclude, allow_columns, types, screen, inferred, report
    )
    leads = frame[[c for c in frame.columns if c not in dropped]].copy()
    leaked = _leaks(frame, leads, labels, id_col, allow_columns, inferred, report)
    if leaked:
        leads = leads.drop(columns=list(leaked))
        dropped |= set(leaked)
    # Every column left out of the features and why, for the column report.
    report["excluded_columns"] = _excluded_columns(screened, leaked, exclude, unusable)
    title_col = _job_titles(leads, inferred, report)
    leads[id_col] = ids.to_numpy()
    events, rejected_events, as_of, source = _read_events(path, events_path, strict, as_of)
    config = feature_config if feature_config is not None else FeatureConfig()
    X = build_features(leads, events, as_of=as_of, config=config, id_col=id_col)
    if title_col is not None and "title_seniority" in X.columns:
        _title_report(leads, X, inferred, report)
    X.index = X.index.astype(str)
    X = X.loc[ids]
    if not any(X[c].nunique(dropna=True) > 1 for c in X.columns):
        raise ValueError(
            f"{name}: no usable features: every feature column is empty or constant "
            f"({_columns_listed([str(c) for c in X.columns])})"
        )
    return TrainingSet(
        X=X,
        y_stage=labels["stage"],
        y_persona=labels["persona"],
        ids=ids,
        leads=leads.set_index(ids),
        slices=_slices(frame, ids, slice_cols, dropped, id_col, labels),
        source=source,
        name=name,
        id_col=id_col,
        stage_col=stage_col,
        persona_col=persona_col,
        exclude=tuple(exclude),
        as_of=as_of,
        rejected=[e for e in result.rejected if e.column != id_col],
        rejected_events=rejected_events,
        sample=result.sample,
        n_rows_read=result.n_rows,
        notes=tuple(result.notes),
        inferred=tuple(inferred),
        input_report=report,
    )


def _read_table(
    path: Path,
    id_col: str,
    stage_col: str | None,
    persona_col: str | None,
    exclude: Sequence[str],
    max_rows: int | None,
    seed: int,
    strict: bool,
) -> Any:
    """The lead table as read (``read_leads``), refused with the file's name when the id,
    label or excluded columns are wrong or no row is usable."""
    name = path.name
    if stage_col is None and persona_col is None:
        raise ValueError(
            f"{name}: name at least one label column (stage or persona); nothing to train on"
        )
    if stage_col is not None and stage_col == persona_col:
        raise ValueError(f"{name}: the stage and persona label columns are both {stage_col!r}")
    try:
        result = read_leads(
            path,
            id_col=id_col,
            max_rows=max_rows,
            seed=seed,
            strict=strict,
            text_columns=_crm_text_columns(path, {stage_col, persona_col}),
        )
    except InputError as exc:
        missing_id = any(e.column == id_col and e.row is None for e in exc.errors)
        if missing_id:
            columns = _header(path)
            raise ValueError(
                f"{name}: no column {id_col!r} (id column); "
                f"the columns are: {_columns_listed(columns)}. "
                f"A table without ids can use --id-col {ROW_ID} (leads numbered by row)"
            ) from None
        raise
    columns = [str(c) for c in result.frame.columns]
    for column, what in ((stage_col, "stage label"), (persona_col, "persona label")):
        if column is not None:
            _need_column(name, columns, column, f"{what} column")
            if column == id_col:
                raise ValueError(f"{name}: {column!r} is the id column and cannot be a label")
    for column in exclude:
        _need_column(name, columns, column, "excluded column")
    _id_errors(name, id_col, result.rejected)
    if len(result.frame) == 0:
        raise ValueError(f"{name}: no usable rows")
    return result


def _read_events(
    path: Path, events_path: str | Path | None, strict: bool, as_of: datetime | None
) -> tuple[pd.DataFrame | None, list[RowError], datetime | None, str]:
    """(the events or None, their rejected lines, ``as_of``: by default the latest event,
    the source of the training set)."""
    if events_path is None:
        return None, [], as_of, str(path.resolve())
    read = read_events(events_path, strict=strict)
    if as_of is None and len(read.frame):
        as_of = read.frame["timestamp"].max().to_pydatetime()
    return read.frame, read.rejected, as_of, f"{path.resolve()} + {Path(events_path).resolve()}"


def _job_titles(leads: pd.DataFrame, inferred: list[str], report: dict[str, Any]) -> str | None:
    """The column of job titles, copied to ``job_title`` (what the feature builder parses)
    when a CRM names it otherwise."""
    title_col = title_column(leads.columns)
    if title_col is not None and title_col != "job_title":
        leads["job_title"] = leads[title_col]
        report["title_column"] = title_col
        inferred.append(f"job titles read from {title_col!r} (seniority and function)")
    return title_col


def _read_labels(
    frame: pd.DataFrame,
    ids: pd.Index,
    name: str,
    stage_col: str | None,
    persona_col: str | None,
    inferred: list[str],
    report: dict[str, Any],
) -> dict[str, pd.Series | None]:
    """Each head's labels (spelling variants merged), refused with fewer than two classes."""
    labels: dict[str, pd.Series | None] = {}
    for head, column in (("stage", stage_col), ("persona", persona_col)):
        if column is None:
            labels[head] = None
            continue
        y, variants = merge_label_variants(normalize_labels(frame[column]))
        inferred += describe_variants(head, variants)
        report[f"{head}_label_variants"] = variants
        y.index = ids
        y.name = head
        classes = y.dropna().unique().tolist()
        if len(classes) < 2:
            found = f"only {classes[0]!r}" if classes else "no labels at all"
            raise ValueError(
                f"{name}: the {head} label column {column!r} has {found}; "
                "a classifier needs at least two classes"
            )
        labels[head] = y
    return labels


def _screen_and_type(
    frame: pd.DataFrame,
    result: Any,
    id_col: str,
    label_cols: set[str],
    exclude: Sequence[str],
    allow_columns: Sequence[str],
    types: Mapping[str, str] | None,
    screen: bool,
    inferred: list[str],
    report: dict[str, Any],
) -> tuple[pd.DataFrame, set[str], list[str], Any]:
    """Screen out personal and id-like columns, type the rest: (typed frame, columns that
    are not features, empty or constant ones, the screening or None)."""
    skip = {id_col, *label_cols, *exclude}
    screened = screen_columns(frame, skip=skip, allow=allow_columns) if screen else None
    excluded = set(screened.excluded) if screened else set()
    frame, kinds = _type_columns(frame, result, skip=skip | excluded, types=types or {})
    if screened is not None:
        # Unique per row is id-like only for text: revenue figures are all different too.
        kind = {k.name: k.kind for k in kinds}
        id_like = tuple(c for c in screened.id_like if kind.get(c, "text") == "text")
        screened = replace(screened, id_like=id_like)
        inferred += screened.messages()
        report["screened"] = asdict(screened)
    report["columns"] = [k.as_dict() for k in kinds]
    unusable = [k.name for k in kinds if k.kind in ("empty", "constant")]
    if kinds:
        inferred.append("column kinds:")
        inferred += format_report(kinds)
    if unusable:
        inferred.append(f"not features (empty or constant): {', '.join(unusable)}")
    dropped = label_cols | set(exclude) | excluded | set(unusable)
    return frame, dropped, unusable, screened


def _leaks(
    frame: pd.DataFrame,
    leads: pd.DataFrame,
    labels: Mapping[str, pd.Series | None],
    id_col: str,
    allow_columns: Sequence[str],
    inferred: list[str],
    report: dict[str, Any],
) -> dict[str, str]:
    """Columns that alone predict a label (leaks), by why; ``allow_columns`` are kept."""
    features_in = [c for c in leads.columns if c != id_col]
    leaked: dict[str, str] = {}
    coded: dict[str, Any] = {}  # the columns' codes, shared by both heads
    for head in ("stage", "persona"):
        y = labels[head]
        if y is None:
            continue
        leaks = single_column_leaks(frame, pd.Series(y.to_numpy()), features_in, coded)
        report[f"{head}_single_column_leaks"] = dict(leaks)
        for column, accuracy in leaks:
            alone = f"alone predicts the {head} label {accuracy:.1%} of the time out of fold"
            if column in allow_columns:
                inferred.append(f"kept on purpose (--allow-column): {column!r} {alone}")
            elif column not in leaked:
                leaked[column] = f"{alone} (a leak of the label)"
                inferred.append(
                    f"excluded as a leak: {column!r} {alone}; "
                    f"--allow-column {column!r} keeps it if it is known before the outcome"
                )
    return leaked


def _title_report(
    leads: pd.DataFrame, X: pd.DataFrame, inferred: list[str], report: dict[str, Any]
) -> None:
    """Say how many given job titles named neither seniority nor function."""
    given = (
        leads["job_title"].notna().to_numpy()
        & (leads["job_title"].astype(str).str.strip() != "").to_numpy()
    )
    unparsed = (
        given
        & (X["title_seniority"].to_numpy() == "unknown")
        & (X["title_function"].to_numpy() == "other")
    )
    share = unparsed.sum() / max(given.sum(), 1)
    report["titles_unparsed_share"] = float(share)
    examples = leads.loc[unparsed, "job_title"].astype(str).unique()[:3].tolist()
    inferred.append(
        f"job titles: {unparsed.sum():,} of {given.sum():,} ({share:.0%}) recognised "
        "neither seniority nor function"
        + (f", e.g. {', '.join(map(repr, examples))}" if examples else "")
    )


def _slices(
    frame: pd.DataFrame,
    ids: pd.Index,
    slice_cols: Sequence[str],
    dropped: set[str],
    id_col: str,
    labels: Mapping[str, pd.Series | None],
) -> pd.DataFrame:
    """The columns metrics are sliced by, and the labels, one row per lead."""
    slices = pd.DataFrame(index=ids)
    for column in slice_cols:
        if column in frame.columns and column not in dropped and column != id_col:
            slices[column] = frame[column].to_numpy()
    for head in ("stage", "persona"):
        y = labels[head]
        if y is not None:
            slices[head] = y.to_numpy()
    return slices


def _excluded_columns(
    screened: Any, leaked: Mapping[str, str], exclude: Sequence[str], unusable: Sequence[str]
) -> list[dict[str, str]]:
    """``[{"column", "reason"}]`` for every column kept out of the features."""
    out = [{"column": c, "reason": "--exclude"} for c in exclude]
    if screened is not None:
        for reason, columns in (
            ("personal data", screened.personal),
            ("a vendor's score of the lead (leaks the label)", screened.vendor_scores),
            ("a date known only after the outcome (leaks the label)", screened.after_outcome),
        ):
            out += [{"column": c, "reason": reason} for c in columns]
        out += [{"column": c, "reason": "id-like (unique per row)"} for c in screened.id_like]
    out += [{"column": c, "reason": why} for c, why in leaked.items()]
    out += [{"column": c, "reason": "empty or constant"} for c in unusable]
    return out


#: Column names (as ``data.labels.label_key`` gives them) that hold a job title.
_TITLE_NAMES = frozenset(
    (
        "jobtitle",
        "title",
        "position",
        "jobposition",
        "role",
        "jobrole",
        "poste",
        "fonction",
        "intituledeposte",
        "berufsbezeichnung",
        "cargo",
        "puesto",
        "functie",
        "functietitel",
    )
)


def title_column(columns: Iterable[Any]) -> str | None:
    """The column of a lead table that holds the job title (``job_title`` first)."""
    from data.labels import label_key

    names = [str(c) for c in columns]
    titles = [name for name in names if name == "job_title" or label_key(name) in _TITLE_NAMES]
    return "job_title" if "job_title" in titles else next(iter(titles), None)


def _type_columns(
    frame: pd.DataFrame, result: Any, *, skip: set[str], types: Mapping[str, str]
) -> tuple[pd.DataFrame, list[Any]]:
    """Read the CRM columns as a person would (``data.coltypes``); the columns the
    reader already typed from ``data.schema`` (company size, created at) stay as they are."""
    from data.coltypes import infer_types
    from data.schema import LEAD_COLUMNS

    keep = skip | {c for c in LEAD_COLUMNS if c in frame.columns and c not in types}
    return infer_types(frame, overrides=types, skip=keep)


def _crm_text_columns(path: Path, labels: set[str | None]) -> list[str]:
    """The CSV columns to read as text, for ``data.coltypes`` to type (every column but
    the labels and the ``data.schema`` columns the reader types itself): pandas would
    read ``12.000`` (twelve thousand in a German export) as 12.0."""
    from data.csvscan import CsvScanner
    from data.schema import LEAD_COLUMNS

    if path.suffix.lower() != ".csv":
        return []
    try:
        header = CsvScanner(path).header
    except (OSError, ValueError):
        return []  # the reader says what is wrong with the file
    return [c for c in header if c not in labels and c not in LEAD_COLUMNS]


def _header(path: Path) -> list[str]:
    """The column names of a table, read as cheaply as the format allows."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    if suffix == ".csv":
        header = pd.read_csv(path, nrows=0, sep=None, engine="python", encoding="utf-8-sig")
        return [str(c).strip() for c in header.columns]
    from data.readers import read_table

    return [str(c) for c in read_table(path).columns]
