"""API keys: who may call what, and revocation that takes effect at once."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from serve.auth import ApiKeyAuth
from serve.errors import ApiError

SCORE = {"lead_id": "auth-1", "features": {"company_size": 10}}

PROTECTED = [
    ("POST", "/v1/score", SCORE),
    ("POST", "/v1/score/batch", {"leads": [SCORE]}),
    ("POST", "/invocations", {"dataframe_records": [{"company_size": 10}]}),
    ("GET", "/v1/model", None),
    ("POST", "/v1/admin/reload", None),
]


def _call(client, method, path, body, headers=None):
    return client.open(path, method=method, json=body, headers=headers or {})


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_missing_key_is_401_with_a_bearer_challenge(method, path, body, api_client):
    response = _call(api_client, method, path, body)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json["error"]["field"] == "Authorization"


@pytest.mark.parametrize(
    "header",
    [
        "Bearer lr_not-a-real-key",
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "lr_token-without-scheme",
        "Bearer " + "x" * 600,
    ],
)
def test_invalid_or_malformed_key_is_401(header, api_client):
    response = _call(api_client, "POST", "/v1/score", SCORE, {"Authorization": header})
    assert response.status_code == 401
    assert response.json["error"]["field"] == "Authorization"


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_revoked_key_is_403(method, path, body, api_client, api_headers):
    response = _call(api_client, method, path, body, api_headers["revoked"])
    assert response.status_code == 403
    assert "revoked" in response.json["error"]["message"]


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED[:4])
def test_client_key_may_score(method, path, body, api_client, api_headers):
    assert _call(api_client, method, path, body, api_headers["client"]).status_code == 200


def test_admin_endpoints_need_an_admin_key(api_client, api_headers):
    as_client = _call(api_client, "POST", "/v1/admin/reload", None, api_headers["client"])
    assert as_client.status_code == 403
    assert "admin" in as_client.json["error"]["message"]
    assert (
        _call(api_client, "POST", "/v1/admin/reload", None, api_headers["admin"]).status_code == 200
    )


def test_admin_key_may_also_score(api_client, api_headers):
    assert _call(api_client, "POST", "/v1/score", SCORE, api_headers["admin"]).status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/openapi.json"])
def test_open_endpoints_need_no_key(path, api_client):
    assert api_client.get(path).status_code == 200


def test_auth_is_checked_before_the_body(api_client):
    """An unauthenticated client learns nothing about input validation."""
    response = api_client.post("/v1/score", data="{broken", content_type="application/json")
    assert response.status_code == 401


def test_revocation_takes_effect_on_the_next_request(api_client, api_store):
    store, _ = api_store
    name = f"short-lived-{uuid.uuid4().hex[:6]}"
    key = store.create_api_key(name, "client")
    headers = {"Authorization": f"Bearer {key}"}
    assert _call(api_client, "POST", "/v1/score", SCORE, headers).status_code == 200
    store.revoke_api_key(name)
    assert _call(api_client, "POST", "/v1/score", SCORE, headers).status_code == 403


def test_auth_failures_are_counted(api_client):
    before = api_client.get("/metrics").get_data(as_text=True)
    _call(api_client, "GET", "/v1/model", None)
    after = api_client.get("/metrics").get_data(as_text=True)

    def value(text):
        for line in text.splitlines():
            if line.startswith('leadready_auth_failures_total{reason="missing"}'):
                return float(line.split()[-1])
        return 0.0

    assert value(after) == value(before) + 1


# -- the cache, with a fake store and a fake clock -----------------------------------------------


@dataclass
class _Info:
    name: str
    role: str
    revoked: bool = False


class _Keys:
    def __init__(self) -> None:
        self.keys = {"k-client": _Info("c", "client"), "k-admin": _Info("a", "admin")}
        self.lookups = 0

    def verify_api_key(self, token):
        self.lookups += 1
        return self.keys.get(token)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_cache_bounds_how_late_a_revocation_applies():
    keys, clock = _Keys(), _Clock()
    auth = ApiKeyAuth(keys, cache_seconds=1.0, clock=clock)
    assert auth.authenticate("Bearer k-client", "api_key").name == "c"
    keys.keys["k-client"].revoked = True
    clock.now += 0.5
    assert auth.authenticate("Bearer k-client", "api_key").name == "c"  # cached
    assert keys.lookups == 1
    clock.now += 0.6  # past the 1 s bound
    with pytest.raises(ApiError) as err:
        auth.authenticate("Bearer k-client", "api_key")
    assert err.value.status == 403
    assert keys.lookups == 2


def test_without_cache_every_request_asks_the_store():
    keys = _Keys()
    auth = ApiKeyAuth(keys, cache_seconds=0)
    for _ in range(3):
        auth.authenticate("Bearer k-admin", "admin")
    assert keys.lookups == 3


def test_unknown_keys_are_never_cached_so_new_keys_work_at_once():
    keys, clock = _Keys(), _Clock()
    auth = ApiKeyAuth(keys, cache_seconds=1.0, clock=clock)
    with pytest.raises(ApiError):
        auth.authenticate("Bearer k-new", "api_key")
    keys.keys["k-new"] = _Info("n", "client")
    assert auth.authenticate("Bearer k-new", "api_key").name == "n"


def test_open_endpoints_do_not_touch_the_store():
    keys = _Keys()
    assert ApiKeyAuth(keys).authenticate(None, "none") is None
    assert keys.lookups == 0
