"""Routing thresholds shown with each answer: in ``/v1/score``, ``/v1/score/batch`` and OpenAPI."""

from __future__ import annotations

import jsonschema_rs
import pytest

from tests.support.api import lead_request


def _validator(doc: dict, name: str):
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    return jsonschema_rs.Draft202012Validator(schema)


def _check(body: dict) -> None:
    routing = body["routing"]
    assert routing["sales_at"] == 0.5
    assert routing["review_band"] == [0.4, 0.6]
    assert routing["sales_ready_stages"] == ["decision", "purchase"]
    assert routing["nurture_personas"] == ["non_buyer"]
    assert routing["min_persona_confidence"] == 0.4
    assert routing["readiness"] == body["readiness"]
    r, route, rule = body["readiness"], body["route"], routing["rule"]
    low, high = routing["review_band"]
    if rule == "persona":
        assert route == "nurture" and body["persona"]["label"] == "non_buyer"
        assert body["persona"]["confidence"] >= routing["min_persona_confidence"]
        assert routing["why"].startswith("persona non_buyer")
    elif rule == "review_band":
        assert route == "review" and low < r < high
        assert "within ±0.10 of sales threshold 0.50" in routing["why"]
    else:
        assert rule == "readiness"
        assert not low < r < high
        assert route == ("sales" if r >= routing["sales_at"] else "nurture")
        assert f"{r:.2f}" in routing["why"] and "sales threshold 0.50" in routing["why"]


def test_each_answer_shows_the_routing_thresholds_and_rule(
    api_client, api_headers, tiny_registry, openapi_doc
):
    sim = tiny_registry.simulation
    rules = set()
    for index in range(0, 300, 10):
        body = api_client.post(
            "/v1/score",
            json=lead_request(sim, index, as_of=tiny_registry.as_of),
            headers=api_headers["client"],
        ).json
        _validator(openapi_doc, "ScoreResponse").validate(body)
        _check(body)
        rules.add(body["routing"]["rule"])
    assert "readiness" in rules  # not every answer is a review


def test_batch_answers_show_the_routing_thresholds(
    api_client, api_headers, tiny_registry, openapi_doc
):
    sim = tiny_registry.simulation
    items = [lead_request(sim, i, as_of=tiny_registry.as_of) for i in range(5)]
    body = api_client.post(
        "/v1/score/batch", json={"leads": items}, headers=api_headers["client"]
    ).json
    _validator(openapi_doc, "BatchScoreResponse").validate(body)
    assert body["scored"] == 5
    for item in body["results"]:
        _check(item)


def test_openapi_documents_the_routing_fields(openapi_doc):
    schema = openapi_doc["components"]["schemas"]["Routing"]
    for field in ("sales_at", "review_band", "readiness", "rule", "why", "sales_ready_stages"):
        assert field in schema["properties"] and schema["properties"][field].get("description")
    assert "routing" in openapi_doc["components"]["schemas"]["ScoreResponse"]["properties"]


@pytest.fixture(scope="module")
def openapi_doc(api_app):
    return api_app.test_client().get("/openapi.json").json
