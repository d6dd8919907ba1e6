"""API-key authentication: ``Authorization: Bearer <key>``.

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from serve.errors import STORE_RETRY_AFTER, ApiError, store_unavailable

__all__ = ["ADMIN_ROLE", "ApiKeyAuth", "Identity", "KeyVerifier", "Need"]

#: The role an API key needs for ``/v1/admin/*``.
ADMIN_ROLE = "admin"

#: What an endpoint needs: nothing, any valid key, or an admin key.
Need = Literal["none", "api_key", "admin"]

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="leadready"'}


class KeyVerifier(Protocol):
    """What auth needs from the store: ``verify_api_key(token) -> info | None``."""

    def verify_api_key(self, token: str) -> Any:
        """The key's ``(name, role, revoked)`` record, or ``None`` when unknown."""


@dataclass(frozen=True)
class Identity:
    """Who is calling: the API key's name and role."""

    name: str
    role: str


class ApiKeyAuth:
    """Checks bearer tokens against the store, with a short positive cache.

    An accepted key is trusted ``cache_seconds`` without asking the store (this bounds how late a
    revocation takes effect) and ``known_seconds`` after its last check while the store is
    unreachable; ``on_failure`` gets each rejection's reason, for metrics.
    """

    max_entries = 10_000

    def __init__(
        self,
        store: KeyVerifier,
        *,
        cache_seconds: float = 1.0,
        on_failure: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        known_seconds: float = 3600.0,
    ) -> None:
        self.store = store
        self.cache_seconds = float(cache_seconds)
        self.on_failure = on_failure or (lambda reason: None)
        self.clock = clock
        self._cache: dict[bytes, tuple[float, Identity]] = {}
        self._known: OrderedDict[bytes, tuple[float, Identity]] = OrderedDict()
        self.known_seconds = float(known_seconds)
        self._lock = threading.Lock()

    def authenticate(self, header: str | None, need: Need) -> Identity | None:
        """The caller's identity, or :class:`ApiError` 401/403.

        401 for a missing, malformed or unknown key; 403 for a revoked key and
        for a non-admin key on an admin endpoint.
        """
        if need == "none":
            return None
        token = _bearer_token(header)
        if token is None:
            self.on_failure("missing")
            raise ApiError(
                401,
                "Missing API key: send 'Authorization: Bearer <key>'",
                "Authorization",
                headers=_CHALLENGE,
            )
        identity = self._lookup(token)
        if need == ADMIN_ROLE and identity.role != ADMIN_ROLE:
            self.on_failure("forbidden")
            raise ApiError(403, "This endpoint needs an admin API key", "Authorization")
        return identity

    def clear(self) -> None:
        """Forget every cached key (the next request of each key asks the store)."""
        with self._lock:
            self._cache.clear()

    def _lookup(self, token: str) -> Identity:
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        now = self.clock()
        if self.cache_seconds > 0:
            hit = self._cache.get(digest)
            if hit is not None and hit[0] > now:
                return hit[1]
        try:
            info = self.store.verify_api_key(token)
        except Exception as exc:
            if not store_unavailable(exc):
                raise
            return self._known_during_outage(digest, now)
        if info is None:
            self.on_failure("invalid")
            raise ApiError(401, "Invalid API key", "Authorization", headers=_CHALLENGE)
        if getattr(info, "revoked", False):
            self.on_failure("revoked")
            raise ApiError(403, "This API key has been revoked", "Authorization")
        identity = Identity(name=str(info.name), role=str(info.role))
        with self._lock:
            if self.cache_seconds > 0:
                if len(self._cache) >= self.max_entries:
                    self._cache.clear()
                self._cache[digest] = (now + self.cache_seconds, identity)
            if self.known_seconds > 0:
                self._known[digest] = (now, identity)
                self._known.move_to_end(digest)
                while len(self._known) > self.max_entries:
                    self._known.popitem(last=False)
        return identity

    def _known_during_outage(self, digest: bytes, now: float) -> Identity:
        """A key verified within ``known_seconds``, or 503 + Retry-After (store unreachable)."""
        with self._lock:
            hit = self._known.get(digest)
            if hit is not None:
                self._known.move_to_end(digest)
        if hit is not None and now - hit[0] <= self.known_seconds:
            return hit[1]
        raise ApiError(
            503,
            "The key store is unavailable and this key has not been seen recently; retry shortly",
            None,
            headers={"Retry-After": STORE_RETRY_AFTER},
        )


def _bearer_token(header: str | None) -> str | None:
    scheme, _, token = (header or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 512:
        return None
    return token
