"""Suggestions ("leads like this one", issue 19 part A) in the review UI, Flask's test client.

Reclassify a lead → its page shows the suggestions with counts and the method →
the suggestions page lists them with checkboxes → the ticked ones become the
rep's corrections, marked as from a suggestion. Bad input answers 4xx.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from data.store import Store
from review_ui.views import wait_for_suggestions
from tests.support.review_data import lead_rows
from tests.support.review_ui import (  # noqa: F401  (fixtures)
    PASSWORD,
    close_app,
    csrf,
    login,
    make_review_app,
)
from training.similar import forget_models

N = 90


@pytest.fixture(scope="module")
def similar_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("similar-template") / "leadready.db"
    store = Store(f"sqlite:///{path}")
    store.upgrade()
    store.create_user("rep1", "rep", PASSWORD)
    store.create_user("ana", "analyst", PASSWORD)
    predictions, leads, _ = lead_rows(N, np.random.default_rng(1))
    store.upsert_leads(leads)
    store.record_predictions(predictions)
    with store.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    store.dispose()
    return path


@pytest.fixture
def app(tmp_path, similar_db):
    forget_models()
    app = make_review_app(tmp_path, similar_db)
    yield app
    close_app(app)
    forget_models()


@pytest.fixture
def store(app) -> Store:
    return app.extensions["review_ui"].store()


@pytest.fixture
def rep(app):
    client = app.test_client()
    login(app, client, "rep1")
    return client


def _reclassify_student(rep, store, lead_id="L0003"):
    latest = store.latest_prediction(lead_id)
    response = rep.post(
        f"/review/leads/{lead_id}/reclassify",
        data={
            "csrf_token": csrf(rep, f"/review/leads/{lead_id}"),
            "stage": "",
            "persona": "non_buyer",
            "reason": "student_job_seeker",
            "note": "",
            "expected_stage": latest["stage"],
            "expected_persona": "practitioner",
            "prediction_id": str(latest["id"]),
            "next": f"/review/leads/{lead_id}",
        },
    )
    assert response.status_code == 302
    assert wait_for_suggestions(timeout=60)
    (row,) = store.corrections_for(lead_id)
    return row["id"]


def _ticks(html: str) -> list[str]:
    return re.findall(r'name="suggestion" value="(\d+)"', html)


def test_reclassify_then_the_lead_page_offers_leads_like_it_then_bulk_confirm(rep, store):
    cid = _reclassify_student(rep, store)
    page = rep.get("/review/leads/L0003").get_data(as_text=True)
    assert "Leads like this one" in page
    counts = re.search(r'class="similar-counts" data-candidates="(\d+)"', page)
    assert counts and int(counts.group(1)) == N - 1
    assert "nearest neighbours" in page and "Cold start" in page
    assert "Suggestions, not corrections" in page
    preview = re.findall(r'<td><a href="/review/leads/(L\d+)\?back=', page)
    assert len(preview) == 10
    assert f'href="/review/suggestions/{cid}"' in page

    listing = rep.get(f"/review/suggestions/{cid}").get_data(as_text=True)
    ids = _ticks(listing)
    assert len(ids) == N - 1  # every unreviewed practitioner, none ticked for the rep
    assert "checked" not in listing.split('id="suggestion-table"')[1].split("</table>")[0]
    leads = re.findall(r'<tr class="suggestion-open" data-lead="(L\d+)"', listing)
    assert leads[:10] == preview

    token = csrf(rep, f"/review/suggestions/{cid}")
    response = rep.post(
        f"/review/suggestions/{cid}",
        data={
            "csrf_token": token,
            "action": "accept",
            "reason": "student_job_seeker",
            "suggestion": ids[:4],
        },
    )
    assert response.status_code == 302
    after = rep.get(f"/review/suggestions/{cid}").get_data(as_text=True)
    assert "Reclassified 4 suggested leads" in after
    assert len(_ticks(after)) == N - 5
    frame = store.corrections_frame()
    made = frame[frame["suggestion_id"].notna()]
    assert sorted(made["suggestion_id"].astype(int)) == sorted(int(i) for i in ids[:4])
    assert set(made["lead_id"]) == set(leads[:4])
    assert set(made["reviewer"]) == {"rep1"} and set(made["new_label"]) == {"non_buyer"}
    assert made["batch_id"].nunique() == 1
    for lead_id in leads[:4]:
        assert store.labels_for(lead_id)["persona"] == "non_buyer"
    # The batch undoes as one step, like any bulk action.
    batch = made["batch_id"].iloc[0]
    response = rep.post(
        f"/review/batches/{batch}/undo", data={"csrf_token": csrf(rep), "next": "/review/"}
    )
    assert response.status_code == 302
    assert store.labels_for(leads[0])["persona"] == "practitioner"
    listing = rep.get(f"/review/suggestions/{cid}").get_data(as_text=True)
    assert listing.count("(undone)") == 4


def test_save_and_next_walks_the_suggested_leads(rep, store):
    cid = _reclassify_student(rep, store)
    listing = rep.get(f"/review/suggestions/{cid}").get_data(as_text=True)
    leads = re.findall(r'<tr class="suggestion-open" data-lead="(L\d+)"', listing)
    back = f"/review/suggestions/{cid}"
    page = rep.get(f"/review/leads/{leads[0]}?back={back}").get_data(as_text=True)
    assert f"Next in the queue: {leads[1]}" in page


def test_dismiss_writes_no_correction(rep, store):
    cid = _reclassify_student(rep, store)
    ids = _ticks(rep.get(f"/review/suggestions/{cid}").get_data(as_text=True))
    response = rep.post(
        f"/review/suggestions/{cid}",
        data={
            "csrf_token": csrf(rep, f"/review/suggestions/{cid}"),
            "action": "dismiss",
            "suggestion": ids[:2],
        },
    )
    assert response.status_code == 302
    assert len(store.corrections_frame()) == 1
    page = rep.get(f"/review/suggestions/{cid}").get_data(as_text=True)
    assert "Dismissed 2 suggestions" in page
    assert len(_ticks(page)) == N - 3


def test_bad_input_is_a_4xx_and_writes_nothing(rep, store):
    cid = _reclassify_student(rep, store)
    ids = _ticks(rep.get(f"/review/suggestions/{cid}").get_data(as_text=True))
    token = csrf(rep, f"/review/suggestions/{cid}")
    url = f"/review/suggestions/{cid}"
    base = {"csrf_token": token, "action": "accept", "reason": "other"}
    n = len(store.corrections_frame())

    no_csrf = rep.post(url, data={**base, "csrf_token": "", "suggestion": ids[:1]})
    assert no_csrf.status_code == 400
    unknown = rep.post(url, data={**base, "suggestion": [ids[0], "987654"]})
    assert unknown.status_code == 400
    assert "suggestion: unknown id(s) for this correction: 987654" in unknown.get_data(as_text=True)
    garbage = rep.post(url, data={**base, "suggestion": ["1; drop table"]})
    assert garbage.status_code == 400
    assert "suggestion: not a suggestion id" in garbage.get_data(as_text=True)
    assert rep.get("/review/suggestions/999999").status_code == 404
    assert rep.get("/review/leads/NOPE").status_code == 404
    unknown_lead = rep.post("/review/leads/NOPE/similar", data={"csrf_token": token})
    assert unknown_lead.status_code == 404
    no_reason = rep.post(url, data={**base, "reason": "", "suggestion": ids[:1]})
    assert no_reason.status_code == 302
    assert "Reason: choose a reason" in rep.get(url).get_data(as_text=True)
    assert len(store.corrections_frame()) == n

    # Stale: another rep relabelled the first ticked lead since the page was built.
    lead = re.search(
        rf'value="{ids[0]}" id="sg-{ids[0]}" aria-label="Tick (L\d+)"',
        rep.get(url).get_data(as_text=True),
    ).group(1)
    store.add_correction(lead, "persona", "economic_buyer", reviewer="ana")
    stale = rep.post(url, data={**base, "suggestion": ids[:2]})
    assert stale.status_code == 409
    body = stale.get_data(as_text=True)
    assert "no longer hold" in body and f"a rep has labelled the persona of {lead} since" in body
    assert len(store.corrections_frame()) == n + 1  # only ana's


def test_the_lead_page_says_while_suggestions_are_missing_and_can_look_now(rep, store):
    # A reclassify stored without the UI (an import, or before this feature): none built.
    cid = store.add_correction("L0003", "persona", "non_buyer", reviewer="rep1").id
    page = rep.get("/review/leads/L0003").get_data(as_text=True)
    assert f'id="similar-pending-{cid}"' in page and "Reload this page in a moment" in page
    response = rep.post(
        "/review/leads/L0003/similar",
        data={"csrf_token": csrf(rep, "/review/leads/L0003"), "next": "/review/leads/L0003"},
    )
    assert response.status_code == 302
    page = rep.get("/review/leads/L0003").get_data(as_text=True)
    assert "similar-pending" not in page
    assert f'href="/review/suggestions/{cid}"' in page
    assert rep.post("/review/leads/L0003/similar", data={}).status_code == 400  # no CSRF
    assert store.corrections_for("L0003")[-1]["id"] == cid  # looking wrote no correction


def test_the_suggestions_page_needs_a_login(app, rep, store):
    cid = _reclassify_student(rep, store)
    anonymous = app.test_client()
    response = anonymous.get(f"/review/suggestions/{cid}")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path):
    yield
    shutil.rmtree(tmp_path / "home", ignore_errors=True)
