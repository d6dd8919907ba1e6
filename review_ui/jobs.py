"""The retrain button's background job: one at a time, with visible progress.

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from data.locks import file_lock
from data.values import utc_now

__all__ = ["JobBusy", "RetrainRunner", "summarize_result"]

_log = logging.getLogger(__name__)

#: ``progress(step, fraction)`` as ``training.retrain.retrain`` calls it.
Progress = Callable[[str, float], None]
_IDLE: dict[str, Any] = {"state": "idle"} | dict.fromkeys(
    ("step", "fraction", "started_by", "started_at", "finished_at", "result", "error")
)


class JobBusy(RuntimeError):
    """A retrain is already running (here or in another worker)."""


def _now() -> str:
    return utc_now().isoformat(timespec="seconds")


def _plain(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of a result (dataclasses, mappings, paths, dates → plain values)."""
    if depth > 4:
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v, depth + 1) for v in list(value)[:50]]
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def summarize_result(result: Any) -> dict[str, Any]:
    """What the models page shows of a retrain's result.

    A ``training.retrain.RetrainResult`` gives the new version, the base version,
    the gate's decision and reasons and the corrections used; any other mapping
    or dataclass is shown as it is (JSON-safe), anything else as text.
    """
    if result is None:
        return {}
    if hasattr(result, "version") and hasattr(result, "gate"):
        gate = getattr(result, "gate", None)
        corrections = getattr(result, "corrections", None)
        out: dict[str, Any] = {
            "version": str(result.version),
            "base_version": _plain(getattr(result, "base_version", None)),
            "run_id": _plain(getattr(result, "run_id", None)),
            "promoted": None if gate is None else bool(getattr(gate, "promote", False)),
            "gate_reasons": [] if gate is None else _plain(list(getattr(gate, "reasons", []))),
            "gate_set": _plain(getattr(result, "gate_set", None)),
            "gate": _decision(gate),
            "notes": _plain(list(getattr(result, "notes", ()) or ())),
        }
        if corrections is not None:
            out["corrections"] = _plain(corrections)
        return out
    plain = _plain(result)
    return plain if isinstance(plain, dict) else {"result": plain}


def _decision(gate: Any) -> dict[str, Any] | None:
    """The gate's whole decision (sets, sizes, intervals) as plain JSON, or None."""
    if gate is None or not hasattr(gate, "to_dict"):
        return None
    return json.loads(json.dumps(gate.to_dict(), default=str))


class RetrainRunner:
    """Runs one retrain at a time in a background thread and reports its status.

    Status and lock files live in ``folder`` (shared by one home's workers; None: in memory).
    """

    def __init__(self, folder: Path | str | None = None) -> None:
        base = Path(folder) if folder is not None else None
        self._status_path = None if base is None else base / "retrain-status.json"
        self._lock_path = None if base is None else base / "retrain.lock"
        self._mutex = threading.Lock()
        self._memory: dict[str, Any] = dict(_IDLE)
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- status

    def _write(self, status: Mapping[str, Any]) -> None:
        with self._mutex:
            self._memory = dict(status)
        path = self._status_path
        if path is None:
            return
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(json.dumps(_plain(status)), encoding="utf-8")
        tmp.replace(path)

    def _update(self, **changes: Any) -> None:
        with self._mutex:
            status = {**self._memory, **changes}
        self._write(status)

    def status(self) -> dict[str, Any]:
        """``{"state": idle|running|succeeded|failed, "step", "fraction", "started_by",
        "started_at", "finished_at", "result", "error"}``."""
        path = self._status_path
        if path is None:
            with self._mutex:
                return dict(self._memory)
        try:
            status = {**_IDLE, **json.loads(path.read_text(encoding="utf-8"))}
        except (OSError, ValueError):
            return dict(_IDLE)
        if status["state"] == "running" and not self._locked_elsewhere():
            status["state"] = "failed"
            status["error"] = "the server process running this retrain stopped"
        return status

    # ---------------------------------------------------------------- locking

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[TextIO | None]:
        """Hold the cross-process lock (or None without a folder); JobBusy if taken."""
        path = self._lock_path
        if path is None:
            yield None
            return
        with contextlib.ExitStack() as held:
            try:
                handle = held.enter_context(file_lock(path, blocking=False))
            except BlockingIOError:
                raise JobBusy("a retrain is already running") from None
            yield handle

    def _locked_elsewhere(self) -> bool:
        if self._thread is not None and self._thread.is_alive():
            return True
        try:
            with self._exclusive():
                return False
        except JobBusy:
            return True

    # ----------------------------------------------------------------- running

    def start(self, job: Callable[..., Any], *, started_by: str) -> None:
        """Start ``job(progress=)`` in a background thread (``progress``: :data:`Progress`).

        Raises :class:`JobBusy` when a retrain is already running.
        """
        with self._mutex:
            if self._thread is not None and self._thread.is_alive():
                raise JobBusy("a retrain is already running")
            lock = contextlib.ExitStack()
            lock.enter_context(self._exclusive())  # JobBusy while another worker runs one
            thread = threading.Thread(
                target=self._run, args=(job, lock), name="leadready-retrain", daemon=True
            )
            self._thread = thread
        try:
            running = {"state": "running", "step": "starting", "fraction": 0.0}
            self._write(_IDLE | running | {"started_by": started_by, "started_at": _now()})
            thread.start()
        except BaseException:
            lock.close()
            raise

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the running job (tests, shutdown); True when none is left running."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _run(self, job: Callable[..., Any], lock: contextlib.ExitStack) -> None:
        """Run ``job`` holding ``lock`` (the cross-process one ``start`` took) to its end."""

        def progress(step: str, fraction: float) -> None:
            self._update(step=str(step), fraction=max(0.0, min(1.0, float(fraction))))

        with lock:
            try:
                result = job(progress=progress)
            except Exception as exc:
                _log.error("retrain failed:\n%s", traceback.format_exc())
                self._update(
                    state="failed",
                    error=f"{type(exc).__name__}: {exc}",
                    finished_at=_now(),
                )
            else:
                self._update(
                    state="succeeded",
                    step="done",
                    fraction=1.0,
                    result=summarize_result(result),
                    finished_at=_now(),
                )
