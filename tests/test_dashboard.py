"""The alignment dashboard through Flask's test client, and once in a real Chromium."""

from __future__ import annotations

import random
import re
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from review_ui import dashboard
from tests.support.browser import (  # noqa: F401  (fixtures)
    browser_login,
    browser_page,
    chromium_browser,
    live_ui_server,
    screens,
)
from tests.support.review_ui import (  # noqa: F401  (fixtures)
    close_app,
    login,
    make_review_app,
    review_template_db,
)

NOW = datetime.now(UTC)


@pytest.fixture
def app(tmp_path, template_db):
    app = make_review_app(tmp_path, template_db)
    store = app.extensions["review_ui"].store()
    # L1 decision (sales), L2 consideration, L3 awareness, L4 purchase (sales), model persona
    # economic_buyer everywhere (see tests.test_review_ui.prediction).
    store.add_correction("L1", "stage", "decision", reviewer="rep1", kind="confirm",
                         created_at=NOW - timedelta(hours=20))  # fmt: skip
    store.add_correction("L2", "stage", "decision", reviewer="rep1", reason="talking_to_sales",
                         created_at=NOW - timedelta(hours=10))  # fmt: skip
    store.add_correction("L3", "persona", "non_buyer", reviewer="rep2", reason="student",
                         created_at=NOW - timedelta(hours=5))  # fmt: skip
    yield app
    close_app(app)


@pytest.fixture
def client(app):
    return app.test_client()


def _text(html: str, element_id: str) -> str:
    """The text of the element with ``element_id`` (tags stripped, spaces squeezed)."""
    start = html.index(">", html.index(f'id="{element_id}"')) + 1
    end = html.find('<div class="card kpi"', start + 1)
    end = html.find("</section>", start) if end == -1 else min(end, html.find("</section>", start))
    return " ".join(re.sub(r"<[^>]+>", " ", html[start:end]).split())


def _stub_versions(
    app, result=None, *, error: Exception | None = None, hang: threading.Event | None = None
):
    def read(uri, name, limit=8):
        if hang is not None:  # an MLflow that answers only once the test has seen the page
            hang.wait(30)
        if error is not None:
            raise error
        return result

    app.config["MLFLOW_TRACKING_URI"] = "http://mlflow.invalid:5000"
    app.extensions["review_dashboard"] = dashboard.ModelVersions(wait=0.3)
    return read


def test_the_dashboard_needs_a_login(client):
    response = client.get("/review/dashboard")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_a_rep_sees_the_dashboard_with_real_numbers(app, client):
    login(app, client, "rep1")
    response = client.get("/review/dashboard")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert _text(html, "kpi-reviews") == "Leads reviewed 3 3 label reviews: 2 stage, 1 persona"
    assert "50% 1 of 2 reviews" in _text(html, "kpi-agree-stage")
    assert "0% 0 of 1 review" in _text(html, "kpi-agree-persona")
    # L1 and L2 changed? L1 confirmed, L2 and L3 overridden: 2 of 3 leads.
    assert "67%" in _text(html, "kpi-override")
    stage = _text(html, "agreement-stage")
    assert "Decision 1 1 100%" in stage and "Consideration 1 0 0%" in stage
    confusion = _text(html, "confusion-stage")
    assert "Consideration · 1 1" in confusion and "Decision · 1 1" in confusion
    assert (
        _text(html, "reasons") == "Why reps reclassify (leads) Student 1 Already talking to sales 1"
    )

    # No inline code anywhere: the CSP forbids it.
    assert "style=" not in html and not re.search(r"<script(?![^>]*\bsrc=)", html)
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert 'href="/review/dashboard/reps"' not in html  # the per-rep view is for analysts


def test_sales_follow_up_counts_and_the_days_parameter(app, client):
    login(app, client, "ana")
    html = client.get("/review/dashboard").get_data(as_text=True)
    # L1 and L4 were routed to sales an hour ago; L1 was confirmed before that (not a review of
    # the routing), L4 is not reviewed: both still have time.
    follow = _text(html, "follow-up")
    assert "Routed to sales 2" in follow and "still in time 2" in follow
    store = app.extensions["review_ui"].store()
    store.add_correction("L4", "stage", "decision", reviewer="rep2")
    html = client.get("/review/dashboard?days=3").get_data(as_text=True)
    assert "Reviewed ≤ 3 d 1" in _text(html, "follow-up")
    # L4 was reviewed in time, but neither routed lead's 3 days are over: nothing is due yet,
    # and L1 (confirmed before it was routed) is called out as never reviewed.
    assert "— none due yet · 1 of 2 never reviewed" in _text(html, "kpi-followup")
    assert client.get("/review/dashboard?days=0").status_code == 400
    assert client.get("/review/dashboard?days=soon").status_code == 400


