"""Run the app under gunicorn through its Python API (what ``leadready serve`` calls).

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from leadready import gunicorn_conf
from leadready.config import Settings

__all__ = ["GunicornApp", "ServeOptions", "prepare_home", "run"]


@dataclass(frozen=True)
class ServeOptions:
    """How ``leadready serve`` runs gunicorn."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2
    threads: int = 4
    poll_seconds: float | None = None
    timeout: int = 30
    access_log: bool = False
    migrate: bool = True

    @property
    def bind(self) -> str:
        """gunicorn's bind address (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"


class GunicornApp(BaseApplication):
    """gunicorn application that builds the Flask app in each worker."""

    def __init__(self, options: Mapping[str, Any], app_config: Mapping[str, Any]) -> None:
        self.options = dict(options)
        self.app_config = dict(app_config)
        super().__init__()

    def load_config(self) -> None:
        """Apply ``options`` to gunicorn's settings."""
        assert self.cfg is not None
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key.lower(), value)

    def load(self) -> Any:
        """Create the app (runs in each worker, after the fork)."""
        from leadready.app import create_app

        return create_app(self.app_config)


def prepare_home(settings: Settings, port: int) -> tuple[Path, str]:
    """Make the home, a clean Prometheus multiprocess folder and the shared secret key.

    Returns ``(prometheus folder, secret key)``.
    """
    home = settings.ensure_home()
    prom = home / "run" / f"prometheus-{port}"
    shutil.rmtree(prom, ignore_errors=True)
    prom.mkdir(parents=True, exist_ok=True)
    key_file = home / "secret_key"
    if not key_file.exists():
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return prom, key_file.read_text().strip()


def _multiprocess_metrics(folder: Path) -> None:
    """Switch prometheus_client to multiprocess mode for the workers about to be forked."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    values = sys.modules.get("prometheus_client.values")
    if values is not None:
        values.ValueClass = values.get_value_class()


def run(options: ServeOptions, settings: Settings | None = None) -> None:
    """Serve until stopped (SIGINT/SIGTERM stop gracefully, flushing every worker)."""
    settings = settings or Settings.from_env()
    prom, secret = prepare_home(settings, options.port)
    _multiprocess_metrics(prom)
    if options.migrate:
        from data.store import Store

        store = Store(settings.database_url)
        try:
            store.upgrade()
        finally:
            store.dispose()
    app_config: dict[str, Any] = {"SECRET_KEY": secret}
    if options.poll_seconds is not None:
        app_config["MODEL_POLL_SECONDS"] = float(options.poll_seconds)
    gunicorn_options = {
        "bind": options.bind,
        "workers": options.workers,
        "threads": options.threads,
        "worker_class": "gthread" if options.threads > 1 else "sync",
        "timeout": options.timeout,
        "graceful_timeout": options.timeout,
        "keepalive": 5,
        "proc_name": "leadready",
        "control_socket": str(prom.parent / f"gunicorn-{options.port}.ctl"),
        "accesslog": "-" if options.access_log else None,
        "errorlog": "-",
        "loglevel": "info",
        "preload_app": False,
        "post_fork": gunicorn_conf.post_fork,
        "post_worker_init": gunicorn_conf.post_worker_init,
        "worker_exit": gunicorn_conf.worker_exit,
        "child_exit": gunicorn_conf.child_exit,
    }
    GunicornApp(gunicorn_options, app_config).run()
