"""The review UI: a Flask blueprint where sales reps work the review queue.

``init_app(app)`` does everything the UI needs on an app built by
``serve.app.create_app`` (or any Flask app whose ``app.extensions["leadready"]``
holds the store, as an object with a ``store`` attribute or a mapping with a
``"store"`` key):

* registers the blueprint (``/review/…``, ``/login``, ``/logout``);
* Flask-Login sessions (lifetime ``REVIEW_SESSION_HOURS``, default 8);
* CSRF protection for the UI's forms only: ``WTF_CSRF_CHECK_DEFAULT`` is off and
  the blueprint checks every non-GET request itself, so API routes with bearer
  keys never need a token;
* HttpOnly, SameSite=Lax session cookies (``SESSION_COOKIE_SECURE`` for HTTPS);
* security headers on UI responses (CSP without inline scripts, no framing,
  ``nosniff``).

Configuration keys: ``REVIEW_SESSION_HOURS``; ``REVIEW_QUEUE`` (a
:class:`data.review_queue.QueueConfig`); ``LEADREADY_RETRAIN`` (the retrain
button's callable, see :class:`ReviewUI`); ``SESSION_COOKIE_SECURE``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

from data.review_queue import QueueConfig
from review_ui import dashboard as _dashboard  # noqa: F401  (adds its routes to bp)
from review_ui.auth import init_login
from review_ui.jobs import RetrainRunner
from review_ui.security import configure_cookies
from review_ui.views import bp

__all__ = ["EXTENSION", "ReviewUI", "bp", "configure", "init_app"]

#: The UI's key in ``app.extensions``.
EXTENSION = "review_ui"


def _store_of(app: Flask) -> Any:
    state = app.extensions.get("leadready")
    if state is None:
        raise RuntimeError(
            'the review UI needs the store in app.extensions["leadready"] (serve.app.create_app)'
        )
    store = state.get("store") if isinstance(state, Mapping) else getattr(state, "store", None)
    if store is None:
        raise RuntimeError('app.extensions["leadready"] holds no store')
    return store


@dataclass
class ReviewUI:
    """The UI's long-lived objects on one app (``app.extensions["review_ui"]``).

    The retrain button calls ``app.config["LEADREADY_RETRAIN"]`` when it is set:
    a callable taking ``store=``, ``actor=`` (the user's name) and, if it wants
    progress, ``progress=`` (``progress(step, fraction)``); the command line or
    the app factory builds it around ``training.retrain.retrain``, so the UI
    does not depend on the training layer. Without it the job imports
    ``training.retrain`` lazily (inside the background job, never at import
    time) and retrains the app's ``MODEL_NAME`` on its ``MLFLOW_TRACKING_URI``.
    """

    app: Flask
    login_manager: LoginManager
    csrf: CSRFProtect
    jobs: RetrainRunner
    queue_config: QueueConfig

    def store(self) -> Any:
        """The store of ``app.extensions["leadready"]`` (read per call: it may be swapped)."""
        return _store_of(self.app)

    def retrain_available(self) -> bool:
        """True when the retrain button has something to call.

        Looks for ``training/retrain.py`` on disk without importing anything
        (importing ``training`` loads scikit-learn and friends: seconds).
        """
        if callable(self.app.config.get("LEADREADY_RETRAIN")):
            return True
        import importlib.util

        try:
            spec = importlib.util.find_spec("training")
        except (ImportError, ValueError):
            return False
        locations = spec.submodule_search_locations if spec is not None else None
        return any((Path(loc) / "retrain.py").is_file() for loc in locations or ())

    def retrain_job(self, app: Flask, actor: str) -> Callable[..., Any] | None:
        """The job the retrain button starts, or None when retraining is not set up."""
        if not self.retrain_available():
            return None
        store = self.store()
        configured = app.config.get("LEADREADY_RETRAIN")
        if callable(configured):

            def run_configured(progress: Callable[[str, float], None]) -> Any:
                return configured(store=store, actor=actor, progress=progress)

            return run_configured
        cfg = dict(app.config)

        def run_default(progress: Callable[[str, float], None]) -> Any:
            from training.retrain import RetrainConfig, retrain

            root = cfg.get("MLFLOW_ARTIFACT_ROOT")
            config = RetrainConfig(
                tracking_uri=cfg["MLFLOW_TRACKING_URI"],
                artifact_root=Path(root) if root else None,
                model_name=cfg.get("MODEL_NAME") or "lead-readiness",
                actor=f"review UI: {actor}",
            )
            return retrain(config, store, progress=progress)

        return run_default


def configure(app: Flask) -> ReviewUI:
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
    jobs = RetrainRunner(Path(home) / "jobs" if home else None)
    ui = ReviewUI(
        app=app,
        login_manager=init_login(app, lambda: _store_of(app)),
        csrf=csrf,
        jobs=jobs,
        queue_config=queue_config,
    )
    app.extensions[EXTENSION] = ui
    return ui


def init_app(app: Flask) -> ReviewUI:
    """Install the review UI on ``app`` (idempotent): blueprint, logins, CSRF, headers."""
    ui = configure(app)
    if bp.name not in app.blueprints:
        app.register_blueprint(bp)
    return ui
