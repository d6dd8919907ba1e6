"""Per-head model family chosen by cross-validation: LightGBM, logistic regression, blend (#15)."""

from __future__ import annotations

import json
import pickle
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from model.classifier import HeadClassifier, TwoHeadClassifier
from model.features import FeatureConfig, build_features
from model.package import LeadReadinessModel
from tests.support.leads import AS_OF, assert_records_match_frame, make_lead_tables
from training.procedure import procedure_metrics, procedure_report, procedure_table

FAST = {"n_estimators": 60, "num_threads": 1, "cv_folds": 3, "decision": "macro_f1"}


def _linear_table(n: int, seed: int, k: int = 3) -> tuple[pd.DataFrame, np.ndarray]:
    """Many weak numeric signals adding up in log-odds, plus a category: a linear world."""
    W = np.random.default_rng(100 + k).normal(scale=0.45, size=(12, k))  # the world
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 12))
    region = rng.choice(["north", "south", "east"], n)
    logits = X @ W + np.where(region == "north", 0.8, 0.0)[:, None] * np.eye(k)[0]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y = np.array([rng.choice(k, p=row) for row in p])
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(12)])
    frame.loc[rng.random(n) < 0.1, "x0"] = np.nan
    frame["region"] = region
    return frame, np.asarray([f"c{c}" for c in y], dtype=object)


