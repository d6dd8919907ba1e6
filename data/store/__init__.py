"""The store: leads, events, predictions, reps' corrections, users and API keys in one
database (a SQLite file, or PostgreSQL for anything shared), behind one :class:`Store`
whose methods open their own connections and return plain dicts or frozen dataclasses.
Each room is its own module (tables, leads, predictions, corrections, accounts, and the
review queue's upkeep); docs/design/data.md says how they fit together."""

from __future__ import annotations

from data.store.accounts import AccountsRoom, ApiKeyInfo, User
from data.store.base import StoreBase, alembic_config
from data.store.corrections import CorrectionResult, CorrectionsRoom
from data.store.leads import LeadsRoom, event_id_of
from data.store.predictions import PredictionsRoom
from data.store.tables import (
    API_KEY_PREFIX,
    API_KEY_ROLES,
    CORRECTION_FIELDS,
    CORRECTION_KINDS,
    CORRECTION_SOURCES,
    MIGRATIONS_DIR,
    PREDICTION_SOURCES,
    USER_ROLES,
    ApiKeyRow,
    Base,
    CorrectionRow,
    EventRow,
    LeadRow,
    PredictionRow,
    QueueRow,
    SuggestionRow,
    SuggestionSetRow,
    UserRow,
    UTCDateTime,
)

__all__ = [
    "API_KEY_PREFIX",
    "API_KEY_ROLES",
    "CORRECTION_FIELDS",
    "CORRECTION_KINDS",
    "CORRECTION_SOURCES",
    "MIGRATIONS_DIR",
    "PREDICTION_SOURCES",
    "USER_ROLES",
    "ApiKeyInfo",
    "ApiKeyRow",
    "Base",
    "CorrectionResult",
    "CorrectionRow",
    "EventRow",
    "LeadRow",
    "PredictionRow",
    "QueueRow",
    "Store",
    "SuggestionRow",
    "SuggestionSetRow",
    "User",
    "UserRow",
    "UTCDateTime",
    "alembic_config",
    "event_id_of",
]


class Store(LeadsRoom, PredictionsRoom, CorrectionsRoom, AccountsRoom, StoreBase):
    """The leadready database: one engine, plain methods, sessions managed inside.

    ``url``: ``sqlite:///path/to/file.db`` (the folder is created) or
    ``postgresql+psycopg://user@host/db`` (a ``search_path`` in its ``options`` puts every
    table in that schema); ``pool_size``/``max_overflow`` size the pool; ``echo`` logs SQL;
    ``password_hasher`` defaults to argon2-cffi's argon2id. Call :meth:`upgrade` once before
    use; share it between threads; :meth:`dispose` it when done (or use ``with``).
    """
