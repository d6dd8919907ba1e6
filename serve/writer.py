"""Background writer: predictions, profiles and events reach the store off the hot path.

Design notes (batching, back-pressure, refused rows, forks): ``docs/design/serving.md``.
"""

from __future__ import annotations

import abc
import atexit
import logging
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import exc as sa_exc

from serve.threads import ProcessThread

__all__ = ["EventDeduper", "LeadDeduper", "PredictionWriter", "Sink", "WriterFull"]

_log = logging.getLogger(__name__)

#: Writes a batch of rows of one kind to the store.
Sink = Callable[[list[Any]], Any]

_STOP = object()
#: Put on the control queue when enough rows wait to write them before the deadline.
_WAKE = object()

#: Errors by which the store rejects a row's content (not worth retrying).
_DATA_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    KeyError,
    TypeError,
    sa_exc.DataError,
    sa_exc.IntegrityError,
)
#: While the store keeps failing, at most one log line per this many seconds.
_FAILURE_LOG_SECONDS = 30.0


class WriterFull(Exception):
    """The writer cannot take these rows now (``too_large``: not ever, in one piece)."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


def _ignore(*_: Any) -> None:
    """The default of every writer hook: nothing to tell."""


class _FlushRequest:
    """Put on the queue by ``flush()``: set once everything before it is written."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False


