"""Suggestions ("leads like this one", issue 19 part A): building them, their store semantics.

Store tests run on SQLite and PostgreSQL (``db_url``). The leads are those of
``tests.test_learned_queue``: every third lead a confident "practitioner" who is
really a student (truth: non_buyer) — the systematic mistake a rep's first
reclassify reveals.
"""

from __future__ import annotations

import numpy as np
import pytest

from data.store import Store
from tests.support.review_data import base_set, lead_rows, review_leads, top_of_queue
from training.retrain import build_retrain_set, current_corrections
from training.similar import (
    SimilarConfig,
    StaleSuggestions,
    UnknownSuggestions,
    accept_suggestions,
    build_suggestions,
    dismiss_suggestions,
    forget_models,
    sets_for_lead,
    suggestion_set,
)

N = 600


def _student(lead_id: str) -> bool:
    return int(lead_id[1:]) % 3 == 0


@pytest.fixture
def filled(db_url):
    forget_models()
    store = Store(db_url)
    store.upgrade()
    predictions, leads, truth = lead_rows(N, np.random.default_rng(0))
    store.upsert_leads(leads)
    store.record_predictions(predictions)
    yield store, truth
    store.dispose()
    forget_models()


def _reclassify(store, lead_id, label="non_buyer", reviewer="ana"):
    return store.add_correction(
        lead_id, "persona", label, reviewer=reviewer, kind="reclassify", reason="student_job_seeker"
    )


def test_cold_start_ranks_by_neighbours_and_says_so(filled):
    store, _ = filled
    first = _reclassify(store, "L0003")
    built = build_suggestions(store, first.id)
    assert built is not None
    assert built.method == "neighbours"
    assert "cold start" in built.note
    assert (built.field, built.from_label, built.to_label) == (
        "persona",
        "practitioner",
        "non_buyer",
    )
    # Every other lead is served practitioner and unreviewed.
    assert built.n_candidates == N - 1
    assert built.n_likely is None
    assert len(built.items) == SimilarConfig().keep
    assert all(i["probability"] is None and i["distance"] is not None for i in built.items)
    top = [i["lead_id"] for i in built.items[:20]]
    assert all(_student(i) for i in top), top
    assert "L0003" not in {i["lead_id"] for i in built.items}
    # Built once: the second call reads the stored set.
    again = build_suggestions(store, first.id)
    assert [i["id"] for i in again.items] == [i["id"] for i in built.items]


@pytest.mark.slow
def test_the_model_of_corrections_ranks_the_same_change_once_it_can(filled):
    store, truth = filled
    reviewed = top_of_queue(store, 120) + [f"L{k:04d}" for k in range(0, 90, 3)]
    review_leads(store, reviewed, truth)
    lead = "L0300"
    assert lead not in reviewed
    result = _reclassify(store, lead)
    built = build_suggestions(store, result.id)
    assert built.method == "correction_model"
    assert built.note is None
    assert built.n_reviewed == len(set(reviewed) | {lead})
    unreviewed = [f"L{k:04d}" for k in range(N) if f"L{k:04d}" not in set(reviewed) | {lead}]
    assert built.n_candidates == len(unreviewed)
    students_left = sum(_student(i) for i in unreviewed)
    # The likely ones are the students (the model learned the change from 31 of them).
    assert students_left * 0.8 <= built.n_likely <= students_left
    top = built.items[:students_left]
    assert sum(_student(i["lead_id"]) for i in top) >= 0.95 * len(top)
    probs = [i["probability"] for i in built.items]
    assert probs == sorted(probs, reverse=True)
    assert built.items[0]["probability"] > 0.5 > built.items[-1]["probability"]


def test_a_confirm_or_an_unchanged_label_builds_nothing(filled):
    store, _ = filled
    confirm = store.add_correction(
        "L0001", "persona", "practitioner", reviewer="ana", kind="confirm"
    )
    assert build_suggestions(store, confirm.id) is None
    with pytest.raises(KeyError):
        build_suggestions(store, 999_999)