def test_a_rep_may_not_see_the_per_rep_view(app, client):
    login(app, client, "rep1")
    response = client.get("/review/dashboard/reps")
    assert response.status_code == 403
    assert "rep2" not in response.get_data(as_text=True)


def test_an_analyst_sees_each_rep_and_kappa(app, client):
    store = app.extensions["review_ui"].store()
    # rep1 and rep2 both label five leads' stage, agreeing on four: kappa is defined.
    for lead, a, b in [
        ("L2", "decision", "decision"),
        ("L3", "awareness", "awareness"),
        ("L4", "purchase", "decision"),
        ("L5", "awareness", "awareness"),
        ("L6", "consideration", "consideration"),
    ]:
        store.add_correction(lead, "stage", a, reviewer="rep1")
        store.add_correction(lead, "stage", b, reviewer="rep2")
    login(app, client, "ana")
    response = client.get("/review/dashboard/reps")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    reps = _text(html, "reps")
    # rep1: L1 confirmed, L2-L6 reclassified (L2 twice on one prediction: the last counts);
    # agrees with the model on L1, L3, L4, L5, L6.
    assert "rep1 6 5 1 83% of 6" in reps
    # rep2: L3's persona and L2-L6's stage; agrees on L3, L5, L6's stage.
    assert "rep2 5 6 0 50% of 6" in reps
    stage = _text(html, "kappa-stage")
    from sklearn.metrics import cohen_kappa_score

    expected = cohen_kappa_score(
        ["decision", "awareness", "purchase", "awareness", "consideration"],
        ["decision", "awareness", "decision", "awareness", "consideration"],
    )
    assert f"rep1 · rep2 5 4 {expected:.2f}" in stage
    assert "n/a" not in stage
    assert "No two reps" in _text(html, "kappa-persona")


def test_kappa_reads_na_with_too_few_shared_leads(app, client):
    store = app.extensions["review_ui"].store()
    store.add_correction("L2", "stage", "awareness", reviewer="rep2")
    login(app, client, "boss")
    stage = _text(client.get("/review/dashboard/reps").get_data(as_text=True), "kappa-stage")
    assert "rep1 · rep2 1 0 n/a" in stage


@pytest.mark.slow
def test_charts_are_svg_from_the_server(app, client):
    login(app, client, "rep1")
    html = client.get("/review/dashboard").get_data(as_text=True)
    assert 'src="/review/dashboard/chart/corrections.svg"' in html
    for name in ("corrections", "override"):
        response = client.get(f"/review/dashboard/chart/{name}.svg")
        assert response.status_code == 200
        assert response.mimetype == "image/svg+xml"
        body = response.get_data(as_text=True)
        assert "<svg" in body and "<script" not in body
    assert client.get("/review/dashboard/chart/secrets.svg").status_code == 404


def test_model_versions_from_mlflow_with_gate_metrics(app, client, monkeypatch):
    result = {
        "versions": [
            {
                "version": "2",
                "aliases": ["champion"],
                "registered_at": NOW,
                "decision": "promoted",
                "stage_f1": 0.812,
                "persona_f1": 0.7,
                "champion_stage_f1": 0.79,
                "champion_persona_f1": None,
                "stage_accuracy": 0.8,
            },
            {
                "version": "1",
                "aliases": [],
                "registered_at": NOW - timedelta(days=9),
                "decision": None,
                "stage_f1": 0.79,
                "persona_f1": None,
                "champion_stage_f1": None,
                "champion_persona_f1": None,
                "stage_accuracy": None,
            },
        ],  # fmt: skip
        "champion": {"version": "2", "registered_at": NOW},
    }
    monkeypatch.setattr(dashboard, "read_model_versions", _stub_versions(app, result))
    login(app, client, "rep1")
    text = _text(client.get("/review/dashboard").get_data(as_text=True), "model-versions")
    assert "v2 champion" in text and "promoted" in text and "0.812 vs 0.790" in text
    assert "v1" in text and "unavailable" not in text


