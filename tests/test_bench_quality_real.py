"""bench.quality_real's pieces on small generated tables (never on ../shared)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench import quality_real as qr


def _table(n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    colour = rng.choice(["red", "green", "blue"], size=n)
    y = np.where(x + (colour == "red") * 1.5 + rng.normal(scale=0.5, size=n) > 1.0, "yes", "no")
    X = pd.DataFrame({"x": x, "colour": colour, "flag": rng.random(n) < 0.5})
    return X, pd.Series(y)


def test_split_is_80_20_stratified_and_repeatable():
    _, y = _table()
    train, test = qr.split(y, seed=11)
    assert len(test) == 120 and len(train) == 480
    assert not set(train) & set(test)
    share = (y.iloc[test] == "yes").mean()
    assert share == pytest.approx((y == "yes").mean(), abs=0.01)
    again, _ = qr.split(y, seed=11)
    other, _ = qr.split(y, seed=12)
    np.testing.assert_array_equal(train, again)
    assert not np.array_equal(train, other)


@pytest.mark.slow
@pytest.mark.parametrize("fn", [qr.baseline_lightgbm, qr.baseline_logreg])
def test_baselines_learn_the_signal(fn):
    X, y = _table(800, seed=1)
    train, test = qr.split(y, seed=11)
    pred = fn(X.iloc[train], y.iloc[train], X.iloc[test], 11)
    assert pred.shape == (len(test),)
    assert set(pred) <= {"yes", "no"}
    accuracy = (pred == y.iloc[test].to_numpy()).mean()
    majority = (y.iloc[test] == y.iloc[train].mode()[0]).mean()
    assert accuracy > majority + 0.05


def test_calibration_metrics_of_known_probabilities():
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    got = qr.calibration_metrics(proba, ["no", "yes"], np.array(["no", "yes", "yes"]))
    assert got["log_loss"] == pytest.approx(-(math.log(0.9) + math.log(0.8) + math.log(0.4)) / 3)
    # bins: 0.9 right, 0.8 right, 0.6 wrong → (|1-.9| + |1-.8| + |0-.6|) / 3
    assert got["ece"] == pytest.approx((0.1 + 0.2 + 0.6) / 3)


def _runs() -> dict:
    def arm(stage: float, persona: float, **extra) -> dict:
        return {"stage": {"macro_f1": stage, **extra}, "persona": {"macro_f1": persona, **extra}}

    lead = {"log_loss": 0.3, "ece": 0.02}
    return {
        "bank_marketing": {
            "11": {
                "leadready": {**arm(0.70, 0.33, **lead), "train_cpu_seconds": 10.0},
                "lightgbm": arm(0.60, 0.34),
                "logreg": arm(0.62, 0.30),
            },
            "12": {
                "leadready": {**arm(0.72, 0.35, **lead), "train_cpu_seconds": 12.0},
                "lightgbm": arm(0.62, 0.34),
                "logreg": arm(0.60, 0.30),
            },
        }
    }


def test_summary_means_over_seeds_and_ratio_to_the_best_baseline():
    s = qr.summarize(_runs())["bank_marketing"]
    assert s["seeds"] == [11, 12]
    assert s["stage"]["leadready"] == pytest.approx(0.71)
    assert s["stage"]["ratio_to_best_baseline"] == pytest.approx(0.71 / 0.61)
    assert s["stage"]["meets_1_02"] is True
    assert s["persona"]["ratio_to_best_baseline"] == pytest.approx(0.34 / 0.34)
    assert s["persona"]["meets_1_02"] is False
    assert s["leadready_train_cpu_seconds"] == pytest.approx(11.0)
    text = qr.markdown(qr.summarize(_runs()))
    assert "| bank_marketing: `output` | 0.710 | 0.610 | 0.610 | — | 1.164 |" in text
    assert "**1.000**" in text  # a head below the target is bold


def test_combine_merges_arms_and_tables_of_separate_runs():
    runs = _runs()
    flaml = {"bank_marketing": {"11": {"flaml": {"stage": {"macro_f1": 0.69}}}}}
    shop = {"online_shoppers": {"11": {"logreg": {"stage": {"macro_f1": 0.5}}}}}
    merged = qr.combine([runs, flaml, shop])
    assert set(merged) == {"bank_marketing", "online_shoppers"}
    assert set(merged["bank_marketing"]["11"]) == {"leadready", "lightgbm", "logreg", "flaml"}
    stage = qr.summarize(merged)["bank_marketing"]["stage"]
    assert stage["flaml"] == pytest.approx(0.69)
    assert stage["ratio_to_flaml"] == pytest.approx(stage["leadready"] / 0.69)
    row = next(
        line for line in qr.markdown(qr.summarize(merged)).splitlines() if "`output`" in line
    )
    assert (
        f"| 0.690 | {stage['ratio_to_best_baseline']:.3f} | {stage['ratio_to_flaml']:.3f} |" in row
    )


def test_skips_with_a_message_without_the_shared_tables(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(qr, "SHARED", tmp_path / "absent")
    assert qr.main(["--seeds", "11"]) == 0
    assert "skipped" in capsys.readouterr().out
