"""LeadReadinessModel: output frame, the lean records path, features, pickling."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest

from model.classifier import HeadClassifier, TwoHeadClassifier
from model.package import LeadReadinessModel
from model.routing import ROUTES, RoutingConfig
from tests.support.leads import (
    AS_OF,
    assert_records_match_frame,
    make_leads,
    trained,
)

FAST = {"n_estimators": 40, "num_threads": 1}


@pytest.fixture(scope="module")
def model():
    return trained()[0]


@pytest.fixture(scope="module")
def features():
    return trained()[1]


def test_predict_frame_columns_and_values(model, features):
    out = model.predict_frame(features)
    assert list(out.columns) == model.output_columns()
    assert out.index.equals(features.index)
    stage_cols = [f"stage_proba__{label}" for label in model.stage_labels]
    proba = out[stage_cols].to_numpy()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(out["stage_confidence"], proba.max(axis=1))
    assert (out["stage"] == np.asarray(model.stage_labels)[proba.argmax(axis=1)]).all()
    np.testing.assert_allclose(out["readiness"], out["stage_proba__decision"])
    assert set(out["route"]) <= set(ROUTES)
    assert out.attrs["missing_columns"] == []
    # Learned something: late-stage leads score higher readiness.
    leads = trained()[2]
    decision = (leads["stage"] == "decision").to_numpy()
    assert out["readiness"][decision].mean() > out["readiness"][~decision].mean() + 0.2


@pytest.mark.parametrize("reasons", [False, True])
def test_predict_records_equals_predict_frame(model, features, reasons):
    sample = features.iloc[:25]
    frame = model.predict_frame(sample, reasons=reasons)
    records = [
        {k: v for k, v in row.items() if not (isinstance(v, float) and np.isnan(v))}
        for row in sample.to_dict("records")
    ]
    records[0]["unknown_extra"] = "ignored"
    assert_records_match_frame(frame, model.predict_records(records, reasons=reasons), reasons)


def test_predict_records_on_a_large_batch_uses_the_same_numbers(model, features):
    frame = model.predict_frame(features)
    assert_records_match_frame(frame, model.predict_records(features.to_dict("records")), False)


def test_large_frames_are_scored_in_chunks_with_the_same_result(model, features, monkeypatch):
    sample = features.drop(columns=["industry"])
    whole = model.predict_frame(sample, reasons=True)
    monkeypatch.setattr("model.package.CHUNK_ROWS", 50)
    chunked = model.predict_frame(sample, reasons=True)
    assert chunked.attrs["missing_columns"] == ["industry"]
    assert len(chunked) > 50 * 4
    pd.testing.assert_frame_equal(chunked, whole)


def test_missing_columns_are_missing_values_and_extras_are_ignored(model, features):
    sample = features.iloc[:10]
    full = model.predict_frame(sample)
    with_extra = model.predict_frame(sample.assign(crm_note="call back", score=3.0))
    pd.testing.assert_frame_equal(with_extra, full)
    dropped = sample.drop(columns=["n_pricing_7d", "industry"])
    out = model.predict_frame(dropped)
    assert sorted(out.attrs["missing_columns"]) == ["industry", "n_pricing_7d"]
    nan_filled = model.predict_frame(sample.assign(n_pricing_7d=np.nan, industry=None))
    pd.testing.assert_frame_equal(out, nan_filled, check_like=False, check_dtype=False)


def test_features_from_profile_matches_the_training_features(model, features):
    _, X, leads, events = trained()
    lead = leads.iloc[3]
    profile = lead.drop(["stage", "persona"]).to_dict()
    own = events[events["lead_id"] == lead["lead_id"]].to_dict("records")
    row = model.features_from_profile(profile, own, AS_OF)
    one = model.predict_records([row], reasons=True)[0]
    batch = model.predict_frame(X.loc[[lead["lead_id"]]], reasons=True)
    assert_records_match_frame(batch, [one], True)


def test_features_from_profile_without_feature_config(features):
    clf = trained()[0].classifier
    bare = LeadReadinessModel(clf, input_columns=list(features.columns))
    row = bare.features_from_profile(
        {"lead_id": "x", "industry": "Retail", "extra": {"n_pricing_7d": 4}}, []
    )
    assert row == {"lead_id": "x", "industry": "Retail", "n_pricing_7d": 4}
    with pytest.raises(ValueError, match="ready feature table"):
        bare.features_from_profile({"lead_id": "x"}, [{"type": "page_view"}])


def test_one_head_model():
    X, _, persona = make_leads(200)
    clf = TwoHeadClassifier(persona_estimator=HeadClassifier(**FAST)).fit(X, y_persona=persona)
    model = LeadReadinessModel(clf, input_columns=list(X.columns))
    out = model.predict_frame(X.head(5))
    assert not any(c.startswith("stage") for c in out.columns)
    assert out["readiness"].isna().all()
    rec = model.predict_records(X.head(5).to_dict("records"))
    assert all(r["stage"] is None and r["readiness"] is None for r in rec)
    assert {r["route"] for r in rec} <= {"review", "nurture"}
    assert_records_match_frame(out, rec, False)


def test_boolean_stage_labels_give_readiness_from_the_true_class():
    X, stage, _ = make_leads(200)
    clf = TwoHeadClassifier(stage_estimator=HeadClassifier(**FAST)).fit(
        X, y_stage=stage == "decision"
    )
    model = LeadReadinessModel(clf, input_columns=list(X.columns))
    assert model.sales_ready_stages == ("True",)
    out = model.predict_frame(X.head(20))
    np.testing.assert_allclose(out["readiness"], out["stage_proba__True"])
    with pytest.raises(ValueError, match="not stage labels"):
        LeadReadinessModel(
            clf,
            input_columns=list(X.columns),
            routing=RoutingConfig(sales_ready_stages=("decision",)),
        )


def test_pickle_round_trip(model, features):
    loaded = pickle.loads(pickle.dumps(model))
    pd.testing.assert_frame_equal(
        loaded.predict_frame(features, reasons=True), model.predict_frame(features, reasons=True)
    )
    assert loaded.metadata["metrics"] == {"stage_macro_f1": 0.5}
    assert loaded.metadata["trained_at"] == model.metadata["trained_at"]


def test_summary_is_json_and_empty_inputs(model, features):
    summary = json.loads(json.dumps(model.summary()))
    assert summary["heads"]["stage"]["labels"] == list(model.stage_labels)
    assert summary["routing"]["sales_ready_stages"] == ["decision"]
    assert "ece_calibrated" in summary["heads"]["stage"]["calibration"] or (
        summary["heads"]["stage"]["calibration"]["method"] == "none"
    )
    empty = model.predict_frame(features.iloc[:0], reasons=True)
    assert list(empty.columns) == model.output_columns(reasons=True) and len(empty) == 0
    assert model.predict_records([]) == []


def test_the_lead_id_does_not_move_the_score(model, features):
    base = features.iloc[:30]
    renamed = base.set_axis([f"other-{i}" for i in range(len(base))])
    a = model.predict_frame(base, reasons=True).reset_index(drop=True)
    b = model.predict_frame(renamed, reasons=True).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_prepare_without_compiled_code_keeps_lightgbm(model, features):
    fresh = pickle.loads(pickle.dumps(model))
    status = fresh.prepare(None)
    assert fresh.engine == "lightgbm"
    assert set(status) == set(fresh.heads)
    assert all(s.startswith("lightgbm") for s in status.values())
    pd.testing.assert_frame_equal(fresh.predict_frame(features), model.predict_frame(features))
    # A broken folder never stops scoring: LightGBM keeps every head.
    status = fresh.prepare("/nonexistent/compiled")
    assert fresh.engine == "lightgbm" and all(s.startswith("lightgbm") for s in status.values())
    again = pickle.loads(pickle.dumps(fresh))
    assert again.engine_status == dict.fromkeys(again.heads, "lightgbm: not prepared")


def test_predict_frame_threads_do_not_change_the_numbers(model, features):
    one = model.predict_frame(features, reasons=True, num_threads=1)
    two = model.predict_frame(features, reasons=True, num_threads=2)
    default = model.predict_frame(features.head(3), reasons=True)
    pd.testing.assert_frame_equal(one, two)
    pd.testing.assert_frame_equal(default, one.head(3))


def _messy_records(features: pd.DataFrame, n: int = 40) -> list[dict]:
    """Feature rows as a JSON client sends them, with the cells an encoder must convert."""
    records = [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        for row in features.head(n).to_dict("records")
    ]
    numeric = [c for c in features.columns if pd.api.types.is_numeric_dtype(features[c])]
    for i, row in enumerate(records):
        row[numeric[0]] = ["12", "1,200", True, None, "yes", " 7 ", 3, 2.5][i % 8]
        row[numeric[1]] = [None, 4, False, 1.5][i % 4]
        if i % 5 == 0:
            row.pop(numeric[2], None)
        for c in features.columns:
            if not pd.api.types.is_numeric_dtype(features[c]) and i % 3 == 0:
                row[c] = [None, 7, "  ", True][i % 4]
    return records


def test_records_encode_the_same_row_by_row_and_column_by_column(model, features, monkeypatch):
    from model import served  # the encoder's transform half (model.classifier fits it)

    records = _messy_records(features)
    for est in model.heads.values():
        by_column = est.encode_records(records)
        monkeypatch.setattr(served, "_ROW_WISE_RECORDS", 10_000)
        by_row = est.encode_records(records)
        monkeypatch.undo()
        np.testing.assert_array_equal(by_column, by_row)
        np.testing.assert_array_equal(by_column, est.encode(pd.DataFrame(records)))


@pytest.mark.parametrize("reasons", [False, True])
def test_predict_rows_are_predict_frames_rows(model, features, reasons):
    records = _messy_records(features)
    frame = model.predict_frame(pd.DataFrame(records), reasons=reasons, top_k=2)
    rows = model.predict_rows(records, reasons=reasons, top_k=2)
    assert json.dumps(rows) == json.dumps(frame.to_dict("records"))
