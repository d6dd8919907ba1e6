"""Feature building: one code path for training (a table of leads) and serving (one lead)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from data.schema import EVENT_TYPES
from data.values import is_missing
from model.titles import TITLE_FEATURES, parse_title, parse_titles

__all__ = [
    "CONTENT_KINDS",
    "PROFILE_FEATURES",
    "RECENCY_SIGNALS",
    "EventCodes",
    "FeatureConfig",
    "build_features",
    "build_features_one",
    "feature_names",
]

#: Content kinds: groups of ``page_category`` and ``content_type`` values that say
#: the same thing about a buyer. name -> (page categories, content types).
CONTENT_KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "pricing": (("pricing",), ()),
    "technical": (("docs", "integrations"), ("docs",)),
    "careers": (("careers",), ()),
    "evaluation": (("case_study", "comparison"), ("case_study", "comparison_guide")),
    "business_case": (("roi",), ("roi_calculator", "analyst_report")),
    "learning": (("blog",), ("blog_post", "ebook", "whitepaper")),
    "product": (("product",), ("datasheet",)),
}

#: Named signals for recency features: name -> (event types, content kinds).
#: ``"any"`` (every event), any event type and any content kind are valid too.
RECENCY_SIGNALS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "pricing": ((), ("pricing",)),
    "demo": (("demo_request",), ()),
    "webinar": (("webinar_register", "webinar_attend"), ()),
    "trial": (("trial_start",), ()),
    "meeting": (("meeting_booked",), ()),
    "form": (("form_submit",), ()),
}

#: Profile features every row carries, after the lead's own columns.
PROFILE_FEATURES: tuple[str, ...] = ("lead_age_days", "log_company_size", *TITLE_FEATURES)

_KINDS: tuple[str, ...] = tuple(CONTENT_KINDS)
_TYPE_INDEX: dict[str, int] = {t: i for i, t in enumerate(EVENT_TYPES)}
_KIND_INDEX: dict[str, int] = {k: i for i, k in enumerate(_KINDS)}
_PAGE_KIND: dict[str, int] = {
    page: _KIND_INDEX[kind] for kind, (pages, _) in CONTENT_KINDS.items() for page in pages
}
_CONTENT_KIND: dict[str, int] = {
    ctype: _KIND_INDEX[kind] for kind, (_, ctypes) in CONTENT_KINDS.items() for ctype in ctypes
}
_NAT = np.iinfo(np.int64).min
_DAY_NS = 86_400 * 10**9
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: What int64 nanoseconds hold (pandas' timestamp range).
_MIN_NS, _MAX_NS = int(pd.Timestamp.min.value), int(pd.Timestamp.max.value)
_ONE_US = timedelta(microseconds=1)
_DATE_SUFFIXES = ("_at", "_date")


@dataclass(frozen=True)
class FeatureConfig:
    """How engagement features are computed."""

    windows: tuple[float, ...] = (7, 30, 90)
    half_life_days: float = 14.0
    recency: tuple[str, ...] = ("pricing", "demo", "webinar", "trial", "any")
    late_stage_types: tuple[str, ...] = (
        "form_submit",
        "demo_request",
        "trial_start",
        "meeting_booked",
    )
    late_stage_kinds: tuple[str, ...] = ("pricing", "evaluation", "business_case")
    velocity_days: float = 30.0
    velocity_prior_days: float = 60.0
    burst_seconds: float = 60.0

    def __post_init__(self) -> None:
        for name in ("recency", "late_stage_types", "late_stage_kinds"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        windows = tuple(self.windows)
        if not windows or any(not (w > 0) for w in windows):
            raise ValueError(f"windows must be positive day counts, got {self.windows!r}")
        if any(b <= a for a, b in zip(windows, windows[1:], strict=False)):
            raise ValueError(f"windows must be strictly increasing, got {self.windows!r}")
        object.__setattr__(self, "windows", windows)
        for name in ("half_life_days", "velocity_days", "velocity_prior_days", "burst_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        for signal in self.recency:
            _signal_members(signal)
        unknown_types = sorted(set(self.late_stage_types) - set(EVENT_TYPES))
        if unknown_types:
            raise ValueError(f"late_stage_types: unknown event types {unknown_types}")
        unknown_kinds = sorted(set(self.late_stage_kinds) - set(_KINDS))
        if unknown_kinds:
            raise ValueError(f"late_stage_kinds: unknown content kinds {unknown_kinds}")
        if len(set(self.recency)) != len(self.recency):
            raise ValueError(f"recency lists a signal twice: {self.recency!r}")


def _signal_members(signal: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Event types and content kinds a recency signal stands for."""
    if signal == "any":
        return EVENT_TYPES, ()
    if signal in RECENCY_SIGNALS:
        return RECENCY_SIGNALS[signal]
    if signal in _TYPE_INDEX:
        return (signal,), ()
    if signal in _KIND_INDEX:
        return (), (signal,)
    raise ValueError(
        f"recency: unknown signal {signal!r}; use 'any', one of {sorted(RECENCY_SIGNALS)}, "
        f"an event type or a content kind {list(_KINDS)}"
    )


