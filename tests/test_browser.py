"""The review UI in a real Chromium (Playwright, sync API): a rep's whole loop.

A werkzeug server runs the real app (``leadready.app.create_app`` + the UI) on a
free port, over a store holding the tiny registry's 300 simulated leads,
scored by its champion (and a later rescoring of some of them by the other
version, so the queue has stage changes and the lead pages a history).

Screenshots go to pytest's tmp folder; set ``LEADREADY_SCREENSHOTS=docs/img``
to refresh the README's pictures.
"""

from __future__ import annotations

import re

import pytest

from review_ui.words import label_words
from tests.support.browser import (  # noqa: F401  (fixtures)
    RETRAIN_GATE,
    browser_context,
    browser_login,
    browser_page,
    chromium_browser,
    live_ui_server,
    no_horizontal_overflow,
    screens,
)

pytestmark = pytest.mark.browser


def test_a_rep_reclassifies_a_lead_from_the_queue(page, ui_server, tmp_path):
    store = ui_server["store"]
    browser_login(page, "rita")
    rows = page.locator("tr.q-row")
    assert rows.count() == 50
    assert page.locator("#pager-top").inner_text().startswith("300 leads")
    assert page.locator("tr.q-row .chip").count() > 0
    page.locator(".flash").evaluate_all("els => els.forEach(el => el.remove())")
    page.screenshot(path=str(screens(tmp_path) / "review-queue.png"))

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
    page.screenshot(path=str(screens(tmp_path) / "lead-page.png"), full_page=True)


def test_keyboard_confirm_and_undo_swap_the_row_in_place(page, ui_server):
    store = ui_server["store"]
    browser_login(page, "rita")
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
    browser_login(page, "rita")
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
    browser_login(page, "ana")
    page.goto("/review/models")
    page.click("#retrain-button")
    page.wait_for_url("**/review/models")
    page.wait_for_selector("#job-state.state-running", timeout=20_000)  # shown while it runs
    RETRAIN_GATE.set()
    page.wait_for_selector("#job-state.state-succeeded", timeout=20_000)  # the page polls
    assert "champion kept" in page.locator("#job-result").inner_text()
    assert ui_server["app"].extensions["review_ui"].jobs.status()["started_by"] == "ana"


def test_a_post_without_csrf_token_is_refused(page, ui_server):
    browser_login(page, "rita")
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
    browser_login(page, "rita")
    page.goto(f"/review/leads/{lead_id}")
    note = page.locator("#correction-history .note").first
    assert note.inner_text() == attack
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator("#correction-history img").count() == 0


# ------------------------------------------------ issue #18: keys, layouts, a11y


def _wait_flash(page, text: str) -> None:
    page.wait_for_selector(f".flash:has-text('{text}')")


def test_the_documented_keys_save_and_walk_the_queue(page, ui_server):
    """1-4, ArrowDown, Enter saves and opens the next lead; c confirms and moves on; u; g q."""
    store = ui_server["store"]
    browser_login(page, "rita")
    page.goto("/review/?reviewed=no&per=25")
    page.keyboard.press("j")
    first = page.locator("tr.q-row.is-focused").get_attribute("data-lead")
    second = page.locator("tr.q-row").nth(1).get_attribute("data-lead")
    third = page.locator("tr.q-row").nth(2).get_attribute("data-lead")
    # Earlier tests may have left rows on these leads (a confirm and its undo): count from here.
    seen = {lead: len(store.corrections_for(lead)) for lead in (first, second)}
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf"/review/leads/{first}\?back="))
    stage_two = page.locator("#rc-stage option").nth(2).get_attribute("value")
    reason_one = page.locator("#rc-reason option").nth(1).get_attribute("value")

    page.keyboard.press("2")
    assert page.evaluate("() => document.activeElement.id") == "rc-reason"
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf"/review/leads/{second}\?back="))
    assert "reviewed%3Dno" in page.url and "per%3D25" in page.url  # the queue's filters
    rows = store.corrections_for(first)[seen[first] :]
    assert [(r["field"], r["new_label"], r["reason"], r["reviewer"]) for r in rows] == [
        ("stage", stage_two, reason_one, "rita")
    ]
    assert f"Next in the queue: {second}" in page.locator(".flash").inner_text()

    page.keyboard.press("c")
    page.wait_for_url(re.compile(rf"/review/leads/{third}\?back="))
    assert {r["kind"] for r in store.corrections_for(second)[seen[second] :]} == {"confirm"}

    page.go_back()
    page.reload()  # the lead page as it is now: the confirm is the rep's to undo
    page.wait_for_url(re.compile(rf"/review/leads/{second}"))
    assert "Goes back to" in page.locator("#undo-what").inner_text()
    page.keyboard.press("u")
    _wait_flash(page, "Undone")
    kinds = [r["kind"] for r in store.corrections_for(second)[seen[second] :]]
    assert kinds.count("undo") == kinds.count("confirm") == 2

    page.keyboard.press("g")
    page.keyboard.press("q")
    page.wait_for_url(re.compile(r"/review/\?reviewed=no&per=25$"))


