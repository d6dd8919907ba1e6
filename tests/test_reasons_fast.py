"""Attribution behind reason codes: TreeSHAP per class (the default), path attribution
(an option), exact sums, caching."""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np
import pytest

from model.classifier import HeadClassifier
from model.reasons import explain_head
from tests.support.leads import make_leads

HEAD = {"n_estimators": 60, "num_threads": 1, "num_leaves": 15}


@pytest.fixture(scope="module")
def data():
    return make_leads(600, seed=3)


@pytest.fixture(scope="module")
def multiclass(data):
    X, stage, _ = data
    return HeadClassifier(**HEAD).fit(X, stage)


@pytest.fixture(scope="module")
def binary(data):
    X, _, persona = data
    return HeadClassifier(**HEAD).fit(X, persona == "non_buyer")


def _raw(head: HeadClassifier, Z: np.ndarray) -> np.ndarray:
    raw = head.booster_.predict(Z, raw_score=True, num_threads=1)
    return np.asarray(raw).reshape(len(Z), -1)


def test_path_contributions_add_up_to_lightgbm_raw_score_multiclass(multiclass, data):
    X = data[0]
    Z = multiclass.encode(X)
    contrib = multiclass.contributions_encoded(Z, method="path")
    assert contrib.shape == (len(X), 3, Z.shape[1] + 1)
    np.testing.assert_allclose(contrib.sum(axis=2), _raw(multiclass, Z), rtol=0, atol=1e-9)
    # Not the bias alone: features carry most rows' scores.
    assert np.abs(contrib[:, :, :-1]).sum(axis=2).min() > 0