#: Rows of the event matrix :func:`_engagement` takes, shape (7, n_events), int64.
_LEAD, _TIME, _TYPE, _PAGE, _CONTENT, _TOPIC, _CHANNEL = range(7)


@dataclass(frozen=True)
class _Plan:
    """Everything :func:`_engagement` derives from a config, computed once per config."""

    windows: np.ndarray  # (n_windows,) float64 days
    velocity_edges: np.ndarray  # (2,) float64 days
    late_type: np.ndarray  # (n_types,) bool
    late_kind: np.ndarray  # (n_kinds + 1,) bool; slot 0 is "no kind"
    signal_type: np.ndarray  # (n_signals, n_types) bool
    signal_kind: np.ndarray  # (n_signals, n_kinds + 1) bool
    int_names: tuple[str, ...]
    float_names: tuple[str, ...]


def _kind_mask(kinds: Iterable[str]) -> np.ndarray:
    return np.isin(np.arange(len(_KINDS) + 1), [_KIND_INDEX[kind] + 1 for kind in kinds])


def _type_mask(types: Iterable[str]) -> np.ndarray:
    return np.isin(np.arange(len(EVENT_TYPES)), [_TYPE_INDEX[t] for t in types])


@lru_cache(maxsize=32)
def _plan(config: FeatureConfig) -> _Plan:
    window_names = [f"{w:g}d" for w in config.windows]
    int_names = [f"n_events_{w}" for w in window_names]
    int_names += [f"n_{t}_{w}" for t in EVENT_TYPES for w in window_names]
    int_names += [f"n_{k}_{w}" for k in _KINDS for w in window_names]
    int_names += [
        "n_events_total",
        "n_distinct_types",
        "n_distinct_kinds",
        "n_distinct_topics",
        "n_distinct_channels",
        "max_events_per_minute",
    ]
    float_names = ["decayed_engagement", "decayed_late_stage"]
    float_names += [f"days_since_{signal}" for signal in config.recency]
    float_names += ["engagement_velocity"]
    members = [_signal_members(signal) for signal in config.recency]
    return _Plan(
        windows=np.asarray(config.windows, dtype=np.float64),
        velocity_edges=np.array(
            [config.velocity_days, config.velocity_days + config.velocity_prior_days]
        ),
        late_type=_type_mask(config.late_stage_types),
        late_kind=_kind_mask(config.late_stage_kinds),
        signal_type=np.array([_type_mask(t) for t, _ in members], dtype=bool).reshape(
            len(members), len(EVENT_TYPES)
        ),
        signal_kind=np.array([_kind_mask(k) for _, k in members], dtype=bool).reshape(
            len(members), len(_KINDS) + 1
        ),
        int_names=tuple(int_names),
        float_names=tuple(float_names),
    )


def feature_names(config: FeatureConfig = FeatureConfig()) -> list[str]:  # noqa: B008
    """Names of the engagement features, in column order."""
    plan = _plan(config)
    return [*plan.int_names, *plan.float_names]


# --------------------------------------------------------------------------- core


