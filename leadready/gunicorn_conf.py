"""gunicorn server hooks for the leadready app (``-c python:leadready.gunicorn_conf``).

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from typing import Any

__all__ = [
    "child_exit",
    "freeze_heap",
    "post_fork",
    "post_worker_init",
    "serving_url",
    "worker_exit",
]

_log = logging.getLogger("leadready.serve")


def _state(worker: Any) -> Any:
    from serve.state import EXTENSION

    app = getattr(worker, "wsgi", None)
    extensions = getattr(app, "extensions", None)
    if not isinstance(extensions, dict):
        return None
    return extensions.get(EXTENSION)


def serving_url(bind: list[str] | str) -> str:
    """``http://host:port`` of the first address gunicorn binds."""
    address = bind[0] if isinstance(bind, list) and bind else str(bind)
    if address.startswith("unix:"):
        return address
    host, _, port = address.rpartition(":")
    if host in ("0.0.0.0", "[::]", ""):
        host = "127.0.0.1"
    return f"http://{host}:{port}"


def post_fork(server: Any, worker: Any) -> None:
    """Replace the pools of SQLAlchemy engines inherited from the master (fork safety)."""
    if "sqlalchemy" not in sys.modules:
        return
    from sqlalchemy.engine import Engine

    for obj in gc.get_objects():
        if isinstance(obj, Engine):
            obj.dispose(close=False)


def freeze_heap(*_swap: Any) -> None:
    """After a model swap, keep the cyclic garbage collector off the long-lived heap: one full
    collection (it frees what the last swap left in cycles), then every object alive now is
    frozen, so the collections that requests' garbage sets off scan only what came since. Without
    it a worker's full collections (35-300 ms, measured) were the single lead's p99."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def post_worker_init(worker: Any) -> None:
    """Start the model holder in this worker (its heap frozen after each swap, see
    :func:`freeze_heap`); the first worker logs the start line."""
    state = _state(worker)
    if state is None:
        return
    state.holder.on_swap(freeze_heap)
    if getattr(worker, "age", 0) == 1:
        url = serving_url(worker.cfg.bind)
        workers = worker.cfg.workers
        logged = False

        def announce(new: Any, previous: Any) -> None:
            nonlocal logged
            if logged:
                return
            logged = True
            _log.info(
                "leadready serving %s with model %s version %s (%d worker%s; docs at %s/openapi.json)",
                url,
                new.name,
                new.version,
                workers,
                "" if workers == 1 else "s",
                url,
            )

        state.holder.on_swap(announce)
    state.holder.start()


def worker_exit(server: Any, worker: Any) -> None:
    """Write every queued prediction, then stop the model poller."""
    state = _state(worker)
    if state is not None:
        state.close()


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges (prometheus_client multiprocess mode)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, path)
