"""Who is logged in, and what they may do: Flask-Login sessions and roles.

Users live in the store (``Store.authenticate``, ``Store.get_user``); the session
keeps only the user's id and the login time. Every request reloads the user, so
a disabled user (or a changed role) takes effect on their next click.

Roles are ordered: a ``rep`` reviews and corrects leads; an ``analyst`` also
retrains and sees the models page; an ``admin`` also manages users.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar, cast

from flask import Flask, abort, current_app, session
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user

__all__ = [
    "ROLE_RANK",
    "ReviewUser",
    "has_role",
    "init_login",
    "log_in",
    "log_out",
    "role_required",
    "session_expired",
]

#: Roles from least to most allowed.
ROLE_RANK: dict[str, int] = {"rep": 1, "analyst": 2, "admin": 3}
_LOGIN_AT = "review_login_at"

F = TypeVar("F", bound=Callable[..., Any])


class ReviewUser(UserMixin):
    """The logged-in user as Flask-Login sees them (built from ``data.store.User``)."""

    def __init__(self, user_id: int, name: str, role: str, active: bool = True) -> None:
        self.id = int(user_id)
        self.name = name
        self.role = role
        self._active = bool(active)

    @classmethod
    def from_store(cls, user: Any) -> ReviewUser:
        """Wrap a ``data.store.User``."""
        return cls(user.id, user.name, user.role, user.active)

    @property
    def is_active(self) -> bool:  # type: ignore[override]
        """Disabled users cannot log in, and their sessions end."""
        return self._active

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
    return True


def log_out() -> None:
    """End the session."""
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
        return ReviewUser.from_store(user)

    manager.init_app(app)
    app.permanent_session_lifetime = _lifetime(app)
    return manager
