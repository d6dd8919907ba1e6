"""WSGI entry for servers other than ``leadready serve``: ``gunicorn leadready.wsgi:app``.

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

from leadready.app import create_app

__all__ = ["app"]

app = create_app()
