"""TableEncoder, HeadClassifier and TwoHeadClassifier on small synthetic lead tables."""

from __future__ import annotations

import pickle
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from model.classifier import (
    HeadClassifier,
    TableEncoder,
    TwoHeadClassifier,
    expected_calibration_error,
    normalize_labels,
)
from tests.support.leads import STAGES, TITLES, make_leads

FAST = {"n_estimators": 40, "num_threads": 1}


@pytest.fixture(scope="module")
def leads():
    return make_leads(300, seed=0)


@pytest.fixture(scope="module")
def fresh():
    return make_leads(400, seed=1)


# --------------------------------------------------------------------------- encoder


def test_encoder_detects_kinds_and_reports_every_dropped_column():
    frame, stage, _ = make_leads(200)
    frame = frame.assign(
        created=pd.Timestamp("2026-01-01") + pd.to_timedelta(np.arange(len(frame)), unit="D"),
        empty=None,
    )
    enc = TableEncoder(max_text_tokens=5).fit(frame, stage)
    assert enc.kinds_["n_pricing_7d"] == "numeric"
    assert enc.kinds_["is_customer"] == "numeric"
    assert enc.kinds_["industry"] == "categorical"
    assert enc.kinds_["job_title"] == "text"
    assert set(enc.dropped_columns_) == {"lead_id", "always_one", "created", "empty"}
    assert "id-like" in enc.dropped_columns_["lead_id"]
    assert "constant" in enc.dropped_columns_["always_one"]
    assert "datetime" in enc.dropped_columns_["created"]
    assert enc.dropped_columns_["empty"] == "all missing"
    assert set(enc.columns_) | set(enc.dropped_columns_) == set(frame.columns)
    assert 0 < len(enc.tokens_["job_title"]) <= 5
    Z = enc.transform(frame)
    assert Z.shape == (len(frame), len(enc.get_feature_names_out()))
    bools = Z[:, list(enc.feature_names_out_).index("is_customer")]
    assert set(np.unique(bools)) == {0.0, 1.0}


def test_encoder_text_tokens_follow_the_labels():
    frame, _, persona = make_leads(300)
    enc = TableEncoder(max_text_tokens=4).fit(frame[["job_title"]], persona)
    # The region suffixes are frequent but say nothing about the persona.
    assert not {"emea", "us", "apac"} & set(enc.tokens_["job_title"])
    enc_no_y = TableEncoder(max_text_tokens=30).fit(frame[["job_title"]])
    assert "emea" in enc_no_y.tokens_["job_title"]


def test_encoder_unseen_and_missing_values_are_nan():
    frame, stage, _ = make_leads(100)
    enc = TableEncoder().fit(frame, stage)
    other = frame.head(3).copy()
    other["industry"] = ["Mining", None, "Retail"]
    other["job_title"] = [None, "", "VP of Sales"]
    Z = enc.transform(other.drop(columns=["noise"]))
    names = list(enc.feature_names_out_)
    ind = Z[:, names.index("industry")]
    assert np.isnan(ind[0]) and np.isnan(ind[1])
    assert ind[2] == enc.categories_["industry"].index("Retail")
    assert np.isnan(Z[:, names.index("noise")]).all()
    tokens = [i for i, nm in enumerate(names) if nm.startswith("job_title__")]
    assert np.isnan(Z[0, tokens]).all() and np.isnan(Z[1, tokens]).all()
    assert np.nansum(Z[2, tokens]) >= 1


def test_transform_records_equals_transform_on_messy_rows():
    frame, stage, _ = make_leads(150)
    enc = TableEncoder().fit(frame, stage)
    records = frame.head(40).to_dict("records")
    records[0].pop("industry")
    records[1]["n_pricing_7d"] = None
    records[2]["industry"] = "Unseen"
    records[3]["is_customer"] = None
    records[4]["job_title"] = float("nan")
    records[5]["extra_key"] = "ignored"
    records[6]["company_size"] = "1,200"
    records[7]["n_demo_request_30d"] = True
    expected = enc.transform(pd.DataFrame(records))
    got = enc.transform_records(records)
    np.testing.assert_array_equal(got, expected)
    assert got[6, list(enc.feature_names_out_).index("company_size")] == 1200.0


