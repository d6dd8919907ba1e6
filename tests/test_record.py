"""Batch predictions recorded in the store like the API records them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from data.simulate import SimulationConfig, simulate
from data.store import Store
from model.features import FeatureConfig, build_features
from training.record import prediction_records, record_scored_frame


@pytest.fixture(scope="module")
def scored():
    """A tiny model's scores of 120 simulated leads, with reasons."""
    from model.classifier import HeadClassifier, TwoHeadClassifier
    from model.package import LeadReadinessModel

    sim = simulate(SimulationConfig(n_leads=120, seed=7))
    features = build_features(
        sim.leads.drop(columns=["stage", "persona"]), sim.events, as_of=sim.config.end
    )
    head = HeadClassifier(n_estimators=5, num_leaves=4, min_child_samples=5)
    clf = TwoHeadClassifier(stage_estimator=head, persona_estimator=head).fit(
        features, sim.leads["stage"].to_numpy(), sim.leads["persona"].to_numpy()
    )
    model = LeadReadinessModel(
        clf, input_columns=list(features.columns), feature_config=FeatureConfig()
    )
    return sim, features, model.predict_frame(features, reasons=True), model


@pytest.fixture
def store(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'store.db'}") as s:
        s.upgrade()
        yield s


def test_records_carry_labels_margins_probabilities_and_the_snapshot(scored):
    sim, features, out, model = scored
    rows = prediction_records(features, out, model_name="m", model_version="3")
    assert len(rows) == len(features)
    first = rows[0]
    assert first["lead_id"] == str(features.index[0])
    assert first["stage"] == out["stage"].iloc[0]
    probs = first["probabilities"]["stage"]
    assert set(probs) == set(model.stage_labels)
    assert math.isclose(sum(probs.values()), 1.0, rel_tol=1e-6)
    top = sorted(probs.values(), reverse=True)
    assert first["stage_margin"] == pytest.approx(top[0] - top[1])
    assert first["stage_confidence"] == pytest.approx(top[0])
    assert isinstance(first["reasons"]["stage"], list) and first["reasons"]["stage"]
    # The snapshot is the feature row: same keys, numbers equal, NaN as None.
    assert set(first["features"]) == set(features.columns)
    for column in features.columns:
        value = features[column].iloc[0]
        if pd.isna(value):
            assert first["features"][column] is None
        elif isinstance(value, int | float | np.number):
            assert first["features"][column] == pytest.approx(float(value))
        else:
            assert first["features"][column] == value


def test_record_scored_frame_stores_predictions_and_leads(scored, store):
    sim, features, out, model = scored
    n = record_scored_frame(
        store,
        features,
        out,
        "lead-readiness",
        "3",
        leads=sim.leads,
        input_columns=model.input_columns,
    )
    assert n == len(features)
    lead_id = str(features.index[5])
    stored = store.latest_prediction(lead_id)
    assert stored["source"] == "batch"
    assert stored["model_version"] == "3"
    assert stored["persona"] == out["persona"].iloc[5]
    assert stored["features"].keys() == set(model.input_columns)
    # Marketing's labels came in with the leads, so the queue can compare.
    lead = store.get_lead(lead_id)
    assert lead["marketing_stage"] == sim.leads.set_index("lead_id").loc[lead_id, "stage"]
    # A rep's correction points at this prediction, so retraining finds the snapshot.
    store.add_correction(lead_id, "stage", "purchase", reviewer="dana")
    frame = store.corrections_frame(with_features=True)
    assert frame["features"].iloc[0] == stored["features"]


def test_only_the_model_input_columns_are_kept(scored):
    _, features, out, _ = scored
    extra = features.assign(email="x@example.com")
    rows = prediction_records(
        extra, out, model_name="m", model_version="1", input_columns=list(features.columns)
    )
    assert "email" not in rows[0]["features"]


def test_misaligned_frames_are_refused(scored):
    _, features, out, _ = scored
    with pytest.raises(ValueError, match="feature rows but"):
        prediction_records(features.iloc[:10], out, model_name="m", model_version="1")
    shuffled = out.iloc[::-1]
    with pytest.raises(ValueError, match="not in the order"):
        prediction_records(features, shuffled, model_name="m", model_version="1")
