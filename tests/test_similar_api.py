"""``GET /v1/corrections/<id>/suggestions`` (issue 19, part A): the stored suggestions, read-only."""

from __future__ import annotations

from serve.state import get_state
from tests.support.api import post_correction, scored_lead
from training.similar import build_suggestions


def test_the_suggestions_of_a_correction_over_the_api(
    api_app, api_client, api_headers, tiny_registry
):
    lead_id = scored_lead(api_app, api_client, api_headers, tiny_registry)
    store = get_state(api_app).store
    served = store.labels_for(lead_id)["persona"]
    new = next(p for p in ("practitioner", "non_buyer", "economic_buyer") if p != served)
    response = post_correction(
        api_client, lead_id, {"persona": new, "reviewer": "crm-ana"}, api_headers["client"]
    )
    assert response.status_code == 201
    [row] = response.json["corrections"]
    url = f"/v1/corrections/{row['id']}/suggestions"
    missing = api_client.get(url, headers=api_headers["client"])
    assert missing.status_code == 404
    assert missing.json["error"]["field"] == "correction_id"

    built = build_suggestions(store, row["id"])
    got = api_client.get(url, headers=api_headers["client"])
    assert got.status_code == 200, got.json
    body = got.json
    assert (body["field"], body["from_label"], body["to_label"]) == ("persona", served, new)
    assert body["method"] == built.method
    assert body["n_candidates"] == built.n_candidates
    assert [i["lead_id"] for i in body["items"]] == [i["lead_id"] for i in built.items]
    assert all(i["status"] == "open" for i in body["items"])
    assert api_client.get(url).status_code == 401


def test_a_bad_correction_id_is_refused_after_the_key_is_checked(api_client, api_headers):
    # Without a key the answer is 401 whatever the id (the id is not read first).
    assert api_client.get("/v1/corrections/%3A/suggestions").status_code == 401
    bad = api_client.get("/v1/corrections/%3A/suggestions", headers=api_headers["client"])
    assert bad.status_code == 400
    assert bad.json["error"]["field"] == "correction_id"
    huge = api_client.get(
        "/v1/corrections/" + "9" * 40 + "/suggestions", headers=api_headers["client"]
    )
    assert huge.status_code == 400
