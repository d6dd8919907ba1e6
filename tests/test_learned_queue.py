"""The queue that learns from corrections (issue 19): model of corrections, refit, label trust.

The store tests run on SQLite and PostgreSQL (``db_url``). The data is built so
that today's ranking and the learned one disagree: confident students marked
practitioner (a systematic mistake the model learned) against close calls on
stage that reps confirm.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from data.review_queue import queue_frame, review_queue, write_sort_keys
from data.store import Store
from training.correction_model import CorrectionModel, CorrectionModelConfig, design_frame
from training.label_trust import TrustConfig, adjust_weights, marketing_doubt, rep_quality
from training.learned_queue import LearnedQueueConfig, diversified, refit_queue

NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
STAGES = ("awareness", "consideration", "decision", "purchase")
PERSONAS = ("economic_buyer", "technical_evaluator", "practitioner", "non_buyer")


def _probs(labels, top, p_top, second=None, p_second=0.0):
    out = dict.fromkeys(labels, 0.0)
    out[top] = p_top
    rest = [label for label in labels if label not in (top, second)]
    left = 1.0 - p_top - (p_second if second else 0.0)
    if second:
        out[second] = p_second
    for label in rest:
        out[label] = left / len(rest)
    return out


def _lead_rows(n: int, rng: np.random.Generator):
    """Predictions and leads: every third lead a confident 'practitioner' student."""
    predictions, leads, truth = [], [], {}
    for k in range(n):
        lead_id = f"L{k:04d}"
        student = k % 3 == 0
        if student:
            stage = _probs(STAGES, "awareness", 0.9)
            margin = 0.9 - 0.1 / 3
        else:
            # A close call on stage, which reps confirm: today's queue puts it first.
            stage = _probs(STAGES, "consideration", 0.45, "decision", 0.40)
            margin = 0.05
        persona = _probs(PERSONAS, "practitioner", 0.9)
        predictions.append(
            {
                "lead_id": lead_id,
                "model_name": "lead-readiness",
                "model_version": "1",
                "source": "batch",
                "created_at": NOW,
                "stage": max(stage, key=stage.get),
                "stage_confidence": max(stage.values()),
                "stage_margin": margin,
                "persona": "practitioner",
                "persona_confidence": 0.9,
                "persona_margin": 0.9 - 0.1 / 3,
                "probabilities": {"stage": stage, "persona": persona},
                "route": "nurture",
                "features": {
                    "title_function": "student" if student else "engineering",
                    "n_page_view_30d": int(rng.integers(0, 20)),
                    "lead_age_days": float(rng.uniform(1, 90)),
                },
            }
        )
        leads.append(
            {
                "lead_id": lead_id,
                "company": f"{lead_id} Inc",
                "marketing_stage": max(stage, key=stage.get),
                "marketing_persona": "practitioner",
            }
        )
        truth[lead_id] = "non_buyer" if student else "practitioner"
    return predictions, leads, truth


@pytest.fixture
def filled(db_url):
    store = Store(db_url)
    store.upgrade()
    predictions, leads, truth = _lead_rows(600, np.random.default_rng(0))
    store.upsert_leads(leads)
    store.record_predictions(predictions)
    yield store, truth
    store.dispose()


def _review(store, lead_ids, truth, reviewer="ana"):
    for lead_id in lead_ids:
        label = truth[lead_id]
        kind = "confirm" if label == "practitioner" else "reclassify"
        store.add_correction(lead_id, "persona", label, reviewer=reviewer, kind=kind)
        store.add_correction(
            lead_id, "stage", _stage(store, lead_id), reviewer=reviewer, kind="confirm"
        )


def _stage(store, lead_id):
    return store.latest_prediction(lead_id)["stage"]


def _top(store, n):
    return [item.lead_id for item in review_queue(store, limit=n, reviewed=False, now=NOW).items]


def test_cold_start_keeps_todays_order(filled):
    store, truth = filled
    before = _top(store, 50)
    _review(store, [f"L{k:04d}" for k in range(20)], truth)
    result = refit_queue(store)
    assert not result.fitted
    assert "cold start" in result.summary()
    assert _top(store, 30) == [i for i in before if int(i[1:]) >= 20][:30]
    # Today's queue puts the close calls (non-students) first.
    assert all(int(i[1:]) % 3 != 0 for i in _top(store, 30))


def test_refit_learns_the_systematic_mistake_and_ranks_it_first(filled):
    store, truth = filled
    # Reps review today's top leads plus a few students (as a random check would find).
    first = _top(store, 120) + [f"L{k:04d}" for k in range(0, 90, 3)]
    _review(store, first, truth)
    result = refit_queue(store, LearnedQueueConfig(diversity_scale=0))
    assert result.fitted
    assert result.n_wrong["persona"] == 30
    top = _top(store, 60)
    students = [i for i in top if int(i[1:]) % 3 == 0]
    assert len(students) == 60, "every lead at the top is a student marked practitioner"
    pred = result.predictions
    assert (pred.loc[top, "persona_to"] == "non_buyer").all()
    assert pred.loc[top, "p_wrong"].min() > pred["p_wrong"].median()


def test_written_keys_order_the_page_and_todays_priority_is_kept(filled):
    store, _ = filled
    frame = queue_frame(store)
    lead = frame.index[0]
    write_sort_keys(store, {lead: -99.0})
    assert queue_frame(store).at[lead, "sort_key"] == -99.0
    assert queue_frame(store).at[lead, "base_priority"] == pytest.approx(
        frame.at[lead, "base_priority"]
    )
    assert _top(store, 1) == [lead]


def test_diversity_discounts_the_later_leads_of_one_change():
    p = pd.Series([0.9, 0.89, 0.88, 0.5], index=list("abcd"))
    group = pd.Series(["x", "x", "x", "y"], index=p.index)
    out = diversified(p, group, scale=1.0)
    assert out["a"] == pytest.approx(0.9)
    assert out["b"] == pytest.approx(0.89 / 2)
    assert out["c"] == pytest.approx(0.88 / 3)
    assert out["d"] == pytest.approx(0.5)
    assert list(out.sort_values(ascending=False).index[:2]) == ["a", "d"]
    assert diversified(p, group, scale=0).equals(p)


def test_the_correction_model_is_unfitted_below_its_minimum():
    queue = pd.DataFrame(
        {"stage": ["a"] * 5, "persona": ["p"] * 5, "marketing_stage": ["a"] * 5},
        index=[f"L{i}" for i in range(5)],
    )
    reps = pd.DataFrame({"stage": ["b"] * 5, "persona": ["p"] * 5}, index=queue.index)
    model = CorrectionModel(CorrectionModelConfig(min_corrections=10)).fit(
        pd.DataFrame(index=queue.index), queue, reps
    )
    assert not model.fitted_
    assert model.predict(pd.DataFrame(index=queue.index), queue) is None


def test_design_frame_keeps_fit_time_categories():
    queue = pd.DataFrame({"stage": ["a", "b"], "persona": ["p", "q"]}, index=["x", "y"])
    feats = pd.DataFrame({"title_function": ["student", "new"], "n": [1, 2]}, index=["x", "y"])
    frame = design_frame(feats, queue, categories={"c_title_function": ["student"]})
    assert list(frame["c_title_function"].cat.categories) == ["student"]
    assert pd.isna(frame.at["y", "c_title_function"])
    assert frame.at["y", "f_n"] == 2.0


def _corrections(rows):
    return pd.DataFrame(
        [
            {
                "id": n,
                "lead_id": lead,
                "field": "stage",
                "new_label": label,
                "reviewer": reviewer,
                "is_rep_label": True,
            }
            for n, (lead, reviewer, label) in enumerate(rows)
        ]
    )


def test_a_rep_who_disagrees_with_consensus_weighs_less():
    rng = np.random.default_rng(3)
    rows, probabilities = [], {}
    for k in range(40):
        lead = f"L{k}"
        true = STAGES[k % 4]
        probabilities[lead] = {"stage": _probs(STAGES, true, 0.7)}
        rows.append((lead, "ana", true))
        rows.append((lead, "ben", true))
        sloppy = true if rng.random() < 0.5 else STAGES[(k + 1) % 4]
        rows.append((lead, "dev", sloppy))
    quality, shared = rep_quality(_corrections(rows), probabilities, {"stage": STAGES})
    assert shared == 40
    assert quality["dev"] < quality["ana"]
    ids = ["L0", "L1", "M"]
    used = pd.DataFrame(
        {"lead_id": ["L0", "L1"], "reviewer": ["dev", "ana"], "role": ["training"] * 2}
    )
    weights, result = adjust_weights(
        ids,
        np.array([2.0, 2.0, 1.0]),
        np.array([True, True, False]),
        used,
        quality=quality,
        n_shared=shared,
        doubt={"M": 0.2},
    )
    assert weights[0] < weights[1]
    assert weights[2] == pytest.approx(0.2)
    assert result.marketing_downweighted == {"M": 0.2}
    assert any("agreement" in note for note in result.notes)


def test_too_few_shared_leads_leave_every_rep_at_one():
    rows = [("L0", "ana", "awareness"), ("L0", "ben", "decision")]
    quality, shared = rep_quality(
        _corrections(rows), {"L0": {"stage": _probs(STAGES, "awareness", 0.7)}}, {"stage": STAGES}
    )
    assert quality == {} and shared == 1
    weights, result = adjust_weights(
        ["L0"], np.array([2.0]), np.array([True]), pd.DataFrame(), quality={}, n_shared=1, doubt={}
    )
    assert weights.tolist() == [2.0]
    assert "every rep weighs the same" in result.notes[0]


def test_marketing_doubt_counts_only_where_the_model_repeats_marketing():
    pred = pd.DataFrame(
        {"p_stage_wrong": [0.9, 0.9, 0.5], "p_persona_wrong": [0.0, 0.0, 0.0]},
        index=["a", "b", "c"],
    )
    queue = pd.DataFrame(
        {
            "stage": ["x", "x", "x"],
            "marketing_stage": ["x", "y", "x"],
            "persona": ["p"] * 3,
            "marketing_persona": ["p"] * 3,
        },
        index=["a", "b", "c"],
    )
    doubt = marketing_doubt(pred, queue, TrustConfig(marketing_threshold=0.8, marketing_floor=0.05))
    assert doubt == {"a": pytest.approx(0.1)}
