"""The scoring API end to end with the tiny champion: factory, endpoints, store, metrics, OpenAPI."""

from __future__ import annotations

import json
import re
import threading
import uuid

import jsonschema_rs
import pytest

from data.values import is_missing
from leadready.app import create_app
from serve.state import get_state
from tests.support.api import lead_request

# -- helpers ----------------------------------------------------------------------------------


class _FakeModel:
    input_columns = ["a"]
    metadata = {"metrics": {}}


FAKE_SOURCE = (lambda uri: (_FakeModel(), None, "1"), lambda name, alias: "1")


@pytest.fixture(scope="module")
def openapi_doc(api_app):
    return api_app.test_client().get("/openapi.json").json


def _validator(doc: dict, name: str):
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    return jsonschema_rs.Draft202012Validator(schema)


# -- the app factory --------------------------------------------------------------------------


def test_config_layers_defaults_then_env_then_mapping(tmp_path, monkeypatch):
    monkeypatch.setenv("LEADREADY_BATCH_LIMIT", "7")
    monkeypatch.setenv("LEADREADY_MODEL_POLL_SECONDS", "3")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    home = tmp_path / "home"
    app = create_app(
        {"LEADREADY_HOME": str(home), "MODEL_POLL_SECONDS": 5, "MODEL_SOURCE": FAKE_SOURCE}
    )
    cfg = app.config
    assert cfg["BATCH_LIMIT"] == 7  # from the environment
    assert cfg["MODEL_POLL_SECONDS"] == 5  # the mapping wins over the environment
    assert cfg["MODEL_URI"] == "models:/lead-readiness@champion"
    assert cfg["DATABASE_URL"] == f"sqlite:///{home.resolve() / 'leadready.db'}"
    assert cfg["MLFLOW_TRACKING_URI"] == f"sqlite:///{home.resolve() / 'mlflow.db'}"
    assert cfg["MAX_CONTENT_LENGTH"] > 0 and cfg["SECRET_KEY"]
    state = get_state(app)
    assert state.holder.poll_seconds == 5
    assert cfg["LEADREADY_HOME"] == str(home.resolve())