def test_path_contributions_add_up_to_lightgbm_raw_score_binary(binary, data):
    X = data[0]
    Z = binary.encode(X)
    contrib = binary.contributions_encoded(Z, method="path")
    raw = _raw(binary, Z)[:, 0]
    np.testing.assert_allclose(contrib[:, 1].sum(axis=1), raw, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(contrib[:, 0], -contrib[:, 1])


@pytest.mark.parametrize("method", ["path", "shap"])
def test_class_contributions_pick_the_asked_class(multiclass, binary, data, method):
    X = data[0]
    rng = np.random.default_rng(0)
    for head in (multiclass, binary):
        Z = head.encode(X.head(50))
        index = rng.integers(0, len(head.classes_), 50)
        every = head.contributions_encoded(Z, method=method)
        picked = head.class_contributions_encoded(Z, index, method=method)
        # TreeSHAP of one class's trees alone: the same values, summed in another order
        np.testing.assert_allclose(picked, every[np.arange(50), index], rtol=0, atol=1e-12)
        assert not np.allclose(picked[:, :-1], 0)
    with pytest.raises(ValueError, match="class_index has 3 rows"):
        multiclass.class_contributions_encoded(Z, np.zeros(3, dtype=int))


@pytest.mark.parametrize("method", ["path", "shap"])
def test_a_rows_contributions_do_not_depend_on_its_batch(multiclass, data, method):
    X = data[0]
    Z = multiclass.encode(X)
    index = np.arange(len(X)) % 3
    batch = multiclass.class_contributions_encoded(Z, index, method=method, num_threads=2)
    for i in (0, 17, 599):
        alone = multiclass.class_contributions_encoded(
            Z[i : i + 1], index[i : i + 1], method=method
        )
        np.testing.assert_array_equal(alone[0], batch[i])


def test_reasons_default_to_treeshap_of_the_explained_class(multiclass, binary, data):
    X = data[0].head(200)
    for head in (multiclass, binary):
        Z = head.encode(X)
        index = head.predict_proba_encoded(Z).argmax(axis=1)
        picked = head.class_contributions_encoded(Z, index)
        full = np.asarray(head.booster_.predict(Z, pred_contrib=True, num_threads=1))
        if len(head.classes_) == 2:
            expected = np.where((index == 0)[:, None], -full, full)
        else:
            expected = full.reshape(len(Z), len(head.classes_), -1)[np.arange(len(Z)), index]
        np.testing.assert_allclose(picked, expected, rtol=0, atol=1e-12)
        # the explained class's raw score, bias included
        raw = (
            np.column_stack([np.zeros(len(Z)), _raw(head, Z)])
            if len(head.classes_) == 2
            else _raw(head, Z)
        )
        sign = np.where(index == 0, -1.0, 1.0) if len(head.classes_) == 2 else 1.0
        np.testing.assert_allclose(
            picked.sum(axis=1),
            (raw[:, 1] * sign) if len(head.classes_) == 2 else raw[np.arange(len(Z)), index],
            rtol=0,
            atol=1e-9,
        )


def test_path_attribution_agrees_in_sign_with_treeshap_on_the_top_features(multiclass, data):
    X = data[0]
    Z = multiclass.encode(X.head(200))
    index = multiclass.predict_proba_encoded(Z).argmax(axis=1)
    path = multiclass.class_contributions_encoded(Z, index, method="path")[:, :-1]
    shap = multiclass.class_contributions_encoded(Z, index, method="shap")[:, :-1]
    top = np.argsort(-np.abs(shap), axis=1)[:, :3]
    rows = np.arange(len(Z))[:, None]
    agree = np.sign(path[rows, top]) == np.sign(shap[rows, top])
    assert agree.mean() >= 0.8
    # The strongest feature is the same one most of the time.
    assert (np.abs(path).argmax(axis=1) == top[:, 0]).mean() >= 0.6


def test_shap_method_is_lightgbms_treeshap(multiclass, data):
    Z = multiclass.encode(data[0].head(20))
    shap = multiclass.contributions_encoded(Z, method="shap")
    expected = np.asarray(multiclass.booster_.predict(Z, pred_contrib=True)).reshape(shap.shape)
    np.testing.assert_array_equal(shap, expected)
    path = multiclass.contributions_encoded(Z, method="path")
    assert not np.allclose(path, shap)  # a different attribution, same sums
    np.testing.assert_allclose(path.sum(axis=2), shap.sum(axis=2), rtol=0, atol=1e-9)
    with pytest.raises(ValueError, match="method must be 'path' or 'shap'"):
        multiclass.contributions_encoded(Z, method="saabas")


def test_explain_head_offers_both_methods(multiclass):
    rows = [{"n_pricing_7d": 9, "n_demo_request_30d": 2, "days_since_pricing": 1.0}]
    Z = multiclass.encode_records(rows)
    index = multiclass.predict_proba_encoded(Z).argmax(axis=1)
    assert multiclass.classes_[index[0]] == "decision"
    texts = {
        "n_pricing_7d": "9 pricing-page visits in the last 7 days",
        "n_demo_request_30d": "2 demo requests in the last 30 days",
        "days_since_pricing": "last pricing-page visit 1 day ago",
    }
    for method in ("path", "shap"):
        [reasons] = explain_head(multiclass, Z, index, {}, method=method)
        top = reasons[0]
        assert top["feature"] in texts and top["weight"] > 0, (method, reasons)
        assert top["text"] == texts[top["feature"]]


def _booster_reads(monkeypatch) -> Counter:
    """Count the reads of a whole booster that building the explanation tables takes:
    ``dump_model`` for the path tables, ``model_to_string`` for the one-class boosters."""
    import lightgbm as lgb

    reads: Counter = Counter()
    for name in ("dump_model", "model_to_string"):
        real = getattr(lgb.Booster, name)

        def counted(self, *args, _real=real, _name=name, **kwargs):
            reads[_name] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(lgb.Booster, name, counted)
    return reads


def _explain_both_ways(head: HeadClassifier, Z: np.ndarray, index: np.ndarray) -> None:
    for method in ("path", "shap"):
        head.class_contributions_encoded(Z, index, method=method)


def test_tables_are_built_once_and_left_out_of_pickles(data, monkeypatch):
    X, stage, _ = data
    head = HeadClassifier(**HEAD).fit(X, stage)
    before = len(pickle.dumps(head))
    Z = head.encode(X.head(5))
    index = np.array([0, 1, 2, 1, 0])
    reads = _booster_reads(monkeypatch)
    assert head.prepare_explanations() is head
    assert reads == {"model_to_string": 1}  # the one-class boosters, built now
    for _ in range(3):
        _explain_both_ways(head, Z, index)
    assert reads == {"model_to_string": 1, "dump_model": 1}  # path tables on first use; once
    assert len(pickle.dumps(head)) == before
    copy = pickle.loads(pickle.dumps(head))
    reads.clear()
    for method in ("path", "shap"):
        np.testing.assert_array_equal(
            copy.class_contributions_encoded(Z, index, method=method),
            head.class_contributions_encoded(Z, index, method=method),
        )
    assert reads == {"model_to_string": 1, "dump_model": 1}  # the copy built its own
    # Refitting replaces the booster: the tables and the one-class boosters follow it.
    head.fit(X.head(300), stage[:300])
    reads.clear()
    _explain_both_ways(head, Z, index)
    assert reads == {"model_to_string": 1, "dump_model": 1}
    for method in ("path", "shap"):
        np.testing.assert_allclose(
            head.contributions_encoded(Z, method=method).sum(axis=2),
            _raw(head, Z),
            rtol=0,
            atol=1e-9,
        )
        picked = head.class_contributions_encoded(Z, index, method=method)
        np.testing.assert_allclose(
            picked.sum(axis=1), _raw(head, Z)[np.arange(5), index], rtol=0, atol=1e-9
        )


def test_trees_without_splits_are_all_bias(data):
    X, stage, _ = data
    head = HeadClassifier(
        n_estimators=5, num_threads=1, calibration="none", lgbm_params={"min_data_in_leaf": 10_000}
    ).fit(X, stage)
    Z = head.encode(X.head(10))
    for method in ("path", "shap"):
        contrib = head.contributions_encoded(Z, method=method)
        assert np.all(contrib[:, :, :-1] == 0)
        np.testing.assert_allclose(contrib[:, :, -1], _raw(head, Z), rtol=0, atol=1e-12)
    assert explain_head(head, Z, np.zeros(10, dtype=int), {}) == [[]] * 10


def test_small_batches_sum_reasons_exactly_like_large_ones(multiclass, data, monkeypatch):
    from model import reasons

    X = data[0].head(40)
    Z = multiclass.encode(X)
    index = multiclass.predict_proba_encoded(Z).argmax(axis=1)
    text = {
        c: X[c].to_numpy(dtype=object)
        for c in multiclass.encoder_.columns_
        if multiclass.encoder_.kinds_[c] == "text"
    }
    batch = explain_head(multiclass, Z, index, text, top_k=6)
    for i in range(len(X)):
        one = {c: v[i : i + 1] for c, v in text.items()}
        assert explain_head(multiclass, Z[i : i + 1], index[i : i + 1], one, top_k=6) == [batch[i]]
    monkeypatch.setattr(reasons, "_PYTHON_SUM_ROWS", 0)
    assert (
        explain_head(multiclass, Z[:5], index[:5], {c: v[:5] for c, v in text.items()}, top_k=6)
        == batch[:5]
    )


@pytest.mark.parametrize(
    "params",
    [
        {"n_estimators": 300, "learning_rate": 0.3, "early_stopping_rounds": 3},
        {
            "n_estimators": 30,
            "early_stopping_rounds": None,
            "lgbm_params": {"boosting": "dart", "drop_rate": 0.2},
        },
    ],
    ids=["early-stopped", "dart"],
)
def test_one_class_treeshap_equals_lightgbms_on_every_booster_kind(data, params):
    X, stage, _ = data
    head = HeadClassifier(num_threads=1, num_leaves=15, **params).fit(X, stage)
    Z = head.encode(X.head(80))
    index = np.arange(80) % len(head.classes_)
    full = np.asarray(head.booster_.predict(Z, pred_contrib=True, num_threads=1))
    expected = full.reshape(80, len(head.classes_), -1)[np.arange(80), index]
    np.testing.assert_allclose(head.class_contributions_encoded(Z, index), expected, atol=1e-12)
    np.testing.assert_allclose(
        expected.sum(axis=1), _raw(head, Z)[np.arange(80), index], rtol=0, atol=1e-9
    )