def _distinct_counts(
    lead: np.ndarray, codes: np.ndarray, bounds: np.ndarray, n_leads: int
) -> np.ndarray:
    """Distinct codes per lead and code group, shape (n_leads, len(bounds) - 1)."""
    n_groups = len(bounds) - 1
    base = int(bounds[-1])
    pairs = lead * base + codes
    if n_leads * base <= max(4 * len(pairs), 1 << 16):
        # Few (lead, code) cells: mark the occupied ones and count them per group.
        seen = np.bincount(pairs, minlength=n_leads * base).reshape(n_leads, base) > 0
        running = np.zeros((n_leads, base + 1), dtype=np.int64)
        np.cumsum(seen, axis=1, out=running[:, 1:])
        return running[:, bounds[1:]] - running[:, bounds[:-1]]
    pairs = np.unique(pairs)
    group = np.searchsorted(bounds[1:], pairs % base, side="right")
    return np.bincount(pairs // base * n_groups + group, minlength=n_leads * n_groups).reshape(
        n_leads, n_groups
    )


def _busiest_span(lead: np.ndarray, t_ns: np.ndarray, n_leads: int, span_ns: int) -> np.ndarray:
    """Most events of one lead within ``span_ns`` of one of them, shape (n_leads,)."""
    busiest = (np.bincount(lead, minlength=n_leads) > 0).astype(np.int64)
    close = (lead[1:] == lead[:-1]) & (t_ns[1:] - t_ns[:-1] <= span_ns)
    if not close.any():
        return busiest
    chained = np.zeros(len(t_ns), dtype=bool)
    chained[1:] |= close
    chained[:-1] |= close
    lead, t_ns = lead[chained], t_ns[chained]
    n = len(t_ns)
    # Grouped search on a (lead, rank of time) key, ordered thanks to the sort.
    times = np.sort(t_ns)
    stride = n + 1
    start = lead * stride + np.searchsorted(times, t_ns, side="left")
    stop = lead * stride + np.searchsorted(times, t_ns + span_ns, side="right")
    in_span = np.searchsorted(start, stop, side="left") - np.arange(n)
    np.maximum.at(busiest, lead, in_span)
    return busiest


def _lead_time_order(lead: np.ndarray, t_ns: np.ndarray, n_leads: int) -> np.ndarray:
    """Indices that sort events by (lead, time), shape (n_events,)."""
    if len(t_ns) == 0:
        return np.zeros(0, dtype=np.intp)
    offset = t_ns - t_ns.min()
    if not (offset % 1000).any():
        offset //= 1000
    span = int(offset.max()) + 1
    if n_leads * span >= 1 << 62:
        offset = np.unique(t_ns, return_inverse=True)[1]
        span = len(t_ns)
    return np.argsort(lead * span + offset)


