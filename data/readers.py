"""Read lead and event tables from CSV, Excel, Parquet and JSON Lines, and say precisely what
is wrong: every bad row is a :class:`RowError` naming the file, line, column, value and
why, never dropped silently (formats, validation and timestamps: docs/design/data.md).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from data.coltypes import stripped_text
from data.csvscan import BadLine, CsvScanner, detect_encoding
from data.personal import mask_line, open_private
from data.schema import EVENT_COLUMNS, EVENT_TYPES, LEAD_COLUMNS, Event, LeadProfile
from data.values import count_words, is_missing

#: ``read_leads(path, id_col=ROW_ID)`` on a table without ids numbers its rows.
ROW_ID = "row_id"

__all__ = [
    "ROW_ID",
    "EVENT_PROPERTY_COLUMNS",
    "REQUIRED_EVENT_COLUMNS",
    "SUPPORTED_SUFFIXES",
    "InputError",
    "ReadResult",
    "RowError",
    "Sample",
    "TableChunk",
    "iter_table",
    "read_events",
    "read_leads",
    "read_table",
]

#: File suffix -> format name.
SUPPORTED_SUFFIXES: dict[str, str] = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".xlsx": "excel",
    ".xlsm": "excel",
}
#: Columns an events table must have.
REQUIRED_EVENT_COLUMNS: tuple[str, ...] = ("lead_id", "timestamp", "type")
#: Optional event property columns (also read from a ``properties`` object column).
EVENT_PROPERTY_COLUMNS: tuple[str, ...] = tuple(
    c for c in EVENT_COLUMNS if c not in REQUIRED_EVENT_COLUMNS
)

#: How many errors an exception message or a text report lists before summarising.
_FIRST_ERRORS = 5
_REPORT_LIMIT = 20
_DIGITS = re.compile(r"\d{9,19}(\.\d+)?")


def _bound(model: type[Any], name: str, attr: str = "max_length") -> int | None:
    for item in model.model_fields[name].metadata:
        value = getattr(item, attr, None)
        if value is not None:
            return int(value)
    return None


#: Text columns of a leads table and their length limits (from ``LeadProfile``).
_LEAD_TEXT = {
    c: _bound(LeadProfile, c)
    for c in LEAD_COLUMNS
    if c not in ("lead_id", "company_size", "created_at")
}
_ID_MAX = _bound(LeadProfile, "lead_id")
_SIZE_MIN = _bound(LeadProfile, "company_size", "ge")
_SIZE_MAX = _bound(LeadProfile, "company_size", "le")
#: Event property columns and their length limits (from ``Event``).
_EVENT_TEXT = {c: _bound(Event, c) for c in EVENT_PROPERTY_COLUMNS}


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class RowError:
    """One problem in an input file; ``str()`` reads ``file, line N, column 'X': why``."""

    #: The file's name.
    file: str
    #: The N-th data row, 1-based (header not counted); None for the whole file (a missing column).
    row: int | None
    #: The column at fault; None when the row as a whole is unreadable.
    column: str | None
    #: The offending value as it was read (None when it was missing).
    value: Any
    #: What was wrong, in words.
    message: str
    #: The physical line as an editor numbers it (header = line 1 of a CSV; the row a
    #: spreadsheet shows for Excel), when the format has lines; ``str()`` names it, not ``row``.
    line: int | None = None

    def __str__(self) -> str:
        parts = [self.file]
        if self.line is not None:
            parts.append(f"line {self.line}")
        elif self.row is not None:
            parts.append(f"row {self.row}")
        if self.column is not None:
            parts.append(f"column {self.column!r}")
        return f"{', '.join(parts)}: {self.message}"


class InputError(ValueError):
    """An input file cannot be used as it is: the message names the file and the first
    problems, ``errors`` (:class:`RowError`) lists every problem found.
    """

    def __init__(self, message: str, errors: Iterable[RowError] = ()) -> None:
        super().__init__(message)
        self.errors: list[RowError] = list(errors)


def _first_errors(errors: Sequence[RowError], limit: int, more: str = "") -> list[str]:
    """Up to ``limit`` errors, one an indented line, then how many more there are."""
    lines = [f"  {e}" for e in errors[:limit]]
    if len(errors) > limit:
        lines.append(f"  ... and {len(errors) - limit} more{more}")
    return lines


def _list_errors(name: str, errors: Sequence[RowError], n_rows: int, n_bad: int) -> str:
    head = (
        f"{name}: {n_bad} of {n_rows} rows rejected ({count_words(len(errors), 'error')}); "
        "first errors:"
    )
    return "\n".join([head, *_first_errors(errors, _FIRST_ERRORS)])


# --------------------------------------------------------------------------- result


@dataclass
class ReadResult:
    """What a validating reader returns."""

    #: The good rows, typed, with a fresh ``RangeIndex``.
    frame: pd.DataFrame
    #: Every problem found, in row order (a row may have several).
    rejected: list[RowError] = field(default_factory=list)
    #: The file read.
    path: Path | None = None
    #: How many data rows the file had.
    n_rows: int = 0
    #: The rejected rows as they were read, with their row number in ``row``.
    rejected_rows: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: Set by a bounded read (``max_rows``): only the kept rows are validated.
    sample: Sample | None = None
    #: What the reader chose and the user should know (encoding, delimiter).
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no row was rejected."""
        return not self.rejected

    @property
    def rejected_row_numbers(self) -> list[int]:
        """The distinct row numbers that were rejected, ascending."""
        return sorted({e.row for e in self.rejected if e.row is not None})

    @property
    def _name(self) -> str:
        return self.path.name if self.path is not None else "input"

    def report(self, limit: int = _REPORT_LIMIT) -> str:
        """A short text report: counts, then up to ``limit`` errors."""
        if not self.rejected:
            return f"{self._name}: {self.n_rows:,} rows read, all kept"
        head = (
            f"{self._name}: {self.n_rows:,} rows read, {len(self.frame):,} kept, "
            f"{len(self.rejected_row_numbers):,} rejected "
            f"({count_words(len(self.rejected), 'error')})"
        )
        more = " (write_report() lists all)"
        return "\n".join([head, *_first_errors(self.rejected, limit, more)])

    def write_report(self, path: str | Path) -> Path:
        """Write every error as CSV (``file, row, column, value, message``) to ``path``, its
        folders created; returns the path written.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open_private(path) as fh:  # owner only: the values are the user's data
            writer = csv.writer(fh)
            writer.writerow(["file", "row", "column", "value", "message"])
            for e in self.rejected:
                row, value = ("" if v is None else v for v in (e.row, e.value))
                writer.writerow([e.file, row, e.column or "", value, e.message])
        return path

    def raise_if_rejected(self) -> ReadResult:
        """Raise :class:`InputError` if any row was rejected; return ``self`` otherwise."""
        if self.rejected:
            n_bad = len(self.rejected_row_numbers)
            message = _list_errors(self._name, self.rejected, self.n_rows, n_bad)
            raise InputError(message, self.rejected)
        return self


# --------------------------------------------------------------------------- raw reading


@dataclass
class TableChunk:
    """Some rows of a table as :func:`iter_table` streams them (parsed, not validated)."""

    frame: pd.DataFrame
    #: The data row number of each frame row (1-based, the header not counted).
    rows: np.ndarray
    #: The lines no parser could read (field count, unterminated quote), with their line.
    errors: list[RowError] = field(default_factory=list)


@dataclass
class _Raw(TableChunk):
    """All rows as parsed from a file, before validation."""

    n_rows: int = 0
    line_base: int | None = None  # physical line = row + line_base (None: no lines)
    notes: list[str] = field(default_factory=list)  # what the reader chose (encoding…)


def _format(path: Path) -> str:
    """The format of an existing file, by its suffix (:class:`InputError` otherwise)."""
    if not path.exists():
        raise InputError(f"no such file: {path}")
    if not path.is_file():
        raise InputError(f"not a file: {path}")
    fmt = SUPPORTED_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        allowed = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise InputError(f"{path.name}: unknown file type {path.suffix!r}; use one of {allowed}")
    return fmt


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """An ``OSError`` while reading ``path`` becomes an :class:`InputError` naming the file."""
    try:
        yield
    except OSError as exc:
        raise InputError(f"{path.name}: cannot read the file: {exc.strerror or exc}") from exc


def _csv_dtype(text_columns: Collection[str] | bool) -> Any:
    if text_columns is True:
        return "str"
    return dict.fromkeys(text_columns or (), "str") or None


def _scanner(path: Path) -> CsvScanner:
    try:
        return CsvScanner(path)
    except ValueError as exc:
        raise InputError(str(exc)) from exc


def _bad_lines(scanner: CsvScanner, bad: Iterable[BadLine]) -> list[RowError]:
    """The scanner's bad lines as errors; the line's text is kept with its personal
    values masked (``data.personal.mask_line``), since it goes into a report file."""
    base = scanner.header_line
    return [
        RowError(
            scanner.name,
            b.line - base,
            b.column,
            mask_line(b.text, scanner.header, scanner.delimiter),
            b.message,
            line=b.line,
        )
        for b in bad
    ]


def _parse_chunk(scanner: CsvScanner, data: bytes, dtype: Any) -> pd.DataFrame:
    """Parse good records (as :class:`CsvScanner` checked them) with pandas' C parser."""
    try:
        return pd.read_csv(io.BytesIO(data), sep=scanner.delimiter, dtype=dtype, encoding="utf-8")
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=list(scanner.header))
    except pd.errors.ParserError as exc:  # not expected after the scan; say where anyway
        raise InputError(f"{scanner.name}: cannot read as CSV: {exc}") from exc


