"""Routing rules: sales-ready stages, readiness and the route of each lead."""

from __future__ import annotations

import numpy as np
import pytest

from model.routing import (
    RoutingConfig,
    infer_sales_ready,
    readiness,
    resolve_sales_ready,
    route,
    route_reasons,
)

STAGES = ("awareness", "consideration", "decision", "purchase")


@pytest.mark.parametrize(
    ("classes", "ready"),
    [
        (STAGES, ("decision", "purchase")),
        (("Awareness", "Decision"), ("Decision",)),
        (("False", "True"), ("True",)),
        (("0", "1"), ("1",)),
        (("no", "yes"), ("yes",)),
        (("MQL", "SQL"), ()),
        (("1", "2", "3"), ()),
    ],
)
def test_infer_sales_ready(classes, ready):
    assert infer_sales_ready(classes) == ready


def test_configured_stages_win_and_must_be_labels():
    config = RoutingConfig(sales_ready_stages=("SQL",))
    assert resolve_sales_ready(config, ("MQL", "SQL")) == ("SQL",)
    assert resolve_sales_ready(RoutingConfig(), ("MQL", "SQL")) == ()
    with pytest.raises(ValueError, match="not stage labels"):
        resolve_sales_ready(RoutingConfig(sales_ready_stages=("decision",)), ("MQL", "SQL"))


def test_config_validation():
    with pytest.raises(ValueError, match="sales_threshold"):
        RoutingConfig(sales_threshold=1.5)
    with pytest.raises(ValueError, match="not one string"):
        RoutingConfig(sales_ready_stages="decision")
    assert RoutingConfig(sales_ready_stages=["decision"]).sales_ready_stages == ("decision",)


def test_readiness_sums_the_sales_ready_stages():
    proba = np.array([[0.1, 0.2, 0.3, 0.4], [0.7, 0.2, 0.1, 0.0]])
    np.testing.assert_allclose(readiness(proba, STAGES, RoutingConfig()), [0.7, 0.1])
    custom = RoutingConfig(sales_ready_stages=("purchase",))
    np.testing.assert_allclose(readiness(proba, STAGES, custom), [0.4, 0.0])
    assert readiness(proba[:, :2], ("MQL", "SQL"), RoutingConfig()) is None


def test_route_rules():
    proba = np.array(
        [
            [0.05, 0.05, 0.80, 0.10],  # clear decision → sales
            [0.80, 0.10, 0.05, 0.05],  # clear awareness → nurture
            [0.00, 0.48, 0.52, 0.00],  # readiness 0.52, within 0.1 of 0.5 → review
            [0.35, 0.33, 0.32, 0.00],  # unsure stage, but readiness 0.32 is clear → nurture
            [0.05, 0.05, 0.80, 0.10],  # decision, but a student (sure) → nurture
            [0.05, 0.05, 0.80, 0.10],  # decision, "student" unsure → sales
            [0.00, 0.40, 0.60, 0.00],  # readiness 0.6 → sales
        ]
    )
    persona = ["economic_buyer", "economic_buyer", "practitioner", "practitioner",
               "non_buyer", "non_buyer", "technical_evaluator"]  # fmt: skip
    confidence = np.array([0.9, 0.9, 0.9, 0.9, 0.95, 0.2, 0.9])
    got = route(
        stage_proba=proba,
        stage_classes=STAGES,
        persona=persona,
        persona_confidence=confidence,
        config=RoutingConfig(),
    )
    assert list(got) == ["sales", "nurture", "review", "nurture", "nurture", "sales", "sales"]
    stricter = route(
        stage_proba=proba[-1:],
        stage_classes=STAGES,
        config=RoutingConfig(sales_threshold=0.7),
    )
    assert list(stricter) == ["nurture"]


def test_route_without_readiness_or_stage_head_goes_to_review():
    proba = np.array([[0.1, 0.9], [0.9, 0.1]])
    unknown = route(stage_proba=proba, stage_classes=("MQL", "SQL"), config=RoutingConfig())
    assert list(unknown) == ["review", "review"]
    named = route(
        stage_proba=proba,
        stage_classes=("MQL", "SQL"),
        config=RoutingConfig(sales_ready_stages=("SQL",)),
    )
    assert list(named) == ["sales", "nurture"]
    persona_only = route(
        stage_proba=None,
        stage_classes=None,
        persona=np.array(["non_buyer", "economic_buyer"]),
        config=RoutingConfig(),
    )
    assert list(persona_only) == ["nurture", "review"]
    with pytest.raises(ValueError, match="needs"):
        route(stage_proba=None, stage_classes=None, config=RoutingConfig())


def test_more_readiness_never_routes_away_from_sales():
    rng = np.random.default_rng(0)
    base = rng.dirichlet(np.ones(4), size=200)
    config = RoutingConfig(review_margin=0.0, min_confidence=0.0)
    shifted = base.copy()
    move = shifted[:, 0] * 0.5  # move mass from awareness to decision
    shifted[:, 0] -= move
    shifted[:, 2] += move
    before = route(stage_proba=base, stage_classes=STAGES, config=config)
    after = route(stage_proba=shifted, stage_classes=STAGES, config=config)
    assert not np.any((before == "sales") & (after != "sales"))
    assert np.sum(after == "sales") > np.sum(before == "sales")


def test_a_close_call_between_two_sales_ready_stages_is_a_sales_lead():
    # The CFO: decision 0.51 / purchase 0.46 — readiness 0.97, so sales
    # (the old rule sent it to review because the top two stages were close).
    proba = np.array([[0.01, 0.02, 0.51, 0.46], [0.45, 0.43, 0.07, 0.05]])
    got = route(stage_proba=proba, stage_classes=STAGES, config=RoutingConfig())
    assert list(got) == ["sales", "nurture"]


