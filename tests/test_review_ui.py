"""The review UI through Flask's test client: logins, roles, CSRF, PRG, conflicts, partials.

The app is the real one (``leadready.app.create_app``) with the UI installed by
``review_ui.init_app``; the model holder gets a stub source, so no MLflow is
touched. Users are made once per session in a template database (argon2 is
slow on purpose) that each test copies.
"""

from __future__ import annotations

import re
import threading
from datetime import timedelta
from typing import Any

import pytest

import review_ui
from review_ui import auth
from tests.support.review_ui import (  # noqa: F401  (fixtures)
    NOW,
    PASSWORD,
    StubModel,
    close_app,
    csrf,
    login,
    make_review_app,
    prediction,
    quick_retrain,
    reclassify,
    rep_client,
    review_app,
    review_client,
    review_store,
    review_template_db,
)

# ------------------------------------------------------------------ login/logout


def test_pages_need_a_login(client):
    response = client.get("/review/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")
    assert client.get("/review/leads/L1").status_code == 302


def test_login_with_a_password_then_logout(client):
    token = csrf(client, "/login")
    response = client.post(
        "/login",
        data={
            "name": "rep1",
            "password": PASSWORD,
            "csrf_token": token,
            "next": "/review/leads/L2",
        },
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/review/leads/L2"
    page = client.get("/review/").get_data(as_text=True)
    assert "Welcome, rep1." in page and "rep1" in page

    token = csrf(client)
    assert client.get("/logout").status_code == 405
    response = client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert client.get("/review/").status_code == 302


@pytest.mark.slow
def test_failed_logins_do_not_say_which_part_was_wrong(client):
    answers = []
    for name, password in (("rep1", "wrong password"), ("nobody", PASSWORD), ("gone", PASSWORD)):
        token = csrf(client, "/login")
        response = client.post(
            "/login", data={"name": name, "password": password, "csrf_token": token}
        )
        assert response.status_code == 401
        text = response.get_data(as_text=True)
        answers.append(re.search(r'flash-error" role="status">([^<]+)<', text).group(1))
    assert answers == ["Wrong user name or password."] * 3
    assert client.get("/review/").status_code == 302


@pytest.mark.slow
def test_login_never_redirects_off_site(client):
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        token = csrf(client, "/login")
        response = client.post(
            "/login",
            data={"name": "rep1", "password": PASSWORD, "csrf_token": token, "next": target},
        )
        assert response.headers["Location"] == "/review/", target
        client.post("/logout", data={"csrf_token": csrf(client)})


def test_a_disabled_user_is_logged_out_on_the_next_click(app, client, store):
    login(app, client, "rep2")
    assert client.get("/review/").status_code == 200
    store.deactivate_user("rep2")
    assert client.get("/review/").status_code == 302


def test_sessions_end_after_the_configured_lifetime(app, client):
    login(app, client, "rep1")
    assert app.permanent_session_lifetime == timedelta(hours=8)
    with client.session_transaction() as sess:
        sess["review_login_at"] = (NOW - timedelta(hours=9)).timestamp()
    response = client.get("/review/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert client.get("/review/").status_code == 302


def test_session_lifetime_is_configurable(tmp_path, template_db):
    app = make_review_app(tmp_path, template_db, REVIEW_SESSION_HOURS=1)
    try:
        assert app.permanent_session_lifetime == timedelta(hours=1)
        client = app.test_client()
        login(app, client, "rep1")
        with client.session_transaction() as sess:
            sess["review_login_at"] = (NOW - timedelta(hours=2)).timestamp()
        assert client.get("/review/").status_code == 302
    finally:
        close_app(app)


# ------------------------------------------------------------------------ roles


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/review/models", "analyst"),
        ("POST", "/review/models/retrain", "analyst"),
        ("GET", "/review/models/retrain/status", "analyst"),
        ("GET", "/review/users", "admin"),
        ("POST", "/review/users", "admin"),
        ("POST", "/review/users/disable", "admin"),
    ],
)
def test_roles_are_checked_on_the_server(app, method, path, allowed):
    rank = auth.ROLE_RANK
    for name, role in (("rep1", "rep"), ("ana", "analyst"), ("boss", "admin")):
        client = app.test_client()
        login(app, client, name)
        data = {"csrf_token": csrf(client), "name": "rep2", "role": "rep", "password": "x" * 10}
        response = client.open(path, method=method, data=data if method == "POST" else None)
        if rank[role] < rank[allowed]:
            assert response.status_code == 403, (name, path)
            assert "Not allowed" in response.get_data(as_text=True)
        else:
            assert response.status_code in (200, 302), (name, path, response.status_code)


