"""The background prediction writer: batching, ordering, retries, bad rows, shutdown flush."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from serve.writer import EventDeduper, LeadDeduper, PredictionWriter, WriterFull


class Sink:
    """Records the batches it is given; can fail a number of times or on bad rows."""

    def __init__(self, log: list, kind: str) -> None:
        self.log = log
        self.kind = kind
        self.fail_times = 0
        self.reject = lambda row: False

    def __call__(self, rows: list) -> int:
        if self.fail_times > 0:
            self.fail_times -= 1
            raise ConnectionError("database is down")
        for row in rows:
            if self.reject(row):
                raise ValueError(f"bad row {row!r}")
        self.log.append((self.kind, list(rows)))
        return len(rows)


def _writer(flush_seconds: float = 0.05, batch_size: int = 500, **kw):
    log: list = []
    sinks = {k: Sink(log, k) for k in ("leads", "events", "predictions")}
    return (
        PredictionWriter(sinks, flush_seconds=flush_seconds, batch_size=batch_size, **kw),
        sinks,
        log,
    )


def _rows(log, kind):
    return [r for k, rows in log if k == kind for r in rows]


def _counting(n: int):
    """An ``on_written`` hook and an event set once ``n`` rows were written."""
    done = threading.Event()
    written = [0]

    def on_written(kind: str, rows: int) -> None:
        written[0] += rows
        if written[0] >= n:
            done.set()

    return on_written, done


def test_no_thread_until_first_row():
    writer, _, _ = _writer()
    assert not writer.running
    writer.submit(predictions=[{"id": 1}])
    assert writer.running
    assert writer.close()


def test_rows_are_written_in_batches_within_the_flush_interval():
    on_written, done = _counting(50)
    writer, _, log = _writer(flush_seconds=0.1, on_written=on_written)
    for i in range(50):
        writer.submit(predictions=[{"id": i}])
    assert log == []  # nothing written synchronously
    assert done.wait(2)  # written by the thread on its deadline (no flush() asked for)
    assert [r["id"] for r in _rows(log, "predictions")] == list(range(50))
    assert len(log) <= 3  # batched, not one write per row
    writer.close()


def test_batch_size_triggers_an_early_write():
    on_written, done = _counting(10)
    writer, _, log = _writer(flush_seconds=30, batch_size=10, on_written=on_written)
    writer.submit(predictions=[{"id": i} for i in range(10)])
    assert done.wait(2)  # long before the 30 s deadline
    assert len(_rows(log, "predictions")) == 10
    writer.close()


def test_kinds_are_written_leads_first():
    writer, _, log = _writer()
    writer.submit(predictions=[{"id": 1}], events=[{"e": 1}], leads=[{"lead_id": "a"}])
    assert writer.flush()
    assert [k for k, _ in log] == ["leads", "events", "predictions"]
    writer.close()


def test_failed_writes_are_retried_without_loss_or_duplicates():
    failures = []
    on_written, done = _counting(5)
    writer, sinks, log = _writer(on_failure=lambda: failures.append(1), on_written=on_written)
    sinks["predictions"].fail_times = 2
    writer.submit(predictions=[{"id": i} for i in range(5)])
    assert done.wait(3)  # retried by the thread on its own ticks
    assert [r["id"] for r in _rows(log, "predictions")] == [0, 1, 2, 3, 4]
    assert len(failures) == 2
    writer.close()


def test_an_invalid_row_is_dropped_alone():
    dropped = []
    writer, sinks, log = _writer(on_dropped=dropped.append)
    sinks["predictions"].reject = lambda row: row["id"] == 2
    writer.submit(predictions=[{"id": i} for i in range(5)])
    assert writer.flush()
    assert [r["id"] for r in _rows(log, "predictions")] == [0, 1, 3, 4]
    assert dropped == [1]
    # the writer is not stuck behind the bad row
    writer.submit(predictions=[{"id": 9}])
    assert writer.flush()
    assert _rows(log, "predictions")[-1] == {"id": 9}
    writer.close()


def test_close_writes_everything_acknowledged():
    writer, _, log = _writer(flush_seconds=60, batch_size=10_000)
    threads = [
        threading.Thread(
            target=lambda t=t: [writer.submit(predictions=[{"t": t, "i": i}]) for i in range(200)]
        )
        for t in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert log == []  # still waiting for the (long) flush interval
    assert writer.close(timeout=5)
    assert len(_rows(log, "predictions")) == 800
    assert writer.close()  # idempotent
    with pytest.raises(RuntimeError):
        writer.submit(predictions=[{"late": 1}])


def test_close_without_thread_is_a_no_op_and_unknown_kind_is_refused():
    writer, _, log = _writer()
    with pytest.raises(ValueError, match="unknown row kinds"):
        writer.submit(scores=[{}])
    assert writer.close()
    assert log == []


def test_a_full_backlog_refuses_new_rows_and_never_drops_accepted_ones():
    """#17 finding 2: overflow answered by refusal (503 upstream), never by dropping old rows."""
    dropped = []
    writer, sinks, log = _writer(max_pending=10, on_dropped=dropped.append)
    sinks["predictions"].fail_times = 10**9  # the store stays down
    for i in range(10):
        writer.submit(predictions=[{"id": i}])
    with pytest.raises(WriterFull) as refused:
        writer.submit(predictions=[{"id": 10}])
    assert not refused.value.too_large
    assert writer.backlog == 10
    with pytest.raises(WriterFull) as huge:
        writer.submit(predictions=[{"id": i} for i in range(11)])
    assert huge.value.too_large
    sinks["predictions"].fail_times = 0
    assert writer.close()
    assert [r["id"] for r in _rows(log, "predictions")] == list(range(10))
    assert dropped == []
    assert writer.backlog == 0