def test_a_bulk_change_confirms_its_count_and_undoes_as_one_batch(page, ui_server):
    store = ui_server["store"]
    browser_login(page, "rita")
    page.goto("/review/?reviewed=no")
    page.keyboard.press("j")
    page.keyboard.press("x")
    page.keyboard.press("j")
    picked = [page.locator("tr.q-row").nth(i).get_attribute("data-lead") for i in range(2)]
    before = {lead: len(store.corrections_for(lead)) for lead in picked}
    page.keyboard.press("1")  # stage 1 for the ticked rows (ticks the highlighted one too)
    assert page.locator("#selected-count").inner_text() == "2"
    assert page.locator("#bulk-submit").inner_text() == "Apply to 2 leads…"
    stage_one = page.locator("#bulk-stage option").nth(1).get_attribute("value")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.wait_for_selector("#bulk-confirm")
    assert page.locator("h1").inner_text().strip() == "Reclassify 2 leads?"
    assert {lead: len(store.corrections_for(lead)) for lead in picked} == before  # not yet
    page.keyboard.press("Enter")  # the confirm button has the focus
    _wait_flash(page, "Reclassified 2 leads.")
    rows = [r for lead in picked for r in store.corrections_for(lead)[before[lead] :]]
    assert [r["new_label"] for r in rows] == [stage_one, stage_one]
    assert len({r["batch_id"] for r in rows}) == 1 and rows[0]["batch_id"]

    page.click("#batch-undo")
    _wait_flash(page, "Undid the batch: 2 corrections on 2 leads put back.")
    for lead in picked:
        new = store.corrections_for(lead)[before[lead] :]
        assert [r["kind"] for r in new] == ["reclassify", "undo"]


def test_desk_layout_at_1366_shows_eight_leads_above_the_fold(browser, ui_server, tmp_path):
    context = browser_context(browser, ui_server, 1366, 768)
    page = context.new_page()
    try:
        browser_login(page, "rita")
        page.locator(".flash").evaluate_all("els => els.forEach(el => el.remove())")
        page.screenshot(path=str(screens(tmp_path) / "queue-1366.png"))
        no_horizontal_overflow(page)
        bottoms = page.locator("tr.q-row").evaluate_all(
            "rows => rows.map(r => r.getBoundingClientRect().bottom)"
        )
        assert sum(b <= 768 for b in bottoms) >= 8, bottoms[:10]
        assert page.locator("#more-filters").get_attribute("open") is None  # collapsed
        assert page.locator("#pager-top a[rel=next]").is_visible()
        assert page.locator("#pager-bottom a[rel=next]").count() == 1
        labels = page.locator("tr.q-row .label").all_inner_texts()
        assert labels and not any("_" in text for text in labels)
    finally:
        context.close()


