"""The Flask app of the scoring API, built from objects the composition root hands in.

``leadready.app.create_app`` reads the settings, builds the store, the model
holder and the re-scorer, and calls :func:`create_app` here with them; this
module only wires them to the API's blueprints, metrics and writer. Nothing
happens at import time and nothing starts a thread here: the model loader
starts on the first request or in gunicorn's ``post_worker_init``, the
prediction writer on its first row. The configuration keys are listed in
``docs/design/serving.md``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from serve import api, docs, errors, guard, review_api
from serve import metrics as metrics_mod
from serve.auth import ApiKeyAuth
from serve.holder import ModelHolder
from serve.labels import LabelBook
from serve.metrics import Metrics
from serve.state import EXTENSION, ServeState
from serve.writer import EventDeduper, LeadDeduper, PredictionWriter

__all__ = ["DEFAULTS", "RESCORE_EXTENSION", "create_app"]

#: ``app.extensions`` key of the background re-scorer (``serve.rescore.Rescorer``).
RESCORE_EXTENSION = "leadready_rescore"

#: The API's configuration keys and their defaults (``docs/design/serving.md``).
DEFAULTS: dict[str, Any] = {
    "LEADREADY_HOME": None,
    "DATABASE_URL": None,
    "MLFLOW_TRACKING_URI": None,
    "MLFLOW_ARTIFACT_ROOT": None,
    "MODEL_NAME": None,
    "MODEL_URI": None,
    "MODEL_POLL_SECONDS": 10.0,
    "BATCH_LIMIT": 10_000,
    "MAX_EVENTS_PER_REQUEST": 50_000,
    "WRITER_MAX_PENDING": 200_000,
    "MAX_CONTENT_LENGTH": 64 * 1024 * 1024,
    "API_KEY_CACHE_SECONDS": 1.0,
    "API_KEY_KNOWN_SECONDS": 3600.0,
    "DB_POOL_SIZE": None,
    "DB_MAX_OVERFLOW": None,
    "RECORD_PREDICTIONS": True,
    "WRITER_FLUSH_SECONDS": 0.5,
    "WRITER_BATCH_SIZE": 500,
    "PROXY_HOPS": 0,
    "ALLOW_TASK_CHANGE": False,
    "RESCORE_ON_SWAP": True,
    "RESCORE_BATCH_SIZE": 1000,
    "RESCORE_SETTLE_SECONDS": None,
    "API_DIGITS": 4,
}


def create_app(
    config: Mapping[str, Any],
    *,
    store: Any,
    holder: ModelHolder,
    rescorer: Any,
    multiproc_dir: str | None = None,
    suggestion_set: Callable[[Any, int], Any] | None = None,
) -> Flask:
    """The API app over ``store`` and ``holder`` with the resolved ``config``."""
    app = Flask(__name__)
    app.config.update({"SECRET_KEY": secrets.token_hex(32), **DEFAULTS, **config})
    _trust_proxies(app, int(app.config["PROXY_HOPS"] or 0))
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.compact = True  # type: ignore[attr-defined]

    met = Metrics(multiproc_dir=multiproc_dir)
    met.add_alignment(lambda: store)
    auth = ApiKeyAuth(
        store,
        cache_seconds=float(app.config["API_KEY_CACHE_SECONDS"]),
        known_seconds=float(app.config["API_KEY_KNOWN_SECONDS"]),
        on_failure=lambda reason: met.auth_failures.labels(reason).inc(),
    )
    _count_model_events(holder, met)
    labels = LabelBook(Path(app.config["LEADREADY_HOME"]) / "serve")
    holder.on_swap(lambda new, old: labels.save(new.name, new.version, _label_sets(new.model)))
    app.extensions[EXTENSION] = ServeState(
        store=store,
        holder=holder,
        metrics=met,
        auth=auth,
        labels=labels,
        writer=_writer(app.config, store, met),
        suggestion_set=suggestion_set,
    )
    app.extensions[RESCORE_EXTENSION] = rescorer
    if app.config["RESCORE_ON_SWAP"] and holder.follows_alias:
        holder.on_swap(
            lambda new, old: rescorer.request(new.model, model_name=new.name, version=new.version)
        )

    errors.init_app(app)
    guard.init_app(app)
    metrics_mod.init_app(app, met)
    app.before_request(holder.start)
    app.register_blueprint(api.bp)
    app.register_blueprint(review_api.bp)
    docs.init_app(app)
    return app


def _trust_proxies(app: Flask, hops: int) -> None:
    """Read client address, scheme and host from ``hops`` trusted ``X-Forwarded-*`` entries."""
    if hops < 0:
        raise ValueError(f"PROXY_HOPS must be 0 or more, got {hops}")
    if hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops
        )


def _label_sets(model: Any) -> dict[str, Any]:
    return {f: getattr(model, f"{f}_labels", None) for f in ("stage", "persona")}


def _count_model_events(holder: ModelHolder, met: Metrics) -> None:
    """Count refusals, swaps and failed loads of the holder in the metrics."""
    holder.on_task_refusal(
        lambda version, _: met.model_task_refusals.labels(holder.name, version).inc()
    )
    holder.on_swap(
        lambda new, old: met.set_model(new.name, new.version, old.version if old else None)
    )
    holder.on_failure(lambda exc: met.model_load_failures.labels(holder.name).inc())


def _writer(cfg: Mapping[str, Any], store: Any, met: Metrics) -> PredictionWriter | None:
    """The background prediction writer (its thread starts on the first row), or None."""
    if not cfg["RECORD_PREDICTIONS"]:
        return None
    return PredictionWriter(
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
