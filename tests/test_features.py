"""Feature building: batch and single-lead paths agree, windows, decay, recency, leakage."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data.schema import CONTENT_TYPES, EVENT_COLUMNS, EVENT_TYPES, PAGE_CATEGORIES
from model.features import (
    CONTENT_KINDS,
    PROFILE_FEATURES,
    EventCodes,
    FeatureConfig,
    build_features,
    build_features_one,
    feature_names,
)

AS_OF = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)


def ago(days: float = 0.0, seconds: float = 0.0) -> datetime:
    return AS_OF - timedelta(days=days, seconds=seconds)


def event(lead: str, when: datetime, kind: str = "page_view", **props: object) -> dict[str, object]:
    return {"lead_id": lead, "timestamp": when, "type": kind, **props}


def events_frame(records: list[dict[str, object]]) -> pd.DataFrame:
    """Events table as the reader gives it: EVENT_COLUMNS, UTC datetime64 timestamps."""
    frame = pd.DataFrame(records, columns=list(EVENT_COLUMNS))
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


def leads_frame(profiles: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(profiles)
    if "created_at" in frame.columns:
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True, format="ISO8601")
    return frame


def is_missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def nan_as_none(row: dict[str, object]) -> dict[str, object]:
    """A row whose NaNs compare equal (NaN != NaN)."""
    return {k: None if is_missing(v) else v for k, v in row.items()}


def assert_same_row(batch_row: pd.Series, single: dict[str, object]) -> None:
    """Same names in the same order, same values (NaN-aware, floats to 1e-12)."""
    assert list(single) == list(batch_row.index)
    for name, one in single.items():
        many = batch_row[name]
        if is_missing(one) or is_missing(many):
            assert is_missing(one) and is_missing(many), (name, one, many)
        elif isinstance(one, float) or isinstance(many, float | np.floating):
            assert float(one) == pytest.approx(float(many), rel=1e-12, abs=1e-12), name
        else:
            assert one == many, (name, one, many)


PROFILES = [
    {
        "lead_id": "a",
        "job_title": "VP of Engineering",
        "company_size": 1200,
        "country": "DE",
        "created_at": "2026-01-01T00:00:00Z",
        "stage": "decision",
    },
    {
        "lead_id": "b",
        "job_title": None,
        "company_size": None,
        "country": None,
        "created_at": None,
        "stage": "awareness",
    },
    {
        "lead_id": "c",
        "job_title": "CFO",
        "company_size": 40,
        "country": "FR",
        "created_at": "2026-06-29T12:00:00+00:00",
        "stage": None,
    },
]

EVENTS = [
    event("a", ago(0.5), "page_view", page_category="pricing", channel="web"),
    event("a", ago(2), "demo_request", channel="web"),
    event("a", ago(3), "content_download", content_type="ebook", content_topic="crm"),
    event("a", ago(20), "webinar_attend", content_type="webinar", content_topic="ai"),
    event("a", ago(45), "email_open", channel="email"),
    event("a", ago(45, seconds=-30), "email_click", channel="email"),
    event("a", ago(100), "page_view", page_category="blog", content_type="blog_post"),
    event("b", ago(10), "page_view", page_category="careers", channel=None),
    event("b", ago(10), "page_view", page_category="nonsense", content_type=None),
    event("zz", ago(1), "trial_start"),  # not one of our leads
]


def single_events(lead: str, records: list[dict[str, object]]) -> list[dict[str, object]]:
    """The lead's events as the API passes them: ISO strings."""
    return [{**r, "timestamp": r["timestamp"].isoformat()} for r in records if r["lead_id"] == lead]


# --------------------------------------------------------------------------- batch vs single


def test_batch_and_single_agree_on_every_column() -> None:
    batch = build_features(
        leads_frame(PROFILES), events_frame(EVENTS), as_of=AS_OF, exclude=["stage"]
    )
    for profile in PROFILES:
        one = build_features_one(
            profile, single_events(profile["lead_id"], EVENTS), as_of=AS_OF, exclude=["stage"]
        )
        assert_same_row(batch.loc[profile["lead_id"]], one)


