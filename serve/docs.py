"""``/docs`` (Swagger UI over ``/openapi.json``) and ``/`` (where to go from here).

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, redirect, render_template, url_for

from serve.errors import prefers

__all__ = ["SWAGGER_UI_DIR", "bp", "init_app"]

#: Swagger UI's distribution files, as the flask-swagger-ui package ships them.
SWAGGER_UI_DIR = str(files("flask_swagger_ui") / "dist")

#: Swagger UI draws with inline styles (React), and shows its own logo as data: images.
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)

bp = Blueprint("docs", __name__, template_folder="templates", static_folder=None)
_swagger = Blueprint(
    "swagger_ui", __name__, static_folder=SWAGGER_UI_DIR, static_url_path="/docs/swagger-ui"
)
_own = Blueprint(
    "docs_static", __name__, static_folder="static/docs", static_url_path="/docs/static"
)


@bp.get("/docs")
def docs() -> Any:
    """The interactive API page."""
    response = current_app.make_response(
        render_template("docs/swagger.html", spec_url=url_for("api.openapi"))
    )
    response.headers["Content-Security-Policy"] = DOCS_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/")
def index() -> Any:
    """Browsers go to the review UI; API clients get a JSON index."""
    has_ui = "review.queue" in current_app.view_functions
    if prefers("text/html"):
        return redirect(url_for("review.queue") if has_ui else url_for("docs.docs"))
    links = {
        "docs": url_for("docs.docs"),
        "openapi": url_for("api.openapi"),
        "score": "/v1/score",
        "score_batch": "/v1/score/batch",
        "model": "/v1/model",
        "health": "/healthz",
        "ready": "/readyz",
        "metrics": "/metrics",
    }
    if has_ui:
        links["review_ui"] = url_for("review.queue")
    return jsonify(
        {
            "service": "leadready",
            "description": "Buying stage and persona for B2B leads, with readiness, "
            "route and reasons.",
            "auth": "Authorization: Bearer <api key> (leadready apikey create)",
            "links": links,
        }
    )


def init_app(app: Flask) -> None:
    """Mount ``/docs``, Swagger UI's files and ``/``."""
    app.register_blueprint(bp)
    app.register_blueprint(_swagger)
    app.register_blueprint(_own)