def _encoding_notes(scanner: CsvScanner) -> list[str]:
    notes = [scanner.encoding_note] if scanner.encoding_note else []
    if scanner.delimiter != ",":
        shown = {"\t": "tabs", ";": "semicolons", "|": "pipes"}.get(
            scanner.delimiter, repr(scanner.delimiter)
        )
        notes.append(f"{scanner.name}: fields separated by {shown}")
    return notes


def _read_csv(path: Path, text_columns: Collection[str] | bool) -> _Raw:
    """The whole file: records split and checked by the scanner, parsed once by pandas."""
    scanner = _scanner(path)
    parts: list[bytes] = []
    lines: list[np.ndarray] = []
    errors: list[RowError] = []
    header = len(scanner.header_bytes)
    for i, chunk in enumerate(scanner.chunks()):
        parts.append(chunk.data if i == 0 else chunk.data[header:])
        lines.append(chunk.lines)
        errors += _bad_lines(scanner, chunk.bad)
    data = b"".join(parts) if parts else scanner.header_bytes
    frame = _parse_chunk(scanner, data, _csv_dtype(text_columns))
    line = np.concatenate(lines) if lines else np.empty(0, dtype=np.int64)
    if len(line) != len(frame):  # pragma: no cover - the scanner and pandas disagree
        raise InputError(
            f"{path.name}: {len(frame)} records parsed but {len(line)} expected; "
            "please report this file's shape"
        )
    rows = (line - scanner.header_line).astype(np.int64)
    notes = _encoding_notes(scanner)
    return _Raw(frame, rows, errors, scanner.n_records, scanner.header_line, notes)