def test_batch_and_single_agree_without_events() -> None:
    batch = build_features(leads_frame(PROFILES), as_of=AS_OF.isoformat(), exclude=["stage"])
    assert not set(feature_names()) & set(batch.columns)
    for profile in PROFILES:
        one = build_features_one(profile, None, as_of=AS_OF, exclude=["stage"])
        assert_same_row(batch.loc[profile["lead_id"]], one)


def test_single_accepts_datetimes_timestamps_and_strings_alike() -> None:
    records = [r for r in EVENTS if r["lead_id"] == "a"]
    as_datetimes = build_features_one(PROFILES[0], records, as_of=AS_OF)
    as_strings = build_features_one(PROFILES[0], single_events("a", EVENTS), as_of=AS_OF)
    as_pandas = build_features_one(
        PROFILES[0],
        [{**r, "timestamp": pd.Timestamp(r["timestamp"])} for r in records],
        as_of=pd.Timestamp(AS_OF),
    )
    assert nan_as_none(as_datetimes) == nan_as_none(as_strings) == nan_as_none(as_pandas)


# --------------------------------------------------------------------------- layout


def test_index_order_and_columns() -> None:
    leads = leads_frame(PROFILES).rename(columns={"lead_id": "crm_id"})
    leads["last_contacted_at"] = pd.to_datetime(
        ["2026-06-20T12:00:00Z", None, "bad"], utc=True, errors="coerce"
    )
    frame = build_features(
        leads.iloc[::-1], events_frame(EVENTS), as_of=AS_OF, id_col="crm_id", exclude=["stage"]
    )
    assert frame.index.name == "lead_id"
    assert list(frame.index) == ["c", "b", "a"]
    own = ["job_title", "company_size", "country"]
    assert list(frame.columns) == [
        *own,
        "last_contacted_at_days_ago",
        *PROFILE_FEATURES,
        *feature_names(),
    ]
    assert frame.loc["a", "last_contacted_at_days_ago"] == 10.0
    assert math.isnan(frame.loc["b", "last_contacted_at_days_ago"])


def test_feature_names_pattern() -> None:
    names = feature_names()
    assert len(names) == len(set(names)) == 3 + 3 * len(EVENT_TYPES) + 3 * len(CONTENT_KINDS) + 14
    assert names[:4] == ["n_events_7d", "n_events_30d", "n_events_90d", "n_email_open_7d"]
    assert "n_pricing_30d" in names and "days_since_demo" in names
    custom = feature_names(FeatureConfig(windows=(1, 14.5), recency=("any", "careers")))
    assert custom[:2] == ["n_events_1d", "n_events_14.5d"]
    assert [n for n in custom if n.startswith("days_since_")] == [
        "days_since_any",
        "days_since_careers",
    ]


def test_column_order_and_values_do_not_depend_on_event_order() -> None:
    leads = leads_frame(PROFILES)
    shuffled = EVENTS[:]
    random.Random(7).shuffle(shuffled)
    first = build_features(leads, events_frame(EVENTS), as_of=AS_OF)
    second = build_features(leads, events_frame(shuffled), as_of=AS_OF)
    pd.testing.assert_frame_equal(first, second)


def test_content_kinds_use_the_schema_vocabulary() -> None:
    for pages, content in CONTENT_KINDS.values():
        assert set(pages) <= set(PAGE_CATEGORIES)
        assert set(content) <= set(CONTENT_TYPES)


def test_events_coded_once_give_every_chunk_the_same_features_as_the_table() -> None:
    # Bulk scoring codes the events table once (EventCodes) and builds each chunk's
    # features from the codes: identical to building them from the table.
    leads = leads_frame(PROFILES)
    events = events_frame(EVENTS)
    coded = EventCodes(events)
    for rows in ([0, 1, 2], [2], [1, 0], []):
        chunk = leads.iloc[rows].reset_index(drop=True)
        pd.testing.assert_frame_equal(
            build_features(chunk, coded, as_of=AS_OF), build_features(chunk, events, as_of=AS_OF)
        )
    # default as_of (the chunk's last event) too
    pd.testing.assert_frame_equal(build_features(leads, coded), build_features(leads, events))


