"""Accounts: review UI users (argon2id password hashes, roles, sessions) and API keys (SHA-256)."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from data.store.base import StoreBase, _first
from data.store.checks import _choice, _req_str
from data.store.tables import (
    _API_KEYS,
    _NAME_MAX,
    _PASSWORD_MAX,
    _USERS,
    API_KEY_PREFIX,
    API_KEY_ROLES,
    USER_ROLES,
)
from data.text import name_skeleton, user_name_problem
from data.values import utc_now

#: A user's next session generation: bumped, every open session of theirs ends.
_NEXT_GENERATION = _USERS.c.session_generation + 1


@dataclass(frozen=True)
class User:
    """A review UI user (never carries the password hash)."""

    id: int
    name: str
    role: str
    active: bool
    created_at: datetime
    #: Sessions started under another generation have ended (logout, password, role).
    session_generation: int = 0


@dataclass(frozen=True)
class ApiKeyInfo:
    """An API key as callers may see it: never the key itself.

    Callers answer 401 for an unknown key and 403 for a revoked one.
    """

    name: str
    role: str
    revoked: bool
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class AccountsRoom(StoreBase):
    """Who may use leadready: review UI users and API keys."""

    def _user(self, row: Mapping[str, Any]) -> User:
        generation = int(row.get("session_generation") or 0)
        names = ("id", "name", "role", "created_at")
        return User(
            active=bool(row["active"]), session_generation=generation, **{n: row[n] for n in names}
        )

    @staticmethod
    def _password(password: str) -> str:
        if not isinstance(password, str) or not password:
            raise ValueError("the password must not be empty")
        if len(password) > _PASSWORD_MAX:
            raise ValueError(f"the password is longer than {_PASSWORD_MAX} characters")
        return password

    @staticmethod
    def _user_name(name: str) -> str:
        text = _req_str(name, "user name", _NAME_MAX)
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
            raise ValueError("user name: control characters are not allowed")
        problem = user_name_problem(text)
        if problem is not None:
            raise ValueError(f"user name {text!r}: {problem}")
        if text.startswith("ext:"):
            raise ValueError("user name: 'ext:' marks reviewers named by API clients")
        return text

    def create_user(self, name: str, role: str, password: str) -> User:
        """Add a review UI user with an argon2id password hash; ``ValueError`` for a role outside
        :data:`USER_ROLES`, a name already taken, an empty name or password.
        """
        name = self._user_name(name)
        role = _choice(role, "role", USER_ROLES)
        skeleton = name_skeleton(name)
        for other in self.list_users():
            if other.name != name and name_skeleton(other.name) == skeleton:
                raise ValueError(f"user name {name!r} looks like the existing user {other.name!r}")
        password_hash = self._hasher.hash(self._password(password))
        values = {
            "name": name,
            "role": role,
            "password_hash": password_hash,
            "created_at": utc_now(),
            "active": True,
        }

        def work(conn: Connection) -> User:
            new_id = conn.execute(sa.insert(_USERS).returning(_USERS.c.id), values).scalar_one()
            return self._user({**values, "id": new_id})

        try:
            return self._write(work)
        except IntegrityError:
            raise ValueError(f"a user named {name!r} already exists") from None

    def _user_row(self, name: str) -> Mapping[str, Any] | None:
        return self._read_first(sa.select(_USERS).where(_USERS.c.name == name))

    def authenticate(self, name: str, password: str) -> User | None:
        """The active user with this name and password, else None.

        Unknown and disabled users cost the same argon2 verification as known ones
        (no timing hint about which names exist). A hash made with weaker
        parameters than the current ones is replaced on success.
        """
        if not isinstance(name, str) or not isinstance(password, str) or not password:
            return None
        row = self._user_row(name.strip())
        if row is None or not row["active"]:
            if self._dummy_hash is None:
                self._dummy_hash = self._hasher.hash(secrets.token_hex(16))
            with contextlib.suppress(VerificationError):
                self._hasher.verify(self._dummy_hash, password)
            return None
        try:
            self._hasher.verify(row["password_hash"], password)
        except (VerificationError, InvalidHashError):
            return None
        if self._hasher.check_needs_rehash(row["password_hash"]):
            new_hash = self._hasher.hash(password)
            self._write(
                lambda conn: conn.execute(
                    sa.update(_USERS)
                    .where(
                        _USERS.c.id == row["id"],
                        _USERS.c.password_hash == row["password_hash"],
                    )
                    .values(password_hash=new_hash)
                )
            )
        return self._user(row)

    def get_user(self, user_id: int) -> User | None:
        """The user with this id (active or not), or None."""
        row = self._read_first(sa.select(_USERS).where(_USERS.c.id == user_id))
        return None if row is None else self._user(row)

    def get_user_by_name(self, name: str) -> User | None:
        """The user with this name (active or not), or None."""
        row = self._user_row(name)
        return None if row is None else self._user(row)

    def list_users(self) -> list[User]:
        """Every user, by name."""
        return [self._user(row) for row in self._read(sa.select(_USERS).order_by(_USERS.c.name))]

    def _update_user(self, name: str, **values: Any) -> User:
        def work(conn: Connection) -> User:
            row = _first(
                conn,
                sa.update(_USERS)
                .where(_USERS.c.name == name)
                .values(**values)
                .returning(*_USERS.c),
            )
            if row is None:
                raise KeyError(f"no user named {name!r}")
            return self._user(row)

        return self._write(work)

    def set_password(self, name: str, password: str) -> User:
        """Replace a user's password; ``KeyError`` for no such user, ``ValueError`` for an empty
        password.
        """
        hashed = self._hasher.hash(self._password(password))
        return self._update_user(name, password_hash=hashed, session_generation=_NEXT_GENERATION)

    def set_role(self, name: str, role: str) -> User:
        """Change a user's role; their open sessions end (they log in again). ``KeyError`` for no
        such user, ``ValueError`` for a role outside :data:`USER_ROLES`.
        """
        role = _choice(role, "role", USER_ROLES)
        return self._update_user(name, role=role, session_generation=_NEXT_GENERATION)

    def end_sessions(self, name: str) -> User:
        """End every session of a user, on every server (logout; a stolen cookie); ``KeyError``
        for no such user.
        """
        return self._update_user(name, session_generation=_NEXT_GENERATION)

    def deactivate_user(self, name: str) -> User:
        """Disable a user: they can no longer log in; the row (and history) stays. ``KeyError``
        for no such user.
        """
        return self._update_user(name, active=False)

    # ----------------------------------------------------------------- API keys

    @staticmethod
    def _key_hash(token: str) -> str:
        return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()

    @staticmethod
    def _key_info(row: Mapping[str, Any]) -> ApiKeyInfo:
        names = ("name", "role", "prefix", "created_at", "revoked_at")
        return ApiKeyInfo(revoked=row["revoked_at"] is not None, **{n: row[n] for n in names})

    def create_api_key(self, name: str, role: str = "client") -> str:
        """Create an API key and return it: the only time the key is available.

        Only its SHA-256 (a key is 32 random bytes, so a fast hash is enough, and a request's
        key is found by an index lookup on the hash) and its first ten characters (to
        recognise it in listings) are stored. ``ValueError`` for a role outside
        :data:`API_KEY_ROLES`, an empty or taken name.
        """
        name = self._user_name(name)
        role = _choice(role, "role", API_KEY_ROLES)
        token = API_KEY_PREFIX + secrets.token_urlsafe(32)
        values = {
            "name": name,
            "prefix": token[:10],
            "key_hash": self._key_hash(token),
            "role": role,
            "created_at": utc_now(),
            "revoked_at": None,
        }
        try:
            self._write(lambda conn: conn.execute(sa.insert(_API_KEYS), values))
        except IntegrityError:
            raise ValueError(f"an API key named {name!r} already exists") from None
        return token

    def verify_api_key(self, token: str) -> ApiKeyInfo | None:
        """The key's name, role and revocation, or None for an unknown key."""
        if not isinstance(token, str) or not token or len(token) > 512:
            return None
        row = self._read_first(
            sa.select(_API_KEYS).where(_API_KEYS.c.key_hash == self._key_hash(token))
        )
        return None if row is None else self._key_info(row)

    def revoke_api_key(self, name: str) -> ApiKeyInfo:
        """Revoke a key by name (idempotent: the first revocation time is kept); ``KeyError``
        for no key with this name.
        """

        def work(conn: Connection) -> ApiKeyInfo:
            conn.execute(
                sa.update(_API_KEYS)
                .where(_API_KEYS.c.name == name, _API_KEYS.c.revoked_at.is_(None))
                .values(revoked_at=utc_now())
            )
            row = _first(conn, sa.select(_API_KEYS).where(_API_KEYS.c.name == name))
            if row is None:
                raise KeyError(f"no API key named {name!r}")
            return self._key_info(row)

        return self._write(work)

    def list_api_keys(self) -> list[ApiKeyInfo]:
        """Every key (revoked ones too), by name; never the keys themselves."""
        rows = self._read(sa.select(_API_KEYS).order_by(_API_KEYS.c.name))
        return [self._key_info(row) for row in rows]
