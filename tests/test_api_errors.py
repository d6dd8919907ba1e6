"""Bad input never gets a 500: each kind answers 4xx JSON naming the offending field."""

from __future__ import annotations

import json

import pytest

LEAD = {"lead_id": "bad-1", "job_title": "VP Engineering", "company_size": 120}
EVENT = {"timestamp": "2026-06-01T10:00:00Z", "type": "page_view", "page_category": "pricing"}


def _events(n: int = 5) -> list[dict]:
    return [dict(EVENT) for _ in range(n)]


def _with(path: str, value):
    """A valid single-lead body with ``value`` set at ``path`` (dotted, ints index lists)."""
    body = {"lead": dict(LEAD), "events": _events()}
    parts = path.split(".")
    target = body
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    last = parts[-1]
    if last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return body


def _without(path: str):
    body = _with(path, None)
    parts = path.split(".")
    target = body
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    del target[parts[-1]]
    return body


def _bad_lead_event(i: int, **changes):
    body = {"lead": dict(LEAD), "events": _events()}
    body["events"][i] = {**EVENT, **changes}
    return body


# (id, endpoint, raw body or JSON-able, content type, status, field)
CASES = [
    ("not-json", "/v1/score", "{not json", "application/json", 400, None),
    ("truncated-json", "/v1/score", '{"lead": {"lead_id": "a"', "application/json", 400, None),
    (
        "nan-literal",
        "/v1/score",
        '{"lead_id": "a", "features": {"company_size": NaN}}',
        "application/json",
        400,
        None,
    ),
    ("invalid-utf8", "/v1/score", b'{"lead": {"lead_id": "\xff"}}', "application/json", 400, None),
    ("body-is-list", "/v1/score", [LEAD], "application/json", 400, None),
    ("body-is-string", "/v1/score", "lead", "application/json", 400, None),
    ("empty-object", "/v1/score", {}, "application/json", 400, "lead"),
    (
        "unknown-top-field",
        "/v1/score",
        {"lead": LEAD, "priority": 1},
        "application/json",
        400,
        "priority",
    ),
    ("lead-not-object", "/v1/score", {"lead": 5}, "application/json", 400, "lead"),
    (
        "missing-lead-id",
        "/v1/score",
        _without("lead.lead_id"),
        "application/json",
        400,
        "lead.lead_id",
    ),
    (
        "empty-lead-id",
        "/v1/score",
        _with("lead.lead_id", ""),
        "application/json",
        400,
        "lead.lead_id",
    ),
    (
        "lead-id-number",
        "/v1/score",
        _with("lead.lead_id", 42),
        "application/json",
        400,
        "lead.lead_id",
    ),
    (
        "unknown-lead-field",
        "/v1/score",
        _with("lead.favourite_colour", "red"),
        "application/json",
        400,
        "lead.favourite_colour",
    ),
    (
        "company-size-text",
        "/v1/score",
        _with("lead.company_size", "many"),
        "application/json",
        400,
        "lead.company_size",
    ),
    (
        "company-size-negative",
        "/v1/score",
        _with("lead.company_size", -3),
        "application/json",
        400,
        "lead.company_size",
    ),
    (
        "created-at-unparseable",
        "/v1/score",
        _with("lead.created_at", "last tuesday"),
        "application/json",
        400,
        "lead.created_at",
    ),
    (
        "job-title-too-long",
        "/v1/score",
        _with("lead.job_title", "x" * 301),
        "application/json",
        400,
        "lead.job_title",
    ),
    (
        "extra-nested-object",
        "/v1/score",
        _with("lead.extra", {"score": {"a": 1}}),
        "application/json",
        400,
        "lead.extra.score",
    ),
    (
        "events-not-list",
        "/v1/score",
        _with("events", {"0": EVENT}),
        "application/json",
        400,
        "events",
    ),
    (
        "event-not-object",
        "/v1/score",
        _with("events.2", "page_view"),
        "application/json",
        400,
        "events[2]",
    ),
    (
        "event-missing-timestamp",
        "/v1/score",
        _without("events.0.timestamp"),
        "application/json",
        400,
        "events[0].timestamp",
    ),
    (
        "event-timestamp-unparseable",
        "/v1/score",
        _bad_lead_event(3, timestamp="yesterday"),
        "application/json",
        400,
        "events[3].timestamp",
    ),
    (
        "event-timestamp-bool",
        "/v1/score",
        _bad_lead_event(1, timestamp=True),
        "application/json",
        400,
        "events[1].timestamp",
    ),
    (
        "event-unknown-type",
        "/v1/score",
        _bad_lead_event(1, type="tweet"),
        "application/json",
        400,
        "events[1].type",
    ),
    (
        "event-missing-type",
        "/v1/score",
        _without("events.4.type"),
        "application/json",
        400,
        "events[4].type",
    ),
    (
        "event-unknown-field",
        "/v1/score",
        _bad_lead_event(0, referrer="google"),
        "application/json",
        400,
        "events[0].referrer",
    ),
    (
        "event-other-lead",
        "/v1/score",
        _bad_lead_event(2, lead_id="someone-else"),
        "application/json",
        400,
        "events[2].lead_id",
    ),
    (
        "as-of-unparseable",
        "/v1/score",
        {"lead": LEAD, "as_of": "soon"},
        "application/json",
        400,
        "as_of",
    ),
    (
        "features-not-object",
        "/v1/score",
        {"lead_id": "a", "features": [1, 2]},
        "application/json",
        400,
        "features",
    ),
    (
        "features-missing-lead-id",
        "/v1/score",
        {"features": {"company_size": 5}},
        "application/json",
        400,
        "lead_id",
    ),
    (
        "features-unknown-column",
        "/v1/score",
        {"lead_id": "a", "features": {"shoe_size": 42}},
        "application/json",
        400,
        "features.shoe_size",
    ),
    (
        "feature-value-object",
        "/v1/score",
        {"lead_id": "a", "features": {"company_size": {"v": 5}}},
        "application/json",
        400,
        "features.company_size",
    ),
    (
        "feature-and-lead",
        "/v1/score",
        {"lead_id": "a", "features": {}, "lead": LEAD},
        "application/json",
        400,
        "lead",
    ),
    (
        "content-type-text",
        "/v1/score",
        json.dumps({"lead": LEAD}),
        "text/plain",
        415,
        "Content-Type",
    ),
    (
        "content-type-form",
        "/v1/score",
        "lead=a",
        "application/x-www-form-urlencoded",
        415,
        "Content-Type",
    ),
    (
        "content-type-latin1",
        "/v1/score",
        json.dumps({"lead": LEAD}),
        "application/json; charset=latin-1",
        415,
        "Content-Type",
    ),
    ("batch-not-object", "/v1/score/batch", [{"lead": LEAD}], "application/json", 400, None),
    ("batch-missing-leads", "/v1/score/batch", {}, "application/json", 400, "leads"),
    ("batch-empty", "/v1/score/batch", {"leads": []}, "application/json", 400, "leads"),
    (
        "batch-leads-not-list",
        "/v1/score/batch",
        {"leads": {"lead": LEAD}},
        "application/json",
        400,
        "leads",
    ),
    (
        "batch-unknown-field",
        "/v1/score/batch",
        {"leads": [{"lead": LEAD}], "mode": "fast"},
        "application/json",
        400,
        "mode",
    ),
    (
        "batch-too-many",
        "/v1/score/batch",
        {"leads": [{"lead": {"lead_id": f"l{i}"}} for i in range(51)]},
        "application/json",
        413,
        "leads",
    ),
    ("batch-content-type", "/v1/score/batch", "leads", "text/csv", 415, "Content-Type"),
]


