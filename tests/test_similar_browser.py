"""Suggestions ("leads like this one", #19 part A) in a real Chromium: reclassify, tick, confirm.

Drives the same live server as ``tests/test_browser.py`` (its fixtures: the tiny
registry's 300 simulated leads scored by its champion). Suggestions are built
in a thread of that server after the reclassify; the test joins it
(:func:`review_ui.views.wait_for_suggestions`) instead of sleeping.
"""

from __future__ import annotations

import re

import pytest

from review_ui.views import wait_for_suggestions
from review_ui.words import label_words
from tests.support.browser import (  # noqa: F401  (fixtures)
    browser_login,
    browser_page,
    chromium_browser,
    live_ui_server,
    screens,
)

pytestmark = pytest.mark.browser


def test_a_rep_reclassifies_then_confirms_leads_like_it(page, ui_server, tmp_path):  # noqa: F811
    store = ui_server["store"]
    browser_login(page, "rita")
    lead_id = page.locator("tr.q-row").first.get_attribute("data-lead")
    page.goto(f"/review/leads/{lead_id}")
    served = store.labels_for(lead_id)["persona"]
    options = page.locator("#rc-persona option").evaluate_all("os => os.map(o => o.value)")
    new = next(o for o in options[1:] if o != served)
    page.select_option("#rc-persona", new)
    page.select_option("#rc-reason", "wrong_title")
    page.click("#save-stay")
    page.wait_for_selector(".flash-success")
    assert wait_for_suggestions(timeout=120)
    page.reload()

    block = page.locator("section.similar").first
    assert block.locator("h2").inner_text() == "Leads like this one"
    counts = block.locator(".similar-counts")
    n_candidates = int(counts.get_attribute("data-candidates"))
    unreviewed_served = sum(
        1
        for lead, row in store.latest_predictions(with_features=False).items()
        if row["persona"] == served and lead != lead_id and not store.current_labels([lead])
    )
    assert n_candidates == unreviewed_served > 0
    assert f"served {label_words(served)}" in counts.inner_text()
    assert "nearest neighbours" in block.locator(".similar-method").inner_text()
    preview = block.locator("table.similar-preview tbody tr")
    assert preview.count() == min(10, n_candidates)
    page.locator(".flash").evaluate_all("els => els.forEach(el => el.remove())")
    block.screenshot(path=str(screens(tmp_path) / "leads-like-this-one.png"))

    block.locator("a.btn-primary").click()
    page.wait_for_url(re.compile(r"/review/suggestions/\d+$"))
    boxes = page.locator("#suggestion-table input[type=checkbox]")
    assert boxes.count() == min(200, n_candidates)
    assert not any(boxes.nth(k).is_checked() for k in range(3))
    ticked = [
        page.locator("#suggestion-table tbody tr").nth(k).get_attribute("data-lead") for k in (0, 1)
    ]
    boxes.nth(0).check()
    boxes.nth(1).check()
    page.select_option("#sg-action", "accept")
    page.select_option("#sg-reason", "wrong_title")
    page.click("#sg-submit")
    page.wait_for_selector(".flash-success")
    assert "Reclassified 2 suggested leads" in page.locator(".flash-success").inner_text()
    assert page.locator("tr.suggestion-accepted").count() == 2

    for lead in ticked:
        (row,) = [r for r in store.corrections_for(lead) if r["field"] == "persona"]
        assert (row["reviewer"], row["old_label"], row["new_label"]) == ("rita", served, new)
        assert row["suggestion_id"] is not None
    untouched = page.locator("tr.suggestion-open").first.get_attribute("data-lead")
    assert store.corrections_for(untouched) == []


def test_leads_like_this_one_fit_a_phone(browser, ui_server, tmp_path):  # noqa: F811
    from tests.support.browser import browser_context, no_horizontal_overflow

    store = ui_server["store"]
    context = browser_context(browser, ui_server, 390, 844, is_mobile=True, has_touch=True)
    page = context.new_page()  # noqa: F811
    try:
        browser_login(page, "rita")
        lead_id = page.locator("tr.q-row").nth(3).get_attribute("data-lead")
        served = store.labels_for(lead_id)["stage"]
        new = next(s for s in ("awareness", "consideration", "decision") if s != served)
        store.add_correction(lead_id, "stage", new, reviewer="rita", reason="other")
        page.goto(f"/review/leads/{lead_id}")
        page.locator("button[id^=similar-build-]").first.click()  # "Look now"
        page.wait_for_selector("section.similar table.similar-preview")
        no_horizontal_overflow(page)
        box = page.locator("section.similar a.btn-primary").first.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390
        page.locator("section.similar a.btn-primary").first.click()
        page.wait_for_url(re.compile(r"/review/suggestions/\d+$"))
        no_horizontal_overflow(page)
        box = page.locator("#sg-submit").bounding_box()
        assert box and box["x"] + box["width"] <= 390
        page.screenshot(path=str(screens(tmp_path) / "suggestions-390.png"), full_page=True)
    finally:
        context.close()
