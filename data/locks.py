"""An exclusive lock on a file, held across processes (``fcntl.flock``): one retrain, one
re-scoring run or one queue refit at a time per home folder."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO


@contextlib.contextmanager
def file_lock(path: Path, *, blocking: bool = True) -> Iterator[TextIO]:
    """Hold ``path``'s exclusive lock (the file and its folder are made if missing); without
    ``blocking``, a lock held elsewhere raises ``BlockingIOError`` at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="utf-8") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        try:
            yield handle
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
