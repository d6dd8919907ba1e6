"""The review UI: a Flask blueprint where sales reps work the review queue.

``init_app(app, store=..., ...)`` installs it on an app with the objects the
composition root (``leadready.app``) hands in: the store, the serving model
holder and re-scorer (for the Models page), the retrain callable and the
suggestion service. It adds Flask-Login sessions, CSRF for the UI's forms only
(API routes with bearer keys never need a token), HttpOnly SameSite cookies and
security headers; the configuration keys are listed in ``docs/design/serving.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from flask import Flask
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

from data.review_queue import QueueConfig
from review_ui import dashboard as _dashboard  # noqa: F401  (adds its routes to bp)
from review_ui.auth import init_login
from review_ui.jobs import RetrainRunner
from review_ui.security import configure_cookies
from review_ui.views import bp

__all__ = ["EXTENSION", "Retrain", "ReviewUI", "Suggestions", "bp", "configure", "init_app"]

#: The UI's key in ``app.extensions``.
EXTENSION = "review_ui"

#: ``retrain(store=, actor=, progress=)``: the retrain button's job (``progress(step, fraction)``).
Retrain = Callable[..., Any]


class Suggestions(Protocol):
    """What the UI uses of the suggestion service (``training.similar``'s public functions)."""

    METHODS: dict[str, str]
    StaleSuggestions: type[Exception]
    UnknownSuggestions: type[Exception]

    def sets_for_lead(self, store: Any, lead_id: str) -> list[Any]: ...
    def pending_for_lead(self, store: Any, lead_id: str) -> list[dict[str, Any]]: ...
    def build_suggestions(self, store: Any, correction_id: int) -> Any: ...
    def suggestion_set(self, store: Any, correction_id: int) -> Any: ...
    def suggestions_in_set(self, store: Any, correction_id: int, **kw: Any) -> list[Any]: ...
    def accept_suggestions(self, store: Any, correction_id: int, ids: Any, **kw: Any) -> Any: ...
    def dismiss_suggestions(self, store: Any, correction_id: int, ids: Any, **kw: Any) -> Any: ...


@dataclass
class ReviewUI:
    """The UI's long-lived objects on one app (``app.extensions["review_ui"]``)."""

    app: Flask
    login_manager: LoginManager
    csrf: CSRFProtect
    jobs: RetrainRunner
    queue_config: QueueConfig
    suggestions: Suggestions
    retrain: Retrain | None = None
    holder: Any = None
    rescorer: Any = None
    _store: Any = None

    def store(self) -> Any:
        """The store the UI reads and writes."""
        return self._store

    def retrain_job(self, actor: str) -> Callable[[Callable[[str, float], None]], Any] | None:
        """The job the retrain button starts, or None when retraining is not set up."""
        retrain, store = self.retrain, self._store
        if retrain is None:
            return None
        return lambda progress: retrain(store=store, actor=actor, progress=progress)


def configure(
    app: Flask,
    *,
    store: Any,
    suggestions: Suggestions,
    retrain: Retrain | None = None,
    holder: Any = None,
    rescorer: Any = None,
) -> ReviewUI:
    """Set up logins, CSRF, cookies and the retrain runner on ``app`` (once)."""
    existing = app.extensions.get(EXTENSION)
    if existing is not None:
        return existing
    cfg = app.config
    cfg.setdefault("REVIEW_SESSION_HOURS", 8)
    cfg["WTF_CSRF_CHECK_DEFAULT"] = False
    cfg.setdefault("WTF_CSRF_TIME_LIMIT", None)
    configure_cookies(app)
    csrf = CSRFProtect()
    csrf.init_app(app)
    queue_config = cfg.get("REVIEW_QUEUE") or QueueConfig()
    if not isinstance(queue_config, QueueConfig):
        queue_config = QueueConfig(**dict(queue_config))
    home = cfg.get("LEADREADY_HOME")
    ui = ReviewUI(
        app=app,
        login_manager=init_login(app, lambda: store),
        csrf=csrf,
        jobs=RetrainRunner(Path(home) / "jobs" if home else None),
        queue_config=queue_config,
        suggestions=suggestions,
        retrain=retrain,
        holder=holder,
        rescorer=rescorer,
        _store=store,
    )
    app.extensions[EXTENSION] = ui
    return ui


def init_app(app: Flask, **services: Any) -> ReviewUI:
    """Install the review UI on ``app`` (idempotent): blueprint, logins, CSRF, headers.

    ``services`` are :func:`configure`'s keywords; a second call returns the
    UI already installed.
    """
    ui = app.extensions.get(EXTENSION) or configure(app, **services)
    if bp.name not in app.blueprints:
        app.register_blueprint(bp)
    return ui
