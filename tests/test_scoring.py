"""serve.scoring as plain functions (no Flask): parse, prepare, score, store rows, invocations."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from serve import scoring
from serve.errors import ApiError, format_loc, validation_details
from serve.schemas import FeatureScoreRequest, LeadScoreRequest

NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def model(tiny_registry):
    from model.registry import load_model

    tiny_registry.configure()
    lead_model, _ = load_model(tiny_registry.uri(tiny_registry.champion))
    return lead_model


def _item(**lead):
    return {"lead": {"lead_id": "L1", **lead}, "events": []}


# -- parsing --------------------------------------------------------------------------------------


def test_parse_item_picks_the_request_kind():
    assert isinstance(scoring.parse_item(_item()), LeadScoreRequest)
    assert isinstance(
        scoring.parse_item({"lead_id": "a", "features": {"x": 1}}), FeatureScoreRequest
    )


def test_parse_item_prefixes_fields_for_batches():
    with pytest.raises(ApiError) as err:
        scoring.parse_item({"lead": {"lead_id": "a"}, "events": [{}]}, prefix="leads[4]")
    assert err.value.field == "leads[4].events[0].timestamp"
    assert [d["field"] for d in err.value.details] == [
        "leads[4].events[0].timestamp",
        "leads[4].events[0].type",
    ]


def test_event_lead_id_may_be_left_out_or_match():
    event = {"timestamp": "2026-06-01T00:00:00Z", "type": "email_open"}
    ok = scoring.parse_item(
        {"lead": {"lead_id": "a"}, "events": [event, {**event, "lead_id": "a"}]}
    )
    assert [e.lead_id for e in ok.events] == [None, "a"]


def test_naive_timestamps_are_utc():
    item = scoring.parse_item({**_item(), "as_of": "2026-06-30T12:00:00"})
    assert item.as_of == NOW


def test_loads_json_refuses_nan_and_bad_utf8():
    assert scoring.loads_json(b'{"a": 1.5}') == {"a": 1.5}
    for body in (b'{"a": NaN}', b'{"a": Infinity}', b"\xff", b"[" * 100_000):
        with pytest.raises(ApiError) as err:
            scoring.loads_json(body)
        assert err.value.status == 400 and err.value.field is None


@pytest.mark.parametrize(
    ("obj", "status", "field"),
    [
        ([], 400, None),
        ({"leads": 1}, 400, "leads"),
        ({"leads": []}, 400, "leads"),
        ({"leads": [{}] * 4}, 413, "leads"),
        ({"leads": [{}], "x": 1}, 400, "x"),
    ],
)
def test_parse_batch_envelope(obj, status, field):
    with pytest.raises(ApiError) as err:
        scoring.parse_batch(obj, limit=3)
    assert (err.value.status, err.value.field) == (status, field)


def test_format_loc_and_union_errors_collapse():
    assert format_loc(("events", 3, "timestamp")) == "events[3].timestamp"
    assert format_loc((2, "type"), "leads[1].events") == "leads[1].events[2].type"
    errors = [
        {"loc": ("extra", "k", "str"), "msg": "a", "type": "string_type"},
        {"loc": ("extra", "k", "int"), "msg": "b", "type": "int_type"},
        {"loc": ("extra", "k", "bool"), "msg": "c", "type": "bool_type"},
    ]
    [detail] = validation_details(errors)
    assert detail["field"] == "extra.k"


# -- features and predictions with the real tiny model --------------------------------------------


def test_prepare_uses_the_model_feature_code(model, tiny_registry):
    from model.features import build_features_one

    sim = tiny_registry.simulation
    lead = sim.leads.iloc[0]
    events = sim.events[sim.events["lead_id"] == lead["lead_id"]]
    body = {
        "lead": {"lead_id": lead["lead_id"], "job_title": lead["job_title"], "company_size": 200},
        "events": [
            {"timestamp": e["timestamp"].isoformat(), "type": e["type"]}
            for e in events.to_dict("records")
        ],
    }
    item = scoring.parse_item(body)
    prepared = scoring.prepare(item, model, now=NOW)
    expected = build_features_one(
        item.lead.model_dump(),
        [{"timestamp": e["timestamp"], "type": e["type"]} for e in body["events"]],
        as_of=NOW,
        config=model.feature_config,
    )
    assert prepared.features.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, float) and value != value:
            assert prepared.features[key] != prepared.features[key]
        else:
            assert prepared.features[key] == value, key
    assert prepared.lead == body["lead"]  # only the fields the client sent (exclude_unset)
    assert all(e["lead_id"] == lead["lead_id"] for e in prepared.events)


def test_as_of_in_the_request_wins_over_now(model):
    event = {"timestamp": "2026-06-01T00:00:00Z", "type": "demo_request"}
    item = scoring.parse_item(
        {"lead": {"lead_id": "a"}, "events": [event], "as_of": "2026-06-11T00:00:00Z"}
    )
    pinned = scoring.prepare(item, model, now=NOW)
    assert pinned.features["days_since_demo"] == pytest.approx(10.0)
    item = scoring.parse_item({"lead": {"lead_id": "a"}, "events": [event]})
    later = scoring.prepare(item, model, now=NOW + timedelta(days=5))
    assert later.features["days_since_demo"] == pytest.approx(34.5)


def test_feature_rows_fill_missing_columns_and_refuse_unknown_ones(model):
    prepared = scoring.prepare(
        scoring.parse_item({"lead_id": "a", "features": {"company_size": 5}}), model
    )
    assert list(prepared.features) == model.input_columns
    assert prepared.features["company_size"] == 5 and prepared.features["job_title"] is None
    assert prepared.lead is None and prepared.events == []
    with pytest.raises(ApiError) as err:
        scoring.prepare(scoring.parse_item({"lead_id": "a", "features": {"zz": 1}}), model)
    assert err.value.field == "features.zz"


def test_feature_name_clash_in_extra_is_a_400(model):
    item = scoring.parse_item(_item(extra={"n_events_7d": 3}))
    with pytest.raises(ApiError) as err:
        scoring.prepare(item, model, now=NOW)
    assert err.value.status == 400 and err.value.field == "lead"


def test_score_shapes_one_answer_per_item(model):
    items = [
        scoring.prepare(scoring.parse_item(_item(job_title="CFO")), model, now=NOW, index=0),
        scoring.prepare(
            scoring.parse_item({"lead_id": "b", "features": {}}), model, now=NOW, index=1
        ),
    ]
    results = scoring.score(items, model)
    assert [r["lead_id"] for r in results] == ["L1", "b"]
    for r in results:
        assert set(r) == {"lead_id", "stage", "persona", "readiness", "route", "routing"}
        assert r["stage"]["reasons"] and r["persona"]["label"] in model.persona_labels
        assert r["routing"]["readiness"] == r["readiness"]
        assert r["routing"]["sales_at"] == model.routing.sales_threshold
    assert scoring.score([], model) == []


def test_prepare_batch_reports_failures_with_index_and_lead_id(model):
    prepared, failed = scoring.prepare_batch(
        [_item(), {"lead": {"lead_id": "bad", "company_size": "x"}}, 3], model, now=NOW
    )
    assert [p.index for p in prepared] == [0]
    assert [(f["index"], f["lead_id"], f["error"]["field"]) for f in failed] == [
        (1, "bad", "leads[1].lead.company_size"),
        (2, None, "leads[2]"),
    ]


def test_margin():
    assert scoring.margin({"a": 0.6, "b": 0.3, "c": 0.1}) == pytest.approx(0.3)
    assert scoring.margin({"a": 1.0}) == 1.0
    assert scoring.margin(None) is None


def test_prediction_rows_are_accepted_by_the_store(model, tmp_path):
    from data.store import Store

    prepared = [scoring.prepare(scoring.parse_item(_item(job_title="CTO")), model, now=NOW)]
    results = scoring.score(prepared, model)
    rows = scoring.prediction_rows(
        prepared, results, model_name="lead-readiness", model_version="3", source="api"
    )
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    store.upgrade()
    assert store.record_predictions(rows) == 1
    [row] = store.predictions_for("L1")
    assert row["model_version"] == "3" and row["stage"] == results[0]["stage"]["label"]
    assert row["persona_margin"] == pytest.approx(
        scoring.margin(results[0]["persona"]["probabilities"])
    )
    assert row["features"]["title_seniority"] == prepared[0].features["title_seniority"]
    store.dispose()


# -- invocations (MLflow's protocol) --------------------------------------------------------------


@pytest.fixture(scope="module")
def pyfunc_model(tiny_registry):
    import mlflow.pyfunc

    tiny_registry.configure()
    return mlflow.pyfunc.load_model(tiny_registry.uri(tiny_registry.champion))


def test_invocations_json_and_csv(pyfunc_model):
    body, status, mimetype = scoring.invocations(
        json.dumps({"dataframe_records": [{"company_size": 10}, {"company_size": 5000}]}).encode(),
        "application/json",
        pyfunc_model,
    )
    assert (status, mimetype) == (200, "application/json")
    assert len(json.loads(body)["predictions"]) == 2
    body, status, _ = scoring.invocations(b"company_size\n10\n", "text/csv", pyfunc_model)
    assert status == 200 and len(json.loads(body)["predictions"]) == 1


@pytest.mark.parametrize(
    ("body", "content_type", "status", "field"),
    [
        (b"{}", None, 415, "Content-Type"),
        (b"{}", "application/xml", 415, "Content-Type"),
        (b'{"dataframe_records": 5}', "application/json", 400, "dataframe_records"),
        (b'{"instances": [], "inputs": []}', "application/json", 400, None),
        (b"a,b\n1", "text/csv; header=present", 415, "Content-Type"),
    ],
)
def test_invocations_errors(body, content_type, status, field, pyfunc_model):
    with pytest.raises(ApiError) as err:
        scoring.invocations(body, content_type, pyfunc_model)
    assert (err.value.status, err.value.field) == (status, field)


def test_frame_rows_convert_to_the_v1_shape():
    row = {
        "stage": "decision",
        "stage_confidence": 0.6,
        "stage_proba__decision": 0.6,
        "stage_proba__awareness": 0.4,
        "stage_reasons": json.dumps([{"feature": "f", "text": "t", "weight": 1.0}]),
        "readiness": 0.7,
        "route": "sales",
    }
    result = scoring.result_from_frame_row(row)
    assert result["stage"] == {
        "label": "decision",
        "confidence": 0.6,
        "probabilities": {"decision": 0.6, "awareness": 0.4},
        "reasons": [{"feature": "f", "text": "t", "weight": 1.0}],
    }
    assert result["persona"] is None and result["route"] == "sales"


def test_invocation_records_keep_only_rows_with_ids():
    body = json.dumps({"inputs": {"lead_id": ["a", None, 7], "x": [1, 2, 3]}}).encode()
    answer = json.dumps({"predictions": [{"stage": "s", "route": "r"}] * 3})
    rows = scoring.input_rows(body, "application/json")
    prepared, results, every = scoring.invocation_records(rows, answer)
    assert [p.lead_id for p in prepared] == ["a", "7"]
    assert [p.features for p in prepared] == [{"x": 1}, {"x": 3}]
    assert len(results) == 2 and len(every) == 3
    # rows that cannot be matched one to one with the predictions are not recorded
    short = json.dumps({"predictions": [{"stage": "s"}]})
    assert scoring.invocation_records(rows, short)[0] == []
