"""Concurrent reviewers: 8 threads correcting the same few leads at once.

Half the threads are reps in the review UI (Flask test clients logged in as
different users, through the reclassify form: CSRF, role check, PRG), half are
CRM clients calling the store's ``add_correction`` directly (the path the API's
``POST /v1/leads/<id>/corrections`` uses). Afterwards:

* every acknowledged correction (the UI's 200 row partial, a returned row
  from the store) is stored exactly once, identified by its unique note;
* each lead's current stage is the newest correction's label;
* the audit history is complete: each row's old label is the previous row's
  new label (row locks serialise writers per lead);
* nothing answered 500; on SQLite a writer that cannot get the lock in time
  answers 503 (never a lost write).

SQLite runs in the normal suite with a small N; PostgreSQL runs 8 x 500 as a
``slow`` test.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from typing import Any

import pytest

from data.store import Store
from tests.support.review_ui import (  # noqa: F401  (fixtures)
    StubModel,
    prediction,
)

LEADS = [f"C{i}" for i in range(6)]
STAGES = ("awareness", "consideration", "decision", "purchase")
UI_THREADS = 4
API_THREADS = 4
DEADLINE_SECONDS = 600.0


def _seed(store: Store) -> None:
    store.upsert_leads(
        [
            {
                "lead_id": lead,
                "company": f"Co {lead}",
                "stage": "awareness",
                "persona": "practitioner",
            }
            for lead in LEADS
        ]
    )
    store.record_predictions(
        [prediction(lead, "consideration", 0.5, "decision", 0.3) for lead in LEADS]
    )
    for i in range(UI_THREADS):
        store.create_user(f"rep{i}", "rep", "correct horse battery")


def _app(url: str, home: str):
    import review_ui
    from leadready.app import create_app

    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret",
            "LEADREADY_HOME": home,
            "DATABASE_URL": url,
            "MODEL_SOURCE": (lambda uri: (StubModel(), StubModel(), "1"), lambda n, a: "1"),
            "MODEL_POLL_SECONDS": 3600,
            "RECORD_PREDICTIONS": False,
        }
    )
    review_ui.init_app(app)
    return app


def _login(app, name: str):
    from flask import session

    from review_ui import auth

    client = app.test_client()
    user = app.extensions["review_ui"].store().get_user_by_name(name)
    with app.test_request_context():
        assert auth.log_in(auth.ReviewUser.from_store(user))
        data = dict(session)
    with client.session_transaction() as sess:
        sess.update(data)
    html = client.get(f"/review/leads/{LEADS[0]}").get_data(as_text=True)
    token = re.search(r'<meta name="csrf-token" content="([^"]+)"', html).group(1)
    return client, token


def _plan(worker: int, n: int) -> list[tuple[str, str]]:
    """(lead, stage) pairs: every worker hits every lead, in a different order."""
    return [
        (LEADS[(i * 5 + worker) % len(LEADS)], STAGES[(i + worker) % len(STAGES)]) for i in range(n)
    ]


def _run(url: str, home: str, n: int) -> dict[str, Any]:
    app = _app(url, home)
    store = app.extensions["review_ui"].store()
    acked: list[str] = []
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + DEADLINE_SECONDS
    start = threading.Barrier(UI_THREADS + API_THREADS)

    def ui_worker(k: int) -> None:
        client, token = _login(app, f"rep{k}")
        start.wait(60)
        for i, (lead, stage) in enumerate(_plan(k, n)):
            if time.monotonic() > deadline:
                break
            note = f"ui-{k}-{i}"
            response = client.post(
                f"/review/leads/{lead}/reclassify",
                data={
                    "csrf_token": token,
                    "stage": stage,
                    "persona": "",
                    "reason": "wrong_title",
                    "note": note,
                    "expected_stage": "",
                    "expected_persona": "",
                    "prediction_id": "",
                },
                headers={"HX-Request": "true"},
            )
            with lock:
                statuses[response.status_code] += 1
                if response.status_code == 200:
                    acked.append(note)

    def api_worker(k: int) -> None:
        start.wait(60)
        for i, (lead, stage) in enumerate(_plan(UI_THREADS + k, n)):
            if time.monotonic() > deadline:
                break
            note = f"api-{k}-{i}"
            try:
                result = store.add_correction(
                    lead, "stage", stage, reviewer=f"crm{k}", note=note, source="api"
                )
            except Exception as exc:  # a failed write is allowed; a lost acknowledged one is not
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            with lock:
                acked.append(note)
                assert result.new_label == stage

    threads = [threading.Thread(target=ui_worker, args=(k,)) for k in range(UI_THREADS)]
    threads += [threading.Thread(target=api_worker, args=(k,)) for k in range(API_THREADS)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE_SECONDS + 60)
    elapsed = time.monotonic() - began
    assert not any(t.is_alive() for t in threads)

    rows = {lead: store.corrections_for(lead) for lead in LEADS}
    labels = {lead: store.labels_for(lead) for lead in LEADS}
    from serve.state import get_state

    get_state(app).close(timeout=1)
    store.dispose()
    return {
        "acked": acked,
        "statuses": statuses,
        "errors": errors,
        "rows": rows,
        "labels": labels,
        "elapsed": elapsed,
    }


def _check(out: dict[str, Any], n: int) -> None:
    statuses, errors = out["statuses"], out["errors"]
    assert 500 not in statuses, statuses
    assert set(statuses) <= {200, 503}, statuses
    assert all("locked" in e or "busy" in e.lower() for e in errors), errors[:5]
    stored = Counter(r["note"] for rows in out["rows"].values() for r in rows)
    assert all(count == 1 for count in stored.values()), stored.most_common(3)
    missing = [note for note in out["acked"] if note not in stored]
    assert not missing, missing[:10]
    # nearly everything gets through: retries absorb lock waits
    assert len(out["acked"]) >= 0.95 * (UI_THREADS + API_THREADS) * n
    for lead, rows in out["rows"].items():
        stage_rows = sorted((r for r in rows if r["field"] == "stage"), key=lambda r: r["id"])
        assert stage_rows, lead
        assert out["labels"][lead]["stage"] == stage_rows[-1]["new_label"], lead
        for before, after in zip(stage_rows, stage_rows[1:], strict=False):
            assert after["old_label"] == before["new_label"], (lead, before["id"], after["id"])
        assert stage_rows[0]["old_label"] == "consideration"  # the prediction's


@pytest.mark.slow
def test_concurrent_reviewers_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    store = Store(url)
    store.upgrade()
    _seed(store)
    store.dispose()
    n = 25
    out = _run(url, str(tmp_path / "home"), n)
    _check(out, n)


@pytest.mark.slow
@pytest.mark.postgres
def test_concurrent_reviewers_on_postgresql(pg_url, tmp_path):
    store = Store(pg_url)
    store.upgrade()
    _seed(store)
    store.dispose()
    n = 500
    out = _run(pg_url, str(tmp_path / "home"), n)
    _check(out, n)
