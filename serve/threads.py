"""One background daemon thread per process: the model poller, the writer, the re-scorer."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

__all__ = ["ProcessThread"]


class ProcessThread:
    """Runs ``target`` in a daemon thread started once per process (a forked child starts its
    own) and, with ``restart_ended``, again once it has ended."""

    def __init__(
        self, target: Callable[[], None], name: str, *, restart_ended: bool = False
    ) -> None:
        self.target, self.name, self.restart_ended = target, name, restart_ended
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        """True while the thread is alive in this process."""
        thread = self._thread
        return thread is not None and thread.is_alive() and self._pid == os.getpid()

    def _started(self) -> bool:
        return self._pid == os.getpid() and (not self.restart_ended or self.running)

    def start(self, before: Callable[[], None] | None = None) -> bool:
        """Start the thread unless it was (``before`` is called first); True when it started."""
        if self._started():
            return False
        with self._lock:
            if self._started():  # another caller started it meanwhile
                return False
            if before is not None:
                before()
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self.target, name=self.name, daemon=True)
            self._thread.start()
        return True

    def join(self, timeout: float | None) -> None:
        """Wait up to ``timeout`` seconds for the thread to end (unless called from it)."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
