"""Who is logged in, and what they may do: Flask-Login sessions and roles.

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar, cast

from flask import Flask, Response, abort, current_app, render_template, request, session
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user

from data.values import count_words

_log = logging.getLogger(__name__)

__all__ = [
    "ROLE_RANK",
    "LoginLimiter",
    "ReviewUser",
    "has_role",
    "init_login",
    "init_login_limiter",
    "log_in",
    "log_out",
    "role_required",
    "session_expired",
]

#: Roles from least to most allowed.
ROLE_RANK: dict[str, int] = {"rep": 1, "analyst": 2, "admin": 3}
_LOGIN_AT = "review_login_at"
_GENERATION = "review_session_generation"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(eq=False)  # UserMixin's equality (by id) stays
class ReviewUser(UserMixin):
    """The logged-in user as Flask-Login sees them (built from ``data.store.User``)."""

    id: int
    name: str
    role: str
    active: bool = True
    generation: int = 0

    @classmethod
    def from_store(cls, user: Any) -> ReviewUser:
        """Wrap a ``data.store.User``."""
        generation = getattr(user, "session_generation", 0)
        return cls(int(user.id), user.name, user.role, bool(user.active), int(generation))

    @property
    def is_active(self) -> bool:  # type: ignore[override]
        """Disabled users cannot log in, and their sessions end."""
        return self.active

    def get_id(self) -> str:
        """The id Flask-Login keeps in the session."""
        return str(self.id)

    def can(self, role: str) -> bool:
        """True when this user's role is ``role`` or above."""
        return ROLE_RANK.get(self.role, 0) >= ROLE_RANK[role]


def has_role(user: Any, role: str) -> bool:
    """True when ``user`` is logged in with ``role`` or a higher one."""
    return bool(getattr(user, "is_authenticated", False)) and cast(ReviewUser, user).can(role)


def role_required(role: str) -> Callable[[F], F]:
    """A view decorator: log in first (redirect), then at least ``role`` (else 403)."""
    if role not in ROLE_RANK:
        raise ValueError(f"unknown role {role!r}; roles are {list(ROLE_RANK)}")

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                return current_app.login_manager.unauthorized()  # type: ignore[attr-defined]
            if not has_role(current_user, role):
                abort(403)
            return view(*args, **kwargs)

        return cast(F, wrapped)

    return decorate


def _lifetime(app: Flask) -> timedelta:
    return timedelta(hours=float(app.config["REVIEW_SESSION_HOURS"]))


def log_in(user: ReviewUser) -> bool:
    """Start a fresh session for ``user`` (any earlier session data is dropped)."""
    session.clear()
    if not login_user(user):
        return False
    session.permanent = True
    session[_LOGIN_AT] = int(time.time())
    session[_GENERATION] = user.generation
    return True


def log_out(store: Any | None = None) -> None:
    """End the session; with ``store``, end every copy of it on the server side too."""
    user = current_user
    if store is not None and getattr(user, "is_authenticated", False):
        store.end_sessions(cast(ReviewUser, user).name)
    logout_user()
    session.clear()


def session_expired() -> bool:
    """True when the session is older than ``REVIEW_SESSION_HOURS`` (absolute, not idle)."""
    started = session.get(_LOGIN_AT)
    if started is None:
        return False
    return time.time() - float(started) > _lifetime(current_app).total_seconds()


def init_login(app: Flask, load_store: Callable[[], Any]) -> LoginManager:
    """Set up Flask-Login on ``app``; users are loaded through ``load_store()``."""
    manager = LoginManager()
    manager.login_view = "review.login"
    manager.login_message = "Please log in to see this page."
    manager.login_message_category = "info"
    manager.session_protection = "strong"

    @manager.user_loader
    def load_user(user_id: str) -> ReviewUser | None:
        try:
            uid = int(user_id)
        except (TypeError, ValueError):
            return None
        user = load_store().get_user(uid)
        if user is None or not user.active:
            return None
        if session.get(_GENERATION, 0) != user.session_generation:
            return None  # logged out, password or role changed since this session began
        return ReviewUser.from_store(user)

    manager.init_app(app)
    app.permanent_session_lifetime = _lifetime(app)
    init_login_limiter(app)
    return manager


# ----------------------------------------------------------------- rate limiting

_LOGIN_ENDPOINT = "review.login"
_LIMITER = "review_login_limiter"


