"""The queue that learns from corrections (issue 19): model of corrections, refit, label trust.

The store tests run on SQLite and PostgreSQL (``db_url``). The data is built so
that today's ranking and the learned one disagree: confident students marked
practitioner (a systematic mistake the model learned) against close calls on
stage that reps confirm.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.review_queue import queue_frame, review_queue, write_sort_keys
from data.store import Store
from tests.support.review_data import (
    NOW,
    STAGES,
    lead_rows,
    probabilities_of,
    review_leads,
    top_of_queue,
)
from training.correction_model import (
    CorrectionModel,
    CorrectionModelConfig,
    design_frame,
    selection_weights,
)
from training.label_trust import TrustConfig, adjust_weights, marketing_doubt, rep_quality
from training.learned_queue import LearnedQueueConfig, diversified, refit_queue


@pytest.fixture
def filled(db_url):
    store = Store(db_url)
    store.upgrade()
    predictions, leads, truth = lead_rows(600, np.random.default_rng(0))
    store.upsert_leads(leads)
    store.record_predictions(predictions)
    yield store, truth
    store.dispose()


def test_cold_start_keeps_todays_order(filled):
    store, truth = filled
    before = top_of_queue(store, 50)
    review_leads(store, [f"L{k:04d}" for k in range(20)], truth)
    result = refit_queue(store)
    assert not result.fitted
    assert "cold start" in result.summary()
    assert top_of_queue(store, 30) == [i for i in before if int(i[1:]) >= 20][:30]
    # Today's queue puts the close calls (non-students) first.
    assert all(int(i[1:]) % 3 != 0 for i in top_of_queue(store, 30))


@pytest.mark.slow
def test_refit_learns_the_systematic_mistake_and_ranks_it_first(filled):
    store, truth = filled
    # Reps review today's top leads plus a few students (as a random check would find).
    first = top_of_queue(store, 120) + [f"L{k:04d}" for k in range(0, 90, 3)]
    review_leads(store, first, truth)
    result = refit_queue(store, LearnedQueueConfig(diversity_scale=0))
    assert result.fitted
    assert result.n_wrong["persona"] == 30
    top = top_of_queue(store, 60)
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
    assert top_of_queue(store, 1) == [lead]


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


def _leads(n, seed=0):
    rng = np.random.default_rng(seed)
    index = pd.Index([f"L{i:05d}" for i in range(n)])
    features = pd.DataFrame(
        {
            "x": rng.uniform(size=n),
            "title_function": rng.choice(["student", "engineer", "manager"], size=n),
        },
        index=index,
    )
    queue = pd.DataFrame(
        {
            "stage": ["engaged"] * n,
            "persona": ["practitioner"] * n,
            "marketing_stage": ["engaged"] * n,
            "marketing_persona": ["practitioner"] * n,
        },
        index=index,
    )
    return features, queue, rng


def test_selection_weights_up_weigh_the_leads_a_queue_rarely_picks():
    features, queue, rng = _leads(3000)
    high = features.index[features["x"] > 0.8]
    rest = features.index[features["x"] <= 0.8]
    # A queue that reviews the top of one region, and a few leads elsewhere.
    reviewed = high[:270].append(pd.Index(rng.choice(rest, size=30, replace=False)))
    weights = selection_weights(features, queue, reviewed)
    assert set(weights.index) == set(reviewed)
    assert weights.mean() == pytest.approx(1.0)
    assert weights[rest.intersection(reviewed)].mean() > 3 * weights[high[:270]].mean()
    # Leads reviewed at random stand for the rest as they are: about equal weights.
    at_random = pd.Index(rng.choice(features.index, size=300, replace=False))
    flat = selection_weights(features, queue, at_random)
    assert flat.std() < weights.std() / 2
    assert flat.between(0.2, 5.0).mean() > 0.9
    assert (selection_weights(features, queue, pd.Index([])) == 1.0).all()


def test_the_model_of_corrections_fits_to_the_weights_it_is_given():
    features, queue, _ = _leads(400, seed=1)
    # Two reps' answers on look-alike leads disagree: half say the persona is wrong.
    wrong = pd.Series(np.arange(400) % 2 == 0, index=queue.index)
    reps = pd.DataFrame(
        {"stage": "engaged", "persona": np.where(wrong, "non_buyer", "practitioner")},
        index=queue.index,
    )
    config = CorrectionModelConfig(min_corrections=10)
    plain = CorrectionModel(config).fit(features, queue, reps).predict(features, queue)
    heavy = pd.Series(np.where(wrong, 5.0, 1.0), index=queue.index)
    weighted = CorrectionModel(config).fit(features, queue, reps, heavy).predict(features, queue)
    assert weighted["p_persona_wrong"].mean() > plain["p_persona_wrong"].mean() + 0.2
    assert (weighted["persona_to"] == "non_buyer").all()


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
        probabilities[lead] = {"stage": probabilities_of(STAGES, true, 0.7)}
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
        _corrections(rows),
        {"L0": {"stage": probabilities_of(STAGES, "awareness", 0.7)}},
        {"stage": STAGES},
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


@pytest.mark.slow
def test_after_a_refit_the_page_shows_what_it_sorts_by(filled):
    store, truth = filled
    assert {i.priority_method for i in review_queue(store, limit=50, now=NOW).items} == {"formula"}
    first = top_of_queue(store, 120) + [f"L{k:04d}" for k in range(0, 90, 3)]
    review_leads(store, first, truth)
    result = refit_queue(store)
    assert result.fitted
    page = review_queue(store, limit=80, reviewed=False, now=NOW).items
    assert {i.priority_method for i in page} == {"learned"}
    priorities = [i.priority for i in page]
    assert priorities == sorted(priorities, reverse=True), "shown priority follows the order"
    for item in page:
        expected = float(result.predictions.at[item.lead_id, "priority"])
        assert item.p_wrong == pytest.approx(expected, abs=1e-6)
        assert item.priority == pytest.approx(3.0 * expected, abs=1e-5)
        assert item.reasons[0].code == "learned_wrong"
    # Reviewed leads keep today's key, and say so.
    done = review_queue(store, limit=5, reviewed=True, now=NOW).items
    assert done and {i.priority_method for i in done} == {"formula"}
    assert all(i.p_wrong is None for i in done)


@pytest.mark.slow
def test_refit_gives_the_model_of_corrections_out_of_fold_disagreement(filled):
    store, truth = filled
    review_leads(store, top_of_queue(store, 120) + [f"L{k:04d}" for k in range(0, 90, 3)], truth)
    with_oof = refit_queue(store, LearnedQueueConfig(out_of_fold=True), write=False)
    without = refit_queue(store, write=False)
    q = with_oof.queue
    # Marketing's stage has two values here: out-of-fold probabilities exist; persona has one.
    p = q["oof_p_marketing_stage"]
    assert p.notna().all() and ((p >= 0) & (p <= 1)).all()
    assert q["oof_p_marketing_persona"].isna().all()
    served_is_marketing = q["stage"] == q["marketing_stage"]
    assert (q.loc[served_is_marketing, "oof_p_served_stage"] == p[served_is_marketing]).all()
    assert "q_oof_p_marketing_stage" in with_oof.model.columns_
    assert "oof_p_marketing_stage" not in without.queue.columns
    assert with_oof.out_of_fold_seconds > 0 and without.out_of_fold_seconds == 0


def test_out_of_fold_disagreement_leaves_leads_without_marketing_label_empty():
    from training.learned_queue import out_of_fold_disagreement

    rng = np.random.default_rng(1)
    n = 200
    x = rng.normal(size=n)
    features = pd.DataFrame({"x": x}, index=[f"L{k}" for k in range(n)])
    marketing = np.where(x > 0, "b", "a").astype(object)
    marketing[:10] = None
    queue = pd.DataFrame(
        {
            "stage": np.where(x > 0, "b", "a"),
            "marketing_stage": marketing,
            "persona": "p",
            "marketing_persona": None,
        },
        index=features.index,
    )
    out = out_of_fold_disagreement(features, queue)
    assert out["oof_p_marketing_stage"].iloc[:10].isna().all()
    # A clean, learnable label: out of fold, the model mostly agrees with it.
    assert out["oof_p_marketing_stage"].iloc[10:].median() > 0.8
    assert out["oof_p_marketing_persona"].isna().all()


def test_soft_relabel_splits_a_doubted_marketing_row_and_never_makes_a_rep_label():
    from training.dataset import TrainingSet, holdout_mask
    from training.label_trust import soft_relabel, soft_row_id
    from training.retrain import CorrectionSummary, RetrainSet

    ids = pd.Index(["A", "B", "C", "R"], name="lead_id", dtype=object)
    X = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]}, index=ids)
    training = TrainingSet(
        X=X,
        y_stage=pd.Series(["awareness"] * 4, index=ids, name="stage", dtype=object),
        y_persona=pd.Series(["practitioner"] * 3 + ["non_buyer"], index=ids, dtype=object),
        ids=ids,
        leads=X.copy(),
        slices=pd.DataFrame({"label_source": ["marketing"] * 3 + ["rep"]}, index=ids),
        source="t",
        name="t",
        id_col="lead_id",
    )
    retrain_set = RetrainSet(
        training=training,
        sample_weight=np.array([1.0, 1.0, 1.0, 2.0]),
        corrected=np.array([False, False, False, True]),
        gate=None,
        used=pd.DataFrame(),
        summary=CorrectionSummary(),
    )
    pred = pd.DataFrame(
        {
            "p_stage_wrong": [0.1, 0.1, 0.1],
            "p_persona_wrong": [0.9, 0.6, 0.95],
            "stage_to": ["decision"] * 3,
            "persona_to": ["non_buyer"] * 3,
        },
        index=["A", "B", "C"],
    )
    queue = pd.DataFrame(
        {
            "stage": ["awareness"] * 3,
            "marketing_stage": ["awareness"] * 3,
            "persona": ["practitioner", "practitioner", "economic_buyer"],
            "marketing_persona": ["practitioner"] * 3,
        },
        index=["A", "B", "C"],
    )
    out, result = soft_relabel(retrain_set, pred, queue, threshold=0.8)
    # Only A: B is below the threshold, C's served answer is not marketing's label.
    assert list(result.relabelled) == ["A"]
    t = out.training
    assert len(t.ids) == 5
    extra = t.ids[-1]
    assert extra == soft_row_id("A", "persona", 0.2)
    assert holdout_mask([extra])[0] == holdout_mask(["A"])[0]
    assert t.y_persona[extra] == "non_buyer" and t.y_stage[extra] == "awareness"
    assert t.y_persona["A"] == "practitioner", "marketing's label is kept on its row"
    assert out.sample_weight.tolist() == pytest.approx([0.1, 1.0, 1.0, 2.0, 0.9])
    assert out.corrected.tolist() == [False, False, False, True, False]
    assert t.slices.at[extra, "label_source"] == "inferred"
    assert t.X.at[extra, "x"] == 1.0
    assert result.to_dict()["n_rows_added"] == 1
