"""The review queue: order, reasons, filters and paging over predictions we control.

Every test runs on SQLite and on PostgreSQL (``db_url``): the queue is a table
the store keeps current in dialect-specific upserts, and a page is read with
dialect-specific plans.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

import data.store.queue as store_module
from data.review_queue import (
    RETRAINING_CONFIG,
    STORED_CONFIG,
    QueueConfig,
    label_choices,
    model_versions,
    priority_scores,
    queue_facets,
    queue_item,
    review_queue,
)
from data.store import QueueRow, Store

NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
STAGES = ("awareness", "consideration", "decision", "purchase")
PERSONAS = ("economic_buyer", "technical_evaluator", "practitioner", "non_buyer")


@pytest.fixture
def store(db_url):
    s = Store(db_url)
    s.upgrade()
    yield s
    s.dispose()


def _probs(labels, top, p_top, second=None, p_second=None):
    """A distribution with ``top`` at ``p_top``, ``second`` at ``p_second``, rest equal."""
    out = dict.fromkeys(labels, 0.0)
    out[top] = p_top
    rest = [label for label in labels if label not in (top, second)]
    left = 1.0 - p_top
    if second is not None:
        out[second] = p_second
        left -= p_second
    for label in rest:
        out[label] = left / len(rest)
    return out


def _row(lead_id, stage_probs, persona_probs=None, *, created_at=NOW, route="nurture", version="1"):
    persona_probs = persona_probs or _probs(PERSONAS, "practitioner", 0.9)

    def head(probs):
        ranked = sorted(probs.values(), reverse=True)
        label = max(probs, key=probs.get)
        return label, ranked[0], ranked[0] - ranked[1]

    stage, s_conf, s_margin = head(stage_probs)
    persona, p_conf, p_margin = head(persona_probs)
    return {
        "lead_id": lead_id,
        "model_name": "lead-readiness",
        "model_version": version,
        "source": "batch",
        "created_at": created_at,
        "stage": stage,
        "stage_confidence": s_conf,
        "stage_margin": s_margin,
        "persona": persona,
        "persona_confidence": p_conf,
        "persona_margin": p_margin,
        "probabilities": {"stage": stage_probs, "persona": persona_probs},
        "readiness": stage_probs.get("decision", 0) + stage_probs.get("purchase", 0),
        "route": route,
    }


def _lead(lead_id, *, stage=None, persona=None, company=None):
    return {
        "lead_id": lead_id,
        "company": company or f"{lead_id} Inc",
        "marketing_stage": stage,
        "marketing_persona": persona,
    }


def _ids(page):
    return [item.lead_id for item in page.items]


def test_close_calls_come_first_in_order_of_margin(store):
    store.upsert_leads([_lead(x, stage="awareness", persona="practitioner") for x in "ABC"])
    store.record_predictions(
        [
            _row("A", _probs(STAGES, "awareness", 0.8, "consideration", 0.1)),
            _row("B", _probs(STAGES, "awareness", 0.46, "consideration", 0.44)),
            _row("C", _probs(STAGES, "awareness", 0.55, "consideration", 0.3)),
        ]
    )
    page = review_queue(store, now=NOW)
    assert _ids(page) == ["B", "C", "A"]
    assert page.total == 3
    by_id = {item.lead_id: item for item in page.items}
    assert by_id["B"].reason_codes == ("close_call",)
    assert "awareness and consideration" in by_id["B"].reasons[0].text
    assert by_id["A"].reasons == ()
    assert by_id["B"].priority > by_id["C"].priority > by_id["A"].priority


def test_priority_is_the_documented_weighted_sum(store):
    store.upsert_leads([_lead("A", stage="awareness", persona="practitioner")])
    stage = _probs(STAGES, "decision", 0.5, "consideration", 0.4)
    persona = _probs(PERSONAS, "economic_buyer", 0.5, "technical_evaluator", 0.3)
    store.record_predictions([_row("A", stage, persona)])
    item = review_queue(store, now=NOW).items[0]
    p_mkt_stage = stage["awareness"]
    expected = (
        1.0 * (1 - 0.1)  # stage margin 0.5 - 0.4
        + 0.5 * (1 - 0.2)  # persona margin 0.5 - 0.3
        + 1.0 * (1 - 0.5)  # sales-ready stage, confidence 0.5
        + 1.0 * (1 - p_mkt_stage)  # p(marketing's "awareness") < 0.2
        + 0.5 * (1 - 0.1)  # p(marketing's "practitioner") = 0.1 < 0.2
    )
    assert item.priority == pytest.approx(expected, abs=1e-6)
    assert item.marketing_stage_probability == pytest.approx(p_mkt_stage)
    assert set(item.reason_codes) == {
        "possible_mislabel",
        "sales_ready_unsure",
        "close_call",
        "possible_persona_mislabel",
    }


def test_unsure_sales_ready_call_outranks_the_same_doubt_elsewhere(store):
    store.upsert_leads([_lead("R", stage="decision"), _lead("N", stage="awareness")])
    store.record_predictions(
        [
            _row("R", _probs(STAGES, "decision", 0.5, "purchase", 0.2)),
            _row("N", _probs(STAGES, "awareness", 0.5, "consideration", 0.2)),
        ]
    )
    page = review_queue(store, now=NOW)
    assert _ids(page) == ["R", "N"]
    assert page.items[0].reason_codes == ("sales_ready_unsure",)
    assert page.items[1].reason_codes == ()
    # Configurable: with no sales-ready stages the two tie and sort by id.
    flat = review_queue(store, now=NOW, config=QueueConfig(sales_ready_stages=()))
    assert _ids(flat) == ["N", "R"]


def test_confident_disagreement_with_marketing_flags_a_possible_mislabel(store):
    store.upsert_leads(
        [
            _lead("M", stage="awareness", persona="practitioner"),
            _lead("OK", stage="consideration", persona="practitioner"),
            _lead("NOLABEL"),
        ]
    )
    confident = _probs(STAGES, "consideration", 0.94, "decision", 0.02)
    store.record_predictions(
        [_row("M", confident), _row("OK", confident), _row("NOLABEL", confident)]
    )
    page = review_queue(store, now=NOW)
    assert _ids(page)[0] == "M"
    top = page.items[0]
    assert top.reason_codes == ("possible_mislabel",)
    assert top.marketing_stage_probability == pytest.approx(0.02)
    assert "Marketing says awareness" in top.reasons[0].text
    others = {item.lead_id: item for item in page.items[1:]}
    # Agreement reads the model's confidence; no marketing label reads nothing.
    assert others["OK"].marketing_stage_probability == pytest.approx(0.94)
    assert others["NOLABEL"].marketing_stage_probability is None


def test_the_retraining_order_puts_close_calls_before_mislabels_the_model_sees_through(store):
    store.upsert_leads(
        [
            _lead("M", stage="awareness", persona="practitioner"),
            _lead("CLOSE", stage="consideration", persona="practitioner"),
        ]
    )
    store.record_predictions(
        [
            _row("M", _probs(STAGES, "consideration", 0.94, "decision", 0.02)),
            _row("CLOSE", _probs(STAGES, "consideration", 0.45, "awareness", 0.4)),
        ]
    )
    assert _ids(review_queue(store, now=NOW)) == ["M", "CLOSE"]
    page = review_queue(store, now=NOW, config=RETRAINING_CONFIG)
    assert _ids(page) == ["CLOSE", "M"]
    # the mislabel is still said, it only does not rank the lead up
    assert page.items[1].reason_codes == ("possible_mislabel",)


def test_labels_with_quotes_dots_and_spaces_are_looked_up(store):
    odd = 'ready "now". v2'
    store.upsert_leads([_lead("Q", stage=odd), _lead("P", stage="early")])
    store.record_predictions(
        [
            _row("Q", {"early": 0.9, odd: 0.1}),
            _row("P", {"early": 0.9, odd: 0.1}),
        ]
    )
    item = queue_item(store, "Q", now=NOW)
    assert item is not None
    assert item.marketing_stage_probability == pytest.approx(0.1)
    assert "possible_mislabel" in item.reason_codes
    fine = queue_item(store, "P", now=NOW)
    assert fine is not None and fine.marketing_stage_probability == pytest.approx(0.9)


def test_only_the_latest_prediction_counts_and_a_recent_change_is_a_reason(store):
    store.upsert_leads([_lead("S"), _lead("T"), _lead("OLD")])
    week_ago = NOW - timedelta(days=7)
    steady = _probs(STAGES, "awareness", 0.9, "consideration", 0.05)
    moved = _probs(STAGES, "consideration", 0.9, "awareness", 0.05)
    store.record_predictions(
        [
            _row("S", steady, created_at=week_ago - timedelta(days=1)),
            _row("T", steady, created_at=week_ago - timedelta(days=1)),
            _row("OLD", steady, created_at=NOW - timedelta(days=90)),
        ]
    )
    store.record_predictions(
        [
            _row("S", moved, created_at=week_ago, version="2"),
            _row("T", steady, created_at=week_ago, version="2"),
            _row("OLD", moved, created_at=NOW - timedelta(days=60), version="2"),
        ]
    )
    page = review_queue(store, now=NOW)
    assert page.total == 3
    assert _ids(page)[0] == "S"
    by_id = {item.lead_id: item for item in page.items}
    assert by_id["S"].reason_codes == ("stage_changed",)
    assert by_id["S"].previous_stage == "awareness"
    assert by_id["S"].stage == "consideration"
    assert by_id["S"].model_version == "2"
    assert by_id["T"].reason_codes == ()
    # A change older than changed_days is not news any more.
    assert by_id["OLD"].reason_codes == ()
    assert by_id["OLD"].previous_stage is None
    wide = queue_item(store, "OLD", now=NOW, config=QueueConfig(changed_days=90))
    assert wide is not None and wide.reason_codes == ("stage_changed",)


def test_reviewed_leads_sink_unless_filtered_and_an_undo_brings_them_back(store):
    store.upsert_leads([_lead(x, stage="awareness") for x in "ABC"])
    store.record_predictions(
        [
            _row("A", _probs(STAGES, "awareness", 0.41, "consideration", 0.39)),
            _row("B", _probs(STAGES, "awareness", 0.6, "consideration", 0.2)),
            _row("C", _probs(STAGES, "awareness", 0.9, "consideration", 0.05)),
        ]
    )
    assert _ids(review_queue(store, now=NOW)) == ["A", "B", "C"]
    result = store.add_correction("A", "stage", "consideration", reviewer="rep1", reason="other")

    page = review_queue(store, now=NOW)
    assert _ids(page) == ["B", "C", "A"]
    assert [item.reviewed for item in page.items] == [False, False, True]
    assert _ids(review_queue(store, now=NOW, reviewed=True)) == ["A"]
    assert review_queue(store, now=NOW, reviewed=True).total == 1
    assert _ids(review_queue(store, now=NOW, reviewed=False)) == ["B", "C"]
    assert review_queue(store, now=NOW, reviewed=False).total == 2

    store.undo_correction(result.id, reviewer="rep1")
    assert _ids(review_queue(store, now=NOW)) == ["A", "B", "C"]


def test_filters_search_and_paging(store):
    store.upsert_leads(
        [
            _lead("L1", company="Acme Corp"),
            _lead("L2", company="Globex"),
            _lead("L3", company="ACME Labs"),
            _lead("L4", company="100%_Pure"),
            _lead("L5", company="Initech"),
        ]
    )
    store.record_predictions(
        [
            _row("L1", _probs(STAGES, "decision", 0.5, "purchase", 0.3), route="sales"),
            _row("L2", _probs(STAGES, "awareness", 0.5, "consideration", 0.3)),
            _row(
                "L3",
                _probs(STAGES, "decision", 0.6, "purchase", 0.3),
                _probs(PERSONAS, "non_buyer", 0.9),
                route="sales",
            ),
            _row("L4", _probs(STAGES, "awareness", 0.7, "consideration", 0.1)),
            _row(
                "L5",
                _probs(STAGES, "consideration", 0.7, "awareness", 0.1),
                created_at=NOW - timedelta(days=30),
            ),
        ]
    )
    assert sorted(_ids(review_queue(store, now=NOW, stage="decision"))) == ["L1", "L3"]
    assert _ids(review_queue(store, now=NOW, persona="non_buyer")) == ["L3"]
    assert sorted(_ids(review_queue(store, now=NOW, route="sales"))) == ["L1", "L3"]
    assert "L5" not in _ids(review_queue(store, now=NOW, since=(NOW - timedelta(days=1)).date()))
    assert review_queue(store, now=NOW, since=NOW - timedelta(days=1)).total == 4

    acme = review_queue(store, now=NOW, search="acme")
    assert sorted(_ids(acme)) == ["L1", "L3"] and acme.total == 2
    assert _ids(review_queue(store, now=NOW, search="l2")) == ["L2"]
    # LIKE wildcards in the search text match themselves only.
    assert _ids(review_queue(store, now=NOW, search="%_p")) == ["L4"]
    assert _ids(review_queue(store, now=NOW, search="no such")) == []

    everyone = _ids(review_queue(store, now=NOW))
    first = review_queue(store, now=NOW, limit=2)
    second = review_queue(store, now=NOW, limit=2, offset=2)
    last = review_queue(store, now=NOW, limit=2, offset=4)
    assert _ids(first) + _ids(second) + _ids(last) == everyone
    assert first.total == second.total == 5
    assert first.has_next and not first.has_previous
    assert last.has_previous and not last.has_next


def test_accepts_engine_connection_and_session(store):
    store.upsert_leads([_lead("A")])
    store.record_predictions([_row("A", _probs(STAGES, "awareness", 0.5, "decision", 0.4))])
    assert _ids(review_queue(store.engine, now=NOW)) == ["A"]
    with store.engine.connect() as conn:
        assert _ids(review_queue(conn, now=NOW)) == ["A"]
    with Session(store.engine) as session:
        assert _ids(review_queue(session, now=NOW)) == ["A"]
    with pytest.raises(TypeError, match="Store, an Engine"):
        review_queue(object())
    with pytest.raises(ValueError, match="must not be negative"):
        review_queue(store, limit=-1)


def test_scored_leads_without_a_profile_are_queued_too(store):
    store.record_predictions([_row("GHOST", _probs(STAGES, "decision", 0.45, "purchase", 0.4))])
    item = review_queue(store, now=NOW).items[0]
    assert item.lead_id == "GHOST"
    assert item.company is None and item.marketing_stage is None
    assert json.loads(json.dumps(item.to_dict()))["reasons"][0]["code"] == "sales_ready_unsure"


def test_queue_item_is_none_for_an_unscored_lead(store):
    store.upsert_leads([_lead("NEVER")])
    assert queue_item(store, "NEVER") is None


def test_menus_and_versions_come_from_the_stored_predictions(store):
    assert label_choices(store)["stage"] == list(STAGES)
    store.record_predictions(
        [
            _row("A", {"purchase": 0.2, "early": 0.5, "awareness": 0.3}, route="review"),
            _row("B", _probs(STAGES, "decision", 0.9), version="2", route="sales"),
        ]
    )
    # The newest prediction's classes, known stages in funnel order first.
    assert label_choices(store)["stage"] == list(STAGES)
    store.record_predictions([_row("C", {"purchase": 0.2, "early": 0.5, "awareness": 0.3})])
    assert label_choices(store)["stage"] == ["awareness", "purchase", "early"]
    facets = queue_facets(store)
    assert facets["stage"] == ["decision", "early"]
    assert facets["route"] == ["nurture", "review", "sales"]
    versions = {v["model_version"]: v["predictions"] for v in model_versions(store)}
    assert versions == {"1": 2, "2": 1}


# ------------------------------------------------------- the materialized queue


def _queue_row(store, lead_id):
    with store.engine.connect() as conn:
        row = conn.execute(
            sa.select(QueueRow.__table__).where(QueueRow.__table__.c.lead_id == lead_id)
        ).mappings()
        return dict(next(iter(row), None) or {})


def test_the_queue_row_follows_predictions_corrections_and_undo(store):
    store.upsert_leads([_lead("A", stage="awareness", persona="practitioner")])
    close = _probs(STAGES, "awareness", 0.45, "consideration", 0.4)
    store.record_predictions([_row("A", close, created_at=NOW - timedelta(days=1))])
    first = _queue_row(store, "A")
    assert first["stage"] == "awareness" and first["previous_stage"] is None
    assert first["changed_at"] is None and first["reviewed"] is False

    moved = _probs(STAGES, "decision", 0.55, "consideration", 0.35)
    store.record_predictions([_row("A", moved, version="2")])
    second = _queue_row(store, "A")
    newest = store.latest_prediction("A")
    assert second["prediction_id"] == newest["id"] != first["prediction_id"]
    assert second["previous_stage"] == "awareness"
    assert second["changed_at"] == NOW
    assert second["model_version"] == "2"
    # The priority moved with the prediction: no close call any more, but
    # marketing's "awareness" now gets 5%, and "decision" is sales-ready, unsure.
    item = queue_item(store, "A", now=NOW)
    assert set(item.reason_codes) == {"possible_mislabel", "sales_ready_unsure", "stage_changed"}

    stage_fix = store.add_correction("A", "stage", "consideration", reviewer="rep1")
    assert _queue_row(store, "A")["reviewed"] is True
    persona_ok = store.add_correction(
        "A", "persona", "practitioner", reviewer="rep1", kind="confirm"
    )
    store.undo_correction(stage_fix.id, reviewer="rep1")
    # The stage is back to the model's, but the persona is still a rep's label.
    assert _queue_row(store, "A")["reviewed"] is True
    store.undo_correction(persona_ok.id, reviewer="rep2")
    assert _queue_row(store, "A")["reviewed"] is False
    assert queue_item(store, "A", now=NOW).reviewed is False
    # A new prediction keeps the reviewed flag the corrections set.
    store.add_correction("A", "stage", "decision", reviewer="rep1")
    store.record_predictions([_row("A", moved, version="3")])
    assert _queue_row(store, "A")["reviewed"] is True
    assert _queue_row(store, "A")["previous_stage"] == "decision"
    assert _queue_row(store, "A")["changed_at"] is None


def test_a_lead_corrected_before_it_was_scored_enters_the_queue_reviewed(store):
    store.upsert_leads([_lead("EARLY", stage="awareness"), _lead("LATER", stage="awareness")])
    store.add_correction("EARLY", "stage", "decision", reviewer="rep1")
    probs = _probs(STAGES, "awareness", 0.5, "consideration", 0.45)
    store.record_predictions([_row("EARLY", probs), _row("LATER", probs)])
    page = review_queue(store, now=NOW)
    assert _ids(page) == ["LATER", "EARLY"]
    assert [item.reviewed for item in page.items] == [False, True]


def test_two_predictions_of_a_lead_in_one_batch_keep_the_later(store):
    store.upsert_leads([_lead("A")])
    store.record_predictions(
        [
            _row("A", _probs(STAGES, "awareness", 0.9, "consideration", 0.05)),
            _row("A", _probs(STAGES, "consideration", 0.9, "awareness", 0.05), version="2"),
        ]
    )
    item = queue_item(store, "A", now=NOW)
    assert item.model_version == "2" and item.stage == "consideration"
    assert item.previous_stage == "awareness"
    assert item.reason_codes == ("stage_changed",)
    assert item.prediction_id == store.latest_prediction("A")["id"]


def test_marketing_labels_and_company_changes_reach_the_queue(store):
    store.upsert_leads([_lead("A", stage="consideration", persona="practitioner", company="Acme")])
    store.record_predictions([_row("A", _probs(STAGES, "consideration", 0.9, "awareness", 0.04))])
    calm = queue_item(store, "A", now=NOW)
    assert calm.reason_codes == () and calm.marketing_stage_probability == pytest.approx(0.9)

    # Marketing relabels the lead: the model gives "awareness" 4%, a likely mislabel.
    store.upsert_leads([{"lead_id": "A", "stage": "awareness", "company": "Globex"}])
    doubt = queue_item(store, "A", now=NOW)
    assert doubt.marketing_stage == "awareness"
    assert doubt.marketing_stage_probability == pytest.approx(0.04)
    assert doubt.reason_codes == ("possible_mislabel",)
    assert doubt.priority == pytest.approx(calm.priority + 0.96)
    assert _ids(review_queue(store, now=NOW, search="globex")) == ["A"]
    assert review_queue(store, now=NOW, search="acme").total == 0
    # Other profile columns leave the queue row alone.
    store.upsert_leads([{"lead_id": "A", "job_title": "CTO"}])
    assert queue_item(store, "A", now=NOW).job_title == "CTO"
    assert queue_item(store, "A", now=NOW).priority == doubt.priority


def test_a_search_past_the_last_match_still_counts(store):
    store.upsert_leads([_lead(x, company="Acme") for x in ("A", "B")])
    store.record_predictions([_row(x, _probs(STAGES, "awareness", 0.6)) for x in ("A", "B")])
    page = review_queue(store, now=NOW, search="acme", offset=5)
    assert page.items == [] and page.total == 2
    assert review_queue(store, now=NOW, search="acme", limit=0).total == 2
    assert review_queue(store, now=NOW, limit=0).total == 2


def test_a_search_matching_many_leads_walks_the_index_with_the_same_result(store, monkeypatch):
    store.upsert_leads([_lead(f"S{i}", company=f"Acme {i}") for i in range(12)])
    store.record_predictions(
        [_row(f"S{i}", _probs(STAGES, "decision", 0.3 + i / 40)) for i in range(12)]
    )
    store.add_correction("S3", "stage", "awareness", reviewer="rep1")
    one_pass = [review_queue(store, now=NOW, search="acme", limit=5, offset=o) for o in (0, 5, 10)]
    monkeypatch.setattr("data.review_queue._SEARCH_ROWS", 4)
    walked = [review_queue(store, now=NOW, search="acme", limit=5, offset=o) for o in (0, 5, 10)]
    assert [_ids(p) for p in walked] == [_ids(p) for p in one_pass]
    assert [p.total for p in walked] == [p.total for p in one_pass] == [12, 12, 12]
    assert _ids(one_pass[2])[-1] == "S3"


def _random_store_rows(rng, n, *, now):
    leads, first, second = [], [], []
    for i in range(n):
        lead_id = f"R{i:03d}"
        leads.append(
            _lead(
                lead_id,
                stage=rng.choice([*STAGES, None]),
                persona=rng.choice([*PERSONAS, None]),
                company=rng.choice(["Acme", "Globex", "Initech"]),
            )
        )

        def probs(labels):
            weights = [rng.random() ** 3 for _ in labels]
            total = sum(weights)
            return {label: w / total for label, w in zip(labels, weights, strict=True)}

        route = rng.choice(["sales", "nurture"])
        first.append(
            _row(lead_id, probs(STAGES), probs(PERSONAS), created_at=now - timedelta(days=40))
        )
        if rng.random() < 0.5:
            age = timedelta(days=rng.choice([1, 5, 20, 30]))
            second.append(
                _row(lead_id, probs(STAGES), probs(PERSONAS), created_at=now - age, route=route)
            )
    return leads, first, second


def _expected_order(store, lead_ids, config, now):
    items = [queue_item(store, lead_id, config=config, now=now) for lead_id in lead_ids]
    items.sort(key=lambda item: (item.reviewed, -item.priority, item.lead_id))
    return [item.lead_id for item in items]


@pytest.mark.slow
@pytest.mark.parametrize(
    "config",
    [
        STORED_CONFIG,
        QueueConfig(changed_days=3, w_changed=2.0),
        QueueConfig(sales_ready_stages=("awareness",), w_mislabel=3.0),
        RETRAINING_CONFIG,
    ],
    ids=["stored", "read-time-change-term", "other-weights", "retraining"],
)
def test_pages_follow_the_priority_of_every_item(store, config):
    """Any filter and page equals sorting every matching lead by its own priority."""
    rng = random.Random(7)
    leads, first, second = _random_store_rows(rng, 60, now=NOW)
    store.upsert_leads(leads)
    store.record_predictions(first)
    store.record_predictions(second)
    for lead_id in ("R003", "R010", "R011", "R042"):
        store.add_correction(lead_id, "stage", "decision", reviewer="rep1")
    every = [lead["lead_id"] for lead in leads]
    cases = [
        ({}, lambda item: True),
        ({"route": "sales"}, lambda item: item.route == "sales"),
        ({"stage": "decision"}, lambda item: item.stage == "decision"),
        ({"reviewed": False}, lambda item: not item.reviewed),
        ({"search": "acme"}, lambda item: item.company == "Acme"),
        ({"since": NOW - timedelta(days=6)}, lambda item: item.scored_at >= NOW - timedelta(6)),
    ]
    for filters, keep in cases:
        matching = [lead_id for lead_id in every if keep(queue_item(store, lead_id))]
        assert len(matching) > 0, filters
        expected = _expected_order(store, matching, config, NOW)
        pages = [
            review_queue(store, config=config, now=NOW, limit=7, offset=offset, **filters)
            for offset in range(0, len(matching) + 7, 7)
        ]
        assert [lead_id for page in pages for lead_id in _ids(page)] == expected, filters
        assert {page.total for page in pages} == {len(matching)}


@pytest.mark.parametrize("copy_from", [1, 10_000], ids=["copy", "statement"])
def test_both_ways_of_writing_queue_rows_agree(db_url, monkeypatch, copy_from):
    """PostgreSQL takes a batch through COPY and a few rows through one statement."""
    monkeypatch.setattr(store_module, "_QUEUE_COPY_MIN_ROWS", copy_from)
    s = Store(db_url)
    s.upgrade()
    try:
        s.upsert_leads([_lead("A", stage="awareness"), _lead("B", company='O"Brien, %_ Ltd')])
        s.record_predictions(
            [
                _row("A", _probs(STAGES, "decision", 0.5, "purchase", 0.3)),
                _row("B", _probs(STAGES, "awareness", 0.9), created_at=NOW - timedelta(days=2)),
            ]
        )
        s.record_predictions([_row("B", _probs(STAGES, "decision", 0.55, "awareness", 0.4))])
        a, b = _queue_row(s, "A"), _queue_row(s, "B")
        assert a["company"] == "A Inc" and b["company"] == 'O"Brien, %_ Ltd'
        assert b["previous_stage"] == "awareness" and b["changed_at"] == NOW
        assert a["scored_at"] == NOW and a["reviewed"] is False
        assert a["p_marketing_stage"] == pytest.approx(0.1)
        assert _ids(review_queue(s, now=NOW)) == ["A", "B"]
    finally:
        s.dispose()


def test_a_page_reads_the_queue_indexes_only_on_sqlite(tmp_path):
    """The page walks the two rank indexes; no full scan, no predictions read."""
    store = Store(f"sqlite:///{tmp_path / 'plan.db'}")
    store.upgrade()
    store.record_predictions([_row("A", _probs(STAGES, "decision", 0.5, "purchase", 0.4))])
    statements: list[tuple[str, tuple]] = []

    @sa.event.listens_for(store.engine, "before_cursor_execute")
    def capture(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, tuple(parameters)))

    def plan(statement, params):
        with store.engine.connect() as conn:
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", params)
            return [str(row[-1]) for row in rows if " lead_queue " in f"{row[-1]} "]

    for filters in ({}, {"stage": "decision"}, {"route": "nurture"}, {"reviewed": False}):
        statements.clear()
        review_queue(store, now=NOW, **filters)
        assert not any("predictions" in statement for statement, _ in statements)
        reads = plan(*next(s for s in statements if "ranked" in s[0]))
        assert any("COVERING INDEX ix_lead_queue_rank" in line for line in reads), reads
        assert any("COVERING INDEX ix_lead_queue_changed_rank" in line for line in reads), reads
        assert all("COVERING INDEX" in line for line in reads), reads
        counts = [plan(*s) for s in statements if s[0].startswith("SELECT count(*)")]
        assert counts and all("COVERING INDEX" in line for lines in counts for line in lines)
        if "stage" in filters:
            assert "ix_lead_queue_filters (stage=?)" in counts[0][0], counts
    store.dispose()


def test_priority_scores_treat_missing_values_as_no_signal():
    scores = priority_scores(
        stage=["decision", None, "awareness"],
        stage_confidence=[0.5, None, 0.9],
        stage_margin=[0.1, None, np.nan],
        persona_margin=[None, 0.4, 1.0],
        p_marketing_stage=[None, 0.1, 0.3],
        p_marketing_persona=[np.nan, None, 0.05],
        stage_changed=[False, True, False],
    )
    assert scores == pytest.approx([0.9 + 0.5, 0.5 * 0.6 + 0.9 + 0.75, 0.5 * 0.95])
    with pytest.raises(ValueError, match="stage_margin: expected 3 values, got 2"):
        priority_scores(
            stage=["a", "b", "c"],
            stage_confidence=[1, 1, 1],
            stage_margin=[1, 1],
            persona_margin=[1, 1, 1],
            p_marketing_stage=[1, 1, 1],
            p_marketing_persona=[1, 1, 1],
        )
    # The stage-change term is added last: stored score + weight is exact.
    base = priority_scores(
        stage=["decision"],
        stage_confidence=[0.3],
        stage_margin=[0.07],
        persona_margin=[0.11],
        p_marketing_stage=[0.13],
        p_marketing_persona=[0.17],
    )
    with_change = priority_scores(
        stage=["decision"],
        stage_confidence=[0.3],
        stage_margin=[0.07],
        persona_margin=[0.11],
        p_marketing_stage=[0.13],
        p_marketing_persona=[0.17],
        stage_changed=[True],
        config=replace(STORED_CONFIG, w_changed=0.3),
    )
    assert with_change[0] == base[0] + 0.3