def test_phone_layout_at_390_is_one_column_of_cards(browser, ui_server, tmp_path):
    context = browser_context(browser, ui_server, 390, 844, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        browser_login(page, "rita")
        page.locator(".flash").evaluate_all("els => els.forEach(el => el.remove())")
        no_horizontal_overflow(page)
        assert not page.locator("table.queue thead").is_visible()
        assert page.locator("tr.q-row").first.evaluate("r => getComputedStyle(r).display") == (
            "grid"
        )
        for selector in (
            "#search",
            "nav.nav a:has-text('Queue')",
            "button:has-text('Log out')",
            "tr.q-row >> nth=0 >> a.lead-link",
            "tr.q-row >> nth=0 >> button[data-action=confirm]",
        ):
            box = page.locator(selector).first.bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, selector
        page.screenshot(path=str(screens(tmp_path) / "queue-390.png"))

        page.locator("tr.q-row a.lead-link").first.click()
        page.wait_for_url(re.compile(r"/review/leads/"))
        no_horizontal_overflow(page)
        for selector in ("#save-next", "#rc-stage", "#rc-reason", "#confirm-next"):
            box = page.locator(selector).bounding_box()
            assert box and box["x"] + box["width"] <= 390, selector
        page.screenshot(path=str(screens(tmp_path) / "lead-390.png"), full_page=True)
    finally:
        context.close()


def test_desk_screenshot_at_1440(browser, ui_server, tmp_path):
    context = browser_context(browser, ui_server, 1440, 900)
    page = context.new_page()
    try:
        browser_login(page, "rita")
        page.locator(".flash").evaluate_all("els => els.forEach(el => el.remove())")
        no_horizontal_overflow(page)
        # A wide desk shows the queue as a table, every column of it.
        assert page.locator("tr.q-row").count() >= 8
        assert page.locator("tr.q-row .col-why").first.is_visible()
        page.screenshot(path=str(screens(tmp_path) / "queue-1440.png"))
    finally:
        context.close()


@pytest.mark.parametrize("where", ["login", "queue", "lead", "dashboard"])
def test_pages_have_no_serious_accessibility_violations(browser, ui_server, where):
    from axe_playwright_python.sync_playwright import Axe

    context = browser_context(browser, ui_server, 1366, 768, bypass_csp=True)
    page = context.new_page()
    try:
        if where == "login":
            page.goto("/login")
        else:
            browser_login(page, "rita")
            if where == "lead":
                page.locator("tr.q-row a.lead-link").first.click()
                page.wait_for_url(re.compile(r"/review/leads/"))
            elif where == "dashboard":
                page.goto("/review/dashboard")
        results = Axe().run(page)
        serious = [
            (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
            for v in results.response["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert serious == [], serious
    finally:
        context.close()


def test_the_api_page_renders_every_endpoint_offline(page, ui_server):
    """/docs runs Swagger UI from package files under its CSP, with the score example."""
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto("/docs")
    page.wait_for_selector('.opblock-summary-path[data-path="/v1/score/batch"]')
    paths = page.locator(".opblock-summary-path").evaluate_all(
        "els => els.map(e => e.getAttribute('data-path'))"
    )
    assert "/v1/score" in paths and "/v1/leads/{lead_id}/corrections" in paths
    page.locator('.opblock-post .opblock-summary-path[data-path="/v1/score"]').click()
    page.wait_for_selector(".opblock.is-open .body-param__example, .opblock.is-open .microlight")
    assert "L000001" in page.locator(".opblock.is-open").inner_text()
    assert all(url.startswith(ui_server["base"]) for url in requested), requested


def test_the_lead_page_tab_order_follows_the_form(page, ui_server):
    """Tab walks the correction form in reading order, every control with a name."""
    browser_login(page, "rita")
    page.locator("tr.q-row a.lead-link").first.click()
    page.wait_for_url(re.compile(r"/review/leads/"))
    page.focus("#rc-stage")
    order = []
    for _ in range(6):
        order.append(page.evaluate("() => document.activeElement.id"))
        page.keyboard.press("Tab")
    assert order == ["rc-stage", "rc-persona", "rc-reason", "rc-note", "save-next", "save-stay"]
    unnamed = page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
            .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
            .map(el => el.name || el.id)"""
    )
    assert unnamed == []


def test_queue_keys_k_o_and_slash(page, ui_server):
    browser_login(page, "rita")
    page.keyboard.press("j")
    page.keyboard.press("j")
    page.keyboard.press("k")
    first = page.locator("tr.q-row").first.get_attribute("data-lead")
    assert page.locator("tr.q-row.is-focused").get_attribute("data-lead") == first
    page.keyboard.press("/")
    assert page.evaluate("() => document.activeElement.id") == "search"
    page.keyboard.press("Escape")
    page.locator("#search").evaluate("el => el.blur()")
    page.keyboard.press("o")
    page.wait_for_url(re.compile(rf"/review/leads/{first}\?back="))