def test_an_open_suggestion_is_not_a_correction_and_an_accepted_one_is(filled):
    store, _ = filled
    source = _reclassify(store, "L0003")
    built = build_suggestions(store, source.id)
    open_ids = [i["lead_id"] for i in built.items]
    assert len(store.corrections_frame()) == 1
    # Open suggestions change no served answer, no queue flag, no retraining row.
    assert store.labels_for(open_ids[0])["persona"] == "practitioner"
    assert store.current_labels(open_ids) == {}
    base = base_set(N)
    before = build_retrain_set(base, current_corrections(store), gate_share=0.0)
    assert set(before.used["lead_id"]) == {"L0003"}

    ticked = built.items[:3]
    accepted = accept_suggestions(
        store,
        source.id,
        [i["id"] for i in ticked],
        reviewer="bo",
        reason="student_job_seeker",
        batch_id="b1",
    )
    assert accepted.lead_ids == [i["lead_id"] for i in ticked]
    frame = store.corrections_frame()
    made = frame[frame["suggestion_id"].notna()]
    assert sorted(made["suggestion_id"].astype(int)) == sorted(i["id"] for i in ticked)
    assert set(made["reviewer"]) == {"bo"}
    assert set(made["batch_id"]) == {"b1"}
    assert (made["old_label"] == "practitioner").all() and (made["new_label"] == "non_buyer").all()
    assert frame.loc[frame["id"] == source.id, "suggestion_id"].isna().all()
    for item in ticked:
        assert store.labels_for(item["lead_id"])["persona"] == "non_buyer"
    stored = {i["id"]: i for i in suggestion_set(store, source.id).items}
    for item, result in zip(ticked, accepted.corrections, strict=True):
        assert stored[item["id"]]["status"] == "accepted"
        assert stored[item["id"]]["decided_by"] == "bo"
        assert stored[item["id"]]["correction_id"] == result.id
    # Retraining takes the accepted ones and none of the still-open ones.
    after = build_retrain_set(base, current_corrections(store), gate_share=0.0)
    assert set(after.used["lead_id"]) == {"L0003", *(i["lead_id"] for i in ticked)}
    still_open = [i["lead_id"] for i in built.items[3:]]
    assert not set(after.used["lead_id"]) & set(still_open)
    # The lead page's preview lists open ones only.
    (shown,) = sets_for_lead(store, "L0003")
    assert [i["lead_id"] for i in shown.items] == still_open[:10]


def test_dismissing_writes_no_correction(filled):
    store, _ = filled
    source = _reclassify(store, "L0003")
    built = build_suggestions(store, source.id)
    target = built.items[0]
    assert dismiss_suggestions(store, source.id, [target["id"]], reviewer="bo") == [target["id"]]
    assert len(store.corrections_frame()) == 1
    assert suggestion_set(store, source.id).items[0]["status"] == "dismissed"
    with pytest.raises(StaleSuggestions):
        accept_suggestions(store, source.id, [target["id"]], reviewer="bo", reason="other")


def test_unknown_and_stale_suggestions_are_refused_and_nothing_is_written(filled):
    store, _ = filled
    source = _reclassify(store, "L0003")
    built = build_suggestions(store, source.id)
    a, b, c = [i for i in built.items if i["lead_id"] != "L0006"][:3]
    other = _reclassify(store, "L0006", label="economic_buyer", reviewer="cy")
    other_set = build_suggestions(store, other.id)
    n_before = len(store.corrections_frame())
    with pytest.raises(UnknownSuggestions) as unknown:
        accept_suggestions(store, source.id, [a["id"], 987_654], reviewer="bo", reason="other")
    assert unknown.value.ids == [987_654]
    # A suggestion of another correction's set is unknown in this one.
    with pytest.raises(UnknownSuggestions):
        accept_suggestions(
            store, source.id, [other_set.items[0]["id"]], reviewer="bo", reason="other"
        )
    # Another rep relabelled b meanwhile: stale, and a (fine on its own) is not written either.
    store.add_correction(b["lead_id"], "persona", "economic_buyer", reviewer="cy")
    n_before += 1
    with pytest.raises(StaleSuggestions) as stale:
        accept_suggestions(store, source.id, [a["id"], b["id"]], reviewer="bo", reason="other")
    assert list(stale.value.problems) == [b["id"]]
    assert "labelled" in stale.value.problems[b["id"]]
    assert len(store.corrections_frame()) == n_before
    accept_suggestions(store, source.id, [c["id"]], reviewer="bo", reason="other")
    with pytest.raises(StaleSuggestions) as twice:
        accept_suggestions(store, source.id, [c["id"]], reviewer="bo", reason="other")
    assert "accepted already" in twice.value.problems[c["id"]]


def test_an_undone_reclassify_offers_its_suggestions_no_more(filled):
    store, _ = filled
    source = _reclassify(store, "L0003")
    build_suggestions(store, source.id)
    assert len(sets_for_lead(store, "L0003")) == 1
    store.undo_correction(source.id, reviewer="ana")
    assert sets_for_lead(store, "L0003") == []
