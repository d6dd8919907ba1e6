"""Re-score stored leads with the served champion after a promotion or a rollback.

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data.rescore import RescoreLock, VersionCounts, snapshots, stale_leads, version_counts
from data.values import utc_now
from serve.scoring import Prepared, prediction_rows, score
from serve.threads import ProcessThread

__all__ = ["RescoreResult", "Rescorer", "rescore_to"]

_log = logging.getLogger(__name__)

#: Leads per batch: one read, one ``predict_records`` call and one write transaction.
BATCH_SIZE = 1000


@dataclass
class RescoreResult:
    """What one pass did."""

    model_name: str
    version: str
    rescored: int = 0
    without_snapshot: int = 0
    missing_inputs: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    stopped: bool = False


def rescore_to(
    store: Any,
    model: Any,
    *,
    model_name: str,
    version: str,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[RescoreResult], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RescoreResult:
    """Score every stored lead not on ``version`` with ``model``, ``batch_size`` leads at a time.

    ``progress`` gets the running result after each batch; ``should_stop`` is checked between
    batches and ends the pass early (``stopped``).
    """
    result = RescoreResult(model_name=model_name, version=str(version))
    started, cpu0 = time.perf_counter(), time.process_time()
    missing: Counter[str] = Counter()
    cursor: str | None = None

    def clock() -> None:
        result.missing_inputs = dict(missing)
        result.seconds = time.perf_counter() - started
        result.cpu_seconds = time.process_time() - cpu0

    while True:
        if should_stop is not None and should_stop():
            result.stopped = True
            break
        ids = stale_leads(store, version, after=cursor, limit=batch_size)
        if not ids:
            break
        cursor = ids[-1]
        _rescore_batch(store, model, ids, result, missing)
        clock()
        if progress is not None:
            progress(result)
    clock()
    return result


def _rescore_batch(
    store: Any, model: Any, ids: list[str], result: RescoreResult, missing: Counter[str]
) -> None:
    """Score ``ids`` from their feature snapshots and store the predictions, counted in ``result``
    (and the inputs each lead lacks in ``missing``)."""
    snaps = snapshots(store, ids)
    prepared = [
        Prepared(index=i, lead_id=lead_id, features=snaps[lead_id])
        for i, lead_id in enumerate(ids)
        if lead_id in snaps
    ]
    result.without_snapshot += len(ids) - len(prepared)
    inputs = list(model.input_columns)
    missing.update(c for p in prepared for c in inputs if c not in p.features)
    if prepared:
        rows = prediction_rows(
            prepared,
            score(prepared, model),
            model_name=result.model_name,
            model_version=result.version,
            source="rescore",
        )
        store.record_predictions(rows)
        result.rescored += len(rows)


def _counted(model_name: str, version: str, counts: VersionCounts) -> dict[str, Any]:
    """The status fields saying how many stored leads there are and how many are on ``version``."""
    return {
        "model_name": model_name,
        "version": version,
        "total": counts.total,
        "done": counts.on(version),
    }


def _now() -> str:
    return utc_now().isoformat(timespec="seconds")


class Rescorer:
    """Background re-scoring in a serving process (see docs/design/serving.md).

    ``folder`` holds the status (and a SQLite store's lock) file, None keeps it in memory;
    ``settle_seconds`` is the wait before the second pass (about twice the holder's poll).
    """

    def __init__(
        self,
        store: Any,
        *,
        folder: Path | str | None = None,
        batch_size: int = BATCH_SIZE,
        settle_seconds: float = 20.0,
    ) -> None:
        self.store = store
        self.folder = Path(folder) if folder is not None else None
        self.batch_size = int(batch_size)
        self.settle_seconds = float(settle_seconds)
        self._target: tuple[Any, str, str] | None = None
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._mutex = threading.Lock()
        self._thread = ProcessThread(self._run, "leadready-rescore", restart_ended=True)
        self._memory: dict[str, Any] = {"state": "idle"}
        #: Set after each finished pass (tests and benchmarks wait on it).
        self.finished = threading.Event()

    # ------------------------------------------------------------- status

    @property
    def _status_path(self) -> Path | None:
        return None if self.folder is None else self.folder / "rescore-status.json"

    def _write(self, **status: Any) -> None:
        with self._mutex:
            self._memory = {**self._memory, **status, "updated_at": _now()}
            data = dict(self._memory)
        path = self._status_path
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        tmp.replace(path)

    def status(self) -> dict[str, Any]:
        """The last status any worker wrote: state, target version, counts, errors."""
        path = self._status_path
        if path is not None:
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                pass
        with self._mutex:
            return dict(self._memory)

    # ------------------------------------------------------------ running

    def request(self, model: Any, *, model_name: str, version: str) -> None:
        """Bring every stored lead to ``version`` (scored by ``model``) in the background."""
        with self._mutex:
            self._target = (model, model_name, str(version))
        self.finished.clear()
        self._changed.set()
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop after the current batch."""
        self._stop.set()
        self._changed.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._changed.wait()
            if self._stop.is_set():
                return
            self._changed.clear()
            with self._mutex:
                target = self._target
            if target is None:
                continue
            try:
                self._work(*target)
            except Exception as exc:  # keep serving; say what failed
                _log.exception("re-scoring stored leads failed")
                self._write(state="failed", error=f"{type(exc).__name__}: {exc}")
                self.finished.set()

    def _work(self, model: Any, model_name: str, version: str) -> None:
        """Wait for the lock, run a pass, settle, run the second pass, write the status."""
        lock = RescoreLock(self.store, self.folder)
        if not lock.acquire(blocking=False):
            self._write(state="waiting", version=version, note="another worker is re-scoring")
            lock.acquire(blocking=True)  # the runner finished or died: look again
        try:
            for attempt in range(2):
                if self._changed.is_set() or self._stop.is_set():
                    return  # a newer target arrived: the loop takes it
                counts = version_counts(self.store)
                if counts.total == counts.on(version):
                    break
                if self._pass(model, model_name, version, counts).stopped or attempt == 1:
                    break
                # Workers that had not swapped yet may have scored with the old version.
                if self._stop.wait(self.settle_seconds) or self._changed.is_set():
                    return
            counts = version_counts(self.store)
            self._write(state="done", **_counted(model_name, version, counts), finished_at=_now())
            self.finished.set()
        finally:
            lock.release()

    def _pass(
        self, model: Any, model_name: str, version: str, counts: VersionCounts
    ) -> RescoreResult:
        """One pass over the leads not on ``version``, its progress written to the status."""
        self._write(
            state="running",
            **_counted(model_name, version, counts),
            started_at=_now(),
            finished_at=None,
            error=None,
            pid=os.getpid(),
        )
        before = counts.on(version)
        result = rescore_to(
            self.store,
            model,
            model_name=model_name,
            version=version,
            batch_size=self.batch_size,
            progress=lambda r: self._write(
                rescored=r.rescored,
                done=before + r.rescored,
                seconds=round(r.seconds, 1),
                missing_inputs=r.missing_inputs,
                without_snapshot=r.without_snapshot,
            ),
            should_stop=lambda: self._changed.is_set() or self._stop.is_set(),
        )
        _log.info(
            "re-scored %d stored leads with %s version %s in %.1f s (%.1f s CPU)",
            result.rescored,
            model_name,
            version,
            result.seconds,
            result.cpu_seconds,
        )
        return result
