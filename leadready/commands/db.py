"""``leadready db``: apply and inspect the store's migrations.

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import click

from leadready.config import Settings

if TYPE_CHECKING:
    from data.store import Store

__all__ = ["db", "open_store"]


def _reason(exc: BaseException) -> str:
    """The driver's message when there is one (first line), else the exception's."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def open_store(settings: Settings | None = None, *, upgrade: bool = True) -> Iterator[Store]:
    """Open the store of ``settings`` (default: the environment), migrated first with ``upgrade``.

    Disposed of when the block ends; a database error is a ClickException.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from data.store import Store

    settings = settings or Settings.from_env()
    settings.ensure_home()
    try:
        store = Store(settings.database_url)
    except (SQLAlchemyError, ImportError) as exc:
        raise click.ClickException(f"cannot use the database URL: {_reason(exc)}") from None
    try:
        if upgrade:
            store.upgrade()
        yield store
    except SQLAlchemyError as exc:
        raise click.ClickException(f"database {store.url}: {_reason(exc)}") from None
    finally:
        store.dispose()


@click.group()
def db() -> None:
    """Database migrations: apply them (upgrade) or show where the database is (current)."""


@db.command()
def upgrade() -> None:
    """Apply every pending migration to the database in DATABASE_URL (or under LEADREADY_HOME)."""
    with open_store(upgrade=False) as store:
        before = store.current_revision()
        store.upgrade()
        after = store.current_revision()
        url = store.url
    if before == after:
        click.echo(f"{url}: already at revision {after} (head)")
    else:
        click.echo(f"{url}: upgraded from {before or 'an empty database'} to revision {after}")


@db.command()
@click.option("--check", is_flag=True, help="Exit with status 1 when migrations are pending.")
def current(check: bool) -> None:
    """Show the database's revision and the newest one this version of leadready knows."""
    with open_store(upgrade=False) as store:
        revision = store.current_revision()
        head = store.head_revision()
        url = store.url
    click.echo(f"database: {url}")
    click.echo(f"revision: {revision or 'none (empty database)'}")
    click.echo(f"head:     {head}")
    if revision == head:
        click.echo("up to date")
        return
    click.echo("migrations pending: run 'leadready db upgrade'")
    if check:
        raise SystemExit(1)
