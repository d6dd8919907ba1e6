"""The review queue: order, reasons, filters and paging over predictions we control.

Every test runs on SQLite and on PostgreSQL (``db_url``), because the priority
is computed in SQL with dialect-specific JSON look-ups.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from data.review_queue import (
    QueueConfig,
    label_choices,
    model_versions,
    queue_facets,
    queue_item,
    review_queue,
)
from data.store import Store

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


def test_sqlite_ranks_over_the_lead_index(tmp_path):
    """The latest-prediction step walks ``predictions(lead_id, id)``, not the table."""
    store = Store(f"sqlite:///{tmp_path / 'plan.db'}")
    store.upgrade()
    statements: list[tuple[str, tuple]] = []

    @sa.event.listens_for(store.engine, "before_cursor_execute")
    def capture(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, tuple(parameters)))

    review_queue(store, now=NOW)
    ranking, params = next(s for s in statements if s[0].lstrip().startswith("WITH"))
    with store.engine.connect() as conn:
        plan = " ".join(
            str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {ranking}", params)
        )
    assert "ix_predictions_lead_id_id" in plan
    store.dispose()