def test_env_urls_win_over_home_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    app = create_app({"LEADREADY_HOME": str(tmp_path / "h"), "MODEL_SOURCE": FAKE_SOURCE})
    assert app.config["DATABASE_URL"] == f"sqlite:///{tmp_path / 'elsewhere.db'}"
    assert app.config["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:1"


def test_create_app_starts_no_thread_and_loads_no_model(tmp_path):
    calls = []
    source = (lambda uri: calls.append(uri) or (_FakeModel(), None, "1"), lambda n, a: "1")
    before = threading.active_count()
    app = create_app({"LEADREADY_HOME": str(tmp_path), "MODEL_SOURCE": source})
    assert threading.active_count() == before
    assert calls == []
    assert get_state(app).holder.current is None
    # the first request starts the loader
    app.test_client().get("/healthz")
    assert get_state(app).holder.wait_ready(5)
    assert calls == ["models:/lead-readiness/1"]
    get_state(app).close()


def test_the_app_serves_the_api_the_review_api_and_the_review_ui(tmp_path):
    app = create_app({"LEADREADY_HOME": str(tmp_path), "MODEL_SOURCE": FAKE_SOURCE})
    assert {"api", "review_api", "review"} <= set(app.blueprints)
    client = app.test_client()
    assert client.get("/login").status_code == 200
    assert client.get("/v1/review/queue").status_code == 401
    get_state(app).close()


# -- health ---------------------------------------------------------------------------------------


def test_healthz_and_readyz(api_client, tiny_registry):
    assert api_client.get("/healthz").json == {"status": "ok"}
    ready = api_client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["status"] == "ready"
    assert ready.json["model"] == {"name": tiny_registry.name, "version": tiny_registry.champion}


def test_readyz_is_503_until_a_model_loads(tmp_path, api_headers, api_store):
    gate = threading.Event()

    def slow_load(uri):
        gate.wait(5)
        return _FakeModel(), None, "1"

    store, _ = api_store
    app = create_app(
        {
            "LEADREADY_HOME": str(tmp_path),
            "DATABASE_URL": str(store.engine.url),
            "MODEL_SOURCE": (slow_load, lambda n, a: "1"),
        }
    )
    client = app.test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json == {"status": "loading", "model": None, "error": None, "store": "ok"}
    scored = client.post(
        "/v1/score", json={"lead": {"lead_id": "x"}}, headers=api_headers["client"]
    )
    assert scored.status_code == 503 and scored.headers["Retry-After"] == "1"
    gate.set()
    assert get_state(app).holder.wait_ready(5)
    assert client.get("/readyz").status_code == 200
    get_state(app).close()


def test_readyz_reports_a_failing_first_load(tmp_path):
    def broken(uri):
        raise OSError("no artifacts")

    app = create_app({"LEADREADY_HOME": str(tmp_path), "MODEL_SOURCE": (broken, lambda n, a: "1")})
    client = app.test_client()
    client.get("/healthz")
    holder = get_state(app).holder
    for _ in range(200):
        if holder.status == "failed":
            break
        threading.Event().wait(0.01)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["status"] == "failed" and "no artifacts" in response.json["error"]
    holder.stop()


# -- scoring --------------------------------------------------------------------------------------


def test_score_one_lead_with_events(api_client, api_headers, tiny_registry, openapi_doc):
    sim = tiny_registry.simulation
    response = api_client.post(
        "/v1/score",
        json=lead_request(sim, 0, as_of=tiny_registry.as_of),
        headers=api_headers["client"],
    )
    assert response.status_code == 200, response.json
    body = response.json
    _validator(openapi_doc, "ScoreResponse").validate(body)
    assert body["lead_id"] == sim.leads.iloc[0]["lead_id"]
    assert body["model"] == {"name": tiny_registry.name, "version": tiny_registry.champion}
    assert response.headers["X-Model-Version"] == f"{tiny_registry.name}/{tiny_registry.champion}"
    stage = body["stage"]
    assert stage["label"] in ("awareness", "consideration", "decision", "purchase")
    assert sum(stage["probabilities"].values()) == pytest.approx(1.0)
    assert stage["confidence"] == pytest.approx(max(stage["probabilities"].values()))
    assert stage["reasons"] and {"feature", "text", "weight"} <= set(stage["reasons"][0])
    assert body["persona"]["label"] in body["persona"]["probabilities"]
    assert 0.0 <= body["readiness"] <= 1.0
    assert body["route"] in ("sales", "nurture", "review")


def test_features_from_events_are_the_training_features(api_client, api_headers, tiny_registry):
    """Scoring a lead from its events gives exactly the prediction of its training feature row."""
    sim = tiny_registry.simulation
    for index in (0, 7, 42):
        lead_id = sim.leads.iloc[index]["lead_id"]
        from_events = api_client.post(
            "/v1/score",
            json=lead_request(sim, index, as_of=tiny_registry.as_of),
            headers=api_headers["client"],
        ).json
        row = tiny_registry.features.loc[lead_id]
        from_row = api_client.post(
            "/v1/score",
            json={
                "lead_id": lead_id,
                "features": {k: (None if is_missing(v) else v) for k, v in row.to_dict().items()},
            },
            headers=api_headers["client"],
        ).json
        for head in ("stage", "persona"):
            assert from_events[head]["label"] == from_row[head]["label"]
            assert from_events[head]["probabilities"] == pytest.approx(
                from_row[head]["probabilities"], abs=1e-9
            )
        assert from_events["readiness"] == pytest.approx(from_row["readiness"], abs=1e-9)


def test_as_of_defaults_to_the_request_time(api_app, api_client, api_headers, tiny_registry):
    """Without as_of, events are aged from now (the request), not from the latest event."""
    from datetime import UTC, datetime

    sim = tiny_registry.simulation
    lead_id = f"asof-{uuid.uuid4().hex[:8]}"
    body = lead_request(sim, 0, lead_id=lead_id)
    assert body["events"]
    last_event = max(datetime.fromisoformat(e["timestamp"]) for e in body["events"])
    assert api_client.post("/v1/score", json=body, headers=api_headers["client"]).status_code == 200
    assert get_state(api_app).writer.flush(timeout=10)
    [row] = get_state(api_app).store.predictions_for(lead_id)
    expected_days = (datetime.now(UTC) - last_event).total_seconds() / 86400
    assert row["features"]["days_since_any"] == pytest.approx(expected_days, abs=0.01)


def test_batch_scores_in_order_and_matches_single_calls(
    api_client, api_headers, tiny_registry, openapi_doc
):
    sim = tiny_registry.simulation
    items = [lead_request(sim, i, as_of=tiny_registry.as_of) for i in range(4)]
    response = api_client.post(
        "/v1/score/batch", json={"leads": items}, headers=api_headers["client"]
    )
    assert response.status_code == 200
    body = response.json
    _validator(openapi_doc, "BatchScoreResponse").validate(body)
    assert (body["scored"], body["failed"]) == (4, 0)
    assert [r["lead_id"] for r in body["results"]] == [i["lead"]["lead_id"] for i in items]
    single = api_client.post("/v1/score", json=items[2], headers=api_headers["client"]).json
    assert body["results"][2]["stage"]["probabilities"] == pytest.approx(
        single["stage"]["probabilities"]
    )


def test_model_endpoint(api_client, api_headers, tiny_registry, openapi_doc):
    response = api_client.get("/v1/model", headers=api_headers["client"])
    assert response.status_code == 200
    body = response.json
    _validator(openapi_doc, "ModelInfo").validate(body)
    assert body["name"] == tiny_registry.name
    assert body["version"] == tiny_registry.champion
    assert body["alias"] == "champion"
    assert body["uri"] == tiny_registry.uri(tiny_registry.champion)
    assert body["trained_at"] and body["run_id"]
    assert body["metrics"] == {"stage_macro_f1": 0.5, "persona_macro_f1": 0.5}
    assert set(body["stages"]) == {"awareness", "consideration", "decision", "purchase"}
    assert "non_buyer" in body["personas"]
    assert body["input_columns"] == list(tiny_registry.features.columns)


def test_admin_reload(api_client, api_headers, tiny_registry):
    response = api_client.post("/v1/admin/reload", headers=api_headers["admin"])
    assert response.status_code == 200
    assert response.json["model"]["version"] == tiny_registry.champion
    assert response.json["changed"] is False
    assert api_client.post("/v1/admin/reload", headers=api_headers["client"]).status_code == 403


# -- predictions reach the store ------------------------------------------------------------------


def test_predictions_profiles_and_events_land_in_the_store(
    api_app, api_client, api_headers, tiny_registry
):
    sim = tiny_registry.simulation
    lead_id = f"store-{uuid.uuid4().hex[:8]}"
    body = lead_request(sim, 5, lead_id=lead_id, as_of=tiny_registry.as_of)
    answer = api_client.post("/v1/score", json=body, headers=api_headers["client"]).json
    # the same lead again with its history resent: events are not duplicated
    api_client.post("/v1/score", json=body, headers=api_headers["client"])
    batch_id = f"batch-{uuid.uuid4().hex[:8]}"
    api_client.post(
        "/v1/score/batch",
        json={"leads": [{"lead_id": batch_id, "features": {"company_size": 50}}]},
        headers=api_headers["client"],
    )
    state = get_state(api_app)
    assert state.writer.flush(timeout=10)
    store = state.store
    rows = store.predictions_for(lead_id)
    assert len(rows) == 2
    row = rows[-1]
    assert row["model_name"] == tiny_registry.name
    assert row["model_version"] == tiny_registry.champion
    assert row["source"] == "api"
    assert row["stage"] == answer["stage"]["label"]
    # The store keeps full precision; the answer is rounded to API_DIGITS (4).
    assert row["stage_confidence"] == pytest.approx(answer["stage"]["confidence"], abs=5e-5)
    probs = sorted(answer["stage"]["probabilities"].values(), reverse=True)
    assert row["stage_margin"] == pytest.approx(probs[0] - probs[1], abs=1e-4)
    assert row["probabilities"]["persona"] == pytest.approx(
        answer["persona"]["probabilities"], abs=5e-5
    )
    assert row["readiness"] == pytest.approx(answer["readiness"], abs=5e-5)
    assert row["route"] == answer["route"]
    assert row["reasons"]["stage"] == answer["stage"]["reasons"]
    assert set(row["features"]) == set(tiny_registry.features.columns)
    assert row["features"]["n_events_total"] == len(body["events"])
    assert store.get_lead(lead_id)["job_title"] == body["lead"]["job_title"]
    assert len(store.events_for(lead_id)) == len(body["events"])
    [batch_row] = store.predictions_for(batch_id)
    assert batch_row["source"] == "batch" and batch_row["features"]["company_size"] == 50


# -- metrics --------------------------------------------------------------------------------------


def test_metrics_count_requests_per_endpoint_and_predictions_per_class(
    api_client, api_headers, tiny_registry
):
    def sample(text: str, prefix: str) -> float:
        for line in text.splitlines():
            if line.startswith(prefix):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    key = 'leadready_http_requests_total{endpoint="api.score_one",method="POST",status="200"}'
    before = api_client.get("/metrics").get_data(as_text=True)
    answer = api_client.post(
        "/v1/score", json={"lead_id": "m", "features": {}}, headers=api_headers["client"]
    ).json
    api_client.post(
        "/v1/score", data="x", content_type="application/json", headers=api_headers["client"]
    )
    response = api_client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    assert sample(text, key) == sample(before, key) + 1
    bad = 'leadready_http_requests_total{endpoint="api.score_one",method="POST",status="400"}'
    assert sample(text, bad) == sample(before, bad) + 1
    assert (
        'leadready_http_request_duration_seconds_bucket{endpoint="api.score_one",le="0.01"}' in text
    )
    label = answer["stage"]["label"]
    pred = f'leadready_predictions_total{{head="stage",label="{label}"}}'
    assert sample(text, pred) == sample(before, pred) + 1
    info = f'leadready_model_info{{name="{tiny_registry.name}",version="{tiny_registry.champion}"}}'
    assert sample(text, info) == 1.0


# -- OpenAPI --------------------------------------------------------------------------------------


def test_openapi_is_a_valid_openapi_31_document(openapi_doc):
    from schemathesis.specs.openapi.definitions import OPENAPI_31

    validator = jsonschema_rs.validator_for(OPENAPI_31)
    errors = [e.message for e in validator.iter_errors(openapi_doc)]
    assert errors == []
    assert openapi_doc["openapi"] == "3.1.0"
    for name, schema in openapi_doc["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), name


def test_openapi_lists_every_route_with_its_errors(api_app, openapi_doc):
    paths = openapi_doc["paths"]
    for rule in api_app.url_map.iter_rules():
        if rule.endpoint == "static" or not rule.endpoint.startswith("api."):
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        assert path in paths, path
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            op = paths[path][method.lower()]
            assert op["summary"] and "200" in op["responses"]
            for response in op["responses"].values():
                assert response["description"]
    score = paths["/v1/score"]["post"]
    assert {"400", "401", "403", "413", "415", "503"} <= set(score["responses"])
    assert score["security"] == [{"bearerAuth": []}]
    assert paths["/healthz"]["get"]["security"] == []
    assert "text/csv" in paths["/invocations"]["post"]["requestBody"]["content"]
    assert "403" in paths["/v1/admin/reload"]["post"]["responses"]


def test_openapi_refs_resolve_and_error_bodies_match_their_schema(
    api_client, api_headers, openapi_doc
):
    refs = set(re.findall(r"#/components/schemas/([A-Za-z0-9_-]+)", json.dumps(openapi_doc)))
    assert {"ScoreResponse", "ErrorResponse", "LeadProfile"} <= refs
    assert refs <= set(openapi_doc["components"]["schemas"])
    error = api_client.post("/v1/score", json={}, headers=api_headers["client"]).json
    _validator(openapi_doc, "ErrorResponse").validate(error)
    ready = api_client.get("/readyz").json
    _validator(openapi_doc, "Readiness").validate(ready)
    request_schema = _validator(openapi_doc, "ScoreRequest")
    assert request_schema.is_valid({"lead": {"lead_id": "a"}})
    assert request_schema.is_valid({"lead_id": "a", "features": {"x": 1}})
    assert not request_schema.is_valid({"lead": {"lead_id": "a"}, "bogus": 1})
    invocations = _validator(openapi_doc, "InvocationsRequest")
    assert invocations.is_valid({"dataframe_records": [{"a": 1}], "params": {"reasons": True}})
    assert not invocations.is_valid({})  # exactly one input key, as MLflow requires
    assert not invocations.is_valid({"instances": [], "inputs": []})


def test_predictions_of_a_batch_are_counted_per_lead():
    from serve.metrics import Metrics

    met = Metrics(multiproc_dir=None)
    outputs = [
        {"stage": {"label": "decision"}, "persona": {"label": "economic_buyer"}, "route": "sales"},
        {"stage": {"label": "decision"}, "persona": None, "route": "sales"},
        {"stage": {"label": "awareness"}, "persona": {"label": "economic_buyer"}, "route": None},
    ]
    met.observe_predictions(outputs)
    text = met.exposition()[0].decode()

    def sample(text: str, prefix: str) -> float:
        for line in text.splitlines():
            if line.startswith(prefix):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    assert sample(text, 'leadready_predictions_total{head="stage",label="decision"}') == 2
    assert sample(text, 'leadready_predictions_total{head="stage",label="awareness"}') == 1
    assert sample(text, 'leadready_predictions_total{head="persona",label="economic_buyer"}') == 2
    assert sample(text, 'leadready_routes_total{route="sales"}') == 2