class PredictionWriter:
    """Queue + thread that writes rows to the store in batches."""

    def __init__(
        self,
        sinks: Mapping[str, Sink],
        *,
        flush_seconds: float = 0.5,
        batch_size: int = 500,
        max_pending: int = 200_000,
        on_written: Callable[[str, int], None] | None = None,
        on_failure: Callable[[], None] | None = None,
        on_dropped: Callable[[int], None] | None = None,
        on_pending: Callable[[int], None] | None = None,
    ) -> None:
        self.sinks = dict(sinks)
        self.flush_seconds = float(flush_seconds)
        self.batch_size = int(batch_size)
        self.max_pending = int(max_pending)
        self.on_written = on_written or _ignore
        self.on_failure = on_failure or _ignore
        self.on_dropped = on_dropped or _ignore
        self.on_pending = on_pending or _ignore
        # Control messages (wake-ups, flush requests, stop) for the thread.
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # Submitted batches, in order (deque appends and pops are atomic).
        self._rows: deque[dict[str, list[Any]]] = deque()
        self._waiting_rows = 0
        self._woken = False
        #: Times ``submit`` woke the thread before the deadline (``batch_size`` rows waited).
        self.wakeups = 0
        self._thread = ProcessThread(self._run, "leadready-writer")
        self._lock = threading.Lock()
        self._closed = False
        # Rows taken off the queue but not yet written (kept in order across retries).
        self._pending: dict[str, list[Any]] = {kind: [] for kind in self.sinks}
        # Rows accepted by submit and not yet written or refused by the store.
        self._backlog = 0
        self._backlog_lock = threading.Lock()
        self._failing_since: float | None = None
        self._failures = 0
        self._last_failure_log = 0.0

    # -- producer side -----------------------------------------------------------------

    def submit(self, **rows: Sequence[Any]) -> None:
        """Queue rows by kind (``submit(predictions=[...], leads=[...])``); never blocks.

        Raises
        ------
        WriterFull
            The rows would take the backlog past ``max_pending`` (the store is
            slow or down: retry later), or are more than ``max_pending`` on
            their own (``too_large``: send fewer at once). Nothing is queued then.
        """
        unknown = set(rows) - set(self.sinks)
        if unknown:
            raise ValueError(f"unknown row kinds: {sorted(unknown)}")
        if self._closed:
            raise RuntimeError("the prediction writer is closed")
        batch = {kind: list(items) for kind, items in rows.items() if items}
        if not batch:
            return
        n = sum(len(items) for items in batch.values())
        if n > self.max_pending:
            raise WriterFull(
                f"{n} rows in one request are more than the writer holds ({self.max_pending})",
                too_large=True,
            )
        with self._backlog_lock:
            if self._backlog + n > self.max_pending:
                raise WriterFull(
                    f"{self._backlog} rows are waiting for the store; it cannot take {n} more now"
                )
            self._backlog += n
        if self._thread.start():
            atexit.register(self.close)
        self._rows.append(batch)
        # An estimate (no lock): it only decides when to wake the thread early.
        self._waiting_rows += n
        if self._waiting_rows >= self.batch_size and not self._woken:
            self._woken = True
            self.wakeups += 1
            self._queue.put(_WAKE)

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Block until everything submitted before this call is written; True on success."""
        if not self._thread.running:
            return self._drain_inline()
        request = _FlushRequest()
        self._queue.put(request)
        return request.done.wait(timeout) and request.ok

    def close(self, timeout: float = 10.0) -> bool:
        """Write everything queued and stop the thread (idempotent); True when all was written."""
        with self._lock:
            if self._closed:
                return True
            self._closed = True
        if self._thread.running:
            request = _FlushRequest()
            self._queue.put(request)
            self._queue.put(_STOP)
            self._thread.join(timeout)
            if request.done.is_set() and request.ok:
                return True
            if self._thread.running:
                _log.error("prediction writer: store writes did not finish within %.1f s", timeout)
                return False
        # No live writer thread (never started, or started before a fork): write from here.
        return self._drain_inline()

    @property
    def running(self) -> bool:
        """True while the writer thread is alive in this process (it starts on the first row)."""
        return self._thread.running

    @property
    def pending(self) -> int:
        """Rows taken off the queue but not yet written (retrying after a failure)."""
        return sum(len(v) for v in self._pending.values())

    @property
    def backlog(self) -> int:
        """Rows accepted by :meth:`submit` and not yet written or refused by the store."""
        return self._backlog

    def _settle(self, n: int) -> None:
        with self._backlog_lock:
            self._backlog -= n

    # -- consumer side -----------------------------------------------------------------

    def _run(self) -> None:
        deadline = time.monotonic() + self.flush_seconds
        waiting: list[_FlushRequest] = []
        stop = False
        while not stop:
            timeout = max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is _STOP:
                stop = True
            elif isinstance(item, _FlushRequest):
                waiting.append(item)
            self._take_submitted()
            due = time.monotonic() >= deadline
            if due or waiting or stop or self.pending >= self.batch_size:
                ok = self._write_pending()
                deadline = time.monotonic() + self.flush_seconds
                for request in waiting:
                    request.ok = ok
                    request.done.set()
                waiting.clear()

    def _take_submitted(self) -> None:
        """Move every submitted batch to the pending rows (in order)."""
        self._woken = False
        self._waiting_rows = 0
        rows = self._rows
        while rows:
            try:
                batch = rows.popleft()
            except IndexError:
                break
            for kind, items in batch.items():
                self._pending[kind].extend(items)
            self.on_pending(self.pending)

    def _write_pending(self) -> bool:
        """Write pending rows kind by kind, in sink order; keep the rest on failure."""
        for kind, sink in self.sinks.items():
            rows = self._pending[kind]
            while rows:
                chunk = rows[: self.batch_size]
                progress = [0]
                refused: list[tuple[Any, Exception]] = []
                try:
                    self._write_isolating(kind, sink, chunk, progress, refused)
                except Exception as exc:
                    del rows[: progress[0]]
                    self._report_refused(kind, len(chunk), refused)
                    return self._failed(kind, len(chunk), exc)
                del rows[: len(chunk)]
                self._report_refused(kind, len(chunk), refused)
        if self._failing_since is not None:
            _log.warning(
                "prediction writer: store writes recovered after %d failed attempts in %.1f s",
                self._failures,
                time.monotonic() - self._failing_since,
            )
            self._failing_since = None
            self._failures = 0
        self.on_pending(0)
        return True

    def _write_isolating(
        self,
        kind: str,
        sink: Sink,
        rows: list[Any],
        progress: list[int],
        refused: list[tuple[Any, Exception]],
    ) -> None:
        """Write ``rows``; when the store refuses their content, bisect to the bad rows."""
        try:
            sink(rows)
        except _DATA_ERRORS as exc:
            if len(rows) == 1:
                refused.append((rows[0], exc))
                progress[0] += 1
                self._settle(1)
                return
            mid = len(rows) // 2
            self._write_isolating(kind, sink, rows[:mid], progress, refused)
            self._write_isolating(kind, sink, rows[mid:], progress, refused)
            return
        progress[0] += len(rows)
        self._settle(len(rows))
        self.on_written(kind, len(rows))

    def _report_refused(self, kind: str, total: int, refused: list[tuple[Any, Exception]]) -> None:
        """One log line per chunk for the rows the store refused (with the first reasons)."""
        if not refused:
            return
        shown = "; ".join(str(exc) for _, exc in refused[:3])
        more = f" (and {len(refused) - 3} more)" if len(refused) > 3 else ""
        _log.error(
            "prediction writer: the store refused %d of %d %s rows for their content, "
            "not retried: %s%s",
            len(refused),
            total,
            kind,
            shown,
            more,
        )
        self.on_dropped(len(refused))

    def _failed(self, kind: str, n: int, exc: Exception) -> bool:
        """Count a failed write; log the first of a streak, then at most every 30 s."""
        now = time.monotonic()
        self._failures += 1
        if self._failing_since is None:
            self._failing_since = now
            self._last_failure_log = now
            _log.error(
                "prediction writer: writing %d %s rows failed; %d rows wait and are retried",
                n,
                kind,
                self._backlog,
                exc_info=exc,
            )
        elif now - self._last_failure_log >= _FAILURE_LOG_SECONDS:
            self._last_failure_log = now
            _log.error(
                "prediction writer: the store has been failing for %.0f s (%d attempts); "
                "%d rows wait; last error: %s",
                now - self._failing_since,
                self._failures,
                self._backlog,
                exc,
            )
        self.on_failure()
        self.on_pending(self.pending)
        return False

    def _drain_inline(self) -> bool:
        """Write everything queued from the calling thread (no live writer thread)."""
        waiting: list[_FlushRequest] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _FlushRequest):
                waiting.append(item)
        self._take_submitted()
        ok = self._write_pending()
        if not ok:
            _log.error("prediction writer: %d rows could not be written", self.pending)
        for request in waiting:
            request.ok = ok
            request.done.set()
        return ok


#: What a deduper remembers of a key it never saw (equal to no mark).
_UNSEEN = object()


class _Deduper(abc.ABC):
    """An LRU of the last ``max_entries`` keys this process wrote, wrapping a sink;
    a subclass says what a row's key and mark are."""

    def __init__(self, sink: Sink, *, max_entries: int = 200_000) -> None:
        self.sink = sink
        self.max_entries = int(max_entries)
        self._last: OrderedDict[Any, Any] = OrderedDict()

    @abc.abstractmethod
    def _key_mark(self, row: Mapping[str, Any]) -> tuple[Any, Any]:
        """The row's key, and what must equal the remembered mark for it to be skipped."""

    def __call__(self, rows: list[Any]) -> Any:
        """Write the rows not seen before (or changed), then remember them."""
        fresh: list[Any] = []
        marks: dict[Any, Any] = {}
        for row in rows:
            key, mark = self._key_mark(row)
            if marks.get(key, self._last.get(key, _UNSEEN)) == mark:
                if key in self._last:
                    self._last.move_to_end(key)
                continue
            marks[key] = mark
            fresh.append(row)
        if fresh:
            self.sink(fresh)
        for key, mark in marks.items():
            self._last[key] = mark
            self._last.move_to_end(key)
        while len(self._last) > self.max_entries:
            self._last.popitem(last=False)
        return len(fresh)


#: What tells an event apart, besides its timestamp.
_EVENT_KEY_FIELDS = (
    "lead_id",
    "type",
    "page_category",
    "content_type",
    "content_topic",
    "channel",
    "event_id",
)


class EventDeduper(_Deduper):
    """Drops events this process has already stored (API clients resend a lead's history).

    The store's unique event id skips duplicates across worker processes.
    """

    def _key_mark(self, row: Mapping[str, Any]) -> tuple[Any, Any]:
        ts = row.get("timestamp")
        ts = ts.isoformat() if hasattr(ts, "isoformat") else ts
        return (ts, *map(row.get, _EVENT_KEY_FIELDS)), None


class LeadDeduper(_Deduper):
    """Skips lead profiles identical to the one this process last wrote for that lead.

    A profile changed in the store by someone else is not seen here: the next
    *different* profile from the API still overwrites it.
    """

    def __init__(self, sink: Sink, *, max_entries: int = 100_000, id_key: str = "lead_id") -> None:
        super().__init__(sink, max_entries=max_entries)
        self.id_key = id_key

    def _key_mark(self, row: Mapping[str, Any]) -> tuple[Any, Any]:
        return row.get(self.id_key), repr(sorted(row.items(), key=lambda kv: str(kv[0])))