class LoginLimiter:
    """Failed logins in a sliding window, per user name and address, and per address.

    After ``max_per_user`` failures of one name from one address within ``window_seconds`` each
    attempt waits ``backoff_seconds``, doubled per failure (at most the window); after
    ``max_per_ip`` from one address it waits the window out. ``path``: a SQLite file shared by
    the host's processes (None: in memory, this process only).
    """

    def __init__(
        self,
        path: Path | None,
        *,
        max_per_user: int = 5,
        max_per_ip: int = 20,
        window_seconds: float = 900.0,
        backoff_seconds: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.backoff = float(backoff_seconds)
        self.max_per_user = int(max_per_user)
        self.max_per_ip = int(max_per_ip)
        self.window = float(window_seconds)
        self.clock = clock
        self._lock = threading.Lock()
        #: Without a file: one in-memory database, behind the lock.
        self._memory: sqlite3.Connection | None = None
        if path is None:
            self._memory = sqlite3.connect(
                ":memory:", check_same_thread=False, isolation_level=None
            )
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute(
                "create table if not exists login_failures (key text not null, at real not null)"
            )
            conn.execute(
                "create index if not exists login_failures_key on login_failures (key, at)"
            )

    @staticmethod
    def keys(name: str, address: str | None) -> tuple[str, str]:
        """The two counters an attempt touches: the user name's from this address, the address's."""
        return f"user:{name.strip().casefold()[:200]}|{address or '-'}", f"ip:{address or '-'}"

    def retry_after(self, name: str, address: str | None) -> int:
        """Seconds until another attempt is allowed (0: allowed now)."""
        pair_key, ip_key = self.keys(name, address)
        now = self.clock()
        waits = [0.0]
        times = self._recent(pair_key, now)
        if len(times) >= self.max_per_user:
            delay = min(self.backoff * 2 ** (len(times) - self.max_per_user), self.window)
            waits.append(times[-1] + delay - now)
        times = self._recent(ip_key, now)
        if len(times) >= self.max_per_ip:
            waits.append(times[-self.max_per_ip] + self.window - now)
        return int(max(waits) + 0.999)

    def failed(self, name: str, address: str | None) -> None:
        """Count a failed attempt against the name from this address, and the address."""
        now = self.clock()
        keys = self.keys(name, address)
        with self._connect() as conn:
            conn.executemany(
                "insert into login_failures (key, at) values (?, ?)", [(k, now) for k in keys]
            )
            conn.execute("delete from login_failures where at < ?", (now - self.window,))
        if len(self._recent(keys[0], now)) == self.max_per_user:
            _log.warning(
                "login: %d failed logins for user name %r from %s within %.0f s; "
                "further attempts from there now wait a growing delay",
                self.max_per_user,
                name.strip()[:200],
                address or "-",
                self.window,
            )

    def succeeded(self, name: str, address: str | None = None) -> None:
        """A correct password clears the name's failures from that address (not the address's)."""
        pair_key, _ = self.keys(name, address)
        with self._connect() as conn:
            conn.execute("delete from login_failures where key = ?", (pair_key,))

    def _recent(self, key: str, now: float) -> list[float]:
        with self._connect() as conn:
            rows = conn.execute(
                "select at from login_failures where key = ? and at > ? order by at",
                (key, now - self.window),
            ).fetchall()
        return [float(r[0]) for r in rows]

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """The file's connection in autocommit mode (closed after), or the in-memory one."""
        if self._memory is not None:
            with self._lock:
                yield self._memory
            return
        conn = sqlite3.connect(str(self.path), timeout=10.0, isolation_level=None)
        try:
            conn.execute("pragma journal_mode=wal")
            conn.execute("pragma busy_timeout=10000")
            yield conn
        finally:
            conn.close()


def _login_name() -> str:
    return str(request.form.get("name") or "")


def init_login_limiter(app: Flask) -> LoginLimiter:
    """Refuse logins past the failure limits with 429; count failures; delay each one."""
    existing = app.extensions.get(_LIMITER)
    if existing is not None:
        return existing
    cfg = app.config
    home = cfg.get("LEADREADY_HOME")
    limiter = LoginLimiter(
        Path(home) / "login_attempts.db" if home else None,
        max_per_user=int(cfg.setdefault("REVIEW_LOGIN_MAX_FAILURES", 5)),
        max_per_ip=int(cfg.setdefault("REVIEW_LOGIN_MAX_FAILURES_PER_IP", 20)),
        window_seconds=float(cfg.setdefault("REVIEW_LOGIN_WINDOW_SECONDS", 900)),
        backoff_seconds=float(cfg.setdefault("REVIEW_LOGIN_BACKOFF_SECONDS", 30)),
    )
    cfg.setdefault("REVIEW_LOGIN_FAILURE_DELAY", 0.3)
    app.extensions[_LIMITER] = limiter

    @app.before_request
    def _refuse_when_limited() -> Any:
        if request.endpoint != _LOGIN_ENDPOINT or request.method != "POST":
            return None
        wait = limiter.retry_after(_login_name(), request.remote_addr)
        if wait <= 0:
            return None
        minutes = max(1, round(wait / 60))
        html = render_template(
            "review/error.html",
            code=429,
            title="Too many login attempts",
            message=(
                "Too many failed logins for this user name from this address. "
                f"Try again in about {count_words(minutes, 'minute')}, "
                "or ask an admin to reset your password."
            ),
        )
        return Response(html, status=429, headers={"Retry-After": str(wait)})

    @app.after_request
    def _count_attempt(response: Response) -> Response:
        if request.endpoint != _LOGIN_ENDPOINT or request.method != "POST":
            return response
        if response.status_code == 401:
            limiter.failed(_login_name(), request.remote_addr)
            delay = float(current_app.config["REVIEW_LOGIN_FAILURE_DELAY"])
            if delay > 0:
                time.sleep(delay)
        elif response.status_code in (302, 303):
            limiter.succeeded(_login_name(), request.remote_addr)
        return response

    return limiter