def _xor_table(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The label is an interaction no linear model can draw."""
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)
    y = np.where((a > 0) ^ (b > 0), "yes", "no")
    flip = rng.random(n) < 0.05
    y[flip] = np.where(y[flip] == "yes", "no", "yes")
    return pd.DataFrame({"a": a, "b": b, "noise": rng.normal(size=n)}), y.astype(object)


@pytest.mark.slow
def test_auto_picks_a_linear_family_in_a_linear_world_and_lightgbm_for_an_interaction():
    X, y = _linear_table(2400, seed=1)
    head = HeadClassifier(**FAST).fit(X, y)
    scores = head.cv_["families"]
    assert set(scores) == {"lightgbm", "linear", "blend"}
    assert head.family_ in ("linear", "blend")
    assert scores[head.family_]["macro_f1_decided"] > scores["lightgbm"]["macro_f1_decided"]
    assert head.linear_ is not None and head.cv_["linear"]["C"] > 0
    # the choice generalises: fresh rows of the same world
    Xt, yt = _linear_table(3000, seed=2)
    boosted = HeadClassifier(**FAST, family="lightgbm").fit(X, y)
    assert f1_score(yt, head.predict(Xt), average="macro") > f1_score(
        yt, boosted.predict(Xt), average="macro"
    )

    Xx, yx = _xor_table(2000, seed=3)
    tree = HeadClassifier(**FAST).fit(Xx, yx)
    assert tree.family_ == "lightgbm" and tree.linear_ is None
    xor_scores = tree.cv_["families"]
    assert (
        xor_scores["lightgbm"]["macro_f1_decided"] > xor_scores["linear"]["macro_f1_decided"] + 0.2
    )


@pytest.mark.slow
@pytest.mark.parametrize("family", ["linear", "blend"])
@pytest.mark.parametrize("k", [2, 3])
def test_contributions_add_up_to_the_score_and_follow_the_coefficients(family, k):
    X, y = _linear_table(1200, seed=4, k=k)
    head = HeadClassifier(**FAST, family=family).fit(X, y)
    assert head.family_ == family and list(head.cv_["families"]) == [family]
    Z = head.encode(X.iloc[:40])
    raw = head.raw_logits_encoded(Z, num_threads=1)
    every = head.contributions_encoded(Z)
    assert every.shape == (40, k, Z.shape[1] + 1)
    if k == 2:  # as for trees: class 1's entries add up to the score, class 0 gets -them
        np.testing.assert_allclose(every[:, 1].sum(axis=1), raw[:, 1] - raw[:, 0], atol=1e-9)
        np.testing.assert_allclose(every[:, 0, :], -every[:, 1, :], atol=1e-12)
    else:
        np.testing.assert_allclose(every.sum(axis=2), raw, atol=1e-9)
    index = head.predict_proba_encoded(Z).argmax(axis=1)
    picked = head.class_contributions_encoded(Z, index)
    np.testing.assert_allclose(picked, every[np.arange(40), index], atol=1e-12)
    linear = head.linear_
    # the linear part is sklearn's own decision function on the standardised design
    S = linear.standardise(Z)
    decision = np.asarray(linear.model_.decision_function(S)).reshape(40, -1)
    part = linear.contributions(Z)
    np.testing.assert_allclose(part[:, -1, :].sum(axis=1), decision[:, -1], atol=1e-9)
    if family == "blend":
        tree = head.contributions_encoded(Z, method="shap") - 0.5 * part
        trees = np.asarray(head.booster_.predict(Z, raw_score=True, num_threads=1))
        np.testing.assert_allclose(  # the last class's score (a binary booster has only it)
            2 * tree.sum(axis=2)[:, -1], trees.reshape(40, -1)[:, -1], atol=1e-6
        )
    # a missing number is credited to its own column (the fill and the indicator)
    missing = X.iloc[:40]["x0"].isna().to_numpy()
    assert missing.any()
    column = list(head.encoder_.feature_names_out_).index("x0")
    assert np.all(np.abs(part[missing, :, column]) > 0)


@pytest.mark.slow
def test_linear_head_survives_pickling_and_an_unknown_family_is_refused():
    X, y = _linear_table(900, seed=5)
    head = HeadClassifier(**FAST, family="linear").fit(X, y)
    copy = pickle.loads(pickle.dumps(head))
    np.testing.assert_allclose(copy.predict_proba(X), head.predict_proba(X))
    assert list(copy.predict(X)) == list(head.predict(X))
    with pytest.raises(ValueError, match="family must be"):
        HeadClassifier(family="svm").fit(X, y)
    # without cross-fitting (the slice) the head stays LightGBM and says nothing else
    slice_head = HeadClassifier(n_estimators=30, family="auto").fit(X, y)
    assert slice_head.family_ == "lightgbm" and slice_head.cv_ is None


@pytest.mark.slow
def test_a_linear_and_a_blend_head_serve_single_leads_with_reasons():
    leads, events = make_lead_tables(400, seed=3)
    config = FeatureConfig()
    X = build_features(leads, events, as_of=AS_OF, config=config, exclude=("stage", "persona"))
    clf = TwoHeadClassifier(
        stage_estimator=HeadClassifier(**FAST, family="blend"),
        persona_estimator=HeadClassifier(**FAST, family="linear"),
    ).fit(X, leads["stage"].to_numpy(), leads["persona"].to_numpy())
    model = LeadReadinessModel(clf, input_columns=list(X.columns), feature_config=config)
    model = pickle.loads(pickle.dumps(model))
    sample = X.head(6)
    frame = model.predict_frame(sample, reasons=True)
    records = model.predict_records(json.loads(sample.to_json(orient="records")), reasons=True)
    assert_records_match_frame(frame, records, reasons=True)
    assert all(rec["persona"]["reasons"] for rec in records)
    # the persona head learned the job titles: the top reason is about the title
    top = [rec["persona"]["reasons"][0] for rec in records]
    assert sum("title" in json.dumps(r).lower() for r in top) >= 5, top

    report = procedure_report(SimpleNamespace(heads=model.heads))
    assert report["stage"]["family"] == "blend" and report["persona"]["family"] == "linear"
    metrics = procedure_metrics(report)
    assert metrics["procedure_persona_family_linear_chosen"] == 1.0
    assert 0 <= metrics["procedure_stage_family_blend_oof_macro_f1_decided"] <= 1
    assert metrics["procedure_persona_linear_C"] > 0
    from rich.console import Console

    console = Console(record=True, width=250)
    console.print(procedure_table(report))
    assert "linear" in console.export_text()


@pytest.mark.slow
def test_linear_fits_use_at_most_the_row_cap(monkeypatch):
    from model import linear

    monkeypatch.setattr(linear, "MAX_FIT_ROWS", 600)
    X, y = _linear_table(1500, seed=6)
    head = HeadClassifier(**FAST, family="linear").fit(X, y)
    assert head.cv_["linear"]["fit_rows"] == 600
    Xt, yt = _linear_table(2000, seed=7)
    assert f1_score(yt, head.predict(Xt), average="macro") > 0.5  # still learned the world