def _engagement(
    events: np.ndarray, *, n_leads: int, as_of_ns: int, config: FeatureConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Engagement features of ``n_leads`` leads from an event matrix: (counts, reals)."""
    plan = _plan(config)
    lead, t_ns = events[_LEAD], events[_TIME]
    keep = np.flatnonzero((lead >= 0) & (t_ns != _NAT) & (t_ns <= as_of_ns))
    # Sort by (lead, time): per-lead sums then add up in the same order in both paths.
    order = keep[_lead_time_order(lead[keep], t_ns[keep], n_leads)]
    kept = np.take(events, order, axis=1)
    age = (as_of_ns - kept[_TIME]) / _DAY_NS
    return _counts(kept, age, n_leads, plan, config), _reals(kept, age, n_leads, plan, config)


def _counts(
    events: np.ndarray, age: np.ndarray, n_leads: int, plan: _Plan, config: FeatureConfig
) -> np.ndarray:
    """Event counts per window, type and kind, breadth and the busiest minute of each lead
    (the events sorted by lead and time), shape (n_leads, len(plan.int_names))."""
    lead, t_ns, type_code, page_kind, content_kind, topic, channel = events
    n_types, n_kinds, n_windows = len(EVENT_TYPES), len(_KINDS), len(plan.windows)
    n_buckets = n_windows + 1
    # bucket j < n_windows: the smallest window that holds the event; n_windows: none.
    bucket = np.searchsorted(plan.windows, age, side="right")

    by_type = np.bincount(
        (lead * n_types + type_code) * n_buckets + bucket, minlength=n_leads * n_types * n_buckets
    ).reshape(n_leads, n_types, n_buckets)
    by_type = np.cumsum(by_type, axis=2)
    all_types = by_type.sum(axis=1)

    # An event counts once for each distinct kind of its page and its content.
    with_page = page_kind >= 0
    with_content = (content_kind >= 0) & (content_kind != page_kind)
    kind_lead = np.concatenate([lead[with_page], lead[with_content]])
    kind_code = np.concatenate([page_kind[with_page], content_kind[with_content]])
    kind_bucket = np.concatenate([bucket[with_page], bucket[with_content]])
    by_kind = np.bincount(
        (kind_lead * n_kinds + kind_code) * n_buckets + kind_bucket,
        minlength=n_leads * n_kinds * n_buckets,
    ).reshape(n_leads, n_kinds, n_buckets)
    by_kind = np.cumsum(by_kind, axis=2)

    # Breadth: types, kinds, topics and channels in one shared code space.
    n_topics = int(topic.max()) + 1 if len(topic) else 0
    n_channels = int(channel.max()) + 1 if len(channel) else 0
    bounds = np.cumsum([0, n_types, n_kinds, n_topics, n_channels])
    sources = np.stack([type_code, page_kind, content_kind, topic, channel])
    present = sources >= 0
    shifted = sources + bounds[[0, 1, 1, 2, 3], None]
    distinct = _distinct_counts(
        np.broadcast_to(lead, sources.shape)[present], shifted[present], bounds, n_leads
    )

    # Bot-likeness: most events of one lead within burst_seconds of one of them.
    busiest = _busiest_span(lead, t_ns, n_leads, int(config.burst_seconds * 1e9))

    return np.concatenate(
        [
            all_types[:, :n_windows],
            # explicit widths: a reshape to (0, -1) is ambiguous with no leads
            by_type[:, :, :n_windows].reshape(n_leads, n_types * n_windows),
            by_kind[:, :, :n_windows].reshape(n_leads, n_kinds * n_windows),
            all_types[:, -1:],
            distinct,
            busiest[:, None],
        ],
        axis=1,
    )


def _reals(
    events: np.ndarray, age: np.ndarray, n_leads: int, plan: _Plan, config: FeatureConfig
) -> np.ndarray:
    """Decayed engagement, recency per signal and velocity of each lead (the events sorted
    by lead and time), shape (n_leads, len(plan.float_names))."""
    lead, _, type_code, page_kind, content_kind, _, _ = events
    weight = np.exp2(-age / config.half_life_days)
    late = (
        plan.late_type[type_code] | plan.late_kind[page_kind + 1] | plan.late_kind[content_kind + 1]
    )
    decayed = np.bincount(lead, weights=weight, minlength=n_leads)
    decayed_late = np.bincount(lead[late], weights=weight[late], minlength=n_leads)

    # Recency: the youngest event of each (lead, signal).
    n_signals = len(plan.signal_type)
    hits = (
        plan.signal_type[:, type_code]
        | plan.signal_kind[:, page_kind + 1]
        | plan.signal_kind[:, content_kind + 1]
    )
    signal, event = np.nonzero(hits)
    youngest = np.full(n_leads * n_signals, np.inf)
    np.minimum.at(youngest, lead[event] * n_signals + signal, age[event])
    youngest[youngest == np.inf] = np.nan

    # Velocity: events of the recent span against the prior span scaled to the same
    # length, +1 smoothed: 1 = steady, above 1 = accelerating, below 1 = cooling.
    # It is defined when either count is 0.
    span = np.searchsorted(plan.velocity_edges, age, side="right")
    spans = np.bincount(lead * 3 + span, minlength=n_leads * 3).reshape(n_leads, 3)
    velocity = (spans[:, 0] + 1.0) / (
        spans[:, 1] * (config.velocity_days / config.velocity_prior_days) + 1.0
    )

    return np.concatenate(
        [
            decayed[:, None],
            decayed_late[:, None],
            youngest.reshape(n_leads, n_signals),
            velocity[:, None],
        ],
        axis=1,
    )


# --------------------------------------------------------------------------- scalars


def _datetime_ns(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    ns = (value - _EPOCH) // _ONE_US * 1000
    if not _MIN_NS <= ns <= _MAX_NS:
        raise ValueError(
            f"timestamp {value.isoformat()} is outside the supported range "
            f"{pd.Timestamp.min.date()} to {pd.Timestamp.max.date()}"
        )
    return ns


def _ns(value: object) -> int:
    """A timestamp as int ns since the epoch, UTC (naive = UTC); NaT sentinel if missing."""
    if isinstance(value, str):
        try:
            return _datetime_ns(datetime.fromisoformat(value.strip()))
        except ValueError:
            raise ValueError(f"cannot parse {value!r} as an ISO 8601 timestamp") from None
    if isinstance(value, pd.Timestamp):
        return _NAT if value is pd.NaT else int(value.value)
    if isinstance(value, datetime):
        return _datetime_ns(value)
    if isinstance(value, date):
        return _datetime_ns(datetime(value.year, value.month, value.day))
    if is_missing(value):
        return _NAT
    if isinstance(value, np.datetime64):
        return _ns(pd.Timestamp(value))
    raise ValueError(f"cannot use {value!r} ({type(value).__name__}) as a timestamp")


def _date_name(name: object) -> bool:
    return isinstance(name, str) and (name == "created_at" or name.endswith(_DATE_SUFFIXES))


def _days_column(name: str) -> str:
    return "lead_age_days" if name == "created_at" else f"{name}_days_ago"


def _days_before(t_ns: int, as_of_ns: int) -> float:
    if t_ns == _NAT:
        return math.nan
    return float(np.float64(as_of_ns - t_ns) / _DAY_NS)


def _date_value_ns(value: object) -> int:
    """A profile date value as ns; NaT sentinel for missing, unparseable or non-dates."""
    if isinstance(value, bool | int | float | np.number):
        return _NAT
    try:
        return _ns(value)
    except ValueError:
        return _NAT


def _size_log(value: object) -> float:
    """log(1 + company size); NaN for missing, negative or non-numeric sizes."""
    if isinstance(value, bool) or is_missing(value):
        return math.nan
    try:
        size = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
    if not size >= 0:
        return math.nan
    return float(np.log1p(np.float64(size)))


# --------------------------------------------------------------------------- one lead


def build_features_one(
    profile: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]] | None,
    *,
    as_of: object = None,
    config: FeatureConfig = FeatureConfig(),  # noqa: B008
    id_col: str = "lead_id",
    exclude: Iterable[str] = (),
) -> dict[str, object]:
    """Feature row of one lead: the same values :func:`build_features` gives its row."""
    excluded = set(exclude)
    excluded.add(id_col)
    matrix = _records_matrix(events) if events is not None else None
    as_of_ns = _resolve_as_of(as_of, matrix)

    fields: dict[str, object] = {}
    for key, value in profile.items():
        if key == "extra" and isinstance(value, Mapping):
            for extra_key, extra_value in value.items():
                if extra_key not in profile:
                    fields.setdefault(extra_key, extra_value)
        else:
            fields[key] = value

    row: dict[str, object] = {}
    dates: dict[str, float] = {}
    created_days = math.nan
    for key, value in fields.items():
        if key in excluded:
            continue
        is_date = _date_name(key) or isinstance(value, datetime | date | np.datetime64)
        if not is_date:
            row[key] = value
            continue
        days = _days_before(_date_value_ns(value), as_of_ns)
        if key == "created_at":
            created_days = days
        else:
            dates[_days_column(key)] = days

    seniority, function = parse_title(fields.get("job_title"))
    generated: dict[str, object] = {
        "lead_age_days": created_days,
        "log_company_size": _size_log(fields.get("company_size")),
        "title_seniority": seniority,
        "title_function": function,
    }
    if matrix is not None:
        plan = _plan(config)
        counts, reals = _engagement(matrix, n_leads=1, as_of_ns=as_of_ns, config=config)
        generated.update(zip(plan.int_names, counts[0].tolist(), strict=True))
        generated.update(zip(plan.float_names, reals[0].tolist(), strict=True))
    _check_clashes(row, [*dates, *generated])
    row.update(dates)
    row.update(generated)
    return row


def _code(value: object, seen: dict[object, int]) -> int:
    """Code of a topic or channel by first appearance; -1 when missing or blank."""
    if isinstance(value, str):
        return seen.setdefault(value, len(seen)) if value.strip() else -1
    return -1 if is_missing(value) else seen.setdefault(value, len(seen))


def _records_matrix(events: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The event matrix of :func:`_engagement` for one lead's records, shape (7, n_events)."""
    types = [_TYPE_INDEX.get(e.get("type"), -1) for e in events]  # type: ignore[arg-type]
    if -1 in types:
        raise ValueError(
            _bad_types_message(e.get("type") for e in events if e.get("type") not in _TYPE_INDEX)
        )
    topics: dict[object, int] = {}
    channels: dict[object, int] = {}
    rows = [
        [0] * len(types),
        [_ns(e.get("timestamp")) for e in events],
        types,
        [_PAGE_KIND.get(e.get("page_category"), -1) for e in events],  # type: ignore[arg-type]
        [_CONTENT_KIND.get(e.get("content_type"), -1) for e in events],  # type: ignore[arg-type]
        [_code(e.get("content_topic"), topics) for e in events],
        [_code(e.get("channel"), channels) for e in events],
    ]
    return np.array(rows, dtype=np.int64).reshape(7, len(types))


def _resolve_as_of(as_of: object, matrix: np.ndarray | None) -> int:
    """``as_of`` in ns; by default the latest event of our leads, else now."""
    if as_of is not None:
        value = _ns(as_of)
        if value == _NAT:
            raise ValueError(f"as_of must be a timestamp, got {as_of!r}")
        return value
    if matrix is not None:
        times = matrix[_TIME][(matrix[_LEAD] >= 0) & (matrix[_TIME] != _NAT)]
        if len(times):
            return int(times.max())
    return _ns(datetime.now(UTC))


def _bad_types_message(values: Iterable[object]) -> str:
    shown = sorted({repr(v) for v in values})[:5]
    return f"events: missing or unknown event type(s) {', '.join(shown)}; expected one of {list(EVENT_TYPES)}"


def _check_clashes(own: Iterable[str], generated: Iterable[str]) -> None:
    clashes = sorted(set(own) & set(generated))
    if clashes:
        raise ValueError(
            f"lead columns {clashes} clash with generated feature names; "
            "rename them or pass them in exclude"
        )


# --------------------------------------------------------------------------- batch


def _series_ns(values: pd.Series) -> np.ndarray:
    """A timestamp column as int64 ns since the epoch (naive = UTC); NaT -> sentinel."""
    if not pd.api.types.is_datetime64_any_dtype(values.dtype):
        values = pd.to_datetime(values, utc=True, format="ISO8601")
    return np.asarray(values.dt.as_unit("ns").array.asi8, dtype=np.int64)


def _date_column_ns(values: pd.Series) -> np.ndarray:
    """A profile date column as int64 ns; unparseable or non-temporal values -> sentinel."""
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return _series_ns(values)
    if pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
        return np.full(len(values), _NAT, dtype=np.int64)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    lookup = np.fromiter((_date_value_ns(v) for v in uniques), dtype=np.int64, count=len(uniques))
    return np.append(lookup, _NAT)[codes]


def _coded(values: pd.Series | None, n: int, lookup: Mapping[object, int] | None) -> np.ndarray:
    """Codes of a property column: via ``lookup`` (known values) or by first appearance."""
    if values is None:
        return np.full(n, -1, dtype=np.int64)
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if lookup is None:
        seen: dict[object, int] = {}
        mapped = np.fromiter((_code(v, seen) for v in uniques), dtype=np.int64, count=len(uniques))
    else:
        mapped = np.fromiter(
            (lookup.get(v, -1) for v in uniques), dtype=np.int64, count=len(uniques)
        )
    return np.append(mapped, -1)[codes]


def _lead_codes(ids: pd.Index, event_ids: pd.Series) -> np.ndarray:
    """Row of each event's lead in ``ids``; -1 for events of other leads."""
    if pd.api.types.is_numeric_dtype(ids.dtype) != pd.api.types.is_numeric_dtype(event_ids.dtype):
        ids = ids.astype(str)
        event_ids = event_ids.astype(str)
    codes, uniques = pd.factorize(event_ids, use_na_sentinel=True)
    rows = np.asarray(ids.get_indexer(uniques), dtype=np.int64)
    return np.append(rows, -1)[codes]


def _events_matrix(
    events: pd.DataFrame, ids: pd.Index, lead: np.ndarray | None = None
) -> np.ndarray:
    """The event matrix of :func:`_engagement` for an events table, shape (7, n_events);
    its first row is ``lead`` when given, else each event's row in ``ids``."""
    missing = [c for c in ("lead_id", "timestamp", "type") if c not in events.columns]
    if missing:
        raise ValueError(f"events lack the column(s) {missing}")
    n = len(events)
    type_code = _coded(events["type"], n, _TYPE_INDEX)
    bad = type_code < 0
    if bad.any():
        raise ValueError(_bad_types_message(events["type"][bad].unique()))
    return np.stack(
        [
            _lead_codes(ids, events["lead_id"]) if lead is None else lead,
            _series_ns(events["timestamp"]),
            type_code,
            _coded(events.get("page_category"), n, _PAGE_KIND),
            _coded(events.get("content_type"), n, _CONTENT_KIND),
            _coded(events.get("content_topic"), n, None),
            _coded(events.get("channel"), n, None),
        ]
    )


class EventCodes:
    """An events table coded once, for :func:`build_features` of many chunks of leads."""

    def __init__(self, events: pd.DataFrame) -> None:
        # Leads as codes into ``self.leads`` (-1 = missing) until ``for_ids`` maps
        # them to a chunk's rows (a missing column is reported by _events_matrix).
        codes, leads = (
            pd.factorize(events["lead_id"], use_na_sentinel=True)
            if "lead_id" in events.columns
            else (None, [])
        )
        self.matrix = _events_matrix(events, pd.Index([]), codes)
        self.leads = pd.Index(leads)
        #: by "ids as text or not": (leads, event order by lead, first, count of each lead)
        self._groups: dict[bool, tuple[pd.Index, np.ndarray, np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.matrix.shape[1]

    def _grouped(self, text: bool) -> tuple[pd.Index, np.ndarray, np.ndarray, np.ndarray]:
        """The events grouped by lead (as text when ``text``), made on first use."""
        if text not in self._groups:
            codes, leads = self.matrix[_LEAD], self.leads
            if text:  # as _lead_codes matches them: both as text
                remap, leads = pd.factorize(leads.astype(str))
                codes = np.append(np.asarray(remap, dtype=np.int64), -1)[codes]
            counts = np.bincount(codes[codes >= 0], minlength=len(leads))
            # any order within a lead: the features do not depend on it (a stable
            # sort costs 3.5x); -1 (no lead) sorts first and is left out
            order = np.argsort(codes)[np.count_nonzero(codes < 0) :]
            self._groups[text] = (pd.Index(leads), order, np.cumsum(counts) - counts, counts)
        return self._groups[text]

    def for_ids(self, ids: pd.Index) -> np.ndarray:
        """The event matrix of the events of ``ids`` (unique), lead codes = rows of ``ids``."""
        text = pd.api.types.is_numeric_dtype(ids.dtype) != pd.api.types.is_numeric_dtype(
            self.leads.dtype
        )
        leads, order, first, counts = self._grouped(text)
        lead = leads.get_indexer(ids.astype(str) if text else ids)
        rows = np.flatnonzero(lead >= 0)
        n = counts[lead[rows]]
        # each row's events: the range first[lead] .. first[lead] + n of ``order``
        starts = np.repeat(first[lead[rows]] - (np.cumsum(n) - n), n)
        matrix = self.matrix[:, order[np.arange(int(n.sum())) + starts]]
        matrix[_LEAD] = np.repeat(rows, n)
        return matrix


def _company_size_log(values: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(values.dtype):
        return np.full(len(values), np.nan)
    if pd.api.types.is_numeric_dtype(values.dtype):
        sizes = pd.to_numeric(values).to_numpy(dtype=np.float64, na_value=np.nan)
        return np.log1p(np.where(sizes >= 0, sizes, np.nan))
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    lookup = np.fromiter((_size_log(v) for v in uniques), dtype=np.float64, count=len(uniques))
    return np.append(lookup, np.nan)[codes]


def _profile_columns(
    leads: pd.DataFrame, excluded: set[str], as_of_ns: int
) -> tuple[list[str], dict[str, np.ndarray], np.ndarray]:
    """(the lead columns kept as they are, each other date column as days before ``as_of``,
    the lead's age in days from ``created_at``)."""
    own_cols: list[str] = []
    date_days: dict[str, np.ndarray] = {}
    created_days = np.full(len(leads), np.nan)
    for col in leads.columns:
        if col in excluded:
            continue
        values = leads[col]
        if not (pd.api.types.is_datetime64_any_dtype(values.dtype) or _date_name(col)):
            own_cols.append(col)
            continue
        t_ns = _date_column_ns(values)
        days = np.where(t_ns == _NAT, np.nan, (as_of_ns - t_ns).astype(np.float64) / _DAY_NS)
        if col == "created_at":
            created_days = days
        else:
            date_days[_days_column(col)] = days
    return own_cols, date_days, created_days


def build_features(
    leads: pd.DataFrame,
    events: pd.DataFrame | EventCodes | None = None,
    *,
    as_of: object = None,
    config: FeatureConfig = FeatureConfig(),  # noqa: B008
    id_col: str = "lead_id",
    exclude: Iterable[str] = (),
) -> pd.DataFrame:
    """One feature row per lead, from a leads table and (optionally) their events."""
    if id_col not in leads.columns:
        raise ValueError(f"leads lack the id column {id_col!r}")
    ids = pd.Index(leads[id_col], name="lead_id")
    if ids.has_duplicates:
        dupes = ids[ids.duplicated()].unique()[:5].tolist()
        raise ValueError(f"leads: duplicate ids in {id_col!r}, e.g. {dupes}")
    n_leads = len(leads)

    if isinstance(events, EventCodes):
        matrix: np.ndarray | None = events.for_ids(ids)
    else:
        matrix = _events_matrix(events, ids) if events is not None else None
    as_of_ns = _resolve_as_of(as_of, matrix)

    own_cols, date_days, created_days = _profile_columns(leads, set(exclude) | {id_col}, as_of_ns)
    titles = parse_titles(leads.get("job_title", pd.Series([None] * n_leads, dtype=object)))
    generated: dict[str, Any] = {
        "lead_age_days": created_days,
        "log_company_size": (
            _company_size_log(leads["company_size"])
            if "company_size" in leads.columns
            else np.full(n_leads, np.nan)
        ),
        "title_seniority": titles["title_seniority"].array,
        "title_function": titles["title_function"].array,
    }
    plan = _plan(config)
    engagement_names = [*plan.int_names, *plan.float_names] if matrix is not None else []
    _check_clashes(own_cols, [*date_days, *generated, *engagement_names])

    parts = [
        leads[own_cols].set_axis(ids, axis=0),
        pd.DataFrame({**date_days, **generated}, index=ids),
    ]
    if matrix is not None:
        counts, reals = _engagement(matrix, n_leads=n_leads, as_of_ns=as_of_ns, config=config)
        parts.append(pd.DataFrame(counts, index=ids, columns=list(plan.int_names)))
        parts.append(pd.DataFrame(reals, index=ids, columns=list(plan.float_names)))
    return pd.concat(parts, axis=1)
