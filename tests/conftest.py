"""Shared fixtures: a throwaway home, store URLs for SQLite and PostgreSQL."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from leadready.config import Settings

# Session-scoped fixtures with a tiny trained champion, shared by API and UI tests.
pytest_plugins = (
    ["tests.fixtures_model"] if (Path(__file__).parent / "fixtures_model.py").exists() else []
)

PG_URL = os.environ.get(
    "LEADREADY_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _pg_available(url: str) -> bool:
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return True
    except Exception:
        return False


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Settings for an empty home under pytest's tmp_path (SQLite store, SQLite MLflow)."""
    return Settings.for_home(tmp_path / "home")


@pytest.fixture(scope="session")
def pg_base_url() -> str:
    """The PostgreSQL server's URL. CI sets LEADREADY_REQUIRE_PG=1: absent is then a failure."""
    if not _pg_available(PG_URL):
        if os.environ.get("LEADREADY_REQUIRE_PG") == "1":
            pytest.fail(f"PostgreSQL is required but does not answer at {PG_URL}")
        pytest.skip(f"PostgreSQL does not answer at {PG_URL}")
    return PG_URL


@pytest.fixture
def pg_url(pg_base_url):
    """A fresh PostgreSQL schema for one test, dropped afterwards."""
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(pg_base_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'create schema "{schema}"'))
    sep = "&" if "?" in pg_base_url else "?"
    yield f"{pg_base_url}{sep}options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(sa.text(f'drop schema "{schema}" cascade'))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """Each store test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_url")