def test_events_coded_once_match_numeric_lead_ids_as_text() -> None:
    leads = pd.DataFrame({"lead_id": [7, 8], "company_size": [10, 20]})
    events = events_frame(
        [event("7", ago(1)), event("8", ago(2), "demo_request"), event("9", ago(1))]
    )
    pd.testing.assert_frame_equal(
        build_features(leads, EventCodes(events), as_of=AS_OF),
        build_features(leads, events, as_of=AS_OF),
    )


def test_events_coded_once_raise_the_tables_errors() -> None:
    with pytest.raises(ValueError, match="unknown event type"):
        EventCodes(events_frame([event("a", ago(1), "teleport")]))
    with pytest.raises(ValueError, match="lack the column"):
        EventCodes(pd.DataFrame({"lead_id": ["a"], "type": ["page_view"]}))


# --------------------------------------------------------------------------- leakage


def test_events_after_as_of_never_count() -> None:
    leads = leads_frame(PROFILES)
    future = [
        event(lead, AS_OF + timedelta(seconds=s), kind, page_category="pricing", channel="x")
        for lead in ("a", "b", "c")
        for s, kind in zip((1, 3600, 86_400 * 30), EVENT_TYPES, strict=False)
    ]
    before = build_features(leads, events_frame(EVENTS), as_of=AS_OF)
    after = build_features(leads, events_frame(EVENTS + future), as_of=AS_OF)
    pd.testing.assert_frame_equal(before, after)
    one = build_features_one(PROFILES[2], single_events("c", future), as_of=AS_OF)
    assert one["n_events_total"] == 0 and math.isnan(one["days_since_any"])


def test_event_exactly_at_as_of_counts() -> None:
    one = build_features_one({}, [event("a", AS_OF)], as_of=AS_OF)
    assert one["n_events_7d"] == 1 and one["days_since_any"] == 0.0


def test_events_of_other_leads_are_ignored() -> None:
    leads = leads_frame(PROFILES)
    with_stranger = build_features(leads, events_frame(EVENTS), as_of=AS_OF)
    without = build_features(
        leads, events_frame([r for r in EVENTS if r["lead_id"] != "zz"]), as_of=AS_OF
    )
    pd.testing.assert_frame_equal(with_stranger, without)


# --------------------------------------------------------------------------- counts


def test_window_counts_on_a_hand_made_example() -> None:
    records = [
        event("a", ago(0), "page_view", page_category="pricing"),
        event("a", ago(6.9), "email_open"),
        event("a", ago(7), "email_open"),  # exactly 7 days old: outside the 7-day window
        event("a", ago(29), "page_view", page_category="docs", content_type="docs"),
        event("a", ago(89.99), "content_download", page_category="blog", content_type="case_study"),
        event("a", ago(95), "email_open"),
    ]
    one = build_features_one({"lead_id": "a"}, records, as_of=AS_OF)
    assert (one["n_events_7d"], one["n_events_30d"], one["n_events_90d"]) == (2, 4, 5)
    assert one["n_events_total"] == 6
    assert (one["n_email_open_7d"], one["n_email_open_30d"], one["n_email_open_90d"]) == (1, 2, 2)
    assert (one["n_page_view_7d"], one["n_page_view_30d"]) == (1, 2)
    assert one["n_content_download_90d"] == 1
    assert (one["n_pricing_7d"], one["n_pricing_90d"]) == (1, 1)
    # docs page + docs content: one technical event, not two.
    assert (one["n_technical_7d"], one["n_technical_30d"]) == (0, 1)
    # blog page + case study content: one learning and one evaluation event.
    assert (one["n_learning_30d"], one["n_learning_90d"]) == (0, 1)
    assert one["n_evaluation_90d"] == 1
    assert one["n_careers_90d"] == one["n_business_case_90d"] == 0


