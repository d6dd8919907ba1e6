"""The model holder: loads the served model in the background and follows the alias.

Design notes (swaps, failed loads, forks): ``docs/design/serving.md``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from serve.threads import ProcessThread

__all__ = [
    "LoadedModel",
    "Loader",
    "ModelHolder",
    "ModelUri",
    "Resolver",
    "parse_model_uri",
]

_log = logging.getLogger(__name__)

#: Loads a model URI: returns ``(LeadReadinessModel, pyfunc model or None, version)``.
Loader = Callable[[str], tuple[Any, Any, str]]
#: Resolves ``(name, alias)`` to the version the alias points at (``None``: no such alias).
Resolver = Callable[[str, str], str | None]

_REGISTRY_URI = re.compile(
    r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>[^/@]+))?$"
)


@dataclass(frozen=True)
class ModelUri:
    """A model URI split into registry name, alias and version (when it has them)."""

    uri: str
    name: str | None
    alias: str | None
    version: str | None

    def for_version(self, version: str) -> str:
        """The URI of one fixed version of the same registered model."""
        if self.name is None:
            return self.uri
        return f"models:/{self.name}/{version}"


def _task_differences(current: Any, new: Any) -> list[str]:
    """What makes ``new`` another task than ``current`` (empty when either has no task)."""
    old_task, new_task = getattr(current, "task", None), getattr(new, "task", None)
    if old_task is None or new_task is None:
        return []
    try:
        return list(old_task.differences(new_task))
    except AttributeError:
        return []


def _notify(listeners: list[Callable[..., None]], what: str, *args: Any) -> None:
    """Call every listener with ``args``; a failing one is logged, never raised."""
    for listener in listeners:
        try:
            listener(*args)
        except Exception:
            _log.exception("model %s listener failed", what)


def parse_model_uri(uri: str) -> ModelUri:
    """``models:/lead-readiness@champion`` → name ``lead-readiness``, alias ``champion``."""
    match = _REGISTRY_URI.match(uri.strip())
    if not match:
        return ModelUri(uri=uri, name=None, alias=None, version=None)
    return ModelUri(uri=uri, **match.groupdict())


@dataclass(frozen=True)
class LoadedModel:
    """One loaded model version; immutable, so a request can hold it safely."""

    model: Any
    pyfunc: Any
    name: str
    version: str
    uri: str
    alias: str | None
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def ref(self) -> dict[str, str]:
        """``{"name", "version"}`` as the API answers it."""
        return {"name": self.name, "version": self.version}


Status = Literal["loading", "ready", "failed"]


class ModelHolder:
    """Holds the served model, loads it in the background and follows the alias."""

    #: Longest wait before retrying a version that failed to load.
    max_retry_seconds = 300.0

    def __init__(
        self,
        uri: str,
        *,
        loader: Loader,
        resolver: Resolver,
        poll_seconds: float = 10.0,
        name: str | None = None,
        allow_task_change: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.uri = parse_model_uri(uri)
        self.allow_task_change = bool(allow_task_change)
        #: ``(version, differences)`` of the last version refused for doing another task.
        self.refused_task: tuple[str, list[str]] | None = None
        self._refusal_listeners: list[Callable[[str, list[str]], None]] = []
        self.loader = loader
        self.resolver = resolver
        self.poll_seconds = max(0.05, float(poll_seconds))
        self.name = self.uri.name or name or "model"
        self._clock = clock
        self._current: LoadedModel | None = None
        self._load_lock = threading.Lock()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = ProcessThread(self._run, "leadready-model")
        self._listeners: list[Callable[[LoadedModel, LoadedModel | None], None]] = []
        self._failure_listeners: list[Callable[[BaseException], None]] = []
        self._failed: dict[str, tuple[int, float]] = {}
        self.last_error: str | None = None

    # -- what requests use ---------------------------------------------------------------

    @property
    def current(self) -> LoadedModel | None:
        """The model to use now; read it once per request and keep the reference."""
        return self._current

    @property
    def status(self) -> Status:
        """``ready`` once a model is loaded; ``failed`` while the first load keeps failing."""
        if self._current is not None:
            return "ready"
        return "failed" if self.last_error else "loading"

    @property
    def follows_alias(self) -> bool:
        """True when the URI names an alias, which the poller follows."""
        return self.uri.alias is not None

    # -- life cycle ------------------------------------------------------------------------

    def on_swap(self, listener: Callable[[LoadedModel, LoadedModel | None], None]) -> None:
        """Call ``listener(new, previous)`` after every swap (metrics, logs)."""
        self._listeners.append(listener)

    def on_task_refusal(self, listener: Callable[[str, list[str]], None]) -> None:
        """Call ``listener(version, differences)`` when a version of another task is refused."""
        self._refusal_listeners.append(listener)

    def on_failure(self, listener: Callable[[BaseException], None]) -> None:
        """Call ``listener(exc)`` after every failed look-up or load."""
        self._failure_listeners.append(listener)

    def start(self) -> None:
        """Start the background loader/poller in this process (idempotent, cheap)."""
        # A forked child of a stopped holder polls again.
        self._thread.start(before=self._stop.clear)

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the poller (a load in progress finishes first)."""
        self._stop.set()
        self._thread.join(timeout)

    @property
    def running(self) -> bool:
        """True while the background loader/poller thread is alive in this process."""
        return self._thread.running

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until a model is loaded; False on timeout."""
        return self._ready.wait(timeout)

    # -- loading ----------------------------------------------------------------------------

    def check(self) -> bool:
        """Load and swap in the alias's version when it moved; True when swapped.

        Never raises: a failure is logged and reported to the failure listeners,
        and the current model stays in service.
        """
        try:
            with self._load_lock:
                return self._load_target(force=False)
        except Exception:
            return False

    def reload(self) -> tuple[LoadedModel, LoadedModel | None]:
        """Resolve the alias and load its version now, even if it is the current one.

        Returns ``(new, previous)``. Raises the loader's or resolver's exception
        on failure, in which case the current model stays in service.
        """
        with self._load_lock:
            previous = self._current
            self._load_target(force=True)
            current = self._current
            assert current is not None
            return current, previous

    def _load_target(self, *, force: bool) -> bool:
        current = self._current
        version: str | None = None
        try:
            if self.uri.alias is not None:
                version = self.resolver(self.name, self.uri.alias)
                if version is None:
                    raise LookupError(f"model alias {self.uri.uri} does not exist")
                version = str(version)
            # A fixed URI is loaded once; an alias's version when it moved and is not backing off.
            if (
                not force
                and current is not None
                and (version is None or version == current.version or self._backing_off(version))
            ):
                return False
            uri = self.uri.uri if version is None else self.uri.for_version(version)
            t0 = time.perf_counter()
            model, pyfunc, loaded_version = self.loader(uri)
            loaded = LoadedModel(
                model=model,
                pyfunc=pyfunc,
                name=self.name,
                version=str(version if version is not None else loaded_version),
                uri=uri,
                alias=self.uri.alias,
            )
        except Exception as exc:
            self._record_failure(exc, version)
            raise
        if current is not None and not self.allow_task_change:
            differences = _task_differences(current.model, loaded.model)
            if differences:
                self._refuse_task(loaded.version, differences, current)
                return False
        self._current = loaded  # the swap: one reference assignment
        self.last_error = None
        self._failed.pop(loaded.version, None)
        self._ready.set()
        _log.info(
            "model %s version %s loaded from %s in %.2f s%s",
            loaded.name,
            loaded.version,
            uri,
            time.perf_counter() - t0,
            f" (was version {current.version})" if current is not None else "",
        )
        _notify(self._listeners, "swap", loaded, current)
        return True

    def _refuse_task(self, version: str, differences: list[str], current: LoadedModel) -> None:
        """Keep serving ``current``: the new version does another task."""
        first_time = self.refused_task is None or self.refused_task[0] != version
        self.refused_task = (version, differences)
        self._back_off(version)
        if first_time:
            _log.error(
                "model %s version %s does another task than the served version %s (%s): not "
                "swapped in; still serving version %s. Register it under its own name, or set "
                "LEADREADY_ALLOW_TASK_CHANGE=true to serve it",
                self.name,
                version,
                current.version,
                "; ".join(differences),
                current.version,
            )
            _notify(self._refusal_listeners, "task refusal", version, differences)

    def _back_off(self, version: str) -> None:
        """Count one more failure of ``version`` and wait longer (doubling) before retrying it."""
        count = self._failed.get(version, (0, 0.0))[0] + 1
        delay = min(self.max_retry_seconds, self.poll_seconds * 2 ** (count - 1))
        self._failed[version] = (count, self._clock() + delay)

    def _backing_off(self, version: str) -> bool:
        failed = self._failed.get(version)
        return failed is not None and self._clock() < failed[1]

    def _record_failure(self, exc: BaseException, version: str | None) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        if version is not None:
            self._back_off(version)
        kept = self._current
        _log.error(
            "loading model %s failed (%s); %s",
            self.uri.uri,
            self.last_error,
            f"still serving version {kept.version}" if kept else "no model loaded yet",
        )
        _notify(self._failure_listeners, "failure", exc)

    def _run(self) -> None:
        stop = self._stop
        delay = min(1.0, self.poll_seconds)
        while not stop.is_set():
            self.check()
            if self._current is None:
                # First load failed: retry sooner than the poll, backing off.
                if stop.wait(delay):
                    return
                delay = min(delay * 2, self.poll_seconds)
                continue
            if not self.follows_alias:
                return
            if stop.wait(self.poll_seconds):
                return
