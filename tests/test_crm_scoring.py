"""The single-lead API reads a CRM column the way training typed it (issue #14).

A model trained on a HubSpot-style export keeps its column kinds
(``metadata["column_types"]``); ``POST /v1/score`` must turn ``"$4,365,000"`` into
4,365,000, ``"1,234"`` into 1,234, a date into days since 1970 in the training
column's day/month order and the ``Job Title`` column into title features, exactly as
the training table (and ``leadready score``, through the same ``apply_types``) did.
"""

from __future__ import annotations

import math

import pytest

from tests.fixtures.crm.messy import hubspot_export

ID = "Record ID"


@pytest.fixture(scope="module")
def crm_model(tmp_path_factory):
    from model.classifier import HeadClassifier, TwoHeadClassifier
    from model.features import FeatureConfig
    from model.package import LeadReadinessModel
    from training.dataset import load_training_table

    path = tmp_path_factory.mktemp("crm") / "hubspot.csv"
    hubspot_export(path)
    ts = load_training_table(
        path, id_col=ID, stage_col="Lifecycle Stage", allow_columns=["Job Title"]
    )
    head = HeadClassifier(n_estimators=8, num_leaves=7, min_child_samples=5, random_state=1)
    clf = TwoHeadClassifier(stage_estimator=head, persona_estimator=head)
    clf.fit(ts.X, ts.y_stage.to_numpy(), None)
    # As training.train stores them.
    types = {c["name"]: c["spec"] for c in ts.input_report["columns"] if c["spec"]}
    model = LeadReadinessModel(
        clf,
        input_columns=list(ts.X.columns),
        feature_config=FeatureConfig(),
        metadata={"column_types": types, "title_column": ts.input_report["title_column"]},
    )
    return model, ts, path


def _plain(value):
    """A table value as JSON has it (NaN as null, numpy scalars as Python ones)."""
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and math.isnan(value) else value


def _raw_rows(path):
    from data.readers import read_leads

    return read_leads(path, id_col=ID).frame.set_index(ID, drop=False)


def test_a_profile_is_typed_as_the_training_column(crm_model):
    model, ts, path = crm_model
    raw = _raw_rows(path)
    lead_id = next(i for i in ts.ids if "," in str(raw.loc[i, "Annual Revenue"]))
    rec = raw.loc[lead_id]
    extra = {
        c: _plain(rec[c])
        for c in ("Annual Revenue", "Number of Pageviews", "Create Date", "Job Title",
                  "Number of Employees", "Lead Source")
    }  # fmt: skip
    assert isinstance(extra["Annual Revenue"], str) and "$" in extra["Annual Revenue"]
    features = model.features_from_profile({"lead_id": lead_id, "extra": extra}, None)
    row = ts.X.loc[lead_id]
    for column in ("Annual Revenue", "Number of Pageviews", "Create Date"):
        assert features[column] == pytest.approx(float(row[column])), column
    for column in ("title_seniority", "title_function"):
        assert features[column] == row[column]


def test_the_api_scores_a_crm_lead_as_its_training_row(crm_model, tmp_path):
    from data.store import Store
    from leadready.app import create_app
    from serve.state import get_state

    model, ts, path = crm_model
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.upgrade()
    key = store.create_api_key("crm-test", "client")
    app = create_app(
        {
            "TESTING": True,
            "LEADREADY_HOME": str(tmp_path / "home"),
            "DATABASE_URL": str(store.engine.url.render_as_string(hide_password=False)),
            "MODEL_SOURCE": (lambda uri: (model, None, "1"), lambda n, a: "1"),
            "API_KEY_CACHE_SECONDS": 0,
        }
    )
    state = get_state(app)
    state.holder.start()
    assert state.holder.wait_ready(60), state.holder.last_error
    client = app.test_client()
    raw = _raw_rows(path)
    checked = 0
    for lead_id in [i for i in ts.ids if "$" in str(raw.loc[i, "Annual Revenue"])][:3]:
        rec = raw.loc[lead_id]
        extra = {c: _plain(rec[c]) for c in ts.leads.columns if c not in (ID, "job_title")}
        response = client.post(
            "/v1/score",
            json={"lead": {"lead_id": lead_id, "extra": extra}},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert response.status_code == 200, response.json
        expected = model.predict_records([ts.X.loc[lead_id].to_dict()])[0]["stage"]
        got = response.json["stage"]
        assert got["label"] == expected["label"]
        # The API rounds probabilities to four decimals.
        assert got["probabilities"] == pytest.approx(expected["probabilities"], abs=5.1e-5)
        checked += 1
    assert checked == 3
    state.close()
    state.store.dispose()
    store.dispose()


def test_spark_refuses_crm_columns_it_would_misread(crm_model):
    """The Spark engine scores columns as they are: a CRM-trained model's typed columns held
    as text in the Parquet input are named, not misread."""
    from training.spark import crm_columns_spark_cannot_read

    model, _, _ = crm_model
    as_text = {"Record ID": "string", "Annual Revenue": "string", "Create Date": "string",
               "Job Title": "string", "Lead Source": "string"}  # fmt: skip
    unread = crm_columns_spark_cannot_read(model.metadata, as_text)
    assert "'Annual Revenue' (number, held as text)" in unread
    assert "'Create Date' (date, held as text)" in unread
    assert "'Job Title' (the job titles)" in unread
    assert not any("Lead Source" in u for u in unread)  # text is read as text
    typed = {**as_text, "Annual Revenue": "double", "Create Date": "double", "job_title": "string"}
    assert crm_columns_spark_cannot_read(model.metadata, typed) == []
    assert crm_columns_spark_cannot_read({}, as_text) == []