def test_breadth_counts_distinct_values() -> None:
    records = [
        event("a", ago(1), "page_view", page_category="pricing", content_topic="ai", channel="web"),
        event("a", ago(2), "page_view", page_category="pricing", content_topic="ai", channel="web"),
        event(
            "a", ago(3), "email_open", content_type="ebook", content_topic="crm", channel="email"
        ),
        event("a", ago(4), "email_open", content_topic="", channel="  "),
    ]
    one = build_features_one({}, records, as_of=AS_OF)
    assert one["n_distinct_types"] == 2
    assert one["n_distinct_kinds"] == 2  # pricing, learning
    assert one["n_distinct_topics"] == 2  # blank topics do not count
    assert one["n_distinct_channels"] == 2


def test_max_events_per_minute_spots_bursts() -> None:
    base = ago(3)
    burst = [event("a", base + timedelta(seconds=s), "email_click") for s in (0, 5, 30, 60, 61)]
    spread = [event("a", ago(d)) for d in (10, 20)]
    one = build_features_one({}, burst + spread, as_of=AS_OF)
    assert one["max_events_per_minute"] == 4  # 0, 5, 30 and 60 s: the span is inclusive
    calm = build_features_one({}, spread, as_of=AS_OF)
    assert calm["max_events_per_minute"] == 1
    batch = build_features(
        leads_frame([{"lead_id": "a"}, {"lead_id": "b"}]),
        events_frame(burst + [event("b", base + timedelta(seconds=s)) for s in (0, 1, 2)]),
        as_of=AS_OF,
    )
    assert batch["max_events_per_minute"].tolist() == [4, 3]


# --------------------------------------------------------------------------- decay, recency, velocity


@pytest.mark.parametrize("half_life", [14.0, 3.5])
def test_decay_halves_at_the_half_life(half_life: float) -> None:
    config = FeatureConfig(half_life_days=half_life)

    def decayed(*ages: float) -> float:
        records = [event("a", ago(d)) for d in ages]
        return build_features_one({}, records, as_of=AS_OF, config=config)["decayed_engagement"]

    assert decayed(0) == pytest.approx(1.0)
    assert decayed(half_life) == pytest.approx(0.5)
    assert decayed(2 * half_life) == pytest.approx(0.25)
    assert decayed(0, half_life) == pytest.approx(1.5)


def test_decayed_late_stage_counts_late_signals_only() -> None:
    records = [
        event("a", ago(0), "demo_request"),
        event("a", ago(14), "page_view", page_category="pricing"),
        event("a", ago(0), "email_open"),
        event("a", ago(0), "page_view", page_category="blog"),
    ]
    one = build_features_one({}, records, as_of=AS_OF)
    assert one["decayed_late_stage"] == pytest.approx(1.5)
    assert one["decayed_engagement"] == pytest.approx(3.5)


def test_days_since_each_key_signal() -> None:
    records = [
        event("a", ago(1.5), "page_view", page_category="pricing"),
        event("a", ago(4), "page_view", page_category="pricing"),
        event("a", ago(9), "demo_request"),
        event("a", ago(30), "webinar_register"),
        event("a", ago(0.25), "email_open"),
    ]
    one = build_features_one({}, records, as_of=AS_OF)
    assert one["days_since_pricing"] == pytest.approx(1.5)
    assert one["days_since_demo"] == pytest.approx(9)
    assert one["days_since_webinar"] == pytest.approx(30)
    assert math.isnan(one["days_since_trial"])
    assert one["days_since_any"] == pytest.approx(0.25)


@pytest.mark.parametrize(
    ("recent", "prior", "expected"),
    [(0, 0, 1.0), (3, 0, 4.0), (0, 4, 1 / 3), (2, 4, 1.0), (5, 10, 1.0)],
)
def test_velocity_is_defined_when_either_span_is_empty(
    recent: int, prior: int, expected: float
) -> None:
    records = [event("a", ago(5)) for _ in range(recent)]
    records += [event("a", ago(50)) for _ in range(prior)]
    records += [event("a", ago(120))]  # older than both spans: ignored
    one = build_features_one({}, records, as_of=AS_OF)
    assert one["engagement_velocity"] == pytest.approx(expected)


# --------------------------------------------------------------------------- edge cases