@pytest.mark.parametrize(
    ("endpoint", "body", "content_type", "status", "field"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_input_is_4xx_naming_the_field(
    endpoint, body, content_type, status, field, api_client, api_headers
):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    response = api_client.post(
        endpoint, data=data, content_type=content_type, headers=api_headers["client"]
    )
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    error = response.json["error"]
    assert error["field"] == field
    assert isinstance(error["message"], str) and error["message"]
    assert error["details"] and error["details"][0]["field"] == field


def test_there_are_at_least_thirty_kinds_of_bad_input():
    assert len({case[0] for case in CASES}) == len(CASES) >= 30


def test_every_problem_is_listed_in_details(api_client, api_headers):
    body = {"lead": {"lead_id": "x", "company_size": "many"}, "events": [{"type": "tweet"}]}
    response = api_client.post("/v1/score", json=body, headers=api_headers["client"])
    assert response.status_code == 400
    fields = [d["field"] for d in response.json["error"]["details"]]
    assert fields == ["lead.company_size", "events[0].timestamp", "events[0].type"]


def test_oversized_body_is_413(api_client, api_headers):
    # MAX_CONTENT_LENGTH is 1 MiB in the test config.
    body = json.dumps({"lead": {"lead_id": "big", "job_title": "x"}, "events": [EVENT] * 20_000})
    assert len(body) > 1024 * 1024
    response = api_client.post(
        "/v1/score", data=body, content_type="application/json", headers=api_headers["client"]
    )
    assert response.status_code == 413
    assert response.json["error"]["message"] == "Request body is too large"


def test_batch_items_fail_alone_and_name_their_field(api_client, api_headers):
    body = {
        "leads": [
            {"lead": {"lead_id": "ok-0"}, "events": _events(2)},
            {"lead": {"lead_id": "bad-1"}, "events": [dict(EVENT), {**EVENT, "type": "tweet"}]},
            {"lead_id": "ok-2", "features": {"company_size": 10}},
            "not an object",
            {"lead_id": "bad-4", "features": {"shoe_size": 1}},
            {"lead": {"lead_id": "bad-5", "company_size": "many"}},
        ]
    }
    response = api_client.post("/v1/score/batch", json=body, headers=api_headers["client"])
    assert response.status_code == 200
    data = response.json
    assert (data["scored"], data["failed"]) == (2, 4)
    results = data["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3, 4, 5]
    assert results[0]["lead_id"] == "ok-0" and results[0]["stage"]["label"]
    assert results[2]["lead_id"] == "ok-2" and results[2]["persona"]["label"]
    errors = {r["index"]: (r["lead_id"], r["error"]["field"]) for r in results if "error" in r}
    assert errors == {
        1: ("bad-1", "leads[1].events[1].type"),
        3: (None, "leads[3]"),
        4: ("bad-4", "leads[4].features.shoe_size"),
        5: ("bad-5", "leads[5].lead.company_size"),
    }


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/v1/score", 405), ("PUT", "/v1/score/batch", 405), ("GET", "/v1/nothing", 404)],
)
def test_wrong_method_and_unknown_path_are_json(method, path, status, api_client, api_headers):
    response = api_client.open(path, method=method, headers=api_headers["client"])
    assert response.status_code == status
    assert response.is_json and response.json["error"]["message"]


def test_unknown_page_is_html_for_a_browser(api_client):
    response = api_client.get("/no-such-page", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert response.mimetype == "text/html"
