"""What the Models page shows, gathered without blocking the page on MLflow.

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from data.rescore import version_counts

__all__ = [
    "MLFLOW_WAIT",
    "in_thread",
    "registry_state",
    "registry_unavailable",
    "rescore_state",
    "serving_state",
    "within",
]

T = TypeVar("T")

#: Seconds the page waits for the registry before it says "unavailable".
MLFLOW_WAIT = 3.0


def _read(tracking_uri: str, model_name: str) -> dict[str, Any]:
    from model.registry import alias_history, versions_overview

    versions = versions_overview(model_name, tracking_uri=tracking_uri)
    moves = list(reversed(alias_history(model_name, tracking_uri=tracking_uri)))
    champion = next((v["version"] for v in versions if "champion" in v["aliases"]), None)
    return {"versions": versions, "moves": moves, "champion": champion, "error": None}


def registry_unavailable(tracking_uri: str | None, model_name: str | None) -> str | None:
    """Why the registry cannot be read at all, in words, or None."""
    if not tracking_uri or not model_name:
        return "no MLflow tracking URI or model name is configured"
    if tracking_uri.startswith("sqlite:///"):
        from pathlib import Path

        if not Path(tracking_uri.removeprefix("sqlite:///")).exists():
            # Opening a missing SQLite tracking store would create (and migrate) one.
            return "no MLflow tracking store yet (nothing has been trained)"
    return None


def in_thread(read: Callable[[], T], name: str) -> Future[T]:
    """Run ``read`` in a daemon thread: a hung tracking server (or a long build) never holds up
    a page or an exit."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(read())
        except BaseException as exc:  # handed to the page through the future
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def within(future: Future[dict[str, Any]], wait: float) -> dict[str, Any]:
    """The future's answer, or ``{"error": words}`` when MLflow failed or is late."""
    try:
        return future.result(timeout=wait)
    except FutureTimeout:
        return {"error": f"MLflow did not answer within {wait:g} s"}
    except Exception as exc:  # MLflow raises many kinds; the page must still render
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        return {"error": f"MLflow could not be read ({reason})"}


def registry_state(tracking_uri: str | None, model_name: str | None) -> dict[str, Any]:
    """Versions, alias moves (newest first) and the champion, or ``{"error": words}``."""
    empty: dict[str, Any] = {"versions": [], "moves": [], "champion": None}
    why = registry_unavailable(tracking_uri, model_name)
    if why is not None:
        return {**empty, "error": why}
    future = in_thread(lambda: _read(tracking_uri, model_name), "models-page-mlflow")
    return {**empty, **within(future, MLFLOW_WAIT)}


def serving_state(holder: Any, champion: str | None) -> dict[str, Any] | None:
    """The served version of this process against the registry's champion.

    Returns None when this process holds no model holder (the UI alone).
    """
    if holder is None:
        return None
    loaded = getattr(holder, "current", None)
    version = None if loaded is None else str(loaded.version)
    out: dict[str, Any] = {
        "name": getattr(holder, "name", None),
        "version": version,
        "alias": getattr(loaded, "alias", None),
        "loaded_at": getattr(loaded, "loaded_at", None),
        "champion": champion,
        "poll_seconds": getattr(holder, "poll_seconds", None),
        "follows_alias": bool(getattr(holder, "follows_alias", False)),
        "refused": None,
        "switching": False,
    }
    refused = getattr(holder, "refused_task", None)
    if refused is not None and champion is not None and refused[0] == champion:
        out["refused"] = {"version": refused[0], "differences": list(refused[1])}
    elif champion is not None and out["follows_alias"] and version not in (None, str(champion)):
        out["switching"] = True
    return out


def rescore_state(rescorer: Any, store: Any, target: str | None) -> dict[str, Any]:
    """Stored leads per version, the share on ``target`` and the re-scoring status."""
    counts = version_counts(store)
    status = rescorer.status() if rescorer is not None else {"state": "idle"}
    by_version = sorted(counts.by_version.items(), key=lambda kv: (-kv[1], kv[0]))
    return {
        "total": counts.total,
        "target": target,
        "on_target": None if target is None else counts.on(target),
        "share": None if target is None else counts.share(target),
        "by_version": by_version,
        "status": status,
    }