def test_lead_without_events_gets_zero_counts_and_nan_recency() -> None:
    batch = build_features(leads_frame(PROFILES), events_frame(EVENTS), as_of=AS_OF)
    row = batch.loc["c"]
    counts = [n for n in feature_names() if n.startswith(("n_", "max_"))]
    assert (row[counts] == 0).all()
    assert row[[n for n in feature_names() if n.startswith("days_since_")]].isna().all()
    assert row["decayed_engagement"] == 0.0 and row["engagement_velocity"] == 1.0
    one = build_features_one(PROFILES[2], [], as_of=AS_OF)
    assert_same_row(row.drop("stage"), {k: v for k, v in one.items() if k != "stage"})


def test_empty_events_table_and_missing_property_columns() -> None:
    leads = leads_frame(PROFILES)
    empty = build_features(leads, events_frame([]), as_of=AS_OF)
    assert (empty["n_events_total"] == 0).all()
    bare = events_frame(EVENTS)[["lead_id", "timestamp", "type"]]
    frame = build_features(leads, bare, as_of=AS_OF)
    assert frame.loc["a", "n_events_total"] == 7
    assert frame.loc["a", "n_pricing_90d"] == 0 and frame.loc["a", "n_distinct_channels"] == 0


def test_unknown_and_null_properties_are_no_kind() -> None:
    records = [
        event("a", ago(1), "page_view", page_category="Pricing", content_type="podcast"),
        event("a", ago(1), "page_view", page_category=None, content_type=float("nan")),
        event("a", ago(1), "page_view", content_topic=None, channel=pd.NA),
        event("a", None, "page_view"),  # no time: cannot be placed in any window
    ]
    one = build_features_one({}, records, as_of=AS_OF)
    assert one["n_events_total"] == 3
    assert one["n_distinct_kinds"] == one["n_distinct_topics"] == one["n_distinct_channels"] == 0
    assert math.isnan(one["days_since_pricing"])
    batch = build_features(leads_frame([{"lead_id": "a"}]), events_frame(records), as_of=AS_OF)
    assert_same_row(batch.loc["a"], one)


def test_unknown_event_type_is_an_error() -> None:
    bad = [event("a", ago(1), "tweet")]
    with pytest.raises(ValueError, match="unknown event type.*'tweet'"):
        build_features_one({}, bad, as_of=AS_OF)
    with pytest.raises(ValueError, match="unknown event type.*'tweet'"):
        build_features(leads_frame(PROFILES), events_frame(bad), as_of=AS_OF)


def test_bad_inputs_are_errors() -> None:
    leads = leads_frame(PROFILES)
    with pytest.raises(ValueError, match="id column 'crm_id'"):
        build_features(leads, id_col="crm_id")
    with pytest.raises(ValueError, match="duplicate ids"):
        build_features(pd.concat([leads, leads]))
    with pytest.raises(ValueError, match="lack the column"):
        build_features(leads, events_frame(EVENTS).drop(columns="type"))
    with pytest.raises(ValueError, match="clash"):
        build_features(leads.assign(n_events_7d=1), events_frame(EVENTS), as_of=AS_OF)
    with pytest.raises(ValueError, match="clash"):
        build_features_one({"title_function": "x"}, [], as_of=AS_OF)
    with pytest.raises(ValueError, match="ISO 8601"):
        build_features_one({}, [event("a", "yesterday")], as_of=AS_OF)
    with pytest.raises(ValueError, match="as_of"):
        build_features_one({}, [], as_of=float("nan"))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"windows": ()},
        {"windows": (30, 7)},
        {"windows": (0, 7)},
        {"half_life_days": 0},
        {"recency": ("bogus",)},
        {"recency": ("any", "any")},
        {"late_stage_types": ("tweet",)},
        {"late_stage_kinds": ("podcasts",)},
    ],
)
def test_config_rejects_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        FeatureConfig(**kwargs)


# --------------------------------------------------------------------------- profile features


