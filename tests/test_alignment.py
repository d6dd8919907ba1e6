"""data.alignment on small stores with known predictions and corrections."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from data import alignment
from data.store import Store

NOW = datetime(2025, 3, 20, 12, 0, tzinfo=UTC)  # a Thursday


def _prediction(lead_id: str, stage: str, persona: str, *, route: str, at: datetime, **extra):
    return {
        "lead_id": lead_id,
        "model_name": "lead-readiness",
        "model_version": extra.pop("version", "1"),
        "source": "batch",
        "created_at": at,
        "stage": stage,
        "persona": persona,
        "route": route,
        **extra,
    }


@pytest.fixture
def store(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    store.upgrade()
    yield store
    store.dispose()


@pytest.fixture
def reviewed(store):
    """Six scored leads; rep ``ann`` confirms, reclassifies and undoes; ``bob`` reviews two."""
    at = NOW - timedelta(days=10)
    store.upsert_leads([{"lead_id": f"L{i}", "company": f"C{i}"} for i in range(1, 7)])
    store.record_predictions(
        [
            _prediction("L1", "decision", "economic_buyer", route="sales", at=at),
            _prediction("L2", "consideration", "practitioner", route="nurture", at=at),
            _prediction("L3", "awareness", "economic_buyer", route="nurture", at=at),
            _prediction("L4", "decision", "practitioner", route="sales", at=at),
            _prediction("L5", "awareness", "non_buyer", route="nurture", at=at),
            _prediction("L6", "consideration", "practitioner", route="nurture", at=at),
        ]
    )
    day = timedelta(days=1)
    # Week of 2025-03-10 (Monday): ann works four leads.
    store.add_correction("L1", "stage", "decision", reviewer="ann", kind="confirm",
                         created_at=NOW - 9 * day)  # fmt: skip
    store.add_correction("L2", "stage", "decision", reviewer="ann", reason="talking_to_sales",
                         created_at=NOW - 9 * day)  # fmt: skip
    store.add_correction("L3", "persona", "non_buyer", reviewer="ann", reason="student",
                         created_at=NOW - 8 * day)  # fmt: skip
    mistake = store.add_correction("L4", "stage", "awareness", reviewer="ann",
                                   created_at=NOW - 8 * day)  # fmt: skip
    store.undo_correction(mistake.id, reviewer="ann")
    # Week of 2025-03-17: bob agrees with the model once and overrides once.
    store.add_correction("L5", "stage", "awareness", reviewer="bob", kind="confirm",
                         created_at=NOW - 2 * day)  # fmt: skip
    store.add_correction("L6", "persona", "economic_buyer", reviewer="bob",
                         created_at=NOW - 1 * day)  # fmt: skip
    return store


def test_undone_corrections_and_undo_rows_are_not_reviews(reviewed):
    frame = alignment.reviews_frame(reviewed)
    assert sorted(frame["lead_id"]) == ["L1", "L2", "L3", "L5", "L6"]
    assert set(frame["kind"]) == {"confirm", "reclassify"}
    row = frame.set_index("lead_id").loc["L2"]
    assert (row["model_label"], row["rep_label"], bool(row["agreed"])) == (
        "consideration",
        "decision",
        False,
    )


def test_an_undone_undo_restores_the_review(reviewed):
    l4 = [c for c in reviewed.corrections_for("L4")]
    undo = next(c for c in l4 if c["kind"] == "undo")
    reviewed.undo_correction(undo["id"], reviewer="ann")
    frame = alignment.reviews_frame(reviewed)
    assert "L4" in set(frame["lead_id"])


def test_agreement_per_head_and_model_label(reviewed):
    rows = alignment.agreement(alignment.reviews_frame(reviewed))
    stage = {r.label: (r.reviews, r.agreed) for r in rows["stage"]}
    assert stage == {
        "all": (3, 2),
        "decision": (1, 1),
        "consideration": (1, 0),
        "awareness": (1, 1),
    }
    persona = {r.label: (r.reviews, r.agreed) for r in rows["persona"]}
    assert persona == {"all": (2, 0), "economic_buyer": (1, 0), "practitioner": (1, 0)}
    assert rows["stage"][0].rate == pytest.approx(2 / 3)


def test_confusion_matrix_model_rows_rep_columns(reviewed):
    table = alignment.confusion(alignment.reviews_frame(reviewed), "stage")
    assert list(table.index) == list(table.columns) == ["awareness", "consideration", "decision"]
    assert table.loc["consideration", "decision"] == 1
    assert table.loc["decision", "decision"] == 1
    assert table.loc["awareness", "awareness"] == 1
    assert int(table.to_numpy().sum()) == 3
    assert int(np.trace(table.to_numpy())) == 2


def test_override_rate_counts_leads_overall_and_per_week(reviewed):
    frame = alignment.reviews_frame(reviewed)
    # Changed: L2 (stage), L3 (persona), L6 (persona); kept: L1, L5.
    assert alignment.override_rate(frame) == pytest.approx(3 / 5)
    weekly = alignment.override_rate_per_week(frame)
    assert [d.date().isoformat() for d in weekly.index] == ["2025-03-10", "2025-03-17"]
    assert weekly["leads"].tolist() == [3, 2]
    assert weekly["changed"].tolist() == [2, 1]
    assert weekly["rate"].tolist() == pytest.approx([2 / 3, 1 / 2])


def test_corrections_per_week_and_by_reason(reviewed):
    frame = alignment.reviews_frame(reviewed)
    weekly = alignment.corrections_per_week(frame)
    assert weekly.to_dict("list") == {"reclassify": [2, 1], "confirm": [1, 1]}
    assert alignment.corrections_by_reason(frame) == [
        ("none given", 1),
        ("student", 1),
        ("talking_to_sales", 1),
    ]


def test_weeks_without_reviews_show_as_zero():
    frame = pd.DataFrame(
        {
            "created_at": pd.to_datetime(["2025-01-06", "2025-01-27"], utc=True),
            "kind": ["confirm", "reclassify"],
        }
    )
    weekly = alignment.corrections_per_week(frame)
    assert len(weekly) == 4
    assert weekly["confirm"].tolist() == [1, 0, 0, 0]


def test_per_rep_counts_and_agreement(reviewed):
    reps = {r.reviewer: r for r in alignment.per_rep(alignment.reviews_frame(reviewed))}
    ann, bob = reps["ann"], reps["bob"]
    assert (ann.leads, ann.reclassified, ann.confirmed) == (3, 2, 1)
    assert ann.agreement == pytest.approx(1 / 3)
    assert (bob.leads, bob.reclassified, bob.confirmed, bob.agreement) == (2, 1, 1, 0.5)


def _labels_frame(pairs: dict[str, list[str]], head: str = "stage") -> pd.DataFrame:
    rows = []
    next_id = 1
    for reviewer, labels in pairs.items():
        for i, label in enumerate(labels):
            if label is None:
                continue
            rows.append(
                {
                    "id": next_id,
                    "lead_id": f"L{i}",
                    "field": head,
                    "reviewer": reviewer,
                    "rep_label": label,
                }
            )
            next_id += 1
    return pd.DataFrame(rows)


def test_cohens_kappa_on_a_hand_made_case():
    # Observed agreement 4/6, chance agreement 0.5 (both say x half the time): kappa 1/3.
    frame = _labels_frame({"ann": list("xxyyxy"), "bob": list("xyyyxx")})
    (row,) = alignment.pairwise_kappa(frame)
    assert (row.rep_a, row.rep_b, row.shared, row.agreed) == ("ann", "bob", 6, 4)
    assert row.kappa == pytest.approx(1 / 3)


def test_kappa_is_na_with_too_few_shared_leads_or_one_label():
    few = _labels_frame({"ann": ["x", "y", None, None], "bob": ["x", "x", "y", "y"]})
    (row,) = alignment.pairwise_kappa(few, min_shared=5)
    assert (row.shared, row.kappa) == (2, None)
    same = _labels_frame({"ann": ["x"] * 6, "bob": ["x"] * 6})
    (row,) = alignment.pairwise_kappa(same)
    assert (row.shared, row.agreed, row.kappa) == (6, 6, None)


def test_kappa_uses_each_reps_latest_label():
    frame = _labels_frame({"ann": list("xxyyxy"), "bob": list("xyyyxx")})
    # bob changes his mind on L1 (y -> x): now 5 of 6 agree.
    fix = {"id": 99, "lead_id": "L1", "field": "stage", "reviewer": "bob", "rep_label": "x"}
    frame = pd.concat([frame, pd.DataFrame([fix])], ignore_index=True)
    (row,) = alignment.pairwise_kappa(frame)
    assert row.agreed == 5


def _route(store, lead_id: str, routed_days_ago: float, reviewed_days_ago: float | None):
    store.record_predictions(
        [
            _prediction(
                lead_id,
                "decision",
                "economic_buyer",
                route="sales",
                at=NOW - timedelta(days=routed_days_ago),
            )
        ]
    )
    if reviewed_days_ago is not None:
        store.add_correction(
            lead_id,
            "stage",
            "decision",
            reviewer="ann",
            kind="confirm",
            created_at=NOW - timedelta(days=reviewed_days_ago),
        )


def test_sales_routed_leads_reviewed_within_n_days(store):
    store.upsert_leads([{"lead_id": f"S{i}"} for i in range(1, 7)])
    _route(store, "S1", 20, 18)  # reviewed after 2 days: in time
    _route(store, "S2", 20, 10)  # after 10 days: late
    _route(store, "S3", 20, None)  # never, and its 7 days are over: overdue
    _route(store, "S4", 1, None)  # routed yesterday: pending
    _route(store, "S5", 3, 2)  # reviewed the day after: in time
    store.record_predictions(
        [_prediction("S6", "awareness", "practitioner", route="nurture", at=NOW)]
    )  # never routed to sales: not counted
    result = alignment.sales_follow_up(store, days=7, now=NOW)
    assert (result.routed, result.in_time, result.late, result.overdue, result.pending) == (
        5,
        2,
        1,
        1,
        1,
    )
    # Due: S1, S2, S3 (their 7 days are over); S5 was reviewed in time but is not due yet.
    assert (result.due, result.due_in_time, result.never_reviewed) == (3, 1, 2)
    assert result.share_in_time == pytest.approx(1 / 3)
    assert result.median_hours == pytest.approx(48.0)
    wider = alignment.sales_follow_up(store, days=14, now=NOW)
    assert (wider.in_time, wider.late, wider.overdue) == (3, 0, 1)


def test_a_review_before_the_routing_does_not_count(store):
    store.upsert_leads([{"lead_id": "S1"}])
    store.record_predictions(
        [_prediction("S1", "awareness", "practitioner", route="nurture", at=NOW - timedelta(30))]
    )
    store.add_correction("S1", "stage", "awareness", reviewer="ann", kind="confirm",
                         created_at=NOW - timedelta(days=25))  # fmt: skip
    _route(store, "S1", 20, None)
    result = alignment.sales_follow_up(store, days=7, now=NOW)
    assert (result.routed, result.in_time, result.overdue) == (1, 0, 1)


def test_sales_follow_up_rejects_a_zero_window(store):
    with pytest.raises(ValueError, match="at least 1"):
        alignment.sales_follow_up(store, days=0)


def test_psi_of_known_histograms():
    assert alignment.psi_from_counts([50, 50], [50, 50]) == 0.0
    expected = 0.4 * math.log(0.9 / 0.5) + (-0.4) * math.log(0.1 / 0.5)
    assert alignment.psi_from_counts([50, 50], [90, 10]) == pytest.approx(expected)
    assert alignment.psi_from_counts([50, 50], [90, 10]) == pytest.approx(0.8789, abs=1e-4)


def test_psi_with_empty_bins_stays_finite():
    # The reference never saw the third bin; its share is floored at 1e-4.
    value = alignment.psi_from_counts([50, 50, 0], [50, 25, 25])
    e, a = [0.5, 0.5, 1e-4], [0.5, 0.25, 0.25]
    assert value == pytest.approx(sum((y - x) * math.log(y / x) for x, y in zip(e, a, strict=True)))
    assert math.isfinite(alignment.psi_from_counts([0, 10], [10, 0]))


def test_psi_rejects_bad_histograms():
    with pytest.raises(ValueError, match="same number of bins"):
        alignment.psi_from_counts([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="empty"):
        alignment.psi_from_counts([0, 0], [1, 1])


def test_psi_levels_follow_the_usual_thresholds():
    assert [alignment.psi_level(v) for v in (0.0, 0.099, 0.1, 0.2499, 0.25, 3.0, None)] == [
        "stable",
        "stable",
        "watch",
        "watch",
        "act",
        "act",
        "n/a",
    ]


def test_feature_psi_numeric_and_categorical():
    rng = np.random.default_rng(0)
    ref = pd.Series(rng.normal(0, 1, 4000))
    same = pd.Series(rng.normal(0, 1, 4000))
    shifted = pd.Series(rng.normal(1, 1, 4000))
    assert alignment.feature_psi(ref, same)[0] < alignment.PSI_WATCH
    value, kind = alignment.feature_psi(ref, shifted)
    assert kind == "numeric" and value > alignment.PSI_ACT
    # A category the reference never saw, and missing values, get bins of their own.
    cats = pd.Series(["a"] * 50 + ["b"] * 50)
    new = pd.Series(["a"] * 40 + ["b"] * 40 + ["c"] * 10 + [None] * 10)
    value, kind = alignment.feature_psi(cats, new)
    assert kind == "categorical" and math.isfinite(value) and value > alignment.PSI_ACT
    assert alignment.feature_psi(pd.Series([], dtype=float), same) is None
    text = pd.Series([f"title {i}" for i in range(100)])
    assert alignment.feature_psi(text, text) is None
    ids = pd.Series([f"C{i % 12}" for i in range(20)])  # 12 values in 20 rows: an identifier
    assert alignment.feature_psi(ids, ids) is None


def _scored(store, n: int, *, at: datetime, shift: float, version: str, prefix: str, seed: int):
    rng = np.random.default_rng(seed)
    rows = [
        _prediction(
            f"{prefix}{i}",
            "awareness",
            "practitioner",
            route="nurture",
            at=at,
            version=version,
            features={
                "visits_30d": float(rng.normal(shift, 1)),
                "company_size": int(rng.integers(1, 100)),
                "lead_source": "webinar" if i % 2 else "ads",
            },
        )
        for i in range(n)
    ]
    store.record_predictions(rows)


def test_drift_report_ranks_the_feature_that_moved(store):
    registered = NOW - timedelta(days=30)
    _scored(store, 400, at=registered + timedelta(days=1), shift=0, version="2", prefix="R", seed=1)
    _scored(store, 400, at=NOW - timedelta(days=2), shift=1.5, version="2", prefix="N", seed=2)
    report = alignment.drift_report(store, champion_version="2", registered_at=registered, now=NOW)
    assert (report.reference_n, report.recent_n) == (400, 400)
    assert "after its registration" in report.reference
    assert report.features[0].feature == "visits_30d"
    assert report.features[0].level == "act"
    levels = {f.feature: f.level for f in report.features}
    assert levels["company_size"] == "stable" and levels["lead_source"] == "stable"
    assert report.count("act") == 1


def test_drift_report_without_registration_uses_the_first_predictions(store):
    _scored(store, 60, at=NOW - timedelta(days=40), shift=0, version="1", prefix="R", seed=1)
    _scored(store, 60, at=NOW - timedelta(days=1), shift=0, version="1", prefix="N", seed=2)
    report = alignment.drift_report(store, champion_version=None, now=NOW)
    assert report.reference.startswith("the first 7 days of predictions")
    assert report.reference_start == NOW - timedelta(days=40)
    assert report.reference_n == 60 and len(report.features) == 3
    few = alignment.drift_report(store, champion_version=None, min_leads=100, now=NOW)
    assert few.features == [] and "Too few leads" in few.note


def test_drift_report_says_why_when_there_is_nothing_recent(store):
    _scored(store, 20, at=NOW - timedelta(days=40), shift=0, version="1", prefix="R", seed=1)
    report = alignment.drift_report(store, now=NOW)
    assert report.features == [] and "in the last 7 days" in report.note


def test_alignment_gauges(reviewed):
    gauges = alignment.alignment_gauges(reviewed, now=NOW)
    assert gauges["override_rate"] == pytest.approx(3 / 5)
    assert gauges["agreement_rate:stage"] == pytest.approx(2 / 3)
    assert gauges["agreement_rate:persona"] == 0.0
    assert gauges["reviews"] == 5.0
    assert not any(k.startswith("feature_psi:") for k in gauges)  # no feature snapshots stored


def test_alignment_gauges_export_top_psi(store):
    registered = NOW - timedelta(days=30)
    _scored(store, 200, at=registered + timedelta(days=1), shift=0, version="2", prefix="R", seed=1)
    _scored(store, 200, at=NOW - timedelta(days=2), shift=1.5, version="2", prefix="N", seed=2)
    gauges = alignment.alignment_gauges(
        store, champion_version="2", registered_at=registered, top=2, now=NOW
    )
    psi = {k: v for k, v in gauges.items() if k.startswith("feature_psi:")}
    assert len(psi) == 2
    assert max(psi, key=psi.get) == "feature_psi:visits_30d"
    assert "override_rate" not in gauges  # no reviews: left out, not zero
