"""Batch scoring: a lead table of any size in, the same rows with predictions out."""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["READ_AHEAD_BYTES", "EventsAhead", "ScoreSummary", "score_table"]

_OUTPUT_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class ScoreSummary:
    """What a scoring run did."""

    rows: int
    chunks: int
    out_path: Path
    as_of: datetime | None
    seconds: float
    renamed_columns: dict[str, str] = field(default_factory=dict)
    missing_columns: list[str] = field(default_factory=list)
    routes: dict[str, int] = field(default_factory=dict)
    #: Lines of the input no parser could read (same reader, same report as ``train``).
    rejected: list[Any] = field(default_factory=list)
    #: What the reader chose (encoding, delimiter).
    notes: list[str] = field(default_factory=list)


def _format(path: Path, formats: dict[str, str], what: str) -> str:
    fmt = formats.get(path.suffix.lower())
    if fmt is None:
        allowed = ", ".join(sorted(formats))
        raise ValueError(
            f"{path.name}: cannot {what} {path.suffix or 'files without a suffix'}; use {allowed}"
        )
    return fmt


def _chunks(
    path: Path,
    chunk_size: int,
    id_col: str,
    rejected: list[Any],
    notes: list[str],
    strict: bool,
    typed: Iterable[str] = (),
) -> Iterator[pd.DataFrame]:
    """The input in chunks of about ``chunk_size`` rows, through the one reader of
    ``data.readers`` (so ``score`` reads exactly what ``train`` reads); lines it cannot
    read are appended to ``rejected`` (raised at once with ``strict``)."""
    from data.readers import InputError, iter_table

    # The columns training typed (data.coltypes) are read as text and typed as it did.
    text: set[str] = {id_col, *typed}
    first = True
    for chunk in iter_table(path, chunk_rows=chunk_size, text_columns=sorted(text), notes=notes):
        if chunk.errors:
            if strict:
                raise InputError(f"{chunk.errors[0]} (--strict)", chunk.errors)
            rejected.extend(chunk.errors)
        frame = chunk.frame
        if first:
            # Text columns of the first chunk stay text in later chunks (a later chunk
            # of digits-only codes must not turn into numbers).
            text |= {c for c in frame.columns if not _numeric_or_bool(frame[c])}
            first = False
        else:
            for c in frame.columns:
                if c in text and _numeric_or_bool(frame[c]):
                    frame[c] = frame[c].astype("str").where(frame[c].notna(), None)
        if len(frame):
            yield frame


def _numeric_or_bool(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)


def _total_rows(path: Path, fmt: str) -> int | None:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    return None


#: The events of the process an :class:`EventsAhead` started (in that process only).
_AHEAD_EVENTS: _Events | None = None


def _ahead_load(path: str) -> datetime | None:
    """In the events process: read the table and keep it; the time of its last event."""
    global _AHEAD_EVENTS
    _AHEAD_EVENTS = _Events(Path(path))
    last = _AHEAD_EVENTS.last
    return None if last is None else last.to_pydatetime()


def _ahead_features(
    leads: pd.DataFrame, as_of: datetime | None, config: Any, id_col: str
) -> pd.DataFrame:
    """In the events process: one chunk's feature rows, as :func:`score_table` builds them."""
    from model.features import build_features

    assert _AHEAD_EVENTS is not None, "the events are not loaded in this process"
    return build_features(leads, _AHEAD_EVENTS.codes, as_of=as_of, config=config, id_col=id_col)


class EventsAhead:
    """An events table read, and features built from it, in a second process."""

    def __init__(self, path: str | Path, workers: int = 1) -> None:
        import multiprocessing

        self.path = Path(path)
        context = multiprocessing.get_context("spawn")
        # One process per worker, each with the whole events table; chunks go to
        # them in turn, so ``workers`` chunks' features are built at once.
        self._pools = [context.Pool(1) for _ in range(max(1, workers))]
        self._loaded = [p.apply_async(_ahead_load, (str(self.path),)) for p in self._pools]
        self._turn = 0

    @property
    def workers(self) -> int:
        """Processes building features."""
        return len(self._pools)

    def last_event(self) -> datetime | None:
        """The time of the last event (waits for the table to be read)."""
        return self._loaded[0].get()

    def features(
        self, leads: pd.DataFrame, as_of: datetime | None, config: Any, id_col: str
    ) -> Any:
        """Start building one chunk's features; ``.get()`` of the result returns them."""
        pool = self._pools[self._turn % len(self._pools)]
        self._turn += 1
        return pool.apply_async(_ahead_features, (leads, as_of, config, id_col))

    def close(self) -> None:
        """Stop the events processes (at once, if they are still working)."""
        for pool in self._pools:
            pool.terminate()
        for pool in self._pools:
            pool.join()