def test_profile_features() -> None:
    profile = {
        "lead_id": "a",
        "job_title": "Student",
        "company_size": "250",
        "created_at": "2026-06-20T12:00:00Z",
        "renewal_date": "2026-07-10",
        "lead_score": 17,
        "extra": {"crm_owner": "kim", "lead_score": 99},
    }
    one = build_features_one(profile, None, as_of=AS_OF)
    assert one["lead_age_days"] == 10.0
    assert one["renewal_date_days_ago"] == pytest.approx(-9.5)
    assert one["log_company_size"] == pytest.approx(math.log1p(250))
    assert (one["title_seniority"], one["title_function"]) == ("student", "education")
    assert one["lead_score"] == 17 and one["crm_owner"] == "kim"
    assert "created_at" not in one and "renewal_date" not in one and "lead_id" not in one


@pytest.mark.parametrize("size", [-5, "lots", True, None, float("nan")])
def test_unusable_company_sizes_are_nan(size: object) -> None:
    one = build_features_one({"company_size": size}, None, as_of=AS_OF)
    assert math.isnan(one["log_company_size"])
    batch = build_features(pd.DataFrame({"lead_id": ["a"], "company_size": [size]}), as_of=AS_OF)
    assert math.isnan(batch.loc["a", "log_company_size"])


def test_default_as_of() -> None:
    records = [event("a", ago(3)), event("b", ago(1))]
    batch = build_features(leads_frame([{"lead_id": "a"}, {"lead_id": "b"}]), events_frame(records))
    # the batch's latest event is the reference: lead a's event is 2 days old
    assert batch.loc["a", "days_since_any"] == pytest.approx(2.0)
    one = build_features_one({}, [records[0]])
    assert one["days_since_any"] == 0.0  # one lead: its own latest event
    created = datetime.now(UTC) - timedelta(days=3)
    fresh = build_features_one({"created_at": created}, [])
    assert fresh["lead_age_days"] == pytest.approx(3.0, abs=1e-3)  # no events: now


# --------------------------------------------------------------------------- property test

_BASES = [ago(d) for d in (0, 0.5, 6.99, 7, 29.9, 31, 89, 90, 95)]
_TIMES = st.one_of(
    st.datetimes(
        min_value=datetime(2025, 12, 1),
        max_value=datetime(2026, 7, 31),
        timezones=st.just(UTC),
    ),
    st.builds(
        lambda base, s: base + timedelta(seconds=s), st.sampled_from(_BASES), st.integers(-90, 90)
    ),
)
_PROPERTY = st.one_of(st.none(), st.just(""), st.text(max_size=4))
_EVENT = st.fixed_dictionaries(
    {
        "lead_id": st.sampled_from(["a", "b", "c", "stranger"]),
        "timestamp": _TIMES,
        "type": st.sampled_from(EVENT_TYPES),
        "page_category": st.one_of(_PROPERTY, st.sampled_from(PAGE_CATEGORIES)),
        "content_type": st.one_of(_PROPERTY, st.sampled_from(CONTENT_TYPES)),
        "content_topic": st.one_of(_PROPERTY, st.sampled_from(["ai", "crm", "security"])),
        "channel": st.one_of(_PROPERTY, st.sampled_from(["email", "web"])),
    }
)


@pytest.mark.slow
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=st.lists(_EVENT, max_size=25),
    as_strings=st.booleans(),
    half_life=st.floats(min_value=0.5, max_value=60),
)
def test_arbitrary_events_never_crash_and_both_paths_agree(
    records: list[dict[str, object]], as_strings: bool, half_life: float
) -> None:
    config = FeatureConfig(half_life_days=half_life)
    batch = build_features(
        leads_frame(PROFILES), events_frame(records), as_of=AS_OF, config=config, exclude=["stage"]
    )
    assert list(batch.index) == ["a", "b", "c"]
    for profile in PROFILES:
        mine = [r for r in records if r["lead_id"] == profile["lead_id"]]
        if as_strings:
            mine = [{**r, "timestamp": r["timestamp"].isoformat()} for r in mine]
        one = build_features_one(profile, mine, as_of=AS_OF, config=config, exclude=["stage"])
        assert_same_row(batch.loc[profile["lead_id"]], one)
        counted = sum(
            1 for r in records if r["lead_id"] == profile["lead_id"] and r["timestamp"] <= AS_OF
        )
        assert one["n_events_total"] == counted


