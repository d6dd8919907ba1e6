"""``POST /invocations`` answers what the registered pyfunc model predicts, for every format."""

from __future__ import annotations

import io
import json
import math

import pandas as pd
import pytest


@pytest.fixture(scope="module")
def pyfunc_model(tiny_registry):
    import mlflow.pyfunc

    tiny_registry.configure()
    return mlflow.pyfunc.load_model(tiny_registry.uri(tiny_registry.champion))


@pytest.fixture(scope="module")
def rows(tiny_registry) -> pd.DataFrame:
    """Five feature rows of the training table (with missing values and text columns)."""
    return tiny_registry.features.head(5).reset_index(drop=True)


def _records(frame: pd.DataFrame) -> list[dict]:
    out = []
    for rec in frame.to_dict("records"):
        out.append(
            {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()}
        )
    return out


def _expected(pyfunc_model, frame: pd.DataFrame, params: dict | None = None) -> list[dict]:
    """What MLflow serializes for ``pyfunc.predict(frame)``, as a client would read it."""
    from mlflow.pyfunc.scoring_server import predictions_to_json

    raw = pyfunc_model.predict(frame, params=params)
    out = io.StringIO()
    predictions_to_json(raw, out)
    return json.loads(out.getvalue())["predictions"]


def _post(client, headers, payload, content_type="application/json"):
    body = payload if isinstance(payload, str | bytes) else json.dumps(payload)
    return client.post("/invocations", data=body, content_type=content_type, headers=headers)


@pytest.mark.parametrize("fmt", ["dataframe_split", "dataframe_records", "instances", "inputs"])
def test_json_formats_equal_pyfunc_predict(fmt, api_client, api_headers, pyfunc_model, rows):
    records = _records(rows)
    if fmt == "dataframe_split":
        payload = {
            fmt: {"columns": list(rows.columns), "data": [list(r.values()) for r in records]}
        }
    else:
        payload = {fmt: records}
    response = _post(api_client, api_headers["client"], payload)
    assert response.status_code == 200, response.json
    got = response.json["predictions"]
    want = _expected(pyfunc_model, pd.DataFrame(records))
    assert len(got) == len(rows) == 5
    assert got == want
    assert {"stage", "persona", "readiness", "route"} <= set(got[0])


def test_params_reach_the_model(api_client, api_headers, pyfunc_model, rows):
    records = _records(rows.head(2))
    payload = {"dataframe_records": records, "params": {"reasons": True}}
    response = _post(api_client, api_headers["client"], payload)
    assert response.status_code == 200, response.json
    got = response.json["predictions"]
    assert got == _expected(pyfunc_model, pd.DataFrame(records), params={"reasons": True})
    assert json.loads(got[0]["stage_reasons"])[0]["feature"]


def test_csv_equals_pyfunc_predict_of_the_same_table(api_client, api_headers, pyfunc_model, rows):
    text = rows.to_csv(index=False)
    response = _post(api_client, api_headers["client"], text, "text/csv")
    assert response.status_code == 200, response.json
    want = _expected(pyfunc_model, pd.read_csv(io.StringIO(text)))
    assert response.json["predictions"] == want
    # charset=utf-8 is accepted as MLflow does
    again = _post(api_client, api_headers["client"], text, "text/csv; charset=utf-8")
    assert again.json["predictions"] == want


def test_json_answer_equals_the_v1_answer_for_the_same_features(api_client, api_headers, rows):
    [record] = _records(rows.head(1))
    inv = _post(api_client, api_headers["client"], {"dataframe_records": [record]})
    v1 = api_client.post(
        "/v1/score",
        json={"lead_id": "same", "features": record},
        headers=api_headers["client"],
    )
    assert inv.status_code == v1.status_code == 200
    frame_row = inv.json["predictions"][0]
    assert frame_row["stage"] == v1.json["stage"]["label"]
    # /v1 answers round to API_DIGITS (4); /invocations answers as MLflow does (full precision).
    assert frame_row["stage_confidence"] == pytest.approx(v1.json["stage"]["confidence"], abs=5e-5)
    assert frame_row["readiness"] == pytest.approx(v1.json["readiness"], abs=5e-5)
    assert frame_row["route"] == v1.json["route"]


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        ("{not json", "application/json", 400),
        (json.dumps({"dataframe_records": [], "instances": []}), "application/json", 400),
        (json.dumps({"data": [[1]]}), "application/json", 400),
        (json.dumps([{"a": 1}]), "application/json", 400),
        ("a,b\n1,2\n", "text/plain", 415),
        ("a,b\n1,2\n", "text/csv; charset=latin-1", 415),
        (json.dumps({"inputs": []}), "application/json; format=pandas-split", 415),
        (b"\xff\xfe", "text/csv", 400),
    ],
)
def test_bad_invocations_are_4xx_with_mlflow_and_leadready_error_keys(
    body, content_type, status, api_client, api_headers
):
    response = _post(api_client, api_headers["client"], body, content_type)
    assert response.status_code == status
    data = response.json
    assert data["error"]["message"] and data["message"] == data["error"]["message"]
    assert data["error_code"] == "BAD_REQUEST"