#: Events files at least this big are read ahead (:class:`EventsAhead`) by ``leadready
#: score``: below it, starting a second interpreter costs more than the read.
READ_AHEAD_BYTES = 4 * 2**20


class _Events:
    """Events read once and coded once (``model.features.EventCodes``): each chunk then
    takes its own events' codes, with no text handled per chunk."""

    def __init__(self, path: Path) -> None:
        from data.readers import read_events
        from model.features import EventCodes

        result = read_events(path)
        self.rejected = result.rejected
        frame = result.frame
        frame["lead_id"] = frame["lead_id"].astype(str)
        self.last = frame["timestamp"].max() if len(frame) else None
        self.codes = EventCodes(frame)


class _Writer:
    """Appends scored chunks to a CSV or Parquet file (a temporary one until ``close``)."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = path
        self.fmt = fmt
        self.tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
        self.parquet: Any = None
        self.schema: Any = None
        self.first = True

    def write(self, frame: pd.DataFrame) -> None:
        if self.fmt == "csv":
            frame.to_csv(self.tmp, mode="w" if self.first else "a", header=self.first, index=False)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            if self.parquet is None:
                table = pa.Table.from_pandas(frame, preserve_index=False)
                self.schema = table.schema
                self.parquet = pq.ParquetWriter(self.tmp, self.schema)
            else:
                try:
                    table = pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False)
                except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                    raise ValueError(
                        f"a column changes type between chunks ({exc}); "
                        "use a larger --chunk-size or write CSV"
                    ) from exc
            self.parquet.write_table(table)
        self.first = False

    def close(self) -> None:
        if self.parquet is not None:
            self.parquet.close()
        if self.first:  # no rows at all: still write a file with no rows
            return
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if self.parquet is not None:
            self.parquet.close()
        self.tmp.unlink(missing_ok=True)


def score_table(
    model: Any,
    in_path: str | Path,
    out_path: str | Path,
    *,
    events_path: str | Path | EventsAhead | None = None,
    id_col: str = "lead_id",
    chunk_size: int = 50_000,
    reasons: bool = False,
    as_of: datetime | None = None,
    on_chunk: Callable[[int, int | None], None] | None = None,
    on_scored: Callable[[pd.DataFrame, pd.DataFrame, pd.DataFrame], None] | None = None,
    num_threads: int | None = None,
    strict: bool = False,
) -> ScoreSummary:
    """Score every row of a lead table and write them with their predictions.

    Long on purpose: one pass over the file, in which reading, the features (built one chunk
    ahead in the events process when there is one) and writing share the counts, and the
    writer is removed on any failure."""
    from data.coltypes import apply_types
    from data.readers import SUPPORTED_SUFFIXES
    from model.features import build_features

    start = time.perf_counter()
    in_path, out_path = Path(in_path), Path(out_path)
    if chunk_size < 1:
        raise ValueError(f"chunk size must be at least 1, got {chunk_size}")
    if not in_path.is_file():
        raise ValueError(f"no such file: {in_path}")
    in_fmt = _format(in_path, SUPPORTED_SUFFIXES, "read")
    out_fmt = _format(out_path, _OUTPUT_FORMATS, "write")
    if out_path.resolve() == in_path.resolve():
        raise ValueError(f"{out_path.name}: the output would overwrite the input")
    if not out_path.parent.is_dir():
        raise ValueError(f"no such folder for the output: {out_path.parent}")

    threads = num_threads if num_threads is not None else (os.cpu_count() or 1)
    ahead = events_path if isinstance(events_path, EventsAhead) else None
    events = _Events(Path(events_path)) if events_path is not None and not ahead else None
    if ahead is not None:
        last = ahead.last_event()  # waits for the table to be read
    else:
        last = None if events is None or events.last is None else events.last.to_pydatetime()
    as_of = last if as_of is None else as_of
    has_events = ahead is not None or events is not None
    feature_config = getattr(model, "feature_config", None)
    prediction_columns = model.output_columns(reasons=reasons)
    # The training table's column kinds ("$4,365,000" as a number, dates as days).
    column_types = (getattr(model, "metadata", None) or {}).get("column_types") or {}
    title_col = (getattr(model, "metadata", None) or {}).get("title_column")
    total = _total_rows(in_path, in_fmt)

    writer = _Writer(out_path, out_fmt)
    rows = chunks = 0
    renamed: dict[str, str] = {}
    missing: list[str] = []
    routes: dict[str, int] = {}
    rejected: list[Any] = []
    notes: list[str] = []

    def prepared() -> Iterator[tuple[pd.DataFrame, pd.DataFrame, pd.Index, Any]]:
        """Each chunk with its leads and ids, and its features started in the events process."""
        read = 0
        for chunk in _chunks(in_path, chunk_size, id_col, rejected, notes, strict, column_types):
            chunk = chunk.reset_index(drop=True)
            first_row = read + 1
            read += len(chunk)
            if id_col in chunk.columns:
                ids = _chunk_ids(chunk[id_col], id_col, first_row, in_path.name)
            elif has_events:
                cols = ", ".join(repr(str(c)) for c in chunk.columns)
                raise ValueError(
                    f"{in_path.name}: no id column {id_col!r} to match events by; "
                    f"the columns are: {cols}"
                )
            else:
                ids = pd.Index([str(first_row + i) for i in range(len(chunk))])
            leads = chunk.copy()
            leads[id_col] = ids.to_numpy()
            if column_types:
                leads = apply_types(leads, column_types)
            if title_col and title_col in leads.columns and "job_title" not in leads.columns:
                leads["job_title"] = leads[title_col]
            started = None
            if ahead is not None and feature_config is not None:
                started = ahead.features(leads, as_of, feature_config, id_col)
            yield chunk, leads, ids, started

    # With the events in their own process, the next chunk's features are built there
    # while this one is scored and written here.
    depth = ahead.workers + 1 if ahead is not None else 1
    try:
        source = prepared()
        queue = deque(islice(source, depth))
        while queue:
            chunk, leads, ids, started = queue.popleft()
            if started is not None:
                features = started.get()
            elif feature_config is not None:
                features = build_features(
                    leads,
                    None if events is None else events.codes,
                    as_of=as_of,
                    config=feature_config,
                    id_col=id_col,
                )
            else:
                features = leads.set_index(ids)
            scored = model.predict_frame(features, reasons=reasons, num_threads=threads)
            if on_scored is not None:
                on_scored(leads, features, scored)
            if not missing:
                missing = list(scored.attrs.get("missing_columns", []))
            renamed.update({n: f"{n}_input" for n in prediction_columns if n in chunk.columns})
            out = chunk.rename(columns=renamed)
            out = pd.concat([out, scored[prediction_columns].reset_index(drop=True)], axis=1)
            writer.write(out)
            for value, count in out["route"].value_counts().items():
                routes[str(value)] = routes.get(str(value), 0) + int(count)
            rows += len(chunk)
            chunks += 1
            if on_chunk is not None:
                on_chunk(rows, total)
            queue.extend(islice(source, 1))
        if chunks == 0:
            writer.write(pd.DataFrame(columns=prediction_columns))
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return ScoreSummary(
        rows=rows,
        chunks=chunks,
        out_path=out_path,
        as_of=as_of,
        seconds=time.perf_counter() - start,
        renamed_columns=renamed,
        missing_columns=missing,
        routes=routes,
        rejected=rejected,
        notes=notes,
    )


def _chunk_ids(values: pd.Series, id_col: str, first_row: int, name: str) -> pd.Index:
    """A chunk's ids as text; empty or repeated ids are errors naming the rows."""
    if pd.api.types.is_string_dtype(values.dtype) and not pd.api.types.is_object_dtype(
        values.dtype
    ):
        # text as read (the reader reads the id column as text): stripped at once
        text = values.str.strip().astype(object).where(values.notna(), None)
    else:
        text = values.astype(object).map(lambda v: None if pd.isna(v) else str(v).strip())
    empty = np.flatnonzero(text.isna() | (text == "")).tolist()
    if empty:
        listed = ", ".join(str(first_row + i) for i in empty[:10])
        raise ValueError(f"{name}: column {id_col!r} is empty in row(s) {listed}")
    repeated = text[text.duplicated(keep=False)]
    if len(repeated):
        ids = list(dict.fromkeys(repeated.tolist()))[:10]
        raise ValueError(
            f"{name}: repeated ids in column {id_col!r} near row {first_row}: "
            + ", ".join(repr(i) for i in ids)
        )
    return pd.Index(text.to_numpy(dtype=object))