# --------------------------------------------------------------------------- command line


def test_features_command_writes_one_row_per_lead(tmp_path: Path) -> None:
    from leadready.cli import main

    leads_path, events_path = tmp_path / "leads.csv", tmp_path / "events.csv"
    pd.DataFrame(PROFILES).to_csv(leads_path, index=False)
    events = pd.DataFrame(EVENTS)
    events["timestamp"] = [t.isoformat() for t in events["timestamp"]]
    events.to_csv(events_path, index=False)
    out = tmp_path / "out" / "features.parquet"
    result = CliRunner().invoke(
        main,
        [
            "features",
            "--leads", str(leads_path),
            "--events", str(events_path),
            "--out", str(out),
            "--as-of", AS_OF.isoformat(),
            "--exclude", "stage",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "3 leads" in result.output
    written = pd.read_parquet(out).set_index("lead_id")
    expected = build_features(
        leads_frame(PROFILES), events_frame(EVENTS), as_of=AS_OF, exclude=["stage"]
    )
    assert list(written.index) == ["a", "b", "c"]
    assert list(written.columns) == list(expected.columns)
    pd.testing.assert_series_equal(
        written["n_events_total"], expected["n_events_total"], check_dtype=False
    )
    assert written.loc["a", "days_since_pricing"] == pytest.approx(0.5)


def test_features_command_rejects_a_bad_as_of(tmp_path: Path) -> None:
    from leadready.cli import main

    leads_path = tmp_path / "leads.csv"
    pd.DataFrame(PROFILES).to_csv(leads_path, index=False)
    result = CliRunner().invoke(
        main,
        [
            "features",
            "--leads",
            str(leads_path),
            "--out",
            str(tmp_path / "f.csv"),
            "--as-of",
            "soon",
        ],
    )
    assert result.exit_code == 2
    assert "--as-of" in result.output and "soon" in result.output


# --------------------------------------------------------------------------- end to end


def test_simulated_data_batch_matches_single_leads() -> None:
    from data.simulate import SimulationConfig, simulate

    sim = simulate(SimulationConfig(n_leads=300, seed=3))
    as_of = sim.config.end
    batch = build_features(sim.leads, sim.events, as_of=as_of, exclude=["stage", "persona"])
    assert len(batch) == 300 and batch.index.is_unique
    assert batch["n_events_total"].sum() == (sim.events["timestamp"] <= as_of).sum()
    by_lead = {k: g for k, g in sim.events.groupby("lead_id", sort=False)}
    empty = sim.events.iloc[:0]
    for i in np.linspace(0, 299, 12).astype(int):
        lead = sim.leads.iloc[i]
        profile = {k: (None if is_missing(v) else v) for k, v in lead.items()}
        records = by_lead.get(lead["lead_id"], empty).to_dict("records")
        one = build_features_one(profile, records, as_of=as_of, exclude=["stage", "persona"])
        assert_same_row(batch.loc[lead["lead_id"]], one)


@pytest.mark.parametrize("events_kind", ["empty", "other leads", "none"])
def test_zero_leads_give_an_empty_frame_with_the_columns(events_kind):
    """Spark's per-bucket scoring can hand over a bucket without leads."""
    from tests.support.leads import make_lead_tables

    leads, events = make_lead_tables(30)
    leads = leads.drop(columns=["stage", "persona"])
    given_events = {"empty": events.head(0), "other leads": events, "none": None}[events_kind]
    with_rows = build_features(leads, None if given_events is None else events, as_of=AS_OF)
    empty = build_features(leads.head(0), given_events, as_of=AS_OF)
    assert len(empty) == 0
    assert list(empty.columns) == list(with_rows.columns)
    assert empty.dtypes.to_dict() == with_rows.dtypes.to_dict()
    if given_events is not None:
        # no as_of and no events at all: still an empty frame, not an error
        assert len(build_features(leads.head(0), events.head(0))) == 0
