"""bench.calibration_noise: the library side of the side by side is wired as claimed."""

from __future__ import annotations

import numpy as np
import pytest

import bench.calibration_noise as cn
import bench.quality_real as qr
from model.classifier import _Calibrator


@pytest.mark.parametrize("k", [2, 4])
def test_frozen_logits_through_sklearn_temperature_match_our_calibrator(k):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    rng = np.random.default_rng(k)
    logits = rng.normal(size=(3000, k)) * 3.0  # over-confident: temperature > 1
    y = (logits / 3.0 + rng.gumbel(size=logits.shape)).argmax(axis=1)
    ours = _Calibrator("temperature").fit(logits, y, np.ones(len(y)))
    assert ours.temperature > 1.5
    frozen = FrozenEstimator(cn._Logits(k).fit(logits))
    theirs = CalibratedClassifierCV(frozen, method="temperature").fit(logits, y)
    np.testing.assert_allclose(theirs.predict_proba(logits), ours.transform(logits), atol=1e-5)


def test_metrics_apply_the_decision_weights():
    proba = np.array([[0.6, 0.4], [0.55, 0.45], [0.2, 0.8]])
    y = np.array([0, 1, 1])
    plain = cn._metrics(proba, y, np.ones(2))
    tilted = cn._metrics(proba, y, np.array([1.0, 1.3]))
    assert tilted["macro_f1"] > plain["macro_f1"]
    assert tilted["log_loss"] == plain["log_loss"]  # weights change labels, not probabilities


def test_skips_with_a_message_without_the_shared_tables(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(qr, "SHARED", tmp_path / "absent")
    assert cn.main([]) == 0
    assert "skipped" in capsys.readouterr().out
