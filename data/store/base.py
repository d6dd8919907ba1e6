"""The store's engine: connections, write transactions with retries, bulk inserts, migrations."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlalchemy import event
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError

from data.store.checks import _json_dumps
from data.store.tables import (
    _CHUNK,
    _PG_CONNECT_TIMEOUT_S,
    _SQLITE_BUSY_TIMEOUT_MS,
    _SQLITE_CACHE_KIB,
    _WRITE_RETRIES,
    MIGRATIONS_DIR,
)
from data.values import chunks

if TYPE_CHECKING:
    from alembic.config import Config

T = TypeVar("T")


def _safe_url(url: URL) -> str:
    return url.render_as_string(hide_password=True)


# ---------------------------------------------------------------- engine set-up


def _install_sqlite_listeners(engine: Engine) -> None:
    """WAL, foreign keys, a busy timeout and a 32 MiB page cache on every connection;
    ``BEGIN IMMEDIATE`` for connections with the ``leadready_write`` option, plain
    ``BEGIN`` otherwise (pysqlite's own transaction handling is off: docs/design/data.md).
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute(f"PRAGMA cache_size = -{_SQLITE_CACHE_KIB}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("leadready_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _sqlite_file(url: URL) -> Path | None:
    database = url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def _retryable(exc: DBAPIError) -> bool:
    """SQLite lock contention, PostgreSQL serialization failures and deadlocks."""
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in ("40001", "40P01"):
        return True
    message = str(orig).lower()
    return "database is locked" in message or "database is busy" in message


def _copy(
    conn: Connection,
    copy: str,
    rows: Iterable[Sequence[Any]],
    *,
    before: Sequence[str] = (),
    after: Sequence[str] = (),
) -> None:
    """``rows`` sent by the ``COPY … FROM STDIN`` statement ``copy`` through psycopg 3, on
    one cursor with the ``before`` and ``after`` statements; psycopg's errors are wrapped as
    SQLAlchemy would wrap them (``IntegrityError``, …)."""
    dbapi_error = conn.dialect.loaded_dbapi.Error
    cursor = conn.connection.driver_connection.cursor()
    statement = copy
    try:
        for statement in before:
            cursor.execute(statement)
        statement = copy
        with cursor.copy(statement) as writer:
            for row in rows:
                writer.write_row(row)
        for statement in after:
            cursor.execute(statement)
    except dbapi_error as exc:
        raise DBAPIError.instance(statement, None, exc, dbapi_error) from exc
    finally:
        cursor.close()


def _first(conn: Connection, stmt: Any) -> Any:
    """The first row of ``stmt`` as a mapping, or None."""
    return conn.execute(stmt).mappings().first()


def _newest(table: sa.Table, ids: Sequence[str] | None, *group: str) -> Any:
    """A subquery of the newest ``id`` of ``table`` per ``group`` (of the lead ``ids``, or all)."""
    newest = sa.select(sa.func.max(table.c.id).label("id")).group_by(*(table.c[g] for g in group))
    if ids is not None:
        newest = newest.where(table.c.lead_id.in_(ids))
    return newest.subquery()


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic ``Config`` built in code (no ini file, any working directory) whose
    ``script_location`` is :data:`MIGRATIONS_DIR`: on an open ``connection`` (what
    :meth:`Store.upgrade` passes), or for a ``url`` (``revision --autogenerate``,
    ``history`` outside a ``Store``).
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


class StoreBase:
    """One engine for a database URL and the transactions every room of the store uses."""

    def __init__(
        self,
        url: str | URL,
        *,
        pool_size: int | None = None,
        max_overflow: int | None = None,
        echo: bool = False,
        password_hasher: PasswordHasher | None = None,
    ) -> None:
        self._url = make_url(url)
        kwargs: dict[str, Any] = {"echo": echo, "json_serializer": _json_dumps}
        pool = {"pool_size": pool_size, "max_overflow": max_overflow}
        kwargs.update({name: value for name, value in pool.items() if value is not None})
        self._sqlite = self._url.get_backend_name() == "sqlite"
        if self._sqlite:
            path = _sqlite_file(self._url)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                # Created private (0600): the file holds password and API-key hashes.
                # SQLite gives its -wal and -shm files the database file's mode.
                path.touch(mode=0o600, exist_ok=True)
        else:
            kwargs["pool_pre_ping"] = True
            if "connect_timeout" not in self._url.query:
                # An unreachable server fails a connect in seconds, not at the TCP timeout.
                kwargs["connect_args"] = {"connect_timeout": _PG_CONNECT_TIMEOUT_S}
        self._engine = sa.create_engine(self._url, **kwargs)
        if self._sqlite:
            _install_sqlite_listeners(self._engine)
        self._write_engine = self._engine.execution_options(leadready_write=True)
        self._hasher = password_hasher or PasswordHasher()
        self._dummy_hash: str | None = None

    def __repr__(self) -> str:
        return f"Store({_safe_url(self._url)!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.dispose()

    @property
    def url(self) -> str:
        """The database URL with any password hidden (for messages and logs)."""
        return _safe_url(self._url)

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for health checks and tests; prefer the methods)."""
        return self._engine

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    def dispose(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    # ----------------------------------------------------------- transactions

    def _write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one write transaction, retrying lock contention, serialization
        failures and deadlocks a few times with jittered backoff (rolled back before a
        retry, so a write lands exactly once).
        """
        for attempt in range(_WRITE_RETRIES):
            try:
                with self._write_engine.begin() as conn:
                    return work(conn)
            except DBAPIError as exc:
                if attempt == _WRITE_RETRIES - 1 or not _retryable(exc):
                    raise
                time.sleep(0.02 * 2**attempt * (1 + random.random()))
        raise AssertionError("unreachable")

    def _bulk_insert(
        self, conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]
    ) -> None:
        """Append rows that all carry the same keys, values already checked: ``COPY … FROM
        STDIN`` on PostgreSQL through psycopg 3 (JSON columns as JSON text), else an executemany.
        """
        if not rows:
            return
        if conn.dialect.driver != "psycopg":
            conn.execute(sa.insert(table), list(rows))
            return
        names = list(rows[0])
        json_names = {n for n in names if isinstance(table.c[n].type, sa.JSON)}
        quoted = ", ".join(conn.dialect.identifier_preparer.quote(n) for n in names)
        target = conn.dialect.identifier_preparer.format_table(table)
        values = (
            [
                _json_dumps(row[n]) if n in json_names and row[n] is not None else row[n]
                for n in names
            ]
            for row in rows
        )
        _copy(conn, f"COPY {target} ({quoted}) FROM STDIN", values)

    def _insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT (with ON CONFLICT support)."""
        return (sqlite_dialect if self._sqlite else pg_dialect).insert(table)

    def _reserve_ids(self, conn: Connection, table: sa.Table, n: int) -> list[int]:
        """``n`` new ascending ids of ``table`` (so a bulk insert knows its rows' ids).

        PostgreSQL draws them from the column's sequence; on SQLite the write
        transaction holds the database lock, so the ids after the largest are free.
        """
        if self._sqlite:
            start = conn.execute(sa.select(sa.func.max(table.c.id))).scalar() or 0
            return list(range(start + 1, start + 1 + n))
        ids = conn.execute(
            sa.text("SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"),
            {"t": table.name, "n": n},
        ).scalars()
        return sorted(ids)

    # ------------------------------------------------------------------ queries

    def _read(self, stmt: Any) -> list[Any]:
        """Every row of ``stmt`` as a mapping, read on a connection of its own."""
        with self._engine.connect() as conn:
            return list(conn.execute(stmt).mappings())

    def _read_first(self, stmt: Any) -> Any:
        """The first row of ``stmt`` as a mapping, or None."""
        with self._engine.connect() as conn:
            return _first(conn, stmt)

    def _read_by_ids(
        self, query: Callable[[Sequence[str] | None], Any], ids: Iterable[str] | None
    ) -> list[Any]:
        """The rows of ``query(None)`` (no ids: all), else of ``query(chunk)`` for each
        chunk of the distinct ``ids`` in order, on one connection."""
        if ids is None:
            statements = [query(None)]
        else:
            statements = [query(chunk) for chunk in chunks(sorted(set(ids)), _CHUNK)]
        with self._engine.connect() as conn:
            return [row for stmt in statements for row in conn.execute(stmt).mappings()]

    def _among(self, column: Any, ids: Sequence[str]) -> Any:
        """``column IN ids`` as one parameter (a JSON array on SQLite, an array on PostgreSQL).

        A 5000-id ``IN (…)`` list costs more to render and parse than to run.
        """
        if self._sqlite:
            values = sa.func.json_each(sa.literal(json.dumps(list(ids)))).table_valued("value")
            return column.in_(sa.select(values.c.value))
        return column == sa.any_(sa.literal(list(ids), type_=pg_dialect.ARRAY(sa.String())))

    # ------------------------------------------------------------------ schema

    def upgrade(self, revision: str = "head") -> None:
        """Apply the Alembic migrations up to ``revision`` (idempotent).

        On PostgreSQL an advisory lock per schema makes concurrent upgrades (many
        workers starting at once) wait for each other instead of colliding.
        """
        from alembic import command

        with self._write_engine.begin() as conn:
            if not self._sqlite:
                lock = "SELECT pg_advisory_xact_lock(hashtext('leadready:migrate:' || current_schema()))"
                conn.execute(sa.text(lock))
            command.upgrade(alembic_config(conn), revision)

    def current_revision(self) -> str | None:
        """The revision the database is at (None before the first upgrade)."""
        from alembic.runtime.migration import MigrationContext

        with self._engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def head_revision(self) -> str | None:
        """The newest revision the code knows."""
        from alembic.script import ScriptDirectory

        return ScriptDirectory.from_config(alembic_config()).get_current_head()

    def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            with self._engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except DBAPIError:
            return False
        return True
