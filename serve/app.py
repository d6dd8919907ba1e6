"""The Flask app factory of the scoring API (and the review UI, when it is installed).

``create_app`` reads its configuration in three layers: embedded defaults
(with the home, store URL and MLflow URI of ``leadready.config.Settings``),
then ``LEADREADY_*`` environment variables (``LEADREADY_MODEL_POLL_SECONDS=2``
sets ``MODEL_POLL_SECONDS``), then the mapping a caller passes. Nothing
happens at import time, and nothing starts a thread in ``create_app``: the
model loader starts on the first request or in gunicorn's ``post_worker_init``
(after the fork), the prediction writer on its first row.

Configuration keys
------------------
``LEADREADY_HOME``, ``DATABASE_URL``, ``MLFLOW_TRACKING_URI``, ``MLFLOW_ARTIFACT_ROOT``
    Where state lives; the URLs default to SQLite files under the home.
``MODEL_NAME``, ``MODEL_URI``
    The registered model; ``MODEL_URI`` defaults to ``models:/<MODEL_NAME>@champion``.
``MODEL_POLL_SECONDS``
    How often each worker checks whether the alias moved (10).
``BATCH_LIMIT``
    Most leads in one ``/v1/score/batch`` request (10000).
``MAX_CONTENT_LENGTH``
    Largest request body in bytes (64 MiB); larger bodies get 413.
``DB_POOL_SIZE``, ``DB_MAX_OVERFLOW``
    The store's connection pool per worker process (SQLAlchemy's 5 and 10 when
    unset); ``LEADREADY_DB_POOL_SIZE=5`` in the environment. See docs/deploy.md.
``API_KEY_CACHE_SECONDS``
    How long an accepted API key is trusted before asking the store again (1.0).
``API_KEY_KNOWN_SECONDS``
    While the store is unreachable, keys it accepted within this many seconds still
    work (3600; 0 turns it off); unknown keys get 503 + Retry-After.
``RECORD_PREDICTIONS``, ``WRITER_FLUSH_SECONDS``, ``WRITER_BATCH_SIZE``
    The background writer of predictions (on, 0.5 s, 500 rows).
``WRITER_MAX_PENDING``, ``MAX_EVENTS_PER_REQUEST``
    Most rows the writer holds for the store (200000; beyond, requests get 503 +
    Retry-After) and most events one request may carry (50000; beyond, 413).
``MODEL_SOURCE``
    ``(loader, resolver)`` replacing the MLflow registry (tests, other registries).
``SECRET_KEY``
    Signs the review UI's sessions; ``leadready serve`` gives every worker the same one.
``PROXY_HOPS``
    How many trusted proxies (load balancers) stand in front of the app (0). With
    ``LEADREADY_PROXY_HOPS=1`` the client address, scheme and host are read from
    that many ``X-Forwarded-*`` entries (werkzeug's ``ProxyFix``), so the login
    rate limit counts clients, not the load balancer. Never set it without a
    proxy: clients could then forge their address.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

import review_ui
from leadready.config import Settings
from serve import api, docs, errors, guard, review_api
from serve import metrics as metrics_mod
from serve.auth import ApiKeyAuth
from serve.holder import Loader, ModelHolder, Resolver
from serve.labels import LabelBook
from serve.metrics import Metrics, multiprocess_dir
from serve.state import EXTENSION, ServeState, get_state
from serve.writer import EventDeduper, LeadDeduper, PredictionWriter

__all__ = [
    "RESCORE_EXTENSION",
    "create_app",
    "init_model",
    "init_rescore",
    "init_store",
    "init_writer",
    "registry_source",
]

#: ``app.extensions`` key of the background re-scorer (``serve.rescore.Rescorer``).
RESCORE_EXTENSION = "leadready_rescore"


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then ``LEADREADY_*`` environment, then ``config``."""
    app = Flask(__name__)
    env = Settings.from_env()
    app.config.from_mapping(
        LEADREADY_HOME=str(env.home),
        DATABASE_URL=None,
        MLFLOW_TRACKING_URI=None,
        MLFLOW_ARTIFACT_ROOT=None,
        MODEL_NAME=env.model_name,
        MODEL_URI=None,
        MODEL_POLL_SECONDS=10.0,
        BATCH_LIMIT=10_000,
        MAX_EVENTS_PER_REQUEST=50_000,
        WRITER_MAX_PENDING=200_000,
        MAX_CONTENT_LENGTH=64 * 1024 * 1024,
        SECRET_KEY=secrets.token_hex(32),
        API_KEY_CACHE_SECONDS=1.0,
        API_KEY_KNOWN_SECONDS=3600.0,
        DB_POOL_SIZE=None,
        DB_MAX_OVERFLOW=None,
        RECORD_PREDICTIONS=True,
        WRITER_FLUSH_SECONDS=0.5,
        WRITER_BATCH_SIZE=500,
        PROXY_HOPS=0,
        ALLOW_TASK_CHANGE=False,
        RESCORE_ON_SWAP=True,
        RESCORE_BATCH_SIZE=1000,
        RESCORE_SETTLE_SECONDS=None,
        API_DIGITS=4,
    )
    app.config.from_prefixed_env("LEADREADY")
    if config:
        app.config.from_mapping(config)
    settings = _settings(app, env)

    hops = int(app.config["PROXY_HOPS"] or 0)
    if hops < 0:
        raise ValueError(f"PROXY_HOPS must be 0 or more, got {hops}")
    if hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops
        )

    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.compact = True  # type: ignore[attr-defined]

    met = Metrics(multiproc_dir=multiprocess_dir())
    store = init_store(app, settings)
    met.add_alignment(lambda: store)
    auth = ApiKeyAuth(
        store,
        cache_seconds=float(app.config["API_KEY_CACHE_SECONDS"]),
        known_seconds=float(app.config["API_KEY_KNOWN_SECONDS"]),
        on_failure=lambda reason: met.auth_failures.labels(reason).inc(),
    )
    holder = init_model(app, settings, met)
    labels = LabelBook(settings.home / "serve")
    holder.on_swap(lambda new, old: labels.save(new.name, new.version, _label_sets(new.model)))
    app.extensions[EXTENSION] = ServeState(
        settings=settings, store=store, holder=holder, metrics=met, auth=auth, labels=labels
    )
    init_writer(app)
    init_rescore(app, store, holder)

    errors.init_app(app)
    guard.init_app(app)
    metrics_mod.init_app(app, met)
    app.before_request(holder.start)
    app.register_blueprint(api.bp)
    app.register_blueprint(review_api.bp)
    review_ui.init_app(app)
    docs.init_app(app)
    return app