def test_review_only_when_readiness_is_near_the_threshold():
    config = RoutingConfig(sales_threshold=0.5, review_margin=0.1)
    ready = np.array([0.39, 0.41, 0.5, 0.59, 0.61])
    proba = np.column_stack([1 - ready, np.zeros(5), ready, np.zeros(5)])
    got = route(stage_proba=proba, stage_classes=STAGES, config=config)
    assert list(got) == ["nurture", "review", "review", "review", "sales"]


def test_route_reasons_name_the_rule_and_its_thresholds():
    proba = np.array(
        [
            [0.01, 0.02, 0.51, 0.46],
            [0.00, 0.48, 0.52, 0.00],
            [0.80, 0.10, 0.05, 0.05],
            [0.05, 0.05, 0.80, 0.10],
        ]
    )
    persona = np.array(["economic_buyer", "economic_buyer", "practitioner", "non_buyer"])
    kwargs = dict(
        stage_proba=proba,
        stage_classes=STAGES,
        persona=persona,
        persona_confidence=np.array([0.9, 0.9, 0.9, 0.93]),
        config=RoutingConfig(),
    )
    why = route_reasons(**kwargs)
    assert list(route(**kwargs)) == ["sales", "review", "nurture", "nurture"]
    assert why == [
        "readiness 0.97 >= sales threshold 0.50 (review within ±0.10)",
        "readiness 0.52 within ±0.10 of sales threshold 0.50",
        "readiness 0.10 < sales threshold 0.50 (review within ±0.10)",
        "persona non_buyer (0.93 >= 0.40)",
    ]
    assert route_reasons(
        stage_proba=proba[:1], stage_classes=("a", "b", "c", "d"), config=RoutingConfig()
    ) == ["no sales-ready stage known"]


def test_routing_answers_show_thresholds_rule_and_why_like_route():
    from model.routing import routing_answers, thresholds, thresholds_note

    config = RoutingConfig(sales_ready_stages=("decision", "purchase"))
    # the CFO (readiness 0.97), a doubtful lead, a nurture lead, a non-buyer
    proba = np.array(
        [
            [0.01, 0.02, 0.51, 0.46],
            [0.30, 0.15, 0.30, 0.25],
            [0.45, 0.43, 0.07, 0.05],
            [0.01, 0.02, 0.51, 0.46],
        ]
    )
    persona = ["economic_buyer", "economic_buyer", "practitioner", "non_buyer"]
    conf = np.array([0.9, 0.9, 0.9, 0.93])
    ready = readiness(proba, STAGES, config)
    answers = routing_answers(config, ready=ready, persona=persona, persona_confidence=conf)
    routes = route(
        stage_proba=proba,
        stage_classes=STAGES,
        persona=persona,
        persona_confidence=conf,
        config=config,
    )
    assert list(routes) == ["sales", "review", "nurture", "nurture"]
    assert [a["rule"] for a in answers] == ["readiness", "review_band", "readiness", "persona"]
    assert answers[0]["readiness"] == pytest.approx(0.97)
    assert answers[0]["why"] == "readiness 0.97 >= sales threshold 0.50 (review within ±0.10)"
    assert answers[1]["why"] == "readiness 0.55 within ±0.10 of sales threshold 0.50"
    assert answers[3]["why"] == "persona non_buyer (0.93 >= 0.40)"
    for a in answers:
        assert {k: a[k] for k in thresholds(config)} == thresholds(config)
        assert a["sales_at"] == 0.5 and a["review_band"] == [0.4, 0.6]
    # the same words as route_reasons
    why = route_reasons(
        stage_proba=proba, stage_classes=STAGES, persona=persona, persona_confidence=conf,
        config=config,
    )  # fmt: skip
    assert [a["why"] for a in answers] == why
    # no readiness: review, said so
    [none] = routing_answers(
        config, ready=[None], persona=["practitioner"], persona_confidence=[0.9]
    )
    assert none["rule"] == "no_readiness" and none["readiness"] is None
    [no_head] = routing_answers(
        config, ready=None, persona=["practitioner"], persona_confidence=[0.9]
    )
    assert no_head["why"] == "no stage head"
    note = thresholds_note(config)
    assert "sales at readiness >= 0.50" in note and "0.40 < readiness < 0.60" in note


def test_routing_answers_agree_with_route_on_random_leads():
    from model.routing import routing_answers

    rng = np.random.default_rng(5)
    config = RoutingConfig(sales_ready_stages=("decision", "purchase"), review_margin=0.15)
    proba = rng.dirichlet(np.ones(4), size=500)
    persona = rng.choice(["economic_buyer", "non_buyer"], size=500)
    conf = rng.uniform(0.2, 1.0, size=500)
    routes = route(
        stage_proba=proba, stage_classes=STAGES, persona=persona, persona_confidence=conf,
        config=config,
    )  # fmt: skip
    answers = routing_answers(
        config, ready=readiness(proba, STAGES, config), persona=list(persona),
        persona_confidence=list(conf),
    )  # fmt: skip
    expected = {
        "sales": {"readiness"},
        "nurture": {"readiness", "persona"},
        "review": {"review_band"},
    }
    for r, a in zip(routes, answers, strict=True):
        assert a["rule"] in expected[r]
    assert {a["rule"] for a in answers} == {"readiness", "review_band", "persona"}