@pytest.mark.parametrize(
    ("error", "hangs", "words"),
    [
        (ConnectionError("connection refused"), False, "could not be read (connection refused)"),
        (None, True, "did not answer within 0.3 s"),
    ],
)
def test_model_versions_read_unavailable_when_mlflow_fails(
    app, client, monkeypatch, error, hangs, words
):
    hang = threading.Event() if hangs else None
    monkeypatch.setattr(
        dashboard, "read_model_versions", _stub_versions(app, {}, error=error, hang=hang)
    )
    login(app, client, "rep1")
    started = time.monotonic()
    try:
        response = client.get("/review/dashboard")
    finally:
        if hang is not None:  # the page answered while MLflow was still silent
            hang.set()
    assert response.status_code == 200
    assert time.monotonic() - started < 1.8
    text = _text(response.get_data(as_text=True), "model-versions")
    assert "MLflow unavailable" in text and words in text


def test_the_registry_read_is_cached(app, monkeypatch):
    calls = []

    def read(uri, name, limit=8):
        calls.append(threading.current_thread().name)
        return {"versions": [], "champion": None}

    monkeypatch.setattr(dashboard, "read_model_versions", read)
    cache = dashboard.ModelVersions(ttl=60, wait=1)
    assert cache.get("http://mlflow:5000", "m") == {"versions": [], "champion": None}
    cache.get("http://mlflow:5000", "m")
    assert calls == ["dashboard-mlflow"]
    assert "no MLflow tracking store" in cache.get("sqlite:////nowhere/mlflow.db", "m")["error"]


# ------------------------------------------------------------------ browser


@pytest.mark.browser
class TestInChromium:
    """The dashboard in a real Chromium, over the browser tests' live server."""

    @pytest.fixture(scope="class")
    def filled(self, ui_server):
        """Nine weeks of reviews by four reps, some leads reviewed twice, on the live store."""
        from data.schema import CORRECTION_REASONS

        store = ui_server["store"]
        latest = store.latest_predictions(with_features=True)
        leads = sorted(latest)
        rng = random.Random(7)
        stages = sorted({p["stage"] for p in latest.values() if p["stage"]})
        personas = sorted({p["persona"] for p in latest.values() if p["persona"]})
        reasons = [code for code, _ in CORRECTION_REASONS]
        now = datetime.now(UTC)
        # Sixty leads rescored and routed to sales since the champion's first scoring.
        kept = ("model_name", "model_version", "stage", "stage_confidence", "stage_margin",
                "persona", "persona_confidence", "persona_margin", "probabilities",
                "readiness", "features")  # fmt: skip
        routed = {lead: now - timedelta(days=rng.uniform(0.5, 9.5)) for lead in leads[::5]}
        store.record_predictions(
            [
                {
                    **{k: latest[lead][k] for k in kept},
                    "lead_id": lead,
                    "route": "sales",
                    "source": "batch",
                    "created_at": at,
                }  # fmt: skip
                for lead, at in routed.items()
            ]
        )
        reps = {"rita": 0.78, "sam": 0.7, "kim": 0.62, "lee": 0.84}
        picked = rng.sample(leads, 180)
        for i, lead_id in enumerate(picked):
            prediction = latest[lead_id]
            who = list(reps)[i % 4]
            pairs = [who] + ([list(reps)[(i + 1) % 4]] if i % 4 == 0 else [])
            for reviewer in pairs:
                if lead_id in routed:
                    when = routed[lead_id] + timedelta(days=rng.uniform(0.1, 11))
                    if when > now:
                        continue  # not reviewed yet
                else:
                    when = now - timedelta(days=rng.uniform(0, 62))
                field = "stage" if rng.random() < 0.75 else "persona"
                model = prediction[field]
                labels = stages if field == "stage" else personas
                # The model was closer to the reps a month ago: the override rate rises.
                trust = reps[reviewer] + (0.12 if when < now - timedelta(days=28) else 0.0)
                if rng.random() < trust:
                    store.add_correction(lead_id, field, model, reviewer=reviewer, kind="confirm",
                                         created_at=when)  # fmt: skip
                else:
                    other = rng.choice([x for x in labels if x != model])
                    store.add_correction(lead_id, field, other, reviewer=reviewer,
                                         reason=rng.choice(reasons), created_at=when)  # fmt: skip
        return store

    def test_an_analyst_reads_the_dashboard(self, page, ui_server, filled, tmp_path):
        browser_login(page, "ana")
        page.click("nav a:has-text('Alignment')")
        page.wait_for_url("**/review/dashboard")
        leads = page.locator("#kpi-reviews .kpi-value").inner_text()
        sub = page.locator("#kpi-reviews .kpi-sub").inner_text()
        reviews = int(re.match(r"([\d,]+) label reviews", sub).group(1).replace(",", ""))
        assert reviews >= 180 and 0 < int(leads.replace(",", "")) <= reviews
        for head in ("stage", "persona"):
            value = page.locator(f"#kpi-agree-{head} .kpi-value").inner_text()
            assert re.fullmatch(r"\d{1,3}%", value), value
        assert page.locator("#confusion-stage table.cm tbody tr").count() >= 2
        assert page.locator("#reasons li").count() >= 3
        # Charts are same-origin SVG images, drawn and loaded under the page's CSP.
        for name in ("corrections", "override"):
            image = page.locator(f"img[src$='{name}.svg']")
            image.scroll_into_view_if_needed()
            page.wait_for_function(
                "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
            )
        assert page.locator("#drift li").count() >= 1
        assert page.locator("#model-versions .alias-champion").count() == 1
        drift = page.locator("#drift").inner_text()
        assert "predictions by version 1 (300 leads" in drift, drift
        follow = page.locator("#follow-up").inner_text()
        assert "Routed to sales\n60" in follow or "Routed to sales\t60" in follow, follow
        page.locator(".flash").evaluate_all("els => els.forEach(el => el.remove())")
        page.screenshot(path=str(screens(tmp_path) / "dashboard.png"), full_page=True)

        page.click("a.btn:has-text('Per rep')")
        page.wait_for_url("**/review/dashboard/reps")
        assert page.locator("#reps tbody tr").count() == 4
        assert page.locator("#kappa-stage tbody tr").count() >= 1

    def test_a_rep_is_refused_the_per_rep_view(self, page, ui_server, filled):
        browser_login(page, "rita")
        assert page.locator("nav a", has_text="Alignment").count() == 1
        response = page.goto("/review/dashboard/reps")
        assert response.status == 403