def test_transform_records_needs_no_pandas_objects():
    frame, stage, _ = make_leads(120)
    enc = TableEncoder().fit(frame, stage)
    one = {
        "n_pricing_7d": 3,
        "industry": "Fintech",
        "job_title": "VP of Sales",
        "is_customer": False,
    }
    row = enc.transform_records([one])
    assert row.shape == (1, len(enc.feature_names_out_))
    names = list(enc.feature_names_out_)
    assert row[0, names.index("n_pricing_7d")] == 3.0
    assert row[0, names.index("is_customer")] == 0.0
    assert np.isnan(row[0, names.index("noise")])


def test_normalize_labels():
    got = normalize_labels([True, False, 1, 0.0, "  decision ", None, float("nan"), "", pd.NA])
    assert list(got) == ["True", "False", "1", "0", "decision", None, None, None, None]


# --------------------------------------------------------------------------- one head


def test_head_learns_multiclass_signal(leads, fresh):
    X, stage, _ = leads
    head = HeadClassifier(**FAST).fit(X, stage)
    assert list(head.classes_) == sorted(STAGES)
    Xf, stage_f, _ = fresh
    proba = head.predict_proba(Xf)
    assert proba.shape == (len(Xf), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    accuracy = (head.predict(Xf) == stage_f).mean()
    majority = max((stage_f == s).mean() for s in STAGES)
    assert accuracy > majority + 0.1


@pytest.mark.parametrize(
    ("labels", "classes"),
    [
        (lambda s: s == "decision", ["False", "True"]),
        (lambda s: (s == "decision").astype(int), ["0", "1"]),
        (lambda s: np.where(s == "decision", "yes", "no"), ["no", "yes"]),
    ],
    ids=["bool", "int01", "str"],
)
def test_head_binary_labels_become_strings(leads, labels, classes):
    X, stage, _ = leads
    head = HeadClassifier(**FAST).fit(X, labels(stage))
    assert list(head.classes_) == classes
    proba = head.predict_proba(X.head(20))
    assert proba.shape == (20, 2)
    assert set(head.predict(X.head(20))) <= set(classes)


@pytest.mark.parametrize("n_rare", [1, 2, 3])
def test_head_survives_a_rare_class(leads, n_rare):
    X, stage, _ = leads
    y = stage.copy()
    y[:n_rare] = "purchase"
    head = HeadClassifier(**FAST).fit(X, y)
    assert "purchase" in head.classes_
    assert head.predict_proba(X.head(5)).shape == (5, 4)
    assert head.calibration_["n_rows"] > 0  # the other classes still calibrate


def test_calibration_lowers_ece_on_held_out_data():
    # Many fast trees on 600 rows: raw LightGBM probabilities are overconfident;
    # calibration on the held-out slice must bring ECE down on unseen rows.
    X, stage, _ = make_leads(600, seed=3)
    Xt, stage_t, _ = make_leads(1500, seed=4)
    head = HeadClassifier(
        n_estimators=150, learning_rate=0.1, num_threads=1, early_stopping_rounds=None
    ).fit(X, stage)
    cal = head.calibration_
    assert 95 <= cal["n_rows"] <= 145  # about 20% of the rows
    assert cal["method"] == "temperature" and cal["temperature"] > 1.0
    assert set(cal["candidates"]) == {"none", "temperature"}
    assert cal["ece_calibrated"] < cal["ece_uncalibrated"]
    y_index = np.searchsorted(head.classes_.astype(str), stage_t)
    Z = head.encode(Xt)
    raw = head.raw_logits_encoded(Z, num_threads=1)
    raw_proba = np.exp(raw - raw.max(axis=1, keepdims=True))
    raw_proba /= raw_proba.sum(axis=1, keepdims=True)
    ece_raw = expected_calibration_error(raw_proba, y_index)
    ece_cal = expected_calibration_error(head.predict_proba(Xt), y_index)
    assert ece_cal < ece_raw


@pytest.mark.slow
def test_early_stopping_keeps_only_the_rounds_up_to_the_best():
    # 600 rows and a fast learning rate overfit long before 300 rounds: boosting
    # stops on the held-out rows' log loss and the stored booster has just the
    # kept rounds, so what is compiled and explained is what predicts.
    X, stage, _ = make_leads(600, seed=3)
    head = HeadClassifier(n_estimators=300, learning_rate=0.3, num_threads=1).fit(X, stage)
    assert head.n_rounds_ < 300
    assert head.booster_.num_trees() == head.n_rounds_ * len(head.classes_)
    full = HeadClassifier(
        n_estimators=300, learning_rate=0.3, num_threads=1, early_stopping_rounds=None
    ).fit(X, stage)
    assert full.n_rounds_ == 300 and full.booster_.num_trees() == 300 * len(full.classes_)
    # the early-stopped head is no worse on unseen rows
    Xt, stage_t, _ = make_leads(1500, seed=4)
    assert (head.predict(Xt) == stage_t).mean() >= (full.predict(Xt) == stage_t).mean() - 0.02


def test_calibration_rows_do_not_depend_on_the_labels():
    # Correcting a few labels must not move other rows between boosting and
    # calibration (that reshuffle alone swamped the effect of the corrections).
    X, stage, _ = make_leads(600, seed=3)
    X = X.set_axis([f"L{i}" for i in range(len(X))])
    changed = np.asarray(stage, dtype=object).copy()
    changed[:10] = np.where(changed[:10] == "awareness", "consideration", "awareness")
    a = HeadClassifier(**FAST).fit(X, stage)
    b = HeadClassifier(**FAST).fit(X, changed)
    assert a.n_train_rows_ == b.n_train_rows_
    assert a.calibration_["n_rows"] == b.calibration_["n_rows"]
    # the same lead ids are held out whatever the row order
    order = np.random.default_rng(0).permutation(len(X))
    c = HeadClassifier(**FAST).fit(X.iloc[order], np.asarray(stage, dtype=object)[order])
    assert c.calibration_["n_rows"] == a.calibration_["n_rows"]


def test_expected_calibration_error_values():
    proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    assert expected_calibration_error(proba, np.array([0, 0, 0, 1])) == pytest.approx(
        0.5 * 0.1 + 0.5 * 0.1
    )
    assert expected_calibration_error(np.array([[1.0, 0.0]]), np.array([0])) == 0.0


def test_calibration_method_can_be_forced(leads):
    X, stage, _ = leads
    head = HeadClassifier(calibration="isotonic", **FAST).fit(X, stage)
    assert head.calibration_["method"] == "isotonic"
    none = HeadClassifier(calibration="none", **FAST).fit(X, stage)
    assert none.calibration_["method"] == "none"
    assert none.n_train_rows_ == len(X)


def test_head_pickle_round_trip_and_determinism(leads, fresh):
    X, stage, _ = leads
    head = HeadClassifier(**FAST).fit(X, stage)
    again = HeadClassifier(**FAST).fit(X, stage)
    loaded = pickle.loads(pickle.dumps(head))
    Xf = fresh[0]
    np.testing.assert_array_equal(loaded.predict_proba(Xf), head.predict_proba(Xf))
    np.testing.assert_array_equal(again.predict_proba(Xf), head.predict_proba(Xf))
    np.testing.assert_array_equal(
        loaded.encoder_.transform_records(Xf.head(5).to_dict("records")),
        head.encode(Xf.head(5)),
    )


def test_head_predictions_do_not_depend_on_the_batch(leads, fresh):
    X, stage, _ = leads
    head = HeadClassifier(**FAST).fit(X, stage)
    Xf = fresh[0]
    full = head.predict_proba(Xf)
    np.testing.assert_allclose(head.predict_proba(Xf.iloc[7:8]), full[7:8], rtol=0, atol=1e-12)
    np.testing.assert_allclose(head.predict_proba(Xf.iloc[::-1]), full[::-1], rtol=0, atol=1e-12)


def test_head_errors(leads):
    X, stage, _ = leads
    with pytest.raises(ValueError, match="at least 2 classes"):
        HeadClassifier(**FAST).fit(X, np.full(len(X), "decision"))
    y = stage.astype(object)
    y[3] = None
    with pytest.raises(ValueError, match="missing labels"):
        HeadClassifier(**FAST).fit(X, y)
    with pytest.raises(ValueError, match="calibration must be"):
        HeadClassifier(calibration="platt").fit(X, stage)
    with pytest.raises(ValueError, match="continuous"):
        HeadClassifier(**FAST).fit(X, np.linspace(0, 1, len(X)))


def test_contributions_add_up_to_the_raw_score(leads):
    X, stage, persona = leads
    for y in (stage, persona == "non_buyer"):
        head = HeadClassifier(**FAST).fit(X, y)
        Z = head.encode(X.head(10))
        contrib = head.contributions_encoded(Z)
        assert contrib.shape == (10, len(head.classes_), Z.shape[1] + 1)
        raw = head.raw_logits_encoded(Z, num_threads=1)
        if len(head.classes_) == 2:
            np.testing.assert_allclose(contrib[:, 1].sum(axis=1), raw[:, 1], atol=1e-9)
            np.testing.assert_allclose(contrib[:, 0], -contrib[:, 1])
        else:
            np.testing.assert_allclose(contrib.sum(axis=2), raw, atol=1e-9)


# --------------------------------------------------------------------------- two heads


def test_two_heads_with_partial_labels(leads, fresh):
    X, stage, persona = leads
    y_stage = stage.astype(object)
    y_stage[::4] = None
    y_persona = pd.Series(persona, dtype=object)
    y_persona[1::3] = ""
    y_persona[2::5] = np.nan
    model = TwoHeadClassifier(
        stage_estimator=HeadClassifier(**FAST), persona_estimator=HeadClassifier(**FAST)
    ).fit(X, y_stage, y_persona)
    n_stage = sum(v is not None for v in y_stage)
    n_persona = int(sum(isinstance(v, str) and v != "" for v in y_persona))
    assert model.stage_.n_train_rows_ + model.stage_.calibration_["n_rows"] == n_stage
    assert model.persona_.n_train_rows_ + model.persona_.calibration_["n_rows"] == n_persona
    assert list(model.classes_["persona"]) == sorted(TITLES)
    proba = model.predict_proba(fresh[0])
    assert set(proba) == {"stage", "persona"}
    assert proba["persona"].shape == (len(fresh[0]), 3)
    persona_acc = (model.predict(fresh[0])["persona"] == fresh[2]).mean()
    assert persona_acc > 0.9  # the title says it


def test_one_head_only(leads):
    X, _, persona = leads
    model = TwoHeadClassifier(persona_estimator=HeadClassifier(**FAST)).fit(X, y_persona=persona)
    assert model.stage_ is None
    assert set(model.predict_proba(X.head(3))) == {"persona"}
    all_missing = TwoHeadClassifier(persona_estimator=HeadClassifier(**FAST)).fit(
        X, y_stage=[None] * len(X), y_persona=persona
    )
    assert all_missing.stage_ is None and set(all_missing.classes_) == {"persona"}


def test_two_heads_need_labels(leads):
    X = leads[0]
    with pytest.raises(ValueError, match="no labels"):
        TwoHeadClassifier().fit(X)
    with pytest.raises(ValueError, match="no labels"):
        TwoHeadClassifier().fit(X, y_stage=[""] * len(X))
    with pytest.raises(ValueError, match="stage head: need at least 2 classes"):
        TwoHeadClassifier().fit(X, y_stage=["decision"] * len(X))
    with pytest.raises(ValueError, match="rows"):
        TwoHeadClassifier().fit(X, y_stage=["decision", "awareness"])


def test_datetime_objects_in_object_column_are_dropped_not_crashing():
    frame, stage, _ = make_leads(60)
    frame["seen"] = [datetime(2026, 1, 1)] * 30 + [None] * 30
    enc = TableEncoder().fit(frame, stage)
    assert "datetime" in enc.dropped_columns_["seen"]


# --------------------------------------------------------------------------- scikit-learn checks

_STRING_CLASSES = (
    "classes_ are strings by design (labels are normalised for JSON and output column "
    "names); this check compares predictions with integer y numerically"
)


def _expected_failed_checks(estimator) -> dict[str, str]:
    if isinstance(estimator, HeadClassifier):
        return {
            "check_sample_weight_equivalence_on_dense_data": (
                "a stratified held-out slice for calibration depends on row count, so "
                "repeating rows is not the same as weighting them"
            ),
            "check_class_weight_classifiers": (
                "class weights only shape boosting; calibration undoes their prior shift, "
                "and only 'balanced' or None is supported"
            ),
            **{
                name: _STRING_CLASSES
                for name in (
                    "check_fit_score_takes_y",
                    "check_pipeline_consistency",
                    "check_estimators_pickle",
                    "check_classifier_data_not_an_array",
                    "check_classifiers_classes",
                    "check_classifiers_train",
                    "check_supervised_y_2d",
                    "check_methods_sample_order_invariance",
                    "check_methods_subset_invariance",
                    "check_fit_idempotent",
                )
            },
        }
    return {}


@parametrize_with_checks(
    [TableEncoder(), HeadClassifier(n_estimators=5, num_threads=1)],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
