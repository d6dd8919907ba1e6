"""The review UI's test app: a template store with users and scored leads, the app built
on a copy of it, logged-in clients.

Fixtures, named for what a test asks for (import the functions a module uses, e.g.
``from tests.support.review_ui import review_app, review_client  # noqa: F401``):
``template_db`` (``review_template_db``; session: a migrated
store with users, six scored leads and some events; argon2 is slow on purpose, so users
are made once), ``app`` (``review_app``: the real app with the UI, on a copy of the template, a stub
model source: no MLflow), ``store`` (``review_store``), ``client`` (``review_client``),
``rep`` (``rep_client``: a client logged in as rep1).
"""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import session

import review_ui
from data.store import Store
from review_ui import auth

__all__ = [
    "NOW",
    "PASSWORD",
    "PERSONAS",
    "STAGES",
    "USERS",
    "StubModel",
    "close_app",
    "csrf",
    "login",
    "make_review_app",
    "prediction",
    "quick_retrain",
    "reclassify",
    "rep_client",
    "review_app",
    "review_client",
    "review_store",
    "review_template_db",
]

PASSWORD = "correct horse battery"
USERS = {"rep1": "rep", "rep2": "rep", "ana": "analyst", "boss": "admin", "gone": "rep"}
NOW = datetime.now(UTC)


def _probs(top: str, p_top: float, second: str, p_second: float, labels: tuple[str, ...]):
    out = dict.fromkeys(labels, (1.0 - p_top - p_second) / (len(labels) - 2))
    out[top], out[second] = p_top, p_second
    return out


STAGES = ("awareness", "consideration", "decision", "purchase")
PERSONAS = ("economic_buyer", "technical_evaluator", "practitioner", "non_buyer")


def prediction(lead_id: str, stage: str, p: float, second: str, q: float, **extra: Any) -> dict:
    stage_probs = _probs(stage, p, second, q, STAGES)
    persona_probs = _probs("economic_buyer", 0.7, "practitioner", 0.2, PERSONAS)
    row = {
        "lead_id": lead_id,
        "model_name": "lead-readiness",
        "model_version": "1",
        "source": "batch",
        "created_at": NOW - timedelta(hours=1),
        "stage": stage,
        "stage_confidence": p,
        "stage_margin": p - q,
        "persona": "economic_buyer",
        "persona_confidence": 0.7,
        "persona_margin": 0.5,
        "probabilities": {"stage": stage_probs, "persona": persona_probs},
        "readiness": stage_probs["decision"] + stage_probs["purchase"],
        "route": "sales" if stage in ("decision", "purchase") else "nurture",
        "reasons": {
            "stage": [
                {
                    "feature": "demo_requests_30d",
                    "text": "Asked for a demo 3 days ago",
                    "weight": 0.9,
                },
                {"feature": "student", "text": "Title says student", "weight": -0.2},
            ]
        },
    }
    row.update(extra)
    return row


@pytest.fixture(scope="session", name="template_db")
def review_template_db(tmp_path_factory) -> Path:
    """A migrated store with users, six scored leads and some events."""
    path = tmp_path_factory.mktemp("review-template") / "leadready.db"
    store = Store(f"sqlite:///{path}")
    store.upgrade()
    for name, role in USERS.items():
        store.create_user(name, role, PASSWORD)
    store.deactivate_user("gone")
    store.upsert_leads(
        [
            {
                "lead_id": f"L{i}",
                "company": company,
                "job_title": "VP Engineering",
                "country": "DE",
                "stage": "awareness",
                "persona": "economic_buyer",
            }
            for i, company in enumerate(
                ["Acme <b>bold</b>", "Globex", "Initech", "Umbrella", "Hooli", "Stark"], start=1
            )
        ]
    )
    store.add_events(
        [
            {"lead_id": "L1", "timestamp": NOW - timedelta(days=d), "type": kind}
            for d, kind in [
                (1, "page_view"),
                (2, "page_view"),
                (3, "demo_request"),
                (20, "email_open"),
            ]
        ]
    )
    store.record_predictions(
        [
            prediction("L1", "decision", 0.46, "consideration", 0.44),
            prediction("L2", "consideration", 0.6, "awareness", 0.3),
            prediction("L3", "awareness", 0.8, "consideration", 0.1),
            prediction("L4", "purchase", 0.5, "decision", 0.3),
            prediction("L5", "awareness", 0.9, "consideration", 0.05),
            prediction("L6", "consideration", 0.7, "decision", 0.2),
        ]
    )
    with store.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    store.dispose()
    return path


def quick_retrain(*, store, actor, progress):
    progress("done", 1.0)
    return {"version": "2", "promoted": False}


class StubModel:
    """What the model holder loads in these tests: nothing is scored here."""


def make_review_app(tmp_path: Path, template: Path, **config: Any):
    from leadready.app import create_app

    db = tmp_path / "leadready.db"
    shutil.copyfile(template, db)
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret",
            "LEADREADY_HOME": str(tmp_path / "home"),
            "DATABASE_URL": f"sqlite:///{db}",
            "MODEL_SOURCE": (lambda uri: (StubModel(), StubModel(), "1"), lambda n, a: "1"),
            "MODEL_POLL_SECONDS": 3600,
            "RECORD_PREDICTIONS": False,
            "LEADREADY_RETRAIN": quick_retrain,
            **config,
        }
    )
    review_ui.init_app(app)
    return app


@pytest.fixture(name="app")
def review_app(tmp_path, template_db):
    app = make_review_app(tmp_path, template_db)
    yield app
    close_app(app)


def close_app(app) -> None:
    from serve.state import get_state

    app.extensions["review_ui"].jobs.join(10)
    state = get_state(app)
    state.close(timeout=1)
    state.store.dispose()


@pytest.fixture(name="store")
def review_store(app) -> Store:
    return app.extensions["review_ui"].store()


@pytest.fixture(name="client")
def review_client(app):
    return app.test_client()


def login(app, client, name: str) -> None:
    """Log ``name`` in through the UI's own ``log_in`` (no argon2 round per test)."""
    user = app.extensions["review_ui"].store().get_user_by_name(name)
    with app.test_request_context(environ_base=client.environ_base):
        assert auth.log_in(auth.ReviewUser.from_store(user))
        data = dict(session)
    with client.session_transaction() as sess:
        sess.update(data)


def csrf(client, path: str = "/review/") -> str:
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


@pytest.fixture(name="rep")
def rep_client(app, client):
    login(app, client, "rep1")
    return client


def reclassify(client, lead_id: str, **fields: str):
    data = {
        "csrf_token": csrf(client, f"/review/leads/{lead_id}"),
        "stage": "",
        "persona": "",
        "reason": "wrong_title",
        "note": "",
        "expected_stage": "",
        "expected_persona": "",
        "prediction_id": "",
        "next": f"/review/leads/{lead_id}",
    }
    data.update(fields)
    return client.post(f"/review/leads/{lead_id}/reclassify", data=data)
