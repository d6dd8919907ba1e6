"""The one composition root: settings read once, long-lived objects built, layers wired.

:func:`create_app` reads the environment once (``Settings.from_env`` and the
``LEADREADY_*`` keys), builds the store, the model holder, the re-scorer, the
retrain job and the suggestion service, and hands them to ``serve`` (the API
app) and ``review_ui`` (the UI installed on the same app) as siblings. Nothing
below this package reads the environment or imports upward; see
``docs/architecture.md``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flask import Config, Flask

import review_ui
from leadready.config import Settings
from serve import app as serve_app
from serve.holder import Loader, ModelHolder, Resolver
from serve.rescore import Rescorer

__all__ = ["create_app", "registry_source", "resolve_config", "retrain_job"]

#: Config keys that name the same thing as a setting: its environment variable and field.
_SETTING_KEYS = {
    "LEADREADY_HOME": ("LEADREADY_HOME", "home"),
    "DATABASE_URL": ("DATABASE_URL", "database_url"),
    "MLFLOW_TRACKING_URI": ("MLFLOW_TRACKING_URI", "mlflow_tracking_uri"),
    "MODEL_NAME": ("LEADREADY_MODEL_NAME", "model_name"),
}


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The served app: defaults, then ``LEADREADY_*`` environment, then ``config``.

    ``config`` may carry ``MODEL_SOURCE`` (a ``(loader, resolver)`` pair
    replacing the MLflow registry) and ``LEADREADY_RETRAIN`` (the retrain
    button's callable).
    """
    cfg, settings = resolve_config(config or {})
    store = _store(cfg, settings)
    holder = _holder(cfg, settings)
    settle = cfg["RESCORE_SETTLE_SECONDS"]
    rescorer = Rescorer(
        store,
        folder=settings.home / "jobs",
        batch_size=int(cfg["RESCORE_BATCH_SIZE"]),
        settle_seconds=2 * float(cfg["MODEL_POLL_SECONDS"]) if settle is None else float(settle),
    )
    suggestions = _Suggestions()
    app = serve_app.create_app(
        cfg,
        store=store,
        holder=holder,
        rescorer=rescorer,
        # prometheus_client's own convention: the multiprocess folder is an env variable.
        multiproc_dir=os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None,
        suggestion_set=lambda s, correction_id: suggestions.suggestion_set(s, correction_id),
    )
    review_ui.init_app(
        app,
        store=store,
        suggestions=suggestions,
        retrain=cfg.get("LEADREADY_RETRAIN") or retrain_job(settings, cfg["MLFLOW_ARTIFACT_ROOT"]),
        holder=holder,
        rescorer=rescorer,
    )
    return app


def resolve_config(config: Mapping[str, Any]) -> tuple[Config, Settings]:
    """The app's configuration layers, and the settings they resolve to.

    A key in ``config`` wins over its environment variable, which wins over
    the default under the home (``Settings.for_home``).
    """
    cfg = Config(str(Path.cwd()), serve_app.DEFAULTS)
    cfg.from_prefixed_env("LEADREADY")
    cfg.update(config)
    overrides = {env: str(cfg[key]) for key, (env, _) in _SETTING_KEYS.items() if cfg.get(key)}
    settings = Settings.from_env({**os.environ, **overrides})
    cfg.update({key: str(getattr(settings, field)) for key, (_, field) in _SETTING_KEYS.items()})
    cfg["MLFLOW_ARTIFACT_ROOT"] = cfg["MLFLOW_ARTIFACT_ROOT"] or str(settings.artifact_root)
    cfg["MODEL_URI"] = cfg["MODEL_URI"] or f"models:/{settings.model_name}@champion"
    return cfg, settings


def _store(cfg: Mapping[str, Any], settings: Settings) -> Any:
    """The store of ``DATABASE_URL`` (migrations are ``leadready db upgrade``'s job)."""
    from data.store import Store

    pool_size, max_overflow = cfg["DB_POOL_SIZE"], cfg["DB_MAX_OVERFLOW"]
    return Store(
        settings.database_url,
        pool_size=None if pool_size is None else int(pool_size),
        max_overflow=None if max_overflow is None else int(max_overflow),
    )


def _holder(cfg: Mapping[str, Any], settings: Settings) -> ModelHolder:
    """The model holder of ``MODEL_URI`` (its thread starts later, after any fork)."""
    loader, resolver = cfg.get("MODEL_SOURCE") or registry_source(
        cfg["MLFLOW_TRACKING_URI"], cfg["MLFLOW_ARTIFACT_ROOT"]
    )
    return ModelHolder(
        cfg["MODEL_URI"],
        loader=loader,
        resolver=resolver,
        poll_seconds=float(cfg["MODEL_POLL_SECONDS"]),
        name=settings.model_name,
        allow_task_change=bool(cfg["ALLOW_TASK_CHANGE"]),
    )


def registry_source(tracking_uri: str, artifact_root: str) -> tuple[Loader, Resolver]:
    """Loader and alias resolver backed by the MLflow registry (``model.registry``)."""
    from model import registry

    registry.configure(tracking_uri, artifact_root)

    def load(uri: str) -> tuple[Any, Any, str]:
        import mlflow.pyfunc

        from model.pyfunc import unwrap

        pinned, version = registry.resolve_uri(uri)
        pyfunc = mlflow.pyfunc.load_model(pinned)
        return unwrap(pyfunc), pyfunc, version or "local"

    return load, registry.alias_version


def retrain_job(settings: Settings, artifact_root: str | None) -> Callable[..., Any]:
    """The review UI's retrain button: ``training.retrain`` on this app's registry."""

    def run(*, store: Any, actor: str, progress: Callable[[str, float], None]) -> Any:
        from training.retrain import RetrainConfig, retrain

        config = RetrainConfig(
            tracking_uri=settings.mlflow_tracking_uri,
            artifact_root=Path(artifact_root) if artifact_root else None,
            model_name=settings.model_name,
            actor=f"review UI: {actor}",
        )
        return retrain(config, store, progress=progress)

    return run


class _Suggestions:
    """``training.similar`` as the UI's suggestion service, imported on first use."""

    def __getattr__(self, name: str) -> Any:
        from training import similar

        return getattr(similar, name)
