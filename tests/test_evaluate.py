"""Metrics, slices, baselines and plots of training.evaluate, on hand-made predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.evaluate import (
    HeadPrediction,
    baselines,
    flatten_metrics,
    head_metrics,
    metric_key,
    plots,
)


def _prediction(classes, rows, ids):
    proba = np.asarray(rows, dtype=float)
    return HeadPrediction(tuple(classes), proba, pd.Index(ids))


def test_head_metrics_on_a_known_confusion():
    ids = ["a", "b", "c", "d"]
    y = pd.Series(["x", "x", "y", "y"], index=ids)
    # a: right (0.9), b: wrong (0.4 on x), c: right (0.8), d: right (0.6)
    pred = _prediction(["x", "y"], [[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.4, 0.6]], ids)
    m = head_metrics(y, pred)
    assert m["n"] == 4
    assert m["accuracy"] == pytest.approx(0.75)
    # x: precision 1, recall 0.5 -> F1 2/3; y: precision 2/3, recall 1 -> F1 0.8
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert m["per_class"]["x"]["recall"] == pytest.approx(0.5)
    assert m["per_class"]["y"]["precision"] == pytest.approx(2 / 3)
    assert m["confusion_matrix"] == {"labels": ["x", "y"], "matrix": [[1, 1], [0, 2]]}
    expected_loss = -np.mean(np.log([0.9, 0.4, 0.8, 0.6]))
    assert m["log_loss"] == pytest.approx(expected_loss)
    # Bins: 0.9 (right), 0.6 (wrong), 0.8 (right), 0.6 (right).
    # ECE = |1-0.9|/4 + |0.5-0.6|*2/4 + |1-0.8|/4 = 0.025 + 0.05 + 0.05
    assert m["ece"] == pytest.approx(0.125)


def test_missing_labels_are_skipped_and_unknown_true_class_costs_log_loss():
    ids = ["a", "b", "c"]
    y = pd.Series(["x", None, "z"], index=ids)
    pred = _prediction(["x", "y"], [[0.7, 0.3], [0.5, 0.5], [0.5, 0.5]], ids)
    m = head_metrics(y, pred)
    assert m["n"] == 2
    assert m["per_class"]["z"]["recall"] == 0.0
    assert m["log_loss"] > 10  # the model gave the unseen class no probability


def test_slices_report_values_with_enough_rows():
    n = 40
    ids = [f"l{i}" for i in range(n)]
    y = pd.Series(["x"] * 20 + ["y"] * 20, index=ids)
    right = [[1.0, 0.0]] * 20 + [[0.0, 1.0]] * 20
    # Source "web" rows are all predicted right; "ads" rows (the last 10 of each
    # class, 20 in all) get the flipped answer.
    rows = [list(r) for r in right]
    source = ["web"] * n
    for i in list(range(10, 20)) + list(range(30, 40)):
        rows[i] = rows[i][::-1]
        source[i] = "ads"
    source[0] = "rare"  # one row: below the minimum, not reported
    slices = pd.DataFrame({"lead_source": source}, index=ids)
    m = head_metrics(y, _prediction(["x", "y"], rows, ids), slices=slices)
    per = m["slices"]["lead_source"]
    assert set(per) == {"web", "ads"}
    assert per["web"]["accuracy"] == 1.0
    assert per["ads"]["accuracy"] == 0.0
    assert per["ads"]["n"] == 20


def test_flatten_names_and_sanitises_labels():
    ids = ["a", "b"]
    y = pd.Series(["Closed Won", "MQL/SQL"], index=ids)
    pred = _prediction(["Closed Won", "MQL/SQL"], [[0.9, 0.1], [0.2, 0.8]], ids)
    flat = flatten_metrics({"stage": head_metrics(y, pred)}, infix="baseline_logreg")
    assert flat["stage_baseline_logreg_macro_f1"] == 1.0
    assert "stage_baseline_logreg_recall__Closed_Won" in flat
    assert "stage_baseline_logreg_recall__MQL_SQL" in flat
    assert all(isinstance(v, float) for v in flat.values())
    assert metric_key("persona", "", "a b/c") == "persona_a_b_c"
    assert metric_key("stage", "x" * 300) == "stage_" + "x" * 60


def _table(n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    rng = np.random.default_rng(seed)
    visits = rng.poisson(5, n).astype(float)
    visits[rng.random(n) < 0.05] = np.nan
    role = rng.choice(["eng", "fin", "ops"], n)
    X = pd.DataFrame(
        {
            "visits": visits,
            "role": pd.Series(role, dtype="str", index=[f"id{i}" for i in range(n)]),
            "free_text": [f"note {i}" for i in range(n)],
            "flag": rng.random(n) < 0.5,
        },
        index=[f"id{i}" for i in range(n)],
    )
    stage = pd.Series(np.where(np.nan_to_num(visits, nan=5) > 5, "late", "early"), index=X.index)
    persona = pd.Series(np.where(role == "fin", "buyer", "user"), index=X.index).astype(object)
    persona.iloc[::7] = None
    return X, stage, persona


def test_logistic_baseline_learns_what_majority_cannot():
    X, stage, persona = _table(600)
    train, test = X.index[:450], X.index[450:]
    result = baselines(
        X.loc[train],
        X.loc[test],
        y_train_stage=stage.loc[train],
        y_train_persona=persona.loc[train],
        y_test_stage=stage.loc[test],
        y_test_persona=persona.loc[test],
    )
    for head in ("stage", "persona"):
        assert result["logreg"][head]["macro_f1"] > 0.9
        assert result["logreg"][head]["macro_f1"] > result["majority"][head]["macro_f1"] + 0.3
    # Persona labels are missing on every 7th row: those are not evaluated.
    assert result["logreg"]["persona"]["n"] == persona.loc[test].notna().sum()


@pytest.mark.slow
def test_plots_write_one_confusion_and_one_reliability_png_per_head(tmp_path):
    ids = ["a", "b", "c"]
    y = pd.Series(["x", "y", "y"], index=ids)
    pred = _prediction(["x", "y"], [[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]], ids)
    evaluation = {"stage": head_metrics(y, pred), "persona": head_metrics(y, pred)}
    written = plots(evaluation, tmp_path / "plots", title="v1")
    names = sorted(p.name for p in written)
    assert names == [
        "persona_calibration.png",
        "persona_confusion_matrix.png",
        "stage_calibration.png",
        "stage_confusion_matrix.png",
    ]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