def test_reps_do_not_see_analyst_or_admin_controls(rep, app):
    page = rep.get("/review/").get_data(as_text=True)
    assert "/review/models" not in page and "/review/users" not in page
    analyst = app.test_client()
    login(app, analyst, "ana")
    page = analyst.get("/review/").get_data(as_text=True)
    assert "/review/models" in page and "/review/users" not in page
    assert "Retrain now" in analyst.get("/review/models").get_data(as_text=True)


# ------------------------------------------------------------------------- CSRF


def test_ui_forms_need_a_csrf_token(rep, store):
    response = rep.post(
        "/review/leads/L2/reclassify", data={"stage": "decision", "reason": "other"}
    )
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)
    assert store.corrections_for("L2") == []
    assert rep.post("/logout").status_code == 400
    assert rep.get("/review/").status_code == 200


def test_api_json_routes_do_not_need_a_csrf_token(app, client):
    # Without the UI's token an API POST reaches its own bearer-key check (401).
    response = client.post("/v1/score", json={"lead": {"lead_id": "x"}})
    assert response.status_code == 401
    assert response.is_json and "error" in response.get_json()
    # The same holds after a UI login on the same client (cookies present).
    login(app, client, "rep1")
    response = client.post("/v1/score", json={"lead": {"lead_id": "x"}})
    assert response.status_code == 401


# -------------------------------------------------------------- reclassify (PRG)


