"""The review loop over the API: corrections from a CRM and the queue, same store as the UI."""

from __future__ import annotations

import pytest

from data.review_queue import review_queue
from serve.state import get_state
from tests.support.api import post_correction, scored_lead


def test_a_correction_is_stored_append_only_with_who_old_and_new(
    api_app, api_client, api_headers, tiny_registry
):
    lead_id = scored_lead(api_app, api_client, api_headers, tiny_registry)
    store = get_state(api_app).store
    before = store.labels_for(lead_id)["stage"]
    new = next(s for s in ("awareness", "consideration", "decision") if s != before)
    response = post_correction(
        api_client,
        lead_id,
        {"stage": new, "reviewer": "crm-ana", "reason": "not_in_market", "note": "asked"},
        api_headers["client"],
    )
    assert response.status_code == 201, response.json
    [row] = response.json["corrections"]
    assert (row["field"], row["old_label"], row["new_label"]) == ("stage", before, new)
    assert response.json["conflict"] is False
    [stored] = store.corrections_for(lead_id)
    # Marked external and attributed to the key that sent it (#17, finding 4).
    assert (stored["reviewer"], stored["source"], stored["note"]) == ("ext:crm-ana", "api", "asked")
    assert stored["api_key"] == "test-client"
    assert (response.json["reviewer"], response.json["api_key"]) == ("ext:crm-ana", "test-client")

    # A second correction appends; history keeps both, current is the latest.
    again = post_correction(
        api_client, lead_id, {"stage": before, "reviewer": "crm-bo"}, api_headers["client"]
    )
    assert again.status_code == 201
    history = api_client.get(f"/v1/leads/{lead_id}/corrections", headers=api_headers["client"])
    assert history.status_code == 200
    assert [c["new_label"] for c in history.json["corrections"]] == [new, before]
    assert history.json["current"]["stage"] == before


def test_both_labels_and_a_conflict_are_reported(api_app, api_client, api_headers, tiny_registry):
    lead_id = scored_lead(api_app, api_client, api_headers, tiny_registry, index=1)
    first = post_correction(
        api_client,
        lead_id,
        {"stage": "decision", "persona": "practitioner", "reviewer": "rep-1"},
        api_headers["client"],
    )
    assert first.status_code == 201
    assert {c["field"] for c in first.json["corrections"]} == {"stage", "persona"}
    # rep-2 still saw the model's stage: the correction is kept and flagged.
    second = post_correction(
        api_client,
        lead_id,
        {"stage": "awareness", "reviewer": "rep-2", "expected": {"stage": "consideration"}},
        api_headers["client"],
    )
    assert second.status_code == 201
    assert second.json["conflict"] is True
    assert get_state(api_app).store.labels_for(lead_id)["stage"] == "awareness"
    assert len(get_state(api_app).store.corrections_for(lead_id)) == 3


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"reviewer": "x"}, 400, None),
        ({"stage": "decision"}, 400, "reviewer"),
        ({"stage": "not-a-stage", "reviewer": "x"}, 400, "stage"),
        ({"persona": "astronaut", "reviewer": "x"}, 400, "persona"),
        ({"stage": "decision", "reviewer": "x", "reason": "because"}, 400, "reason"),
        ({"stage": "decision", "reviewer": "x", "colour": "red"}, 400, "colour"),
        ({"stage": "decision", "reviewer": "x", "note": "n" * 2001}, 400, "note"),
        ({"stage": "decision", "reviewer": "x", "kind": "undo"}, 400, "kind"),
        ({"stage": 3, "reviewer": "x"}, 400, "stage"),
    ],
)
def test_bad_corrections_get_4xx_naming_the_field_and_store_nothing(
    api_app, api_client, api_headers, tiny_registry, body, status, field
):
    lead_id = scored_lead(api_app, api_client, api_headers, tiny_registry, index=2)
    response = post_correction(api_client, lead_id, body, api_headers["client"])
    assert response.status_code == status, response.json
    if field is not None:
        assert response.json["error"]["field"] == field
    assert get_state(api_app).store.corrections_for(lead_id) == []


def test_unknown_lead_content_type_and_auth(api_client, api_headers):
    ok = {"stage": "decision", "reviewer": "x"}
    missing = post_correction(api_client, "no-such-lead", ok, api_headers["client"])
    assert missing.status_code == 404
    assert missing.json["error"]["field"] == "lead_id"
    assert post_correction(api_client, "no-such-lead", ok, {}).status_code == 401
    assert (
        post_correction(api_client, "no-such-lead", ok, api_headers["revoked"]).status_code == 403
    )
    form = api_client.post(
        "/v1/leads/x/corrections", data="stage=decision", headers=api_headers["client"]
    )
    assert form.status_code == 415


def test_the_queue_is_the_same_through_the_api_and_the_function(
    api_app, api_client, api_headers, tiny_registry
):
    for i in range(3):
        scored_lead(api_app, api_client, api_headers, tiny_registry, index=10 + i)
    response = api_client.get("/v1/review/queue?limit=20", headers=api_headers["client"])
    assert response.status_code == 200
    page = review_queue(get_state(api_app).store, limit=20)
    assert response.json["total"] == page.total
    assert [i["lead_id"] for i in response.json["items"]] == [i.lead_id for i in page.items]
    assert all(item["reasons"] is not None for item in response.json["items"])
    priorities = [i["priority"] for i in response.json["items"] if not i["reviewed"]]
    assert priorities == sorted(priorities, reverse=True)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("reviewed=maybe", "reviewed"),
        ("sort=1", "sort"),
    ],
)
def test_bad_queue_parameters_name_the_parameter(api_client, api_headers, query, field):
    response = api_client.get(f"/v1/review/queue?{query}", headers=api_headers["client"])
    assert response.status_code == 400
    assert response.json["error"]["field"] == field


def test_the_review_endpoints_are_in_the_openapi_document(api_client):
    doc = api_client.get("/openapi.json").json
    assert "post" in doc["paths"]["/v1/leads/{lead_id}/corrections"]
    assert "get" in doc["paths"]["/v1/review/queue"]


def test_metrics_export_the_alignment_gauges(api_app, api_client, api_headers, tiny_registry):
    lead_id = scored_lead(api_app, api_client, api_headers, tiny_registry, index=20)
    assert (
        post_correction(
            api_client,
            lead_id,
            {"stage": "decision", "reviewer": "gauge-rep"},
            api_headers["client"],
        ).status_code
        == 201
    )
    get_state(api_app).metrics.alignment.expire()  # the next scrape reads the store
    text = api_client.get("/metrics").get_data(as_text=True)
    assert "# HELP leadready_override_rate" in text
    override = next(
        line for line in text.splitlines() if line.startswith("leadready_override_rate ")
    )
    assert 0.0 <= float(override.split()[1]) <= 1.0
    assert "# HELP leadready_agreement_rate" in text
