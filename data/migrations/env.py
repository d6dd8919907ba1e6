"""Alembic environment of the leadready store.

``Store.upgrade()`` runs the migrations on its own connection (passed in
``config.attributes["connection"]``), inside one transaction. For developers,
the same scripts run from Alembic's API with a URL, for instance to generate the
next revision against the ORM models in ``data.store``::

    from alembic import command
    from data.store import alembic_config

    cfg = alembic_config(url="sqlite:////tmp/dev.db")
    command.upgrade(cfg, "head")
    command.revision(cfg, "add lead owner", autogenerate=True)

Review generated scripts by hand: keep them free of imports from ``data`` (a
migration describes the schema as it was then) and use plain SQLAlchemy types.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import Connection

from data.store import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise RuntimeError(
            "no database: pass a connection (Store.upgrade), alembic_config(url=...) or -x url=..."
        )
    return url


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )


def run_migrations_offline() -> None:
    """Write the SQL to stdout instead of running it (``alembic upgrade --sql``)."""
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run on the caller's connection, or on a short-lived engine for the URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(_url(), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