def _label_sets(model: Any) -> dict[str, Any]:
    return {f: getattr(model, f"{f}_labels", None) for f in ("stage", "persona")}


def _settings(app: Flask, env: Settings) -> Settings:
    """Resolve the home-relative defaults once every layer of configuration is in."""
    cfg = app.config
    explicit_db = cfg["DATABASE_URL"] or (env.database_url if _env_has("DATABASE_URL") else None)
    explicit_ml = cfg["MLFLOW_TRACKING_URI"] or (
        env.mlflow_tracking_uri if _env_has("MLFLOW_TRACKING_URI") else None
    )
    settings = Settings.for_home(
        cfg["LEADREADY_HOME"],
        database_url=explicit_db,
        mlflow_tracking_uri=explicit_ml,
        model_name=cfg["MODEL_NAME"],
    )
    cfg["LEADREADY_HOME"] = str(settings.home)
    cfg["DATABASE_URL"] = settings.database_url
    cfg["MLFLOW_TRACKING_URI"] = settings.mlflow_tracking_uri
    cfg["MLFLOW_ARTIFACT_ROOT"] = cfg["MLFLOW_ARTIFACT_ROOT"] or str(settings.artifact_root)
    cfg["MODEL_URI"] = cfg["MODEL_URI"] or f"models:/{settings.model_name}@champion"
    return settings


def _env_has(name: str) -> bool:
    return bool(os.environ.get(name))


def init_store(app: Flask, settings: Settings) -> Any:
    """The store of ``DATABASE_URL`` (migrations are ``leadready db upgrade``'s job)."""
    from data.store import Store

    cfg = app.config
    pool_size, max_overflow = cfg["DB_POOL_SIZE"], cfg["DB_MAX_OVERFLOW"]
    return Store(
        settings.database_url,
        pool_size=None if pool_size is None else int(pool_size),
        max_overflow=None if max_overflow is None else int(max_overflow),
    )