def test_room_frees_up_once_the_store_catches_up():
    writer, sinks, log = _writer(max_pending=5)
    writer.submit(predictions=[{"id": i} for i in range(5)])
    with pytest.raises(WriterFull):
        writer.submit(predictions=[{"id": 5}])
    assert writer.flush()
    writer.submit(predictions=[{"id": 5}])
    assert writer.close()
    assert [r["id"] for r in _rows(log, "predictions")] == list(range(6))


def test_bad_rows_are_found_by_bisection_not_one_write_per_row():
    """#17 finding 2: no one-by-one insert storm; a few writes isolate the bad rows."""
    dropped = []
    writer, sinks, log = _writer(on_dropped=dropped.append, batch_size=512)
    calls = []
    reject = sinks["predictions"]

    def counting(rows):
        calls.append(len(rows))
        return reject(rows)

    writer.sinks["predictions"] = counting
    reject.reject = lambda row: row["id"] in (100, 400)
    writer.submit(predictions=[{"id": i} for i in range(512)])
    assert writer.flush()
    ids = [r["id"] for r in _rows(log, "predictions")]
    assert ids == [i for i in range(512) if i not in (100, 400)]
    assert dropped == [2]
    assert len(calls) < 40  # one by one would be 512 writes
    writer.close()


def test_a_store_data_error_is_isolated_like_a_value_error():
    """A row PostgreSQL refuses (psycopg DataError, e.g. a NUL byte) is not retried forever."""
    import sqlalchemy.exc as sa_exc

    dropped, failures = [], []
    writer, sinks, log = _writer(on_dropped=dropped.append, on_failure=lambda: failures.append(1))
    inner = sinks["predictions"]

    def pg_like(rows):
        if any(r["id"] == 1 for r in rows):
            raise sa_exc.DataError("COPY", None, Exception("text fields cannot contain NUL"))
        return inner(rows)

    writer.sinks["predictions"] = pg_like
    writer.submit(predictions=[{"id": i} for i in range(3)])
    assert writer.flush()
    writer.submit(predictions=[{"id": 7}])
    assert writer.flush()
    assert [r["id"] for r in _rows(log, "predictions")] == [0, 2, 7]
    assert dropped == [1] and failures == []
    writer.close()


def test_event_deduper_skips_events_already_written():
    written: list = []
    dedupe = EventDeduper(written.extend, max_entries=3)
    ts = datetime(2024, 1, 1, tzinfo=UTC)
    e1 = {"lead_id": "a", "timestamp": ts, "type": "email_open"}
    e2 = {"lead_id": "a", "timestamp": ts, "type": "page_view", "page_category": "pricing"}
    e3 = {"lead_id": "b", "timestamp": ts, "type": "email_open"}
    assert dedupe([e1, e2, dict(e1)]) == 2  # a duplicate inside one batch too
    assert dedupe([e1, e2, e3]) == 1  # the history resent with one new event
    assert written == [e1, e2, e3]
    e4, e5 = ({"lead_id": x, "timestamp": ts, "type": "email_open"} for x in "cd")
    dedupe([e4, e5])  # evicts the oldest fingerprints (bounded memory)
    assert dedupe([dict(e3), dict(e4), dict(e5)]) == 0  # the three newest are remembered
    assert dedupe([dict(e1)]) == 1  # the oldest was forgotten: three kept, no more


def test_a_submit_below_the_batch_size_does_not_wake_the_thread():
    writer, _, log = _writer(flush_seconds=30, batch_size=100)
    for i in range(50):
        writer.submit(predictions=[{"id": i}])
    assert writer.running and writer.wakeups == 0  # no message per request
    assert log == []
    assert writer.flush()
    assert [r["id"] for r in _rows(log, "predictions")] == list(range(50))
    writer.close()


def test_lead_deduper_skips_unchanged_profiles():
    written: list = []
    dedupe = LeadDeduper(written.extend, max_entries=2)
    a1 = {"lead_id": "a", "company": "Acme"}
    a2 = {"lead_id": "a", "company": "Acme Corp"}
    b = {"lead_id": "b", "company": "Beta"}
    assert dedupe([a1, dict(a1), b]) == 2
    assert dedupe([dict(a1), dict(b)]) == 0
    assert dedupe([a2, dict(a1)]) == 2  # changed, then changed back: both written, in order
    assert written == [a1, b, a2, a1]
    c = {"lead_id": "c", "company": "Gamma"}
    dedupe([c])  # evicts the least recently written lead (b)
    assert dedupe([dict(b)]) == 1


def test_lead_deduper_forgets_nothing_when_the_write_fails():
    calls: list = []

    def failing(rows):
        calls.append(list(rows))
        if len(calls) == 1:
            raise ConnectionError("database is down")

    dedupe = LeadDeduper(failing)
    row = {"lead_id": "a", "company": "Acme"}
    with pytest.raises(ConnectionError):
        dedupe([row])
    assert dedupe([dict(row)]) == 1
