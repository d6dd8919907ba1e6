"""Schema fuzzing of the API against the OpenAPI document it serves.

Schemathesis (v4, Python API) loads ``/openapi.json`` from the in-process app
(``create_app`` with the session fixtures: the tiny champion and the keyed
store) and generates requests for every operation the document lists, valid
ones and schema-violating ones, with a client key, a revoked key and no key.
Every response must be a non-5xx answer whose status code, content type,
headers and body the document declares.

The unit suite runs a few examples per operation and mode
(``LEADREADY_FUZZ_EXAMPLES``, default 6, derandomized); ``make fuzz``
(``python -m bench.fuzz``) runs the same tests with hundreds of random ones.
A failure names the operation and gives the minimal failing request as curl.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = int(os.environ.get("LEADREADY_FUZZ_EXAMPLES", "6"))
RANDOM = os.environ.get("LEADREADY_FUZZ_RANDOM") == "1"

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

#: Re-reads the registry on each call: fuzzed with keys that may not call it.
ADMIN_RELOAD = "POST /v1/admin/reload"

Expect = Callable[[Any, Any], None]


@pytest.fixture(scope="module")
def schema(api_app, tiny_registry):
    """The document the app serves, loaded through its WSGI interface."""
    tiny_registry.configure()
    loaded = schemathesis.openapi.from_wsgi("/openapi.json", api_app)
    labels = [op.ok().label for op in loaded.get_all_operations()]
    assert "POST /v1/score" in labels and "POST /invocations" in labels, labels
    return loaded


def fuzz(schema, mode: GenerationMode, headers: dict[str, str], expect: Expect, skip=()) -> int:
    """Run every operation's examples; raise with each failing minimal request."""
    failures: list[str] = []
    last: dict[str, Any] = {}
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.label in skip:
            continue

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=not RANDOM,
            database=None,
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case) -> None:
            nonlocal calls
            last[case.operation.label] = case
            calls += 1
            response = case.call(headers=headers)
            case.validate_response(response, checks=CHECKS, headers=headers)
            expect(case, response)

        try:
            run()
        except Unsatisfiable:
            # nothing to violate: an operation without parameters or body has no
            # schema-violating input (negative mode)
            continue
        except Exception as exc:  # collected so one run reports every operation
            case = last.get(operation.label)
            curl = case.as_curl_command(headers=headers) if case is not None else "?"
            failures.append(f"{operation.label} ({mode.value}): {exc}\n  {curl}")
    assert not failures, "\n".join(failures)
    return calls


def _secured(case) -> bool:
    return bool(case.operation.definition.raw.get("security"))


@pytest.mark.slow
def test_valid_requests_with_a_client_key(schema, api_headers):
    """Schema-valid requests with a client key: never a 5xx, always as documented."""

    def expect(case, response) -> None:
        if case.operation.label == ADMIN_RELOAD:
            assert response.status_code == 403
        else:
            assert response.status_code not in (401, 403, 500)

    assert fuzz(schema, GenerationMode.POSITIVE, api_headers["client"], expect) > 0


@pytest.mark.slow
def test_invalid_requests_with_a_client_key(schema, api_headers):
    """Schema-violating requests: refused with a documented 4xx, never a 5xx."""

    def expect(case, response) -> None:
        assert response.status_code < 500

    assert fuzz(schema, GenerationMode.NEGATIVE, api_headers["client"], expect) > 0


@pytest.mark.slow
def test_valid_requests_with_an_admin_key(schema, api_headers):
    """An admin key may call everything (reload included) and gets no 5xx."""

    def expect(case, response) -> None:
        assert response.status_code not in (401, 403, 500)

    assert fuzz(schema, GenerationMode.POSITIVE, api_headers["admin"], expect) > 0


def test_requests_without_a_key(schema):
    """Without a key every secured operation answers 401 (documented), the rest answer."""

    def expect(case, response) -> None:
        if _secured(case):
            assert response.status_code == 401
            challenge = response.headers.get("www-authenticate") or [""]
            assert str(challenge[0]).startswith("Bearer"), response.headers
            assert response.json()["error"]["field"] == "Authorization"
        else:
            assert response.status_code in (200, 503)

    assert fuzz(schema, GenerationMode.POSITIVE, {}, expect) > 0


@pytest.mark.slow
def test_requests_with_a_revoked_key(schema, api_headers):
    """A revoked key gets 403 on every secured operation, whatever the body."""

    def expect(case, response) -> None:
        if _secured(case):
            assert response.status_code == 403
            assert "revoked" in response.json()["error"]["message"]

    assert fuzz(schema, GenerationMode.POSITIVE, api_headers["revoked"], expect) > 0


@pytest.mark.parametrize(
    ("event_time", "as_of"),
    [
        ("9876-02-04T02:15:49Z", "2024-01-01T00:00:00Z"),
        ("2024-02-04T02:15:49Z", "1248-02-05T05:42:44Z"),
    ],
)
def test_out_of_range_timestamps_are_a_400(api_client, api_headers, event_time, as_of):
    """Found by the fuzzer (``POST /v1/score/batch``): a 500 instead of a 400."""
    body = {
        "lead": {"lead_id": "fuzz-overflow"},
        "events": [{"timestamp": event_time, "type": "page_view"}],
        "as_of": as_of,
    }
    response = api_client.post("/v1/score", json=body, headers=api_headers["client"])
    assert response.status_code == 400
    assert "outside the supported range" in response.json["error"]["message"]
