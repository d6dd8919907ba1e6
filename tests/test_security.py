"""Access control, secrets at rest, login rate limiting, CSRF, escaping, headers, SQL injection.

Covered elsewhere and not repeated here:

* a revoked API key is refused on the next request: ``test_api_auth.py``
  (``test_revocation_takes_effect_on_the_next_request``), and by every gunicorn
  worker within the cache bound: ``test_api_gunicorn.py``;
* the session ends after ``REVIEW_SESSION_HOURS`` and a disabled user is logged
  out on the next click: ``test_review_ui.py``;
* a stored ``<script>`` in a note never runs in a real browser: ``test_browser.py``.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from data.store import Store
from review_ui.auth import LoginLimiter
from tests.support.review_ui import (  # noqa: F401  (fixtures)
    PASSWORD,
    close_app,
    csrf,
    login,
    make_review_app,
    reclassify,
    review_template_db,
)

INJECTIONS = [
    "'; DROP TABLE leads; --",
    "Robert'); DELETE FROM corrections; --",
    "x' OR '1'='1",
    '" OR ""="',
    "%' UNION SELECT password_hash FROM users --",
    "1; UPDATE users SET role='admin' --",
    "\\'; SELECT pg_sleep(5); --",
    "<script>alert('x')</script>",
]

TABLES = ("leads", "events", "predictions", "corrections", "users", "api_keys")


@pytest.fixture
def app(tmp_path, template_db):
    app = make_review_app(tmp_path, template_db, REVIEW_LOGIN_FAILURE_DELAY=0)
    yield app
    close_app(app)


@pytest.fixture
def store(app) -> Store:
    return app.extensions["review_ui"].store()


def _counts(store: Store) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {
            t: conn.execute(sa.text(f"select count(*) from {t}")).scalar_one()  # noqa: S608
            for t in TABLES
        }


def _ui_rules(app, method: str) -> list[str]:
    return sorted(
        rule.rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("review.")
        and method in (rule.methods or ())
        and rule.endpoint != "review.static"
    )


def _fill(rule: str) -> str:
    return rule.replace("<lead_id>", "L1").replace("<int:correction_id>", "1")


# ---------------------------------------------------------------- access control


def test_a_rep_cannot_retrain_or_manage_users(app, store):
    client = app.test_client()
    login(app, client, "rep1")
    token = csrf(client)
    before = _counts(store)
    assert client.post("/review/models/retrain", data={"csrf_token": token}).status_code == 403
    assert app.extensions["review_ui"].jobs.status()["state"] in ("idle", None)
    response = client.post(
        "/review/users",
        data={"csrf_token": token, "name": "mallory", "role": "admin", "password": "p" * 12},
    )
    assert response.status_code == 403
    assert store.get_user_by_name("mallory") is None
    assert (
        client.post("/review/users/disable", data={"csrf_token": token, "name": "boss"}).status_code
        == 403
    )
    assert store.get_user_by_name("boss").active
    assert client.get("/review/models").status_code == 403
    assert client.get("/review/users").status_code == 403
    assert _counts(store) == before


def test_every_ui_page_needs_a_login(app):
    client = app.test_client()
    for rule in _ui_rules(app, "GET"):
        if rule == "/login":
            continue
        response = client.get(_fill(rule))
        assert response.status_code == 302, rule
        assert response.headers["Location"].startswith("/login"), rule


def test_no_api_or_ui_route_manages_keys_or_promotes(app):
    """Keys and promotion are local admin (CLI) only: no HTTP route reaches them."""
    rules = [r.rule for r in app.url_map.iter_rules()]
    assert not [r for r in rules if re.search(r"api.?key|promot|rollback", r, re.I)], rules


# ------------------------------------------------------------------ secrets at rest


def test_passwords_are_argon2_and_keys_never_stored_in_plaintext(tmp_path):
    path = tmp_path / "s.db"
    store = Store(f"sqlite:///{path}")
    store.upgrade()
    secret = "a very secret passphrase"
    store.create_user("alice", "rep", secret)
    token = store.create_api_key("crm", "client")
    with store.engine.connect() as conn:
        [pw_hash] = conn.execute(sa.text("select password_hash from users")).scalars()
        key_rows = [dict(r) for r in conn.execute(sa.text("select * from api_keys")).mappings()]
    store.dispose()
    assert pw_hash.startswith("$argon2id$") and secret not in pw_hash
    assert len(key_rows) == 1
    for value in key_rows[0].values():
        assert token not in str(value)
    assert re.fullmatch(r"[0-9a-f]{64}", key_rows[0]["key_hash"])
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("s.db"))
    assert secret.encode() not in raw and token.encode() not in raw


def test_the_session_cookie_lasts_no_longer_than_the_session(app):
    client = app.test_client()
    token = csrf(client, "/login")
    response = client.post(
        "/login", data={"name": "rep1", "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert app.permanent_session_lifetime.total_seconds() == 8 * 3600
    assert re.search(r"Expires=", cookie)


# ------------------------------------------------------------------- rate limiting


def _try(client, name: str, password: str):
    return client.post(
        "/login", data={"name": name, "password": password, "csrf_token": csrf(client, "/login")}
    )


@pytest.mark.slow
def test_logins_are_rate_limited_per_user_name(app):
    client = app.test_client()
    for _ in range(5):
        assert _try(client, "rep1", "guess").status_code == 401
    response = _try(client, "rep1", PASSWORD)
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) > 0
    text = response.get_data(as_text=True)
    assert "Too many failed logins" in text
    assert "Content-Security-Policy" in response.headers
    assert client.get("/review/").status_code == 302  # still not logged in
    # another user from the same address is not locked out by rep1's failures
    assert _try(app.test_client(), "rep2", PASSWORD).status_code == 302


@pytest.mark.slow
def test_logins_are_rate_limited_per_address(tmp_path, template_db):
    app = make_review_app(
        tmp_path,
        template_db,
        REVIEW_LOGIN_FAILURE_DELAY=0,
        REVIEW_LOGIN_MAX_FAILURES_PER_IP=4,
    )
    try:
        client = app.test_client()
        for i in range(4):
            assert _try(client, f"nobody{i}", "guess").status_code == 401
        assert _try(client, "rep1", PASSWORD).status_code == 429
        other = app.test_client()
        other.environ_base["REMOTE_ADDR"] = "10.0.0.9"
        assert _try(other, "rep1", PASSWORD).status_code == 302
    finally:
        close_app(app)


@pytest.mark.slow
def test_behind_a_proxy_the_limit_counts_forwarded_clients(tmp_path, template_db):
    # Every request arrives from the load balancer's address; with PROXY_HOPS=1 the
    # limit reads the client from X-Forwarded-For, so one guessing client is locked
    # out and another behind the same balancer is not.
    app = make_review_app(
        tmp_path,
        template_db,
        REVIEW_LOGIN_FAILURE_DELAY=0,
        REVIEW_LOGIN_MAX_FAILURES_PER_IP=4,
        PROXY_HOPS=1,
    )
    try:
        guesser = app.test_client()
        guesser.environ_base.update(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="203.0.113.7")
        for i in range(4):
            assert _try(guesser, f"nobody{i}", "guess").status_code == 401
        assert _try(guesser, "rep1", PASSWORD).status_code == 429
        colleague = app.test_client()
        colleague.environ_base.update(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.4")
        assert _try(colleague, "rep1", PASSWORD).status_code == 302
    finally:
        close_app(app)


@pytest.mark.slow
def test_without_proxy_hops_forwarded_addresses_are_not_trusted(tmp_path, template_db):
    app = make_review_app(
        tmp_path,
        template_db,
        REVIEW_LOGIN_FAILURE_DELAY=0,
        REVIEW_LOGIN_MAX_FAILURES_PER_IP=4,
    )
    try:
        client = app.test_client()
        for i in range(4):
            client.environ_base["HTTP_X_FORWARDED_FOR"] = f"198.51.100.{i}"  # forged
            assert _try(client, f"nobody{i}", "guess").status_code == 401
        client.environ_base["HTTP_X_FORWARDED_FOR"] = "198.51.100.200"
        assert _try(client, "rep1", PASSWORD).status_code == 429
    finally:
        close_app(app)


@pytest.mark.slow
def test_a_good_login_clears_the_name_s_failures(app):
    client = app.test_client()
    for _ in range(4):
        assert _try(client, "rep1", "guess").status_code == 401
    assert _try(client, "rep1", PASSWORD).status_code == 302
    client.post("/logout", data={"csrf_token": csrf(client)})
    for _ in range(4):
        assert _try(client, "rep1", "guess").status_code == 401
    assert _try(client, "rep1", PASSWORD).status_code == 302


def test_the_limit_is_shared_by_workers_on_one_home(tmp_path):
    """Two limiters on the same file (two gunicorn workers) see one count; the window slides."""
    now = [1000.0]
    path = tmp_path / "home" / "login_attempts.db"
    a = LoginLimiter(
        path, max_per_user=3, window_seconds=60, backoff_seconds=20, clock=lambda: now[0]
    )
    b = LoginLimiter(
        path, max_per_user=3, window_seconds=60, backoff_seconds=20, clock=lambda: now[0]
    )
    a.failed("Rep1", "1.2.3.4")
    b.failed("rep1 ", "1.2.3.4")
    assert a.retry_after("rep1", "1.2.3.4") == 0
    now[0] += 10
    a.failed("rep1", "1.2.3.4")
    assert b.retry_after("rep1", "1.2.3.4") == 20  # both workers counted: third failure
    assert b.retry_after("rep1", "9.9.9.9") == 0  # the name from elsewhere is not slowed
    now[0] += 21
    assert b.retry_after("rep1", "1.2.3.4") == 0
    with sqlite3.connect(path) as conn:
        stored = [r[0] for r in conn.execute("select key from login_failures")]
    assert all(k.startswith(("user:", "ip:")) for k in stored)


# -------------------------------------------------------------------------- CSRF


def test_every_ui_form_checks_csrf(app, store):
    client = app.test_client()
    login(app, client, "boss")
    before = _counts(store)
    posts = _ui_rules(app, "POST")
    assert "/review/leads/<path:lead_id>/reclassify" in posts and "/login" in posts
    for rule in posts:
        data = {"name": "x", "password": PASSWORD, "stage": "decision", "lead_id": "L1"}
        response = client.post(_fill(rule), data=data)
        assert response.status_code == 400, rule
        bad = client.post(_fill(rule), data={**data, "csrf_token": "forged"})
        assert bad.status_code == 400, rule
    assert _counts(store) == before


# ----------------------------------------------------------------- escaping, headers


def _no_raw_markup(html: str, payload: str) -> None:
    assert payload not in html
    assert "<script>alert(" not in html


def test_profile_fields_and_notes_are_escaped_on_every_page(app, store):
    payload = "<script>alert('x')</script>"
    store.upsert_leads(
        [
            {
                "lead_id": "L2",
                "company": payload,
                "job_title": f"CTO {payload}",
                "industry": payload,
                "country": payload,
                "lead_source": payload,
                "stage": "awareness",
                "persona": "economic_buyer",
            }
        ]
    )
    store.add_correction("L2", "stage", "decision", reviewer="rep2", note=payload, source="ui")
    client = app.test_client()
    login(app, client, "rep1")
    for path in ("/review/", "/review/?q=CTO", "/review/leads/L2", "/review/?q=%3Cscript%3E"):
        response = client.get(path)
        assert response.status_code == 200, path
        html = response.get_data(as_text=True)
        _no_raw_markup(html, payload)
    html = client.get("/review/leads/L2").get_data(as_text=True)
    assert "&lt;script&gt;alert(" in html


def test_security_headers_on_every_ui_page(app):
    client = app.test_client()
    login(app, client, "boss")
    pages = [_fill(r) for r in _ui_rules(app, "GET")]
    assert len(pages) >= 5
    for path in pages:
        response = client.get(path)
        assert response.status_code < 500, path
        headers = response.headers
        csp = headers.get("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in csp, path
        assert "'unsafe-inline'" not in csp and "script-src 'self'" in csp, path
        assert headers.get("X-Frame-Options") == "DENY", path
        assert headers.get("X-Content-Type-Options") == "nosniff", path
        if response.mimetype == "text/html":
            assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", response.get_data(as_text=True))


def test_api_responses_are_nosniff(api_client, api_headers):
    for method, path, headers in (
        ("GET", "/healthz", {}),
        ("GET", "/openapi.json", {}),
        ("GET", "/v1/model", api_headers["client"]),
        ("GET", "/v1/model", {}),
    ):
        response = api_client.open(path, method=method, headers=headers)
        assert response.headers.get("X-Content-Type-Options") == "nosniff", path


# ------------------------------------------------------------------ SQL injection


def _score_body(lead_id: str, text: str) -> dict[str, Any]:
    return {
        "lead": {
            "lead_id": lead_id,
            "job_title": text,
            "seniority": text[:100],
            "department": text[:100],
            "company": text,
            "industry": text[:100],
            "country": text[:100],
            "lead_source": text[:100],
            "extra": {"crm_note": text},
        },
        "events": [
            {
                "timestamp": "2024-05-01T10:00:00Z",
                "type": "page_view",
                "page_category": text[:100],
                "content_topic": text[:100],
                "channel": text[:100],
            }
        ],
        "as_of": "2024-05-02T00:00:00Z",
    }


def test_injection_strings_through_score_are_stored_verbatim(api_app, api_client, api_headers):
    from serve.state import get_state

    state = get_state(api_app)
    store = state.store
    before = _counts(store)
    ids = []
    for i, text in enumerate(INJECTIONS):
        lead_id = f"inj-{i}-{text}"[:200]
        response = api_client.post(
            "/v1/score", json=_score_body(lead_id, text), headers=api_headers["client"]
        )
        assert response.status_code == 200, (text, response.get_json())
        ids.append((lead_id, text))
    assert state.writer.flush(30)
    for lead_id, text in ids:
        lead = store.get_lead(lead_id)
        assert lead is not None, lead_id
        assert lead["company"] == text and lead["job_title"] == text
        events = store.events_for(lead_id)
        assert [e["page_category"] for e in events] == [text[:100]]
        assert store.latest_prediction(lead_id) is not None
    after = _counts(store)
    n = len(INJECTIONS)
    assert after["leads"] >= before["leads"] + n
    assert after["predictions"] >= before["predictions"] + n
    for table in ("users", "api_keys", "corrections"):
        assert after[table] == before[table], table


@pytest.mark.slow
def test_injection_strings_in_corrections_search_and_login(app, store):
    client = app.test_client()
    login(app, client, "rep1")
    users_before = [(u.name, u.role, u.active) for u in store.list_users()]
    before = _counts(store)
    for i, text in enumerate(INJECTIONS):
        stage = ("decision", "consideration")[i % 2]
        response = reclassify(client, "L3", stage=stage, note=text)
        assert response.status_code == 302, text
        assert client.get("/review/", query_string={"q": text}).status_code == 200
        assert store.search_leads(text) == []
    notes = [c["note"] for c in store.corrections_for("L3")]
    assert notes == INJECTIONS
    anon = app.test_client()
    for text in INJECTIONS[:4]:
        assert _try(anon, text, text).status_code == 401
    after = _counts(store)
    assert after["corrections"] == before["corrections"] + len(INJECTIONS)
    assert {k: v for k, v in after.items() if k != "corrections"} == {
        k: v for k, v in before.items() if k != "corrections"
    }
    assert [(u.name, u.role, u.active) for u in store.list_users()] == users_before


def test_search_matches_injection_text_literally(store):
    text = "%' OR '1'='1"
    store.upsert_leads([{"lead_id": "Q1", "company": f"Acme {text}", "stage": "awareness"}])
    found = [r["lead_id"] for r in store.search_leads(text)]
    assert found == ["Q1"]
    assert [r["lead_id"] for r in store.search_leads("%")] == ["Q1"]  # literal, not a wildcard


def test_limiter_file_lives_in_the_home(app):
    home = Path(app.config["LEADREADY_HOME"])
    assert (home / "login_attempts.db").exists()