def test_the_drift_report_is_reused_for_the_same_champion():
    cache = dashboard.DriftCache(ttl=60)
    calls = []
    assert cache.get(("1", None), lambda: calls.append(1) or "a") == "a"
    assert cache.get(("1", None), lambda: calls.append(1) or "b") == "a"
    assert cache.get(("2", None), lambda: calls.append(1) or "c") == "c"  # new champion
    assert len(calls) == 2


def test_read_model_versions_from_a_registry(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("dash", artifact_location=str(tmp_path / "art"))
    client.create_registered_model("lr")
    for i in range(3):
        run = client.create_run(experiment).info.run_id
        client.log_metric(run, "stage_macro_f1", 0.5 + i / 10)
        if i == 2:
            client.log_metric(run, "gate_challenger_stage_macro_f1", 0.9)
            client.log_metric(run, "gate_champion_persona_macro_f1", 0.4)
            client.set_tag(run, "gate.decision", "promoted")
        client.create_model_version("lr", str(tmp_path / f"model{i}"), run)
    client.set_registered_model_alias("lr", "champion", "3")
    client.set_registered_model_alias("lr", "previous_champion", "2")

    found = dashboard.read_model_versions(uri, "lr", limit=2)

    newest, second = found["versions"]
    assert (newest["version"], newest["aliases"], newest["decision"]) == (
        "3",
        ["champion"],
        "promoted",
    )
    assert newest["stage_f1"] == 0.9  # the gate set's figure wins over the holdout's
    assert newest["champion_persona_f1"] == 0.4 and newest["persona_f1"] is None
    assert (second["version"], second["aliases"], second["decision"]) == (
        "2",
        ["previous_champion"],
        None,
    )
    assert second["stage_f1"] == pytest.approx(0.6)
    assert found["champion"] == {"version": "3", "registered_at": newest["registered_at"]}
    assert newest["registered_at"].tzinfo is UTC
