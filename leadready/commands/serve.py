"""``leadready serve``: the scoring API (and the review UI, when installed) under gunicorn."""

from __future__ import annotations

import logging
from typing import Any

import click

__all__ = ["serve"]


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--threads", default=4, show_default=True, type=click.IntRange(1, 256), help="Per worker."
)
@click.option(
    "--poll-seconds",
    type=click.FloatRange(min=0.05),
    help="How often each worker checks the champion alias (default 10).",
)
@click.option("--timeout", default=30, show_default=True, type=click.IntRange(1, 3600))
@click.option("--access-log/--no-access-log", default=False, show_default=True)
@click.option(
    "--migrate/--no-migrate",
    default=True,
    show_default=True,
    help="Apply the store's migrations before starting.",
)
def serve(**options: Any) -> None:
    """Serve the API under gunicorn; every worker follows the champion alias.

    State comes from LEADREADY_HOME, DATABASE_URL and MLFLOW_TRACKING_URI;
    LEADREADY_* variables set the app's other keys (LEADREADY_BATCH_LIMIT=500).
    \f
    ``options``: the options, named as ``ServeOptions``' fields.
    """
    from leadready.config import Settings
    from leadready.server import ServeOptions, run

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    run(ServeOptions(**options), Settings.from_env())
