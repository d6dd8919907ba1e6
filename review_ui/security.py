"""Security headers and cookie settings of the review UI's pages.

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

from flask import Flask, Response

__all__ = ["CONTENT_SECURITY_POLICY", "apply_headers", "configure_cookies"]

#: No inline scripts or styles, nothing from other origins, no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def apply_headers(response: Response, *, static: bool = False) -> Response:
    """Set the UI's security headers on ``response``.

    Pages are never cached (they show leads and who corrected them); static
    files keep Flask's caching.
    """
    headers = response.headers
    headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "same-origin"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
    if not static:
        headers["Cache-Control"] = "no-store"
    return response


def configure_cookies(app: Flask) -> None:
    """HttpOnly, SameSite=Lax session cookies; ``Secure`` from ``SESSION_COOKIE_SECURE``."""
    cfg = app.config
    cfg["SESSION_COOKIE_HTTPONLY"] = True
    cfg["SESSION_COOKIE_SAMESITE"] = "Lax"
    cfg.setdefault("SESSION_COOKIE_SECURE", False)
    cfg["REMEMBER_COOKIE_HTTPONLY"] = True
    cfg["REMEMBER_COOKIE_SAMESITE"] = "Lax"
    cfg["REMEMBER_COOKIE_SECURE"] = bool(cfg["SESSION_COOKIE_SECURE"])
    if cfg.get("SESSION_COOKIE_NAME") in (None, "session"):
        cfg["SESSION_COOKIE_NAME"] = "leadready_session"
