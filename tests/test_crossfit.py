"""Cross-fitted heads and the macro-F1 label decision (issue #15)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.metrics import f1_score

from model.classifier import HeadClassifier, tune_decision_weights
from tests.support.leads import make_leads

FAST = {"n_estimators": 40, "num_threads": 1}


def _imbalanced(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated probabilities of a rare class that argmax almost never picks."""
    rng = np.random.default_rng(seed)
    score = rng.normal(size=n)
    p1 = 1 / (1 + np.exp(-(score * 1.5 - 3.0)))
    y = (rng.random(n) < p1).astype(int)
    return np.column_stack([1 - p1, p1]), y


def test_tuned_weights_raise_macro_f1_over_argmax_and_generalise():
    proba, y = _imbalanced(4000, seed=0)
    w, tuned = tune_decision_weights(proba, y)
    plain = f1_score(y, proba.argmax(axis=1), average="macro")
    assert tuned == pytest.approx(f1_score(y, (proba * w).argmax(axis=1), average="macro"))
    assert tuned > plain + 0.05
    assert np.exp(np.mean(np.log(w))) == pytest.approx(1.0)
    assert w[1] > w[0]  # the rare class is favoured
    # the same weights on fresh rows of the same process still beat argmax
    proba2, y2 = _imbalanced(4000, seed=1)
    assert f1_score(y2, (proba2 * w).argmax(axis=1), average="macro") > f1_score(
        y2, proba2.argmax(axis=1), average="macro"
    )


def test_weights_stay_one_when_argmax_is_already_best():
    y = np.repeat([0, 1, 2], 50)
    proba = np.full((150, 3), 0.1)
    proba[np.arange(150), y] = 0.8  # every argmax right: nothing to gain
    w, score = tune_decision_weights(proba, y)
    np.testing.assert_allclose(w, 1.0)
    assert score == pytest.approx(1.0)


@pytest.mark.slow
def test_cross_fitting_boosts_on_every_row_and_calibrates_out_of_fold():
    X, stage, _ = make_leads(900, seed=5)
    head = HeadClassifier(**FAST, cv_folds=3).fit(X, stage)
    assert head.n_train_rows_ == len(X)  # no carved-out slice
    assert head.calibration_["out_of_fold"] and head.calibration_["n_rows"] == len(X)
    assert len(head.cv_["fold_rounds"]) == 3
    assert head.cv_["rounds"] == round(np.mean(head.cv_["fold_rounds"]))
    assert head.booster_.num_trees() == head.n_rounds_ * len(head.classes_)
    slice_head = HeadClassifier(**FAST).fit(X, stage)
    assert slice_head.n_train_rows_ < len(X) and slice_head.cv_ is None
    # deterministic, and a row keeps its fold whatever the row order (folds by id hash)
    again = HeadClassifier(**FAST, cv_folds=3).fit(X, stage)
    assert again.cv_["fold_rounds"] == head.cv_["fold_rounds"]
    np.testing.assert_allclose(again.predict_proba(X), head.predict_proba(X), atol=1e-12)
    X = X.set_axis([f"L{i}" for i in range(len(X))])
    y_index = np.searchsorted(head.classes_.astype(str), np.asarray(stage, dtype=str))
    folds = head._folds(X.index, y_index)
    flipped = head._folds(X.index[::-1], y_index[::-1])
    np.testing.assert_array_equal(folds[::-1], flipped)
    for c in range(len(head.classes_)):  # every fold holds its share of every class
        counts = np.bincount(folds[y_index == c], minlength=3)
        assert counts.max() - counts.min() <= 1


def test_cross_fitting_falls_back_to_the_slice_with_a_tiny_class():
    X, stage, _ = make_leads(400, seed=6)
    stage = np.asarray(stage, dtype=object)
    stage[:3] = "purchase"  # 3 rows < 2 × 3 folds
    head = HeadClassifier(**FAST, cv_folds=3).fit(X, stage)
    assert head.cv_ is None and head.n_train_rows_ < len(X)


@pytest.mark.slow
def test_macro_f1_decision_changes_labels_not_probabilities():
    X, stage, _ = make_leads(900, seed=7)
    plain = HeadClassifier(**FAST, cv_folds=3).fit(X, stage)
    tuned = HeadClassifier(**FAST, cv_folds=3, decision="macro_f1").fit(X, stage)
    Xt, _, _ = make_leads(300, seed=8)
    np.testing.assert_allclose(plain.predict_proba(Xt), tuned.predict_proba(Xt))
    proba = tuned.predict_proba(Xt)
    expected = tuned.classes_[(proba * tuned.decision_weights_).argmax(axis=1)]
    assert list(tuned.predict(Xt)) == list(expected)
    assert tuned.decision_["macro_f1"] >= tuned.decision_["macro_f1_argmax"]
    assert set(tuned.decision_["weights"]) == set(tuned.classes_)
    np.testing.assert_allclose(plain.decision_weights_, 1.0)


def test_a_head_pickled_without_decision_weights_still_predicts_by_argmax():
    X, stage, _ = make_leads(300, seed=9)
    head = HeadClassifier(**FAST).fit(X, stage)
    state = head.__getstate__()
    state.pop("decision_weights_")
    old = HeadClassifier.__new__(HeadClassifier)
    old.__setstate__(state)
    old = pickle.loads(pickle.dumps(old))
    assert list(old.predict(X)) == list(head.classes_[head.predict_proba(X).argmax(axis=1)])
