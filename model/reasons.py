"""Reason codes: the top factors behind one prediction, worded for a sales rep.
Design notes: ``docs/design/model.md``."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from data.values import is_missing

if TYPE_CHECKING:
    from model.classifier import HeadClassifier

__all__ = [
    "column_contributions",
    "describe",
    "explain_head",
    "format_value",
    "is_merely_missing",
    "top_reasons",
]

#: Event types: (singular, plural) phrases.
_EVENT_PHRASES: dict[str, tuple[str, str]] = {
    "email_open": ("email open", "email opens"),
    "email_click": ("email click", "email clicks"),
    "page_view": ("page view", "page views"),
    "content_download": ("content download", "content downloads"),
    "webinar_register": ("webinar registration", "webinar registrations"),
    "webinar_attend": ("webinar attended", "webinars attended"),
    "form_submit": ("form submission", "form submissions"),
    "demo_request": ("demo request", "demo requests"),
    "trial_start": ("trial started", "trials started"),
    "meeting_booked": ("meeting booked", "meetings booked"),
}
#: Content kinds of model.features: (singular, plural) phrases.
_KIND_PHRASES: dict[str, tuple[str, str]] = {
    "pricing": ("pricing-page visit", "pricing-page visits"),
    "technical": ("docs or integrations view", "docs or integrations views"),
    "careers": ("careers-page visit", "careers-page visits"),
    "evaluation": ("case study or comparison view", "case study or comparison views"),
    "business_case": ("ROI or analyst-report view", "ROI or analyst-report views"),
    "learning": ("blog or ebook read", "blog or ebook reads"),
    "product": ("product-page view", "product-page views"),
}
_PHRASES = {**_EVENT_PHRASES, **_KIND_PHRASES}
#: Recency signals of model.features: what "last …" refers to.
_SIGNAL_PHRASES: dict[str, str] = {
    "pricing": "pricing-page visit",
    "demo": "demo request",
    "webinar": "webinar",
    "trial": "trial start",
    "meeting": "meeting booked",
    "form": "form submission",
    "any": "activity",
}
_SENIORITY_WORDS: dict[str, str] = {
    "c_level": "C-level",
    "vp": "VP",
    "director": "director",
    "head": "head of a team",
    "manager": "manager",
    "senior_ic": "senior individual contributor",
    "ic": "individual contributor",
    "student": "student",
    "unknown": "unknown",
}
#: Readable names of the lead columns of data.schema and of model.features' profile columns.
_COLUMN_NAMES: dict[str, str] = {
    "job_title": "title",
    "seniority": "seniority",
    "department": "department",
    "company": "company",
    "company_size": "company size",
    "industry": "industry",
    "country": "country",
    "lead_source": "lead source",
    "title_seniority": "seniority (from title)",
    "title_function": "function (from title)",
}

#: A reason about a merely-missing value ranks by its weight divided by this: it leads
#: a list only when it outweighs the strongest present value this many times over.
MISSING_DOMINANCE = 2.0

#: Explained batches of at most this many rows sum per-column contributions in Python.
_PYTHON_SUM_ROWS = 8

_WINDOW_RE = re.compile(r"^n_(?P<what>[a-z_]+?)_(?P<days>\d+(?:\.\d+)?)d$")


def format_value(value: Any) -> str:
    """A cell value as a rep reads it: ``1200`` → "1,200", ``12.5`` → "12.5", True → "yes"."""
    if is_missing(value):
        return "not given"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        x = float(value)
        if x.is_integer():
            return f"{int(x):,}"
        if abs(x) >= 100:
            return f"{x:,.0f}"
        return f"{x:.2f}".rstrip("0").rstrip(".")
    text = str(value).strip()
    return text if text else "not given"


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, str):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _days(days: float) -> str:
    if days < 1:
        return "today"
    n = round(days)
    return "1 day ago" if n == 1 else f"{n:,} days ago"


def _window(days: str) -> str:
    d = float(days)
    return "in the last day" if d == 1 else f"in the last {format_value(d)} days"


def _count(n: float, phrases: tuple[str, str]) -> str:
    return f"1 {phrases[0]}" if n == 1 else f"{format_value(n)} {phrases[1]}"


def describe(feature: str, value: Any) -> str:
    """Word one feature value for a sales rep."""
    x = _number(value)
    match = _WINDOW_RE.match(feature)
    if match and x is not None:
        what, days = match["what"], match["days"]
        phrases = ("event", "events") if what == "events" else _PHRASES.get(what)
        if phrases is not None:
            if x == 0:
                return f"no {phrases[1]} {_window(days)}"
            return f"{_count(x, phrases)} {_window(days)}"
    if feature.startswith("days_since_"):
        signal = feature.removeprefix("days_since_")
        thing = _SIGNAL_PHRASES.get(signal)
        if thing is None:
            phrases = _PHRASES.get(signal)
            thing = phrases[0] if phrases else signal.replace("_", " ")
        if x is None:
            return f"no {thing} on record"
        return f"last {thing} {_days(x)}"
    if feature.endswith("_days_ago"):
        what = feature.removesuffix("_days_ago").replace("_", " ")
        return f"{what}: {_days(x)}" if x is not None else f"{what} date not given"
    if x is not None:
        special = _describe_number(feature, x)
        if special is not None:
            return special
    if feature == "title_seniority" and isinstance(value, str):
        return f"seniority (from title): {_SENIORITY_WORDS.get(value, value.replace('_', ' '))}"
    if feature == "title_function" and isinstance(value, str):
        return f"function (from title): {value.replace('_', ' ')}"
    if is_merely_missing(feature, value):
        return f"{_COLUMN_NAMES.get(feature, feature)} not given"
    return f"{_COLUMN_NAMES.get(feature, feature)}: {format_value(value)}"


def is_merely_missing(feature: str, value: Any) -> bool:
    """Whether a reason would be about a value that is simply absent from the input."""
    if feature.startswith("days_since_") or _WINDOW_RE.match(feature):
        return False
    return format_value(value) == "not given"


def _describe_number(feature: str, x: float) -> str | None:
    """Wording of the numeric features of model.features that need more than "name: value"."""
    if feature == "n_events_total":
        return "no recorded activity" if x == 0 else f"{_count(x, ('event', 'events'))} in total"
    if feature == "decayed_engagement":
        return f"recent engagement score: {format_value(x)}"
    if feature == "decayed_late_stage":
        return f"recent late-stage engagement score (demo, trial, pricing, evaluation): {format_value(x)}"
    if feature == "engagement_velocity":
        rate = f"{x:.1f}× the earlier rate"
        if x >= 1.2:
            return f"engagement accelerating ({rate})"
        if x <= 0.8:
            return f"engagement cooling ({rate})"
        return f"steady engagement ({rate})"
    if feature == "lead_age_days":
        return f"lead created {_days(x)}"
    if feature == "log_company_size":
        return f"company size: {format_value(float(round(math.expm1(x))))}"
    if feature == "company_size":
        return f"company size: {format_value(x)}"
    if feature == "max_events_per_minute":
        return f"up to {format_value(x)} events within one minute"
    distinct = {
        "n_distinct_types": ("kind of activity", "different kinds of activity"),
        "n_distinct_kinds": ("content area", "different content areas"),
        "n_distinct_topics": ("content topic", "different content topics"),
        "n_distinct_channels": ("channel", "different channels"),
    }.get(feature)
    if distinct is not None:
        return _count(x, distinct)
    return None


def top_reasons(
    contributions: np.ndarray,
    features: Sequence[str],
    values: Sequence[Mapping[str, Any]] | Callable[[int, str], Any],
    *,
    top_k: int = 3,
) -> list[list[dict[str, Any]]]:
    """The ``top_k`` factors of each row by absolute contribution, worded."""
    value_of = values if callable(values) else (lambda i, f: values[i].get(f))
    out: list[list[dict[str, Any]]] = []
    order = np.argsort(-np.abs(contributions), axis=1, kind="stable")
    for i, row in enumerate(contributions):
        # (rank key, merely missing, position, reason); see MISSING_DOMINANCE
        ranked: list[tuple[float, bool, int, dict[str, Any]]] = []
        for j in order[i]:
            weight = float(row[j])
            if abs(weight) < 1e-9:
                break
            # every later key is at most |weight|: the top_k are known
            if sum(1 for item in ranked if item[0] > abs(weight)) >= top_k:
                break
            feature = features[j]
            value = value_of(i, feature)
            missing = is_merely_missing(feature, value)
            reason = {
                "feature": feature,
                "text": describe(feature, value),
                "weight": round(weight, 4),
            }
            key = abs(weight) / MISSING_DOMINANCE if missing else abs(weight)
            ranked.append((key, missing, len(ranked), reason))
        # ties: a present value first
        ranked.sort(key=lambda item: (-item[0], item[1], item[2]))
        out.append([item[3] for item in ranked[:top_k]])
    return out


def column_contributions(head: HeadClassifier, picked: np.ndarray) -> np.ndarray:
    """Encoded-column contributions summed per input column (as a rep reads them)."""
    encoder = head.encoder_
    picked = np.asarray(picked, dtype=np.float64)[:, :-1]
    columns = encoder.columns_
    slices = encoder.output_slices_
    # Sum the encoded columns of each input column in a fixed order, row by row
    # (no BLAS): a row's reasons do not depend on the size of its batch.
    if len(picked) <= _PYTHON_SUM_ROWS:
        # The same additions in the same order on Python floats (IEEE doubles, as
        # numpy's): bit-equal, without a numpy call per encoded column.
        bounds = [slices[c] for c in columns]
        sums = []
        for values in picked.tolist():
            row = []
            for start, stop in bounds:
                acc = values[start]
                for k in range(start + 1, stop):
                    acc += values[k]
                row.append(acc)
            sums.append(row)
        return np.array(sums, dtype=np.float64).reshape(len(picked), len(columns))
    per_column = picked[:, [slices[c][0] for c in columns]]
    for j, c in enumerate(columns):
        start, stop = slices[c]
        for k in range(start + 1, stop):
            per_column[:, j] += picked[:, k]
    return per_column


def explain_head(
    head: HeadClassifier,
    Z: np.ndarray,
    class_index: np.ndarray,
    text_values: Mapping[str, Sequence[Any]],
    *,
    top_k: int = 3,
    num_threads: int | None = None,
    method: str = "shap",
) -> list[list[dict[str, Any]]]:
    """Reasons for one head's prediction of ``class_index`` on encoded rows."""
    encoder = head.encoder_
    picked = head.class_contributions_encoded(
        Z, np.asarray(class_index, dtype=int), num_threads=num_threads, method=method
    )
    per_column = column_contributions(head, picked)
    columns = encoder.columns_
    slices = encoder.output_slices_

    def value_of(i: int, column: str) -> Any:
        if encoder.kinds_[column] == "text":
            raw = text_values.get(column)
            return None if raw is None else raw[i]
        return encoder.decode(column, Z[i, slices[column][0]])

    return top_reasons(per_column, columns, value_of, top_k=top_k)