def test_reclassify_posts_redirects_and_flashes(rep, store):
    latest = store.latest_prediction("L2")
    response = reclassify(
        rep,
        "L2",
        stage="decision",
        persona="non_buyer",
        reason="student_job_seeker",
        note="Final-year student; thesis on data pipelines.",
        expected_stage="consideration",
        expected_persona="economic_buyer",
        prediction_id=str(latest["id"]),
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/review/leads/L2"
    page = rep.get("/review/leads/L2").get_data(as_text=True)
    assert "Reclassified L2: stage → Decision, persona → Non buyer." in page
    assert "Final-year student; thesis on data pipelines." in page

    rows = store.corrections_for("L2")
    assert [(r["field"], r["old_label"], r["new_label"], r["kind"]) for r in rows] == [
        ("stage", "consideration", "decision", "reclassify"),
        ("persona", "economic_buyer", "non_buyer", "reclassify"),
    ]
    assert {r["reviewer"] for r in rows} == {"rep1"}
    assert {r["reason"] for r in rows} == {"student_job_seeker"}
    assert {r["prediction_id"] for r in rows} == {latest["id"]}
    assert store.labels_for("L2") == {"stage": "decision", "persona": "non_buyer"}


def test_reclassify_rejects_bad_input_without_writing(rep, store):
    for fields in (
        {"stage": "decision", "reason": ""},
        {"stage": "", "persona": "", "reason": "other"},
        {"stage": "not-a-stage", "reason": "other"},
        {"stage": "decision", "reason": "other", "note": "x" * 2001},
    ):
        response = reclassify(rep, "L3", **fields)
        assert response.status_code == 302
        assert "Not saved" in rep.get("/review/leads/L3").get_data(as_text=True)
    assert store.corrections_for("L3") == []
    assert reclassify(rep, "NOPE", stage="decision").status_code == 404


def test_a_concurrent_correction_is_kept_and_the_second_rep_is_told(app, rep, store):
    # rep1 opened L4 while it read "purchase"; rep2 corrects it first.
    other = app.test_client()
    login(app, other, "rep2")
    assert reclassify(other, "L4", stage="decision", expected_stage="purchase").status_code == 302

    response = reclassify(rep, "L4", stage="consideration", expected_stage="purchase")
    assert response.status_code == 302
    page = rep.get("/review/leads/L4").get_data(as_text=True)
    assert "Heads up" in page and "rep2 set it to decision" in page
    assert "Both corrections are kept; yours is now current." in page
    rows = store.corrections_for("L4")
    assert [(r["reviewer"], r["old_label"], r["new_label"]) for r in rows] == [
        ("rep2", "purchase", "decision"),
        ("rep1", "decision", "consideration"),
    ]
    assert store.labels_for("L4")["stage"] == "consideration"
    # rep2's own flash said nothing about a conflict.
    assert "Heads up" not in other.get("/review/leads/L4").get_data(as_text=True)


def test_confirm_appends_confirm_rows_with_the_models_labels(rep, store):
    latest = store.latest_prediction("L6")
    token = csrf(rep, "/review/leads/L6")
    response = rep.post(
        "/review/leads/L6/confirm",
        data={
            "csrf_token": token,
            "expected_stage": "consideration",
            "expected_persona": "economic_buyer",
            "prediction_id": str(latest["id"]),
        },
    )
    assert response.status_code == 302
    rows = store.corrections_for("L6")
    assert [(r["kind"], r["field"], r["new_label"]) for r in rows] == [
        ("confirm", "stage", "consideration"),
        ("confirm", "persona", "economic_buyer"),
    ]
    assert all(not r["reason"] for r in rows)


def test_undo_appends_a_row_and_overwrites_nothing(rep, store):
    reclassify(rep, "L5", stage="decision")
    first = store.corrections_for("L5")[0]
    token = csrf(rep, "/review/leads/L5")
    response = rep.post(
        f"/review/corrections/{first['id']}/undo",
        data={"csrf_token": token, "lead_id": "L5", "next": "/review/leads/L5"},
    )
    assert response.status_code == 302
    rows = store.corrections_for("L5")
    assert len(rows) == 2
    assert rows[0] == first
    assert (rows[1]["kind"], rows[1]["undo_of"], rows[1]["new_label"]) == (
        "undo",
        first["id"],
        "awareness",
    )
    assert store.labels_for("L5")["stage"] == "awareness"
    assert "Undone on L5: stage back to Awareness." in rep.get("/review/leads/L5").get_data(
        as_text=True
    )
    # An unknown correction, or one of another lead, is not found.
    token = csrf(rep, "/review/leads/L5")
    assert (
        rep.post(
            f"/review/corrections/{first['id']}/undo", data={"csrf_token": token, "lead_id": "L1"}
        ).status_code
        == 404
    )


def test_undo_last_undoes_this_reps_last_action_on_the_lead(rep, store):
    reclassify(rep, "L3", stage="decision", persona="practitioner")
    token = csrf(rep, "/review/leads/L3")
    response = rep.post("/review/leads/L3/undo-last", data={"csrf_token": token})
    assert response.status_code == 302
    rows = store.corrections_for("L3")
    assert [r["kind"] for r in rows] == ["reclassify", "reclassify", "undo", "undo"]
    assert {r["undo_of"] for r in rows[2:]} == {rows[0]["id"], rows[1]["id"]}
    assert store.labels_for("L3") == {"stage": "awareness", "persona": "economic_buyer"}
    # Nothing left to undo: an info message and no new row.
    token = csrf(rep, "/review/leads/L3")
    rep.post("/review/leads/L3/undo-last", data={"csrf_token": token})
    assert "Nothing of yours to undo on L3." in rep.get("/review/").get_data(as_text=True)
    assert len(store.corrections_for("L3")) == 4


# ------------------------------------------------------------------------- bulk


def _bulk(client, lead_ids, **fields):
    data: dict[str, Any] = {
        "csrf_token": csrf(client),
        "action": "reclassify",
        "stage": "",
        "persona": "",
        "reason": "not_in_market",
        "note": "",
        "lead_id": list(lead_ids),
        "next": "/review/?stage=decision",
        # The count the rep confirmed on the confirmation step.
        "confirmed": str(len(set(lead_ids))),
    }
    data.update(fields)
    return client.post("/review/bulk", data=data)


def test_bulk_reclassify_and_confirm(rep, store):
    response = _bulk(rep, ["L2", "L3", "L5"], stage="awareness")
    assert response.status_code == 302
    assert response.headers["Location"] == "/review/?stage=decision"
    assert "Reclassified 3 leads." in rep.get("/review/").get_data(as_text=True)
    for lead_id in ("L2", "L3", "L5"):
        rows = store.corrections_for(lead_id)
        assert [(r["field"], r["new_label"], r["reason"]) for r in rows] == [
            ("stage", "awareness", "not_in_market")
        ]

    _bulk(rep, ["L6"], action="confirm", reason="")
    assert [(r["kind"], r["new_label"]) for r in store.corrections_for("L6")] == [
        ("confirm", "consideration"),
        ("confirm", "economic_buyer"),
    ]


def test_bulk_flags_conflicts_and_refuses_bad_requests(app, rep, store):
    other = app.test_client()
    login(app, other, "rep2")
    reclassify(other, "L1", stage="purchase")
    response = _bulk(
        rep,
        ["L1", "L2"],
        stage="decision",
        **{"expected_stage:L1": "decision", "expected_stage:L2": "consideration"},
    )
    assert response.status_code == 302
    page = rep.get("/review/").get_data(as_text=True)
    assert "Reclassified 2 leads." in page and "Heads up: L1 changed" in page

    before = len(store.corrections_frame())
    _bulk(rep, ["L3"], stage="decision", reason="")
    assert "choose a reason" in rep.get("/review/").get_data(as_text=True)
    _bulk(rep, [], stage="decision")
    assert "Tick at least one lead first." in rep.get("/review/").get_data(as_text=True)
    assert _bulk(rep, [f"X{i}" for i in range(201)], stage="decision").status_code == 400
    assert len(store.corrections_frame()) == before


# ------------------------------------------------------------- partial or page


def test_htmx_requests_get_the_row_partial(rep, store):
    token = csrf(rep)
    response = rep.post(
        "/review/leads/L1/confirm",
        data={
            "csrf_token": token,
            "expected_stage": "decision",
            "expected_persona": "economic_buyer",
        },
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    html = response.get_data(as_text=True).strip()
    assert html.startswith('<tr class="q-row is-reviewed" id="row-L1"')
    assert "<html" not in html
    assert 'data-message="Confirmed L1: stage → Decision, persona → Economic buyer."' in html
    assert "HX-Request" in response.headers["Vary"]
    # No flash is left over for the next full page.
    assert "Confirmed L1" not in rep.get("/review/").get_data(as_text=True)

    table = rep.get("/review/?stage=decision", headers={"HX-Request": "true"}).get_data(
        as_text=True
    )
    assert "<html" not in table and 'id="row-L1"' in table and 'id="row-L2"' not in table
    full = rep.get("/review/?stage=decision").get_data(as_text=True)
    assert full.startswith("<!doctype html>") and 'id="row-L1"' in full


def test_invalid_partial_posts_answer_422_with_the_row(rep):
    token = csrf(rep)
    response = rep.post(
        "/review/leads/L2/reclassify",
        data={"csrf_token": token, "stage": "decision", "reason": ""},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 422
    assert 'data-message-category="error"' in response.get_data(as_text=True)


# ---------------------------------------------------------------- queue & lead


def test_queue_orders_by_priority_and_reviewed_leads_sink(rep, store):
    order = re.findall(r'id="row-(L\d)"', rep.get("/review/").get_data(as_text=True))
    assert order[0] == "L1"  # decision vs consideration at 46/44: closest, sales-ready
    assert set(order) == {f"L{i}" for i in range(1, 7)}
    store.add_correction("L1", "stage", "decision", reviewer="rep2", kind="confirm")
    order = re.findall(r'id="row-(L\d)"', rep.get("/review/").get_data(as_text=True))
    assert order[-1] == "L1"
    assert re.findall(
        r'id="row-(L\d)"', rep.get("/review/?reviewed=yes").get_data(as_text=True)
    ) == ["L1"]
    assert re.findall(r'id="row-(L\d)"', rep.get("/review/?q=globex").get_data(as_text=True)) == [
        "L2"
    ]
    paged = rep.get("/review/?per=25&page=2").get_data(as_text=True)
    assert 'id="row-' not in paged and "6 leads" in paged


def test_queue_page_links_keep_the_filters(rep):
    page = rep.get("/review/?per=25&page=3&route=sales&q=").get_data(as_text=True)
    prev = re.search(r'href="(/review/\?[^"]*page=2[^"]*)"', page)
    assert prev is not None
    link = prev.group(1).replace("&amp;", "&")
    assert "per=25" in link and "route=sales" in link and "q=" not in link


def test_lead_page_shows_profile_model_timeline_and_history(rep, store):
    store.add_correction("L1", "stage", "purchase", reviewer="rep2", reason="talking_to_sales")
    page = rep.get("/review/leads/L1").get_data(as_text=True)
    assert "Acme &lt;b&gt;bold&lt;/b&gt;" in page
    assert "Asked for a demo 3 days ago" in page and "Title says student" in page
    assert re.search(r'bar-fill w-46"></span></span><span class="bar-value">46%', page)
    assert "Demo request" in page and "Page view" in page
    assert re.search(r'<td class="heat h2">2</td>', page)  # two page views in one week
    assert 'id="prediction-history"' in page and "v1" in page
    assert "Already talking to sales" in page and "rep2" in page
    assert "Close call between decision and consideration" in page
    assert rep.get("/review/leads/NOPE").status_code == 404


def test_notes_and_names_are_escaped(rep, store):
    attack = "<script>window.pwned = 1</script><img src=x onerror=alert(1)>"
    reclassify(rep, "L2", stage="decision", note=attack)
    page = rep.get("/review/leads/L2").get_data(as_text=True)
    assert attack not in page
    assert "&lt;script&gt;window.pwned = 1&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    queue = rep.get("/review/?q=acme").get_data(as_text=True)
    assert "Acme <b>bold</b>" not in queue and "Acme &lt;b&gt;bold&lt;/b&gt;" in queue


def test_security_headers_and_cookie_flags(app, client):
    token_page = client.get("/login")
    cookie = token_page.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    login(app, client, "rep1")
    for path in ("/login", "/review/", "/review/leads/L1", "/review/static/review/review.js"):
        response = client.get(path)
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp, path
        assert "frame-ancestors 'none'" in csp
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        if not path.endswith(".js"):
            html = response.get_data(as_text=True)
            assert not re.search(r"<script(?![^>]*\bsrc=)", html), f"inline script on {path}"
            assert " style=" not in html and " on" + "click=" not in html
    # The API keeps its own headers.
    assert "Content-Security-Policy" not in client.get("/healthz").headers


def test_secure_cookies_when_configured(tmp_path, template_db):
    app = make_review_app(tmp_path, template_db, SESSION_COOKIE_SECURE=True)
    try:
        cookie = app.test_client().get("/login").headers["Set-Cookie"]
        assert "Secure" in cookie
        assert app.config["REMEMBER_COOKIE_SECURE"] is True
    finally:
        close_app(app)


def test_init_app_is_idempotent_and_leaves_api_csrf_off(app):
    assert review_ui.init_app(app) is app.extensions["review_ui"]
    assert app.config["WTF_CSRF_CHECK_DEFAULT"] is False
    assert list(app.blueprints).count("review") == 1


# ------------------------------------------------------------------------ users


def test_admin_adds_and_disables_users(app, client, store):
    login(app, client, "boss")
    token = csrf(client, "/review/users")
    response = client.post(
        "/review/users",
        data={"csrf_token": token, "name": "newrep", "role": "rep", "password": "long enough pw"},
    )
    assert response.status_code == 302
    assert store.get_user_by_name("newrep").role == "rep"
    page = client.get("/review/users").get_data(as_text=True)
    assert "Added newrep (rep)." in page and "newrep" in page

    token = csrf(client, "/review/users")
    client.post(
        "/review/users", data={"csrf_token": token, "name": "x", "role": "rep", "password": "short"}
    )
    assert store.get_user_by_name("x") is None

    token = csrf(client, "/review/users")
    assert (
        client.post(
            "/review/users/disable", data={"csrf_token": token, "name": "newrep"}
        ).status_code
        == 302
    )
    assert store.get_user_by_name("newrep").active is False
    token = csrf(client, "/review/users")
    client.post("/review/users/disable", data={"csrf_token": token, "name": "boss"})
    assert store.get_user_by_name("boss").active is True


# ---------------------------------------------------------------------- retrain


def test_retrain_runs_in_the_background_one_at_a_time(tmp_path, template_db):
    release = threading.Event()
    reported = threading.Event()
    calls: list[dict[str, Any]] = []

    def fake_retrain(*, store, actor, progress):
        calls.append({"actor": actor, "store": store})
        progress("reading the base data", 0.25)
        reported.set()
        assert release.wait(10)
        progress("gating", 0.9)
        return {"version": "7", "promoted": True}

    app = make_review_app(tmp_path, template_db, LEADREADY_RETRAIN=fake_retrain)
    try:
        client = app.test_client()
        login(app, client, "ana")
        token = csrf(client, "/review/models")
        response = client.post("/review/models/retrain", data={"csrf_token": token})
        assert response.status_code == 302
        assert reported.wait(10)
        status = client.get("/review/models/retrain/status").get_json()
        assert status["state"] == "running" and status["started_by"] == "ana"
        assert status["step"] == "reading the base data" and status["fraction"] == 0.25

        token = csrf(client, "/review/models")
        client.post("/review/models/retrain", data={"csrf_token": token})
        assert "already running" in client.get("/review/models").get_data(as_text=True)
        assert len(calls) == 1

        release.set()
        assert app.extensions["review_ui"].jobs.join(10)
        status = client.get("/review/models/retrain/status").get_json()
        assert status["state"] == "succeeded" and status["fraction"] == 1.0
        assert status["result"] == {"version": "7", "promoted": True}
        assert calls[0]["actor"] == "ana"
        assert "yes — now champion" in client.get("/review/models").get_data(as_text=True)
    finally:
        release.set()
        close_app(app)


def test_a_failing_retrain_shows_its_error(tmp_path, template_db):
    def broken(*, store, actor, progress):
        raise ValueError("the base data cannot be found")

    app = make_review_app(tmp_path, template_db, LEADREADY_RETRAIN=broken)
    try:
        client = app.test_client()
        login(app, client, "boss")
        client.post("/review/models/retrain", data={"csrf_token": csrf(client, "/review/models")})
        assert app.extensions["review_ui"].jobs.join(10)
        status = client.get("/review/models/retrain/status").get_json()
        assert status["state"] == "failed"
        assert status["error"] == "ValueError: the base data cannot be found"
    finally:
        close_app(app)


def test_one_retrain_at_a_time_across_workers_sharing_a_home(tmp_path):
    from review_ui.jobs import JobBusy, RetrainRunner

    release = threading.Event()
    first, second = RetrainRunner(tmp_path), RetrainRunner(tmp_path)  # two workers

    def slow(progress):
        progress("training", 0.5)
        release.wait(10)
        return None

    first.start(slow, started_by="ana")
    try:
        with pytest.raises(JobBusy):
            second.start(slow, started_by="boss")
        assert second.status()["state"] == "running"
        assert second.status()["started_by"] == "ana"
    finally:
        release.set()
    assert first.join(10)
    assert second.status()["state"] == "succeeded"


def test_a_run_whose_process_died_shows_as_failed(tmp_path):
    from review_ui.jobs import RetrainRunner

    (tmp_path / "retrain-status.json").write_text(
        '{"state": "running", "step": "training", "fraction": 0.4, "started_by": "ana"}'
    )
    status = RetrainRunner(tmp_path).status()
    assert status["state"] == "failed"
    assert "stopped" in status["error"]


# ------------------------------------------------ issue #18: flow, batches, words


def test_save_and_next_opens_the_next_lead_of_the_same_queue(app, rep, store):
    from data.review_queue import review_queue

    back = "/review/?reviewed=no&per=25"
    order = [i.lead_id for i in review_queue(store, limit=25, reviewed=False).items]
    first, second = order[0], order[1]
    page = rep.get(f"/review/leads/{first}?back=/review/%3Freviewed%3Dno%26per%3D25")
    html = page.get_data(as_text=True)
    assert f"Next in the queue: {second}" in html
    seen = store.labels_for(first)
    response = reclassify(
        rep,
        first,
        stage="decision",
        advance="1",
        back=back,
        expected_stage=seen["stage"] or "",
        expected_persona=seen["persona"] or "",
    )
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(f"/review/leads/{second}?back=")
    assert "reviewed%3Dno" in location and "per%3D25" in location  # the queue's filters kept
    assert [r["new_label"] for r in store.corrections_for(first)] == ["decision"]
    landed = rep.get(location).get_data(as_text=True)
    flashes = re.findall(r"class=\"flash flash-\w+\" role=\"status\">([^<]*)<", landed)
    assert flashes == [f"Reclassified {first}: stage → Decision. Next in the queue: {second}."]

    # "Save, stay here" (no advance) stays on the lead.
    stay = reclassify(rep, second, stage="awareness", back=back)
    assert stay.headers["Location"] == f"/review/leads/{second}"


def test_save_and_next_on_the_last_lead_goes_back_to_the_queue(rep, store):
    from data.review_queue import review_queue

    last = review_queue(store, limit=50).items[-1].lead_id
    response = reclassify(rep, last, stage="decision", advance="1", back="/review/?per=50")
    assert response.headers["Location"] == "/review/?per=50"
    assert "That was the last lead of this queue page." in rep.get("/review/").get_data(
        as_text=True
    )


def test_a_bulk_change_asks_to_confirm_the_count_before_writing(rep, store):
    before = len(store.corrections_frame())
    response = _bulk(rep, ["L2", "L3"], stage="awareness", confirmed="")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Reclassify 2 leads?" in html and "Stage → <strong>Awareness</strong>" in html
    assert 'name="confirmed" value="2"' in html
    assert len(store.corrections_frame()) == before  # nothing written yet

    # A count that no longer matches the ticked leads asks again.
    again = _bulk(rep, ["L2", "L3", "L5"], stage="awareness", confirmed="2")
    assert again.status_code == 200 and "Reclassify 3 leads?" in again.get_data(as_text=True)
    assert len(store.corrections_frame()) == before


def test_a_bulk_batch_is_undone_in_one_step(app, rep, store):
    assert _bulk(rep, ["L2", "L3", "L5"], stage="awareness").status_code == 302
    rows = [r for lead in ("L2", "L3", "L5") for r in store.corrections_for(lead)]
    batches = {r["batch_id"] for r in rows}
    assert len(batches) == 1 and None not in batches
    batch = batches.pop()
    queue = rep.get("/review/").get_data(as_text=True)
    assert "Your last bulk change: reclassified 3 leads." in queue
    assert f"/review/batches/{batch}/undo" in queue

    other = app.test_client()
    login(app, other, "rep2")
    refused = other.post(f"/review/batches/{batch}/undo", data={"csrf_token": csrf(other)})
    assert refused.status_code == 403

    response = rep.post(
        f"/review/batches/{batch}/undo", data={"csrf_token": csrf(rep), "next": "/review/"}
    )
    assert response.status_code == 302
    page = rep.get("/review/").get_data(as_text=True)
    assert "Undid the batch: 3 corrections on 3 leads put back." in page
    assert "Your last bulk change" not in page
    for lead in ("L2", "L3", "L5"):
        kinds = [(r["kind"], r["batch_id"] == batch) for r in store.corrections_for(lead)]
        assert kinds[0] == ("reclassify", True) and kinds[1][0] == "undo"
        assert store.current_labels([lead]).get(lead, {}).get("stage") is None
    undo_batches = {r["batch_id"] for r in store.corrections_frame().to_dict("records")} - {batch}
    assert len(undo_batches - {None}) == 1  # the undo rows share their own batch id

    rep.post(f"/review/batches/{batch}/undo", data={"csrf_token": csrf(rep)})
    assert "That batch was already undone." in rep.get("/review/").get_data(as_text=True)
    assert rep.post("/review/batches/nope/undo", data={"csrf_token": csrf(rep)}).status_code == 404


def test_lead_page_says_whose_label_is_current_and_what_undo_restores(rep, store):
    html = rep.get("/review/leads/L2").get_data(as_text=True)
    assert "the model&#39;s prediction" in html or "the model's prediction" in html
    assert "Nothing of yours to undo here." in html
    reclassify(rep, "L2", stage="awareness")
    html = rep.get("/review/leads/L2").get_data(as_text=True)
    assert "a rep&#39;s label" in html or "a rep's label" in html
    old = store.corrections_for("L2")[0]["old_label"]
    assert f"Goes back to stage {old.capitalize()}." in html


def test_queue_words_show_marketing_labels_and_people_dates(rep, store):
    html = rep.get("/review/").get_data(as_text=True)
    assert "economic_buyer<" not in html and ">economic_buyer" not in html
    assert re.search(r"\d{1,2} [A-Z][a-z]{2} \d{4}", html)  # dates for people
    assert 'id="pager-top"' in html and 'id="pager-bottom"' in html
    assert '<details class="more-filters"' in html
