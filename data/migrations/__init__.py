"""Alembic migrations of the leadready store (applied by ``Store.upgrade()``)."""