def test_invocations_needs_a_key(api_client, rows):
    response = api_client.post("/invocations", json={"dataframe_records": _records(rows.head(1))})
    assert response.status_code == 401


def test_missing_content_type_is_415(api_client, api_headers):
    response = api_client.post("/invocations", data=b"{}", headers=api_headers["client"])
    assert response.status_code == 415
    assert response.json["error"]["field"] == "Content-Type"


@pytest.mark.parametrize("fmt", ["dataframe_records", "dataframe_split", "csv"])
def test_rows_with_a_lead_id_are_recorded(fmt, api_app, api_client, api_headers, rows):
    import uuid

    from serve.state import get_state

    ids = [f"inv-{fmt}-{uuid.uuid4().hex[:6]}", None]
    records = _records(rows.head(2))
    frame = rows.head(2).assign(lead_id=ids)
    if fmt == "csv":
        response = _post(api_client, api_headers["client"], frame.to_csv(index=False), "text/csv")
    elif fmt == "dataframe_split":
        payload = {
            fmt: {
                "columns": [*rows.columns, "lead_id"],
                "data": [[*r.values(), i] for r, i in zip(records, ids, strict=True)],
            }
        }
        response = _post(api_client, api_headers["client"], payload)
    else:
        payload = {fmt: [{**r, "lead_id": i} for r, i in zip(records, ids, strict=True)]}
        response = _post(api_client, api_headers["client"], payload)
    assert response.status_code == 200, response.json
    answer = response.json["predictions"][0]
    state = get_state(api_app)
    assert state.writer.flush(timeout=10)
    [row] = state.store.predictions_for(ids[0])
    assert row["source"] == "invocations"
    assert row["stage"] == answer["stage"]
    assert row["stage_confidence"] == pytest.approx(answer["stage_confidence"])
    assert row["probabilities"]["persona"]["non_buyer"] == pytest.approx(
        answer["persona_proba__non_buyer"]
    )
    assert row["route"] == answer["route"]
    assert "lead_id" not in row["features"] and "company_size" in row["features"]


def _mlflow_bytes(pyfunc_model, body: bytes, content_type: str = "application/json") -> str:
    """What MLflow's own scoring server answers for this body (its ``invocations()``)."""
    from mlflow.pyfunc import scoring_server

    schema = pyfunc_model.metadata.get_input_schema()
    result = scoring_server.invocations(body, content_type, pyfunc_model, schema)
    assert result.status == 200, result.response
    return result.response


def _fast_payloads(rows: pd.DataFrame) -> list[dict]:
    records = _records(rows)
    columns = list(rows.columns)
    numeric = [c for c in columns if pd.api.types.is_numeric_dtype(rows[c])]
    mixed = [dict(r) for r in records]
    for i, r in enumerate(mixed):
        r["lead_id"] = f"L{i}"  # a column outside the signature
        if numeric:
            # an integer column with a float and a missing cell, a number as text, a boolean
            r[numeric[0]] = [3, None, 2.5, 7, 0][i % 5]
        if len(numeric) > 1:
            r[numeric[1]] = ["12", True, None, 4, "x"][i % 5]
    ragged = [
        {k: v for j, (k, v) in enumerate(r.items()) if (i + j) % 3} for i, r in enumerate(records)
    ]
    ints = [dict(r) for r in records]
    for r in ints:
        for c in numeric[:3]:
            r[c] = 5  # whole numbers throughout: pandas keeps them integers
    return [
        {"dataframe_records": records},
        {"dataframe_records": records[:1]},
        {"dataframe_records": records * 20},
        {"dataframe_split": {"columns": columns, "data": [list(r.values()) for r in records]}},
        {"dataframe_records": records, "params": {"reasons": True}},
        {"dataframe_records": records[:2], "params": {"reasons": True, "top_k": 1}},
        {"dataframe_records": records, "params": {"top_k": 5, "reasons": False}},
        {"dataframe_records": mixed, "params": {"reasons": True}},
        {"dataframe_records": ragged, "params": {"reasons": True}},
        {"dataframe_records": ints},
    ]


