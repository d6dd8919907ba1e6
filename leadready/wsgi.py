"""WSGI entry for servers other than ``leadready serve``: ``gunicorn leadready.wsgi:app``.

Configured from the environment (``LEADREADY_HOME``, ``DATABASE_URL``,
``MLFLOW_TRACKING_URI``, ``LEADREADY_*``). With gunicorn, add
``-c python:leadready.gunicorn_conf`` for the worker hooks (model loader started
after the fork, predictions flushed on worker exit, metrics of dead workers
cleaned up).
"""

from __future__ import annotations

from leadready.app import create_app

__all__ = ["app"]

app = create_app()
