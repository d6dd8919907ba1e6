"""Reason codes: wording of feature values, ranking and sign of contributions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model.classifier import HeadClassifier
from model.features import PROFILE_FEATURES, FeatureConfig, feature_names
from model.reasons import describe, explain_head, format_value, top_reasons
from tests.support.leads import make_leads


@pytest.mark.parametrize(
    ("feature", "value", "text"),
    [
        ("n_pricing_7d", 3, "3 pricing-page visits in the last 7 days"),
        ("n_pricing_7d", 1, "1 pricing-page visit in the last 7 days"),
        ("n_webinar_attend_90d", 0, "no webinars attended in the last 90 days"),
        ("n_demo_request_30d", 2.0, "2 demo requests in the last 30 days"),
        ("n_events_30d", 12, "12 events in the last 30 days"),
        ("n_email_open_1d", 4, "4 email opens in the last day"),
        ("days_since_pricing", 3.4, "last pricing-page visit 3 days ago"),
        ("days_since_demo", None, "no demo request on record"),
        ("days_since_any", 0.2, "last activity today"),
        ("days_since_webinar", float("nan"), "no webinar on record"),
        ("days_since_trial_start", 1.0, "last trial started 1 day ago"),
        ("job_title", "VP of Engineering", "title: VP of Engineering"),
        ("job_title", None, "title not given"),
        ("company_size", 1200, "company size: 1,200"),
        ("log_company_size", math.log1p(1200), "company size: 1,200"),
        ("industry", "Fintech", "industry: Fintech"),
        ("lead_source", "webinar", "lead source: webinar"),
        ("PageValues", 12.5, "PageValues: 12.5"),
        ("is_customer", True, "is_customer: yes"),
        ("title_seniority", "vp", "seniority (from title): VP"),
        ("title_function", "engineering", "function (from title): engineering"),
        ("lead_age_days", 40.0, "lead created 40 days ago"),
        ("last_contacted_days_ago", 12.0, "last contacted: 12 days ago"),
        ("n_events_total", 0, "no recorded activity"),
        ("engagement_velocity", 2.5, "engagement accelerating (2.5× the earlier rate)"),
        ("engagement_velocity", 0.5, "engagement cooling (0.5× the earlier rate)"),
        ("n_distinct_channels", 1, "1 channel"),
    ],
)
def test_describe(feature, value, text):
    assert describe(feature, value) == text


def test_every_generated_feature_has_its_own_wording():
    config = FeatureConfig(recency=("pricing", "demo", "webinar", "trial", "any", "form_submit"))
    for name in [*feature_names(config), *PROFILE_FEATURES]:
        for value in (0, 3.0):
            text = describe(name, "vp" if name.startswith("title_") else value)
            assert not text.startswith(f"{name}:"), (name, text)


def test_format_value():
    assert format_value(1234567) == "1,234,567"
    assert format_value(2.75) == "2.75"
    assert format_value(0.5) == "0.5"
    assert format_value(1500.7) == "1,501"
    assert format_value(False) == "no"
    assert format_value("  ") == "not given"
    assert format_value(np.int64(7)) == "7"


def test_top_reasons_ranks_by_absolute_weight_and_keeps_the_sign():
    contrib = np.array([[0.2, -0.9, 0.0, 0.5], [0.0, 0.0, 0.0, 0.0]])
    values = [{"a": 1, "b": "Retail", "c": 2, "d": 3}, {}]
    got = top_reasons(contrib, ["a", "b", "c", "d"], values, top_k=3)
    assert [r["feature"] for r in got[0]] == ["b", "d", "a"]
    assert [r["weight"] for r in got[0]] == [-0.9, 0.5, 0.2]
    assert got[0][0]["text"] == "b: Retail"
    assert got[1] == []  # nothing moved the score
    assert len(top_reasons(contrib, ["a", "b", "c", "d"], values, top_k=1)[0]) == 1


@pytest.fixture(scope="module")
def stage_head():
    X, stage, _ = make_leads(400, seed=0)
    return HeadClassifier(n_estimators=60, num_threads=1).fit(X, stage)


def test_explain_head_names_the_driving_signal(stage_head):
    head = stage_head
    rows = [
        {
            "n_pricing_7d": 9,
            "n_demo_request_30d": 2,
            "days_since_pricing": 1.0,
            "job_title": "VP Sales",
        },
        {"n_pricing_7d": 0, "n_demo_request_30d": 0, "job_title": "Student"},
    ]
    Z = head.encode_records(rows)
    proba = head.predict_proba_encoded(Z)
    labels = head.classes_[proba.argmax(axis=1)]
    assert list(labels) == ["decision", "awareness"]
    reasons = explain_head(
        head, Z, proba.argmax(axis=1), {"job_title": [r["job_title"] for r in rows]}
    )
    hot, cold = reasons
    assert hot[0]["feature"] == "n_pricing_7d" and hot[0]["weight"] > 0
    assert hot[0]["text"] == "9 pricing-page visits in the last 7 days"
    cold_pricing = next(r for r in cold if r["feature"] == "n_pricing_7d")
    assert cold_pricing["weight"] > 0  # no pricing visits raise "awareness"
    assert cold_pricing["text"] == "no pricing-page visits in the last 7 days"
    # Explaining "decision" for the cold lead: the same fact now lowers the score.
    decision = list(head.classes_).index("decision")
    against = explain_head(head, Z[1:], np.array([decision]), {"job_title": ["Student"]})[0]
    pricing = next(r for r in against if r["feature"] == "n_pricing_7d")
    assert pricing["weight"] < 0


def test_explain_head_words_a_title_as_written():
    X, _, persona = make_leads(300, seed=2)
    head = HeadClassifier(n_estimators=40, num_threads=1).fit(X, persona)
    rows = [{"job_title": "Chief Revenue Officer EMEA", "industry": "Retail"}]
    Z = head.encode_records(rows)
    index = head.predict_proba_encoded(Z).argmax(axis=1)
    assert head.classes_[index[0]] == "economic_buyer"
    top = explain_head(head, Z, index, {"job_title": ["Chief Revenue Officer EMEA"]}, top_k=2)[0]
    assert top[0] == {
        "feature": "job_title",
        "text": "title: Chief Revenue Officer EMEA",
        "weight": top[0]["weight"],
    }
    assert top[0]["weight"] > 0
    assert len(top) <= 2


def test_a_merely_missing_value_is_worded_as_such_and_ranked_by_half_its_weight():
    from model.reasons import is_merely_missing

    contributions = np.array([[2.0, -1.5, 0.5, 0.1]])
    features = ["created_days_ago", "days_since_demo", "industry", "n_pricing_7d"]
    values = [{"created_days_ago": None, "days_since_demo": None, "industry": "Fintech",
               "n_pricing_7d": 3}]  # fmt: skip
    got = top_reasons(contributions, features, values, top_k=4)[0]
    # "no demo request on record" is a fact about the lead and keeps its rank; the
    # absent created date (the largest weight, 2.0) is worded as absent and ranks
    # as 1.0: after the 1.5 of a present value, before the weaker ones
    assert [r["feature"] for r in got] == [
        "days_since_demo",
        "created_days_ago",
        "industry",
        "n_pricing_7d",
    ]
    assert got[1]["text"] == "created date not given" and got[1]["weight"] == 2.0
    assert is_merely_missing("industry", float("nan"))
    assert not is_merely_missing("days_since_demo", None)
    assert not is_merely_missing("industry", "Fintech")
    short = top_reasons(contributions, features, values, top_k=1)[0]
    assert [r["feature"] for r in short] == ["days_since_demo"]
    # it leads only when it outweighs every present value more than twice over
    dominant = top_reasons(np.array([[3.1, -1.5, 0.5, 0.1]]), features, values, top_k=2)[0]
    assert [r["feature"] for r in dominant] == ["created_days_ago", "days_since_demo"]
    tie = top_reasons(np.array([[3.0, -1.5, 0.5, 0.1]]), features, values, top_k=2)[0]
    assert [r["feature"] for r in tie] == ["days_since_demo", "created_days_ago"]
    tie_one = top_reasons(np.array([[3.0, -1.5, 0.5, 0.1]]), features, values, top_k=1)[0]
    assert [r["feature"] for r in tie_one] == ["days_since_demo"]