def registry_source(tracking_uri: str, artifact_root: str) -> tuple[Loader, Resolver]:
    """Loader and alias resolver backed by the MLflow registry (``model.registry``).

    The loader keeps the MLflow pyfunc model (``/invocations`` answers through
    it, exactly as ``mlflow models serve``) and the ``LeadReadinessModel`` inside
    it (the lean ``/v1`` path): one load, two views of the same object.
    """
    from model import registry

    registry.configure(tracking_uri, artifact_root)

    def load(uri: str) -> tuple[Any, Any, str]:
        import mlflow.pyfunc

        from model.pyfunc import unwrap

        pinned, version = registry.resolve_uri(uri)
        pyfunc = mlflow.pyfunc.load_model(pinned)
        return unwrap(pyfunc), pyfunc, version or "local"

    def resolve(name: str, alias: str) -> str | None:
        return registry.alias_version(name, alias)

    return load, resolve


def init_model(app: Flask, settings: Settings, met: Metrics) -> ModelHolder:
    """The model holder of ``MODEL_URI`` (its thread starts later, after any fork)."""
    cfg = app.config
    source = cfg.get("MODEL_SOURCE")
    if source is None:
        source = registry_source(cfg["MLFLOW_TRACKING_URI"], cfg["MLFLOW_ARTIFACT_ROOT"])
    loader, resolver = source
    holder = ModelHolder(
        cfg["MODEL_URI"],
        loader=loader,
        resolver=resolver,
        poll_seconds=float(cfg["MODEL_POLL_SECONDS"]),
        name=settings.model_name,
        allow_task_change=bool(cfg["ALLOW_TASK_CHANGE"]),
    )
    holder.on_task_refusal(
        lambda version, _: met.model_task_refusals.labels(holder.name, version).inc()
    )
    holder.on_swap(
        lambda new, old: met.set_model(new.name, new.version, old.version if old else None)
    )
    holder.on_failure(lambda exc: met.model_load_failures.labels(holder.name).inc())
    return holder


def init_rescore(app: Flask, store: Any, holder: ModelHolder) -> None:
    """Re-score stored leads in the background after each swap to a new champion.

    Only a holder that follows an alias triggers it (a process pinned to one
    version must not rewrite every lead's prediction). See ``serve.rescore``.
    """
    from serve.rescore import Rescorer

    cfg = app.config
    home = cfg.get("LEADREADY_HOME")
    settle = cfg["RESCORE_SETTLE_SECONDS"]
    rescorer = Rescorer(
        store,
        folder=Path(home) / "jobs" if home else None,
        batch_size=int(cfg["RESCORE_BATCH_SIZE"]),
        settle_seconds=2 * float(cfg["MODEL_POLL_SECONDS"]) if settle is None else float(settle),
    )
    app.extensions[RESCORE_EXTENSION] = rescorer
    if cfg["RESCORE_ON_SWAP"] and holder.follows_alias:
        holder.on_swap(
            lambda new, old: rescorer.request(new.model, model_name=new.name, version=new.version)
        )


def init_writer(app: Flask) -> None:
    """The background prediction writer (its thread starts on the first row)."""
    state = get_state(app)
    cfg = app.config
    if not cfg["RECORD_PREDICTIONS"]:
        return
    store, met = state.store, state.metrics
    state.writer = PredictionWriter(
        {
            "leads": LeadDeduper(store.upsert_leads),
            "events": EventDeduper(store.add_events),
            "predictions": store.record_predictions,
        },
        flush_seconds=float(cfg["WRITER_FLUSH_SECONDS"]),
        batch_size=int(cfg["WRITER_BATCH_SIZE"]),
        max_pending=int(cfg["WRITER_MAX_PENDING"]),
        on_written=lambda kind, n: met.writer_rows.labels(kind).inc(n),
        on_failure=met.writer_failures.inc,
        on_dropped=met.writer_dropped.inc,
        on_pending=met.writer_pending.set,
    )
