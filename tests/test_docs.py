"""``/docs``, ``/``, the OpenAPI examples and the rounding of API numbers (issue #18)."""

from __future__ import annotations

import re

import jsonschema_rs
import pytest

from serve.rounding import round_floats


def _schema_of(doc: dict, content: dict) -> jsonschema_rs.Draft202012Validator:
    schema = {**content["schema"], "components": doc["components"]}
    return jsonschema_rs.Draft202012Validator(schema)


@pytest.fixture(scope="module")
def doc(api_app):
    return api_app.test_client().get("/openapi.json").json


def test_a_browser_at_the_root_goes_to_the_review_ui(api_client):
    response = api_client.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/review/"


def test_an_api_client_at_the_root_gets_a_json_index(api_client):
    for accept in (None, "application/json", "*/*"):
        headers = {"Accept": accept} if accept else {}
        response = api_client.get("/", headers=headers)
        assert response.status_code == 200, accept
        body = response.json
        assert body["links"]["docs"] == "/docs"
        assert body["links"]["openapi"] == "/openapi.json"
        assert body["links"]["review_ui"] == "/review/"
        for path in body["links"].values():
            assert api_client.get(path).status_code != 404, path


def test_docs_page_runs_swagger_ui_from_package_files(api_client):
    response = api_client.get("/docs")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'data-spec-url="/openapi.json"' in html
    assert not re.search(r"""(src|href)=["']https?://""", html)  # nothing from the internet
    assert "<script>" not in html  # no inline script: the CSP forbids it
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    for asset in re.findall(r"""(?:src|href)="(/docs/[^"]+)\"""", html):
        got = api_client.get(asset)
        assert got.status_code == 200 and len(got.data) > 100, asset
    bundle = api_client.get("/docs/swagger-ui/swagger-ui-bundle.js")
    assert b"SwaggerUIBundle" in bundle.data


def test_every_request_body_has_examples_that_its_schema_accepts(doc):
    bodies = 0
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for param in op.get("parameters", []):
                assert "example" in param, (method, path, param["name"])
            body = op.get("requestBody")
            if body is None:
                continue
            content = body["content"]["application/json"]
            examples = content.get("examples")
            assert examples, (method, path)
            validator = _schema_of(doc, content)
            for name, example in examples.items():
                errors = [e.message for e in validator.iter_errors(example["value"])]
                assert errors == [], (method, path, name, errors)
                bodies += 1
    assert bodies >= 6
    score = doc["paths"]["/v1/score"]["post"]["requestBody"]["content"]["application/json"]
    lead = score["examples"]["lead_with_events"]["value"]
    assert lead["lead"]["lead_id"] == "L000001" and len(lead["events"]) >= 5


def test_vocabularies_are_documented(doc):
    schemas = doc["components"]["schemas"]
    event = schemas["EventIn"]["properties"]
    assert "demo_request" in event["type"]["enum"]
    assert "pricing" in event["page_category"]["examples"]
    assert "Known values" in event["page_category"]["description"]
    assert "whitepaper" in event["content_type"]["examples"]


def test_score_answers_carry_four_digits(api_client, doc, api_headers):
    example = doc["paths"]["/v1/score"]["post"]["requestBody"]["content"]["application/json"]
    body = dict(example["examples"]["lead_with_events"]["value"])
    response = api_client.post("/v1/score", json=body, headers=api_headers["client"])
    assert response.status_code == 200, response.json
    text = response.get_data(as_text=True)
    decimals = [len(m) for m in re.findall(r"\d\.(\d+)", text)]
    assert decimals and max(decimals) <= 4
    probabilities = response.json["stage"]["probabilities"]
    assert sum(probabilities.values()) == pytest.approx(1, abs=1e-3)


def test_round_floats_keeps_the_shape_and_can_be_switched_off():
    value = {"a": 0.123456, "b": [1.987654, {"c": 2}], "d": None, "e": "0.123456", "f": True}
    assert round_floats(value, 4) == {
        "a": 0.1235,
        "b": [1.9877, {"c": 2}],
        "d": None,
        "e": "0.123456",
        "f": True,
    }
    assert round_floats(value, -1) is value
