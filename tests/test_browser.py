"""The review UI in a real Chromium (Playwright, sync API): a rep's whole loop.

A werkzeug server runs the real app (``serve.app.create_app`` + the UI) on a
free port, over a store holding the tiny registry's 300 simulated leads,
scored by its champion (and a later rescoring of some of them by the other
version, so the queue has stage changes and the lead pages a history).

Screenshots go to pytest's tmp folder; set ``LEADREADY_SCREENSHOTS=docs/img``
to refresh the README's pictures.
"""

from __future__ import annotations

import os
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from review_ui.words import label_words

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "review-loop-pass"
VIEWPORT = {"width": 1440, "height": 900}


def _retrain_for_demo(*, store: Any, actor: str, progress: Any) -> dict[str, Any]:
    for step, fraction in (("collecting reps' corrections", 0.3), ("training", 0.6)):
        progress(step, fraction)
        time.sleep(0.3)
    return {"version": "3", "base_version": "1", "promoted": False, "gate_reasons": ["no gain"]}


@pytest.fixture(scope="module")
def ui_server(tiny_registry, serve_config, tmp_path_factory):
    """A live server on 127.0.0.1 with the UI, its store, and the base URL."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from werkzeug.serving import make_server

    import review_ui
    from data.store import Store
    from model import registry
    from serve.app import create_app
    from serve.state import get_state
    from training.record import record_scored_frame

    home = tmp_path_factory.mktemp("browser-home")
    url = f"sqlite:///{home / 'leadready.db'}"
    store = Store(url)
    store.upgrade()
    store.create_user("rita", "rep", PASSWORD)
    store.create_user("ana", "analyst", PASSWORD)

    tiny_registry.configure()
    sim, features = tiny_registry.simulation, tiny_registry.features
    champion, version = registry.load_model(tiny_registry.uri(tiny_registry.champion))
    scored = champion.predict_frame(features, reasons=True)
    earlier = datetime.now(UTC) - timedelta(days=3)
    record_scored_frame(
        store,
        features,
        scored,
        tiny_registry.name,
        str(version),
        leads=sim.leads,
        input_columns=champion.input_columns,
        created_at=earlier - timedelta(days=7),
    )
    other, other_version = registry.load_model(tiny_registry.uri(tiny_registry.other))
    subset = features.iloc[::3]
    record_scored_frame(
        store,
        subset,
        other.predict_frame(subset, reasons=True),
        tiny_registry.name,
        str(other_version),
        input_columns=other.input_columns,
        created_at=earlier,
    )
    events = sim.events.astype(object).where(sim.events.notna(), None)
    store.add_events(events.to_dict("records"))

    app = create_app(
        {
            **serve_config,
            "LEADREADY_HOME": str(home),
            "DATABASE_URL": url,
            "RECORD_PREDICTIONS": False,
            "SECRET_KEY": "browser-test",
            "LEADREADY_RETRAIN": _retrain_for_demo,
        }
    )
    review_ui.init_app(app)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="ui-server", daemon=True)
    thread.start()
    try:
        yield {"base": f"http://127.0.0.1:{server.server_port}", "store": store, "app": app}
    finally:
        server.shutdown()
        thread.join(5)
        state = get_state(app)
        state.close(timeout=2)
        state.store.dispose()
        store.dispose()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, ui_server):
    context = browser.new_context(viewport=VIEWPORT, base_url=ui_server["base"])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text) if msg.type == "error" and "403" not in msg.text else None
        ),
    )
    yield page
    context.close()
    assert errors == [], f"JavaScript errors or CSP violations: {errors}"


def _screens(tmp_path: Path) -> Path:
    target = os.environ.get("LEADREADY_SCREENSHOTS")
    folder = Path(target) if target else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _login(page, name: str) -> None:
    page.goto("/review/")
    assert "/login" in page.url
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/review/")


def test_a_rep_reclassifies_a_lead_from_the_queue(page, ui_server, tmp_path):
    store = ui_server["store"]
    _login(page, "rita")
    rows = page.locator("tr.q-row")
    assert rows.count() == 50
    assert page.locator("#pager-top").inner_text().startswith("300 leads")
    assert page.locator("tr.q-row .chip").count() > 0
    page.locator(".flash").evaluate_all("els => els.forEach(el => el.remove())")
    page.screenshot(path=str(_screens(tmp_path) / "review-queue.png"))

    first = rows.first
    lead_id = first.get_attribute("data-lead")
    current_stage = first.get_attribute("data-expected-stage")
    first.locator("a.lead-link").click()
    page.wait_for_url(re.compile(rf"/review/leads/{lead_id}(\?|$)"))
    assert page.locator("h1").inner_text() == lead_id
    assert page.locator(".bars li").count() >= 4
    assert page.locator("table.timeline tbody tr").count() >= 1

    options = page.locator("#rc-stage option").evaluate_all("os => os.map(o => o.value)")
    new_stage = next(o for o in options[1:] if o != current_stage)
    words = label_words(new_stage)
    page.select_option("#rc-stage", new_stage)
    page.select_option("#rc-reason", "talking_to_sales")
    page.fill("#rc-note", "Met them at the trade fair; budget approved for Q3.")
    page.click("#save-stay")
    page.wait_for_selector(".flash-success")
    assert f"Reclassified {lead_id}: stage → {words}." in page.locator(".flash").inner_text()

    history = page.locator("#correction-history tbody tr").first.inner_text()
    assert "rita" in history and words in history and "trade fair" in history
    rows = store.corrections_for(lead_id)
    assert [(r["reviewer"], r["new_label"], r["reason"]) for r in rows] == [
        ("rita", new_stage, "talking_to_sales")
    ]
    assert rows[0]["old_label"] == current_stage
    page.locator(".flash").evaluate_all("els => els.forEach(el => el.remove())")
    page.screenshot(path=str(_screens(tmp_path) / "lead-page.png"), full_page=True)


def test_keyboard_confirm_and_undo_swap_the_row_in_place(page, ui_server):
    store = ui_server["store"]
    _login(page, "rita")
    page.keyboard.press("?")
    assert page.locator("#help").is_visible()
    page.keyboard.press("Escape")
    assert not page.locator("#help").is_visible()

    page.keyboard.press("j")
    page.keyboard.press("j")
    focused = page.locator("tr.q-row.is-focused")
    lead_id = focused.get_attribute("data-lead")
    assert lead_id == page.locator("tr.q-row").nth(1).get_attribute("data-lead")
    url = page.url
    page.keyboard.press("c")
    page.wait_for_selector("tr.q-row.is-focused[data-message] .badge-done")
    assert page.url == url  # no navigation: the row was swapped in place
    assert "Confirmed" in page.locator("#toast").inner_text()
    assert {r["kind"] for r in store.corrections_for(lead_id)} == {"confirm"}

    page.keyboard.press("u")
    page.wait_for_function(
        "() => (document.querySelector('#toast') || {}).textContent.startsWith('Undone')"
    )
    kinds = [r["kind"] for r in store.corrections_for(lead_id)]
    assert kinds.count("undo") == kinds.count("confirm") >= 1


def test_a_rep_cannot_reach_the_retrain_button(page, ui_server):
    _login(page, "rita")
    assert page.locator("nav a", has_text="Models").count() == 0
    response = page.goto("/review/models")
    assert response.status == 403
    assert page.locator("#retrain-button").count() == 0
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    status = page.evaluate(
        """async (token) => {
            const body = new FormData();
            body.append("csrf_token", token);
            const r = await fetch("/review/models/retrain", {method: "POST", body});
            return r.status;
        }""",
        token,
    )
    assert status == 403
    assert ui_server["app"].extensions["review_ui"].jobs.status()["state"] == "idle"


def test_an_analyst_retrains_and_sees_progress(page, ui_server):
    _login(page, "ana")
    page.goto("/review/models")
    page.click("#retrain-button")
    page.wait_for_url("**/review/models")
    page.wait_for_selector("#job-state.state-succeeded", timeout=20_000)
    assert "champion kept" in page.locator("#job-result").inner_text()
    assert ui_server["app"].extensions["review_ui"].jobs.status()["started_by"] == "ana"


def test_a_post_without_csrf_token_is_refused(page, ui_server):
    _login(page, "rita")
    lead_id = page.locator("tr.q-row").first.get_attribute("data-lead")
    before = len(ui_server["store"].corrections_for(lead_id))
    response = page.request.post(
        f"/review/leads/{lead_id}/reclassify",
        form={"stage": "decision", "reason": "other"},
        max_redirects=0,
    )
    assert response.status == 400
    assert len(ui_server["store"].corrections_for(lead_id)) == before


def test_a_stored_script_in_a_note_never_runs(page, ui_server):
    store = ui_server["store"]
    lead_id = "L000007"
    attack = (
        '<script>window.__pwned = "script"</script><img src=x onerror="window.__pwned = \'img\'">'
    )
    store.add_correction(
        lead_id, "persona", "non_buyer", reviewer="mallory", reason="other", note=attack
    )
    _login(page, "rita")
    page.goto(f"/review/leads/{lead_id}")
    note = page.locator("#correction-history .note").first
    assert note.inner_text() == attack
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator("#correction-history img").count() == 0