def test_fast_path_answers_byte_for_byte_like_mlflow(pyfunc_model, rows):
    from model.pyfunc import unwrap
    from serve import scoring

    model = unwrap(pyfunc_model)
    for payload in _fast_payloads(rows):
        body = json.dumps(payload).encode()
        for content_type in ("application/json", "application/json; charset=UTF-8"):
            fast = scoring.fast_invocations(body, content_type, model)
            assert fast is not None, payload
            assert fast.body == _mlflow_bytes(pyfunc_model, body, content_type), payload


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ('{"dataframe_records": [{"a": NaN}]}', "application/json"),
        ('{"dataframe_records": [{"a": [1, 2]}]}', "application/json"),
        ('{"dataframe_records": [{"a": {"b": 1}}]}', "application/json"),
        ('{"dataframe_records": []}', "application/json"),
        ('{"dataframe_records": [{}]}', "application/json"),
        ('{"instances": [{"a": 1}]}', "application/json"),
        ('{"inputs": [{"a": 1}]}', "application/json"),
        ('{"dataframe_records": [{"a": 1}], "params": {"reasons": 1}}', "application/json"),
        ('{"dataframe_records": [{"a": 1}], "params": {"other": 1}}', "application/json"),
        ('{"dataframe_records": [{"a": 1}], "extra": 1}', "application/json"),
        (
            '{"dataframe_split": {"columns": ["a"], "data": [[1]], "index": [0]}}',
            "application/json",
        ),
        ('{"dataframe_split": {"columns": ["a", "a"], "data": [[1, 2]]}}', "application/json"),
        ('{"dataframe_records": [{"a": 1}]}', "application/json; charset=latin-1"),
        ('{"dataframe_records": [{"a": 1}]}', "application/json; format=pandas-records"),
        ('{"dataframe_records": [{"a": 1}]}', "text/csv"),
        ('{"dataframe_records": [{"a": 1}]}', None),
        ("[1, 2]", "application/json"),
        ("not json", "application/json"),
    ],
)
def test_anything_else_goes_through_mlflows_own_parsing(pyfunc_model, body, content_type):
    from model.pyfunc import unwrap
    from serve import scoring

    assert scoring.fast_invocations(body.encode(), content_type, unwrap(pyfunc_model)) is None


def test_fast_path_records_rows_with_a_lead_id(api_app, api_client, api_headers, rows):
    from serve.state import get_state

    records = [{**r, "lead_id": f"fast-{i}"} for i, r in enumerate(_records(rows.head(3)))]
    records[1]["lead_id"] = None
    response = _post(api_client, api_headers["client"], {"dataframe_records": records})
    assert response.status_code == 200
    state = get_state(api_app)
    assert state.writer is not None and state.writer.flush()
    assert state.store.latest_prediction("fast-0") is not None
    assert state.store.latest_prediction("fast-2") is not None
    assert state.store.latest_prediction("fast-1") is None


_CELLS = [1, 3, 2.5, 0.0, None, "x", True]


@pytest.mark.parametrize("seed", range(3))
def test_pandas_like_turns_ints_into_floats_exactly_where_pandas_does(seed):
    """The fast path's column inference equals pandas' on random tables, whether or
    not every row has every column (the two code paths of ``_pandas_like``)."""
    import random

    from serve.scoring import _pandas_like

    rng = random.Random(seed)
    for _ in range(300):
        n = rng.randint(1, 6)
        ragged = rng.random() < 0.3
        rows = [
            {c: rng.choice(_CELLS) for c in "abc" if not ragged or rng.random() < 0.7}
            for _ in range(n)
        ]
        if not any(rows):
            continue
        frame = pd.DataFrame(rows)
        got = _pandas_like(rows)
        for column in frame.columns:
            floated = frame[column].dtype == "float64"
            for before, after in zip(rows, got, strict=True):
                if type(before.get(column)) is int:
                    assert type(after[column]) is (float if floated else int), (rows, column)
                    assert after[column] == before[column]