def _read_json(path: Path, fmt: str) -> _Raw:
    encoding, note = detect_encoding(path)
    try:
        text = path.read_text(encoding=encoding)
    except UnicodeDecodeError as exc:
        raise InputError(f"{path.name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    text = text.removeprefix("\ufeff")
    notes = [note] if note else []
    if fmt == "json" and text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path.name}: not valid JSON: {exc}") from exc
        return _from_records(path, list(enumerate(records, start=1)), notes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = pd.read_json(io.StringIO(text), lines=True, dtype=False)
    except ValueError:
        frame = None
    lines = text.splitlines()
    physical = [i for i, line in enumerate(lines, start=1) if line.strip()]
    if frame is not None and len(frame) == len(physical):
        rows = np.asarray(physical, dtype=np.int64)
        return _Raw(frame.reset_index(drop=True), rows, [], len(frame), 0, notes)
    # Some line is not a JSON object: parse line by line to say which.
    parsed: list[tuple[int, Any]] = []
    errors: list[RowError] = []
    for row in physical:
        try:
            parsed.append((row, json.loads(lines[row - 1])))
        except json.JSONDecodeError as exc:
            shown = lines[row - 1][:200]
            errors.append(RowError(path.name, row, None, shown, f"not valid JSON: {exc.msg}", row))
    raw = _from_records(path, parsed, notes)
    numbered = [replace(e, line=e.row) for e in raw.errors]
    raw.errors = sorted(errors + numbered, key=lambda e: e.row or 0)
    raw.n_rows = len(physical)
    raw.line_base = 0
    return raw


def _from_records(path: Path, numbered: list[tuple[int, Any]], notes: list[str]) -> _Raw:
    errors = [
        RowError(path.name, row, None, str(rec)[:200], "expected a JSON object")
        for row, rec in numbered
        if not isinstance(rec, dict)
    ]
    good = [(row, rec) for row, rec in numbered if isinstance(rec, dict)]
    frame = pd.DataFrame([rec for _, rec in good])
    rows = np.asarray([row for row, _ in good], dtype=np.int64)
    return _Raw(frame, rows, errors, len(numbered), notes=notes)


def _read_parquet(path: Path) -> _Raw:
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise InputError(f"{path.name}: cannot read as Parquet: {exc}") from exc
    frame = frame.reset_index(drop=True)
    n = len(frame)
    return _Raw(frame, np.arange(1, n + 1), [], n)


def _read_excel(path: Path, text_columns: Collection[str] | bool) -> _Raw:
    """The first sheet of an ``.xlsx`` workbook (python-calamine); lines are sheet rows."""
    try:
        frame = pd.read_excel(path, engine="calamine", dtype=_csv_dtype(text_columns))
    except Exception as exc:  # OSError, ValueError, or calamine's own types for broken workbooks
        raise InputError(f"{path.name}: cannot read as an Excel workbook: {exc}") from exc
    blank = frame.isna().all(axis=1).to_numpy()
    rows = np.flatnonzero(~blank).astype(np.int64) + 1
    frame = frame.loc[~blank].reset_index(drop=True)
    return _Raw(frame, rows, [], len(frame), line_base=1)


def _strip_names(path: Path, frame: pd.DataFrame) -> None:
    """Column names stripped of surrounding space; names that then repeat are an InputError."""
    frame.columns = [str(c).strip() for c in frame.columns]
    dupes = frame.columns[frame.columns.duplicated()].unique().tolist()
    if dupes:
        raise InputError(f"{path.name}: duplicate column names: {', '.join(map(repr, dupes))}")


def _read_raw(path: Path, text_columns: Collection[str] | bool = ()) -> _Raw:
    fmt = _format(path)
    with _reading(path):
        if fmt == "csv":
            raw = _read_csv(path, text_columns)
        elif fmt == "excel":
            raw = _read_excel(path, text_columns)
        elif fmt == "parquet":
            raw = _read_parquet(path)
        else:
            raw = _read_json(path, fmt)
    _strip_names(path, raw.frame)
    return raw


# --------------------------------------------------------------------------- bounded reading

#: Rows a bounded read (``read_leads(max_rows=...)``) parses at a time.
SAMPLE_CHUNK_ROWS = 100_000
#: Unreadable rows a bounded read lists (it counts them all).
_BOUNDED_ERRORS = 1_000


@dataclass(frozen=True)
class Sample:
    """How a bounded read kept at most ``max_rows`` rows of a bigger table (a uniform
    sample of the readable rows, in file order: docs/design/data.md)."""

    max_rows: int
    seed: int
    #: Data rows in the file (readable or not).
    n_rows: int
    #: Rows kept (all readable rows when they are no more than ``max_rows``).
    n_kept: int
    #: Rows no parser could read (listed in ``rejected`` up to 1,000).
    n_unreadable: int = 0

    @property
    def sampled(self) -> bool:
        """True when readable rows were left out."""
        return self.n_kept < self.n_rows - self.n_unreadable

    def describe(self, name: str) -> str:
        """One sentence for the user: what was kept out of what."""
        readable = self.n_rows - self.n_unreadable
        if not self.sampled:
            return f"{name}: all {readable:,} readable rows kept (bound {self.max_rows:,})"
        return (
            f"{name} has {readable:,} readable rows, more than the bound of "
            f"{self.max_rows:,}: kept a uniform random sample of {self.n_kept:,} "
            f"(seed {self.seed}); rows outside the sample are not read further"
        )


def _count_rows(path: Path, fmt: str) -> int | None:
    """Data rows of a CSV or Parquet file (the formats a bounded read streams), cheaply and
    never fewer than there are; None when unknown."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return int(pq.ParquetFile(path).metadata.num_rows)
        except (OSError, ValueError, pa.ArrowException):
            return None
    if fmt != "csv":
        return None
    lines, last = 0, b"\n"
    with path.open("rb") as fh:
        while block := fh.read(1 << 24):
            lines += block.count(b"\n")
            last = block[-1:]
    lines += last != b"\n"  # a last line without a newline
    return max(lines - 1, 0)


def _block_bytes(path: Path, chunk_rows: int) -> int:
    """Bytes holding about ``chunk_rows`` lines, from the first lines' length."""
    with path.open("rb") as fh:
        head = fh.read(1 << 16)
    per_line = max(len(head) / max(head.count(b"\n"), 1), 16.0)
    return int(min(max(chunk_rows * per_line, 4096), 256 << 20))


def iter_table(
    path: str | Path,
    *,
    chunk_rows: int = 100_000,
    text_columns: Collection[str] | bool = (),
    notes: list[str] | None = None,
) -> Iterator[TableChunk]:
    """Stream any table in chunks of about ``chunk_rows`` rows, each line that cannot be
    read a :class:`RowError` of its chunk: the one reader of every entry point. CSV and
    Parquet are streamed (CSV records split and checked by :class:`CsvScanner`, parsed by
    pandas), other formats read whole, then sliced. ``text_columns`` are kept as text
    (True: all); ``notes`` receives what the reader chose (encoding, delimiter).
    """
    path = Path(path)
    fmt = _format(path)
    with _reading(path):
        if fmt == "csv":
            scanner = _scanner(path)
            if notes is not None:
                notes.extend(_encoding_notes(scanner))
            scanner.block_bytes = _block_bytes(path, chunk_rows)
            for chunk in scanner.chunks():
                frame = _parse_chunk(scanner, chunk.data, _csv_dtype(text_columns))
                rows = (chunk.lines - scanner.header_line).astype(np.int64)
                yield TableChunk(frame, rows, _bad_lines(scanner, chunk.bad))
        elif fmt == "parquet":
            yield from _parquet_chunks(path, chunk_rows)
        else:
            raw = _read_raw(path, text_columns)
            if notes is not None:
                notes.extend(raw.notes)
            errors = list(raw.errors)
            for start in range(0, max(len(raw.frame), 1), chunk_rows):  # one chunk when empty
                part = raw.frame.iloc[start : start + chunk_rows].reset_index(drop=True)
                yield TableChunk(part, raw.rows[start : start + chunk_rows], errors)
                errors = []


def _parquet_chunks(path: Path, chunk_rows: int) -> Iterator[TableChunk]:
    import pyarrow.parquet as pq

    try:
        source = pq.ParquetFile(path)
        done = 0
        for batch in source.iter_batches(batch_size=chunk_rows):
            frame = batch.to_pandas()
            yield TableChunk(frame, np.arange(done + 1, done + len(frame) + 1, dtype=np.int64))
            done += len(frame)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise InputError(f"{path.name}: cannot read as Parquet: {exc}") from exc


class _Reservoir:
    """The ``k`` rows of smallest key among all rows offered (bottom-k sampling; memory:
    about ``1.25 k`` rows plus one chunk, docs/design/data.md)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.frames: list[pd.DataFrame] = []
        self.rows: list[np.ndarray] = []
        self.keys: list[np.ndarray] = []
        self.pending = 0  # rows buffered since the last merge, kept rows included
        self.kept = 0  # rows kept at the last merge
        self.threshold = np.inf

    def offer(self, frame: pd.DataFrame, rows: np.ndarray, keys: np.ndarray) -> None:
        if np.isfinite(self.threshold):
            take = keys < self.threshold
            if not take.all():
                frame, rows, keys = frame.loc[take], rows[take], keys[take]
        if not len(keys):
            return
        self.frames.append(frame)
        self.rows.append(rows)
        self.keys.append(keys)
        self.pending += len(keys)
        if self.pending - self.kept >= max(self.k // 4, 1) and self.pending > self.k:
            self._merge()

    def _merge(self) -> None:
        frame = (
            pd.concat(self.frames, ignore_index=True) if len(self.frames) > 1 else self.frames[0]
        )
        rows, keys = np.concatenate(self.rows), np.concatenate(self.keys)
        if len(keys) > self.k:
            keep = np.sort(np.argpartition(keys, self.k - 1)[: self.k])
            frame = frame.iloc[keep].reset_index(drop=True)
            rows, keys = rows[keep], keys[keep]
            self.threshold = float(keys.max())
        self.frames, self.rows, self.keys = [frame], [rows], [keys]
        self.pending = self.kept = len(keys)

    def result(self, columns: pd.Index | None) -> tuple[pd.DataFrame, np.ndarray]:
        if not self.frames:
            return pd.DataFrame(columns=columns), np.empty(0, dtype=np.int64)
        self._merge()
        return self.frames[0].reset_index(drop=True), self.rows[0].astype(np.int64)


def _read_raw_bounded(
    path: Path, text_columns: Collection[str] | bool, max_rows: int, seed: int, chunk_rows: int
) -> tuple[_Raw, Sample]:
    """At most ``max_rows`` rows of a table, a uniform sample when it has more (CSV and
    Parquet streamed by :func:`iter_table` in chunks of ``chunk_rows``, JSON read whole; a
    file within the bound by its line count or Parquet metadata is read as :func:`_read_raw`
    reads it). The first 1,000 unreadable rows are listed, all are counted."""
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    fmt = _format(path)
    with _reading(path):
        estimate = _count_rows(path, fmt)
    rng = np.random.default_rng(seed)
    reservoir = _Reservoir(max_rows)
    if fmt not in ("csv", "parquet") or (estimate is not None and estimate <= max_rows):
        raw = _read_raw(path, text_columns)
        if len(raw.frame) > max_rows:
            reservoir.offer(raw.frame, raw.rows, rng.random(len(raw.frame)))
            frame, rows = reservoir.result(raw.frame.columns)
            raw = replace(raw, frame=frame, rows=rows)  # its line numbers and notes too
        unreadable = sum(1 for e in raw.errors if e.row is not None)
        return raw, Sample(max_rows, seed, raw.n_rows, len(raw.frame), unreadable)

    notes: list[str] = []
    errors: list[RowError] = []
    n_bad = n_good = 0
    columns: pd.Index | None = None
    for chunk in iter_table(path, chunk_rows=chunk_rows, text_columns=text_columns, notes=notes):
        n_bad += len(chunk.errors)
        errors += chunk.errors[: _BOUNDED_ERRORS - len(errors)]
        columns = chunk.frame.columns if columns is None else columns
        if len(chunk.frame):
            n_good += len(chunk.frame)
            reservoir.offer(chunk.frame, chunk.rows, rng.random(len(chunk.frame)))
    base = None
    if fmt == "csv":
        with _reading(path):
            scanner = _scanner(path)
        base = scanner.header_line
        columns = pd.Index(scanner.header) if columns is None else columns
    frame, rows = reservoir.result(columns)
    _strip_names(path, frame)
    raw = _Raw(frame, rows, sorted(errors, key=lambda e: e.row or 0), n_good + n_bad, base, notes)
    return raw, Sample(max_rows, seed, n_good + n_bad, len(frame), n_bad)


def read_table(path: str | Path, *, text_columns: Collection[str] = ()) -> pd.DataFrame:
    """Read any table (CSV, Parquet, JSON Lines; by suffix) as it is, types inferred, with a
    fresh ``RangeIndex``.

    ``text_columns`` stay text in a CSV (an id ``"00123"`` would otherwise become 123).
    :class:`InputError` when the file is missing, has an unknown suffix, cannot be parsed,
    or has rows that cannot be parsed (each named in ``errors``).
    """
    path = Path(path)
    raw = _read_raw(path, text_columns)
    if raw.errors:
        message = _list_errors(path.name, raw.errors, raw.n_rows, len(raw.errors))
        raise InputError(message, raw.errors)
    return raw.frame.reset_index(drop=True)


# --------------------------------------------------------------------------- column checks


class _Checker:
    """Collects row errors from boolean masks over one raw frame (of ``path``, which must
    have the ``required`` columns: :class:`InputError` otherwise)."""

    def __init__(self, path: Path, raw: _Raw, required: Sequence[str]) -> None:
        _missing_columns(path.name, raw.frame.columns, required)
        self.path = path
        self.raw = raw
        self.bad = np.zeros(len(raw.frame), dtype=bool)
        self.errors: list[RowError] = list(raw.errors)

    def flag(
        self,
        mask: pd.Series | np.ndarray,
        column: str,
        values: pd.Series,
        message: str | Callable[[Any], str],
    ) -> None:
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        self.bad |= mask
        positions = np.flatnonzero(mask)
        rows = self.raw.rows[positions]
        picked = values.iloc[positions].tolist()
        base = self.raw.line_base
        for row, value in zip(rows.tolist(), picked, strict=True):
            value = None if is_missing(value) else value
            text = message(value) if callable(message) else message
            line = None if base is None else row + base
            self.errors.append(RowError(self.path.name, row, column, value, text, line=line))

    def text(
        self, column: str, *, required: bool, max_length: int | None, what: str | None = None
    ) -> pd.Series:
        source = self.raw.frame[column]
        values = stripped_text(source)
        if required:
            self.flag(values.isna(), column, source, f"{what or column} is missing")
        if max_length is not None and _may_exceed(values, max_length):
            too_long = values.str.len().gt(max_length).to_numpy(dtype=bool, na_value=False)
            self.flag(too_long, column, source, f"longer than {max_length} characters")
        return values

    def timestamp(self, column: str, *, required: bool) -> pd.Series:
        source = self.raw.frame[column]
        parsed, missing, unparsable = _parse_timestamps(source)
        if required:
            self.flag(missing, column, source, f"{column} is missing")
        self.flag(unparsable, column, source, lambda v: f"cannot parse {v!r} as a timestamp")
        return parsed

    def finish(self, frame: pd.DataFrame, columns_order: Sequence[str], strict: bool) -> ReadResult:
        """``frame``'s good rows and every error; ``strict``: :class:`InputError` instead."""
        order = {c: i for i, c in enumerate(columns_order)}
        self.errors.sort(key=lambda e: (e.row or 0, order.get(e.column or "", -1)))
        keep = ~self.bad
        rejected_rows = self.raw.frame.loc[self.bad].copy()
        rejected_rows.insert(0, "row", self.raw.rows[self.bad])
        # Rows no parser could read have no columns; list them with their raw text.
        unread = [e for e in self.raw.errors if e.row is not None]
        if unread:
            extra = pd.DataFrame({"row": [e.row for e in unread], "raw": [e.value for e in unread]})
            rejected_rows = pd.concat([rejected_rows, extra]).sort_values("row", kind="stable")
        rejected_rows = rejected_rows.reset_index(drop=True)
        kept = frame if keep.all() else frame.loc[keep]  # no copy when every row is kept
        result = ReadResult(
            frame=kept.reset_index(drop=True),
            rejected=self.errors,
            path=self.path,
            n_rows=self.raw.n_rows,
            rejected_rows=rejected_rows,
            notes=list(self.raw.notes),
        )
        return result.raise_if_rejected() if strict else result


def _may_exceed(values: pd.Series, max_length: int) -> bool:
    """Whether any text may be longer than ``max_length`` characters: no more bytes than
    that means no more characters, and an Arrow column's byte lengths are read from its
    offsets without decoding (0.15 s less a column of 1.9 M events). Other columns: True."""
    import pyarrow.compute as pc

    if values.dtype != "str":
        return True
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return True
    if not pa.types.is_string(array.type) and not pa.types.is_large_string(array.type):
        return True
    longest = pc.max(pc.binary_length(array)).as_py()
    return longest is not None and longest > max_length


def _epoch(numbers: pd.Series) -> pd.Series:
    """Unix epoch numbers to UTC timestamps; the unit follows the magnitude."""
    x = numbers.astype("float64")
    mag = x.abs()
    scale = np.select(
        [mag < 1e11, mag < 1e14, mag < 1e17], [1e9, 1e6, 1e3], default=1.0
    )  # seconds, milliseconds, microseconds, nanoseconds -> ns
    ns = (x * scale).round()
    finite = np.isfinite(ns) & (ns.abs() < 9.2e18)
    out = pd.Series(pd.NaT, index=numbers.index, dtype="datetime64[us, UTC]")
    if finite.any():
        out[finite] = pd.to_datetime(ns[finite].astype("int64"), unit="ns", utc=True).astype(
            "datetime64[us, UTC]"
        )
    return out


def _parse_timestamps(values: pd.Series) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """Parse to ``datetime64[us, UTC]``; returns (parsed, missing mask, unparsable mask)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        aware = isinstance(values.dtype, pd.DatetimeTZDtype)
        parsed = (values.dt.tz_convert if aware else values.dt.tz_localize)("UTC").dt.as_unit("us")
        missing = parsed.isna().to_numpy()
    elif pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        missing = values.isna().to_numpy()
        parsed = _epoch(values)
    else:
        text = stripped_text(values)
        missing = text.isna().to_numpy()
        parsed = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601").dt.as_unit("us")
        sub = text[parsed.isna().to_numpy() & ~missing]
        digits = sub.str.fullmatch(_DIGITS.pattern).to_numpy(dtype=bool, na_value=False)
        if digits.any():
            parsed.loc[sub.index[digits]] = _epoch(pd.to_numeric(sub[digits])).to_numpy()
        if len(others := sub[~digits]):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                retry = pd.to_datetime(others, utc=True, errors="coerce", format="mixed")
            parsed.loc[others.index] = retry.dt.as_unit("us").to_numpy()
    return parsed, missing, parsed.isna().to_numpy() & ~missing


def _missing_columns(name: str, columns: Iterable[str], required: Sequence[str]) -> None:
    present = set(columns)
    missing = [c for c in required if c not in present]
    if missing:
        found = ", ".join(map(repr, present)) or "none"
        errors = [RowError(name, None, c, None, "required column is missing") for c in missing]
        raise InputError(
            f"{name}: missing required column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(map(repr, missing))} (columns found: {found})",
            errors,
        )


# --------------------------------------------------------------------------- events


def _flatten_properties(checker: _Checker, column: str = "properties") -> pd.DataFrame:
    """The ``properties`` objects (or JSON text) as one column per known property."""
    source = checker.raw.frame[column]
    out: dict[str, list[Any]] = {c: [None] * len(source) for c in EVENT_PROPERTY_COLUMNS}
    bad_json, not_object, not_scalar = (np.zeros(len(source), dtype=bool) for _ in range(3))
    for i, value in enumerate(source.tolist()):
        if is_missing(value):
            continue
        if isinstance(value, str):
            if not value.strip():
                continue
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                bad_json[i] = True
                continue
        if not isinstance(value, dict):
            not_object[i] = True
            continue
        for key in EVENT_PROPERTY_COLUMNS:
            item = value.get(key)
            if isinstance(item, dict | list):
                not_scalar[i] = True
            elif item is not None:
                out[key][i] = str(item)
    checker.flag(bad_json, column, source, lambda v: f"cannot parse {v!r} as a JSON object")
    checker.flag(not_object, column, source, lambda v: f"expected a JSON object, got {v!r}")
    checker.flag(not_scalar, column, source, "event properties must be text or numbers")
    return pd.DataFrame(out, index=source.index, dtype="str")


def _event_properties(check: _Checker) -> dict[str, pd.Series]:
    """The property columns of an events table, a column of the file winning over the same
    key of its ``properties`` JSON; an absent property is all missing."""
    df = check.raw.frame
    nested = _flatten_properties(check) if "properties" in df.columns else None
    columns: dict[str, pd.Series] = {}
    for prop, limit in _EVENT_TEXT.items():
        if prop in df.columns:
            values = check.text(prop, required=False, max_length=limit)
            if nested is not None:
                values = values.fillna(nested[prop])
        elif nested is not None:
            values = nested[prop]
            too_long = values.str.len().gt(limit).to_numpy(dtype=bool, na_value=False)
            check.flag(too_long, "properties", df["properties"], f"{prop} is longer than {limit}")
        else:
            values = pd.Series(pd.NA, index=df.index, dtype="str")
        columns[prop] = values.astype("str")
    return columns


def read_events(path: str | Path, *, strict: bool = False) -> ReadResult:
    """Read and validate an events table (CSV, Parquet or JSON Lines).

    ``lead_id``, ``timestamp`` and ``type`` (of ``data.schema.EVENT_TYPES``) are required;
    the properties may also come in a ``properties`` column of JSON objects (a column of
    the file wins). The frame has ``data.schema.EVENT_COLUMNS`` (``timestamp`` as
    ``datetime64[us, UTC]``, the others text), then the file's other columns. ``strict``
    raises :class:`InputError` on a bad row instead of listing it in ``rejected``;
    ``InputError`` too for a file that cannot be read or lacks a required column.
    """
    path = Path(path)
    raw = _read_raw(path, text_columns=(*REQUIRED_EVENT_COLUMNS, *EVENT_PROPERTY_COLUMNS))
    check = _Checker(path, raw, REQUIRED_EVENT_COLUMNS)
    df = raw.frame
    columns: dict[str, pd.Series] = {
        "lead_id": check.text("lead_id", required=True, max_length=_ID_MAX),
        "timestamp": check.timestamp("timestamp", required=True),
    }
    kind = check.text("type", required=True, max_length=None)
    allowed = ", ".join(EVENT_TYPES)
    unknown = kind.notna().to_numpy() & ~kind.isin(EVENT_TYPES).to_numpy()
    check.flag(
        unknown, "type", df["type"], lambda v: f"unknown event type {v!r}; allowed: {allowed}"
    )
    columns["type"] = kind
    columns.update(_event_properties(check))
    extras = [c for c in df.columns if c not in EVENT_COLUMNS and c != "properties"]
    frame = pd.DataFrame(columns | {c: df[c] for c in extras}, index=df.index)
    return check.finish(frame, [*EVENT_COLUMNS, "properties", *extras], strict)


# --------------------------------------------------------------------------- leads


def _company_size(check: _Checker, column: str = "company_size") -> pd.Series:
    source = check.raw.frame[column]
    if pd.api.types.is_numeric_dtype(source) and not pd.api.types.is_bool_dtype(source):
        numbers = source.astype("float64")
        unparsable = np.zeros(len(source), dtype=bool)
    else:
        text = stripped_text(source)
        numbers = pd.to_numeric(text, errors="coerce").astype("float64")
        unparsable = (numbers.isna() & text.notna()).to_numpy()
    check.flag(
        unparsable,
        column,
        source,
        lambda v: f"cannot parse {v!r} as a company size (a whole number)",
    )
    x = numbers.to_numpy()
    finite = numbers.notna().to_numpy()
    whole = finite & np.isfinite(x) & (x % 1 == 0)
    low, high = whole & (x < _SIZE_MIN), whole & (x > _SIZE_MAX)
    for mask, message in (
        (finite & ~whole, lambda v: f"company size must be whole, got {v!r}"),
        (low, lambda v: f"company size must be at least {_SIZE_MIN}, got {v}"),
        (high, lambda v: f"company size must be at most {_SIZE_MAX:,}, got {v}"),
    ):
        check.flag(mask, column, source, message)
    return numbers.where(whole & ~low & ~high).astype("Int64")


def _lead_ids(check: _Checker, id_col: str) -> pd.Series:
    """The id column checked: a missing, empty or repeated id is a row error naming the
    line (or row) where the id was first seen."""
    raw = check.raw
    ids = check.text(id_col, required=True, max_length=_ID_MAX, what="lead id")
    repeated = (ids.duplicated(keep="first") & ids.notna()).to_numpy()
    if repeated.any():
        firsts = ~ids.duplicated(keep="first").to_numpy() & ids.notna().to_numpy()
        where = "line" if raw.line_base is not None else "row"
        first_rows = raw.rows[firsts] + (raw.line_base or 0)
        first_row = dict(zip(ids[firsts].tolist(), first_rows.tolist(), strict=True))
        check.flag(
            repeated,
            id_col,
            ids,
            lambda v: f"duplicate lead id {v!r} (first seen on {where} {first_row[v]})",
        )
    return ids


def read_leads(
    path: str | Path,
    *,
    id_col: str = "lead_id",
    strict: bool = False,
    max_rows: int | None = None,
    seed: int = 0,
    chunk_rows: int = SAMPLE_CHUNK_ROWS,
    text_columns: Collection[str] = (),
) -> ReadResult:
    """Read and validate a leads table (one row a lead) from CSV, Parquet or JSON Lines.

    ``id_col`` is required (``ROW_ID`` on a table without it numbers the leads by their
    data row); a missing, empty or repeated id is a row error (the first row with an id
    is kept). The known profile columns of ``data.schema.LEAD_COLUMNS`` that are present
    are typed: text stripped (empty text is missing), ``company_size`` a whole number
    within ``LeadProfile``'s bounds (``Int64``), ``created_at`` a UTC timestamp; every
    other column is kept untouched, in file order. ``strict`` raises :class:`InputError`
    on a bad row instead of returning it in ``rejected``; ``InputError`` too when the file
    cannot be read or has no id column.

    ``max_rows`` bounds the rows held in memory: past it a uniform sample (``seed``) of
    the readable rows is kept, read in chunks of ``chunk_rows`` (docs/design/data.md), and
    ``ReadResult.sample`` says what was kept. ``text_columns`` are kept as the file's text
    (``12.000`` in a German export is twelve thousand: ``data.coltypes`` tells it).
    """
    path = Path(path)
    text_cols = (id_col, *_LEAD_TEXT, *text_columns)
    sample = None
    if max_rows is None:
        raw = _read_raw(path, text_columns=text_cols)
    else:
        raw, sample = _read_raw_bounded(path, text_cols, max_rows, seed, chunk_rows)
    if id_col == ROW_ID and ROW_ID not in raw.frame.columns:
        # A table without ids (an analytics export): each lead is its row number.
        raw.frame.insert(0, ROW_ID, [str(r) for r in raw.rows])
    check = _Checker(path, raw, (id_col,))
    df = raw.frame
    frame = df.copy()
    frame[id_col] = _lead_ids(check, id_col)
    for column, limit in _LEAD_TEXT.items():
        if column in df.columns and column != id_col:
            frame[column] = check.text(column, required=False, max_length=limit)
    if "company_size" in df.columns and id_col != "company_size":
        frame["company_size"] = _company_size(check)
    if "created_at" in df.columns and id_col != "created_at":
        frame["created_at"] = check.timestamp("created_at", required=False)
    result = check.finish(frame, list(df.columns), strict)
    result.sample = sample
    return result
