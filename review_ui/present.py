"""Plain functions that shape store rows for the templates (no Flask, easy to test)."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from data.schema import EVENT_TYPES

__all__ = [
    "Bar",
    "TimelineWeek",
    "correction_rows",
    "event_label",
    "heat_level",
    "probability_bars",
    "reason_lines",
    "weekly_timeline",
    "whole_percent",
]

_EVENT_LABELS: dict[str, str] = {
    "email_open": "Email open",
    "email_click": "Email click",
    "page_view": "Page view",
    "content_download": "Download",
    "webinar_register": "Webinar sign-up",
    "webinar_attend": "Webinar attended",
    "form_submit": "Form",
    "demo_request": "Demo request",
    "trial_start": "Trial",
    "meeting_booked": "Meeting",
}


@dataclass(frozen=True)
class Bar:
    """One label's probability, with a whole percent for the CSS width class."""

    label: str
    probability: float
    percent: int
    top: bool


@dataclass(frozen=True)
class TimelineWeek:
    """One week of engagement: its Monday, counts per event type, total."""

    start: date
    counts: dict[str, int]
    total: int


def whole_percent(share: float | None, floor: int = 0) -> int:
    """A share as a whole percent for a CSS width class, clamped to ``floor``..100 (None: 0)."""
    return 0 if share is None else max(floor, min(100, round(share * 100)))


def event_label(kind: str) -> str:
    """Words for an event type."""
    return _EVENT_LABELS.get(kind, kind.replace("_", " ").capitalize())


def probability_bars(probabilities: Any, head: str) -> list[Bar]:
    """The head's probabilities, most probable first (empty when absent)."""
    probs = probabilities.get(head) if isinstance(probabilities, Mapping) else None
    if not isinstance(probs, Mapping):
        return []
    pairs = sorted(
        ((str(k), float(v)) for k, v in probs.items() if isinstance(v, int | float)),
        key=lambda kv: (-kv[1], kv[0]),
    )
    return [Bar(label, p, whole_percent(p), i == 0) for i, (label, p) in enumerate(pairs)]


def reason_lines(reasons: Any, head: str, limit: int = 5) -> list[dict[str, Any]]:
    """The model's reasons for one head: ``{"text", "weight", "direction"}``, strongest first.

    Stored reasons are ``{"stage": [{"feature", "text", "weight"}, ...], ...}``;
    a plain list is taken as the stage's.
    """
    items: Any = None
    if isinstance(reasons, Mapping):
        items = reasons.get(head)
    elif isinstance(reasons, list) and head == "stage":
        items = reasons
    if not isinstance(items, list):
        return []
    out = []
    for item in items:
        text = isinstance(item, Mapping) and (item.get("text") or item.get("feature"))
        if not text:
            continue
        weight = item.get("weight")
        weight = float(weight) if isinstance(weight, int | float) else 0.0
        direction = "for" if weight >= 0 else "against"
        out.append({"text": str(text), "weight": weight, "direction": direction})
    out.sort(key=lambda r: -abs(r["weight"]))
    return out[:limit]


def heat_level(count: int) -> int:
    """0–4: how dark a timeline cell is drawn (no event, 1, 2–3, 4–6, 7 or more)."""
    return bisect_left((0, 1, 3, 6), count)


def _monday(ts: datetime) -> date:
    day = ts.date()
    return day - timedelta(days=day.weekday())


def weekly_timeline(
    events: Iterable[Mapping[str, Any]], *, max_weeks: int = 26
) -> tuple[list[TimelineWeek], list[str]]:
    """Events counted per ISO week (Monday) and type, newest week first, at most ``max_weeks``.

    Empty weeks between the first and the last are kept (a gap in engagement is information);
    the types come in :data:`data.schema.EVENT_TYPES` (funnel) order, others after.
    """
    per_week: dict[date, Counter[str]] = {}
    kinds: set[str] = set()
    for event in events:
        ts = event.get("timestamp")
        kind = event.get("type")
        if not isinstance(ts, datetime) or not kind:
            continue
        per_week.setdefault(_monday(ts), Counter())[str(kind)] += 1
        kinds.add(str(kind))
    if not per_week:
        return [], []
    first, last = min(per_week), max(per_week)
    weeks: list[TimelineWeek] = []
    current = last
    while current >= first and len(weeks) < max_weeks:
        counts = per_week.get(current, Counter())
        weeks.append(TimelineWeek(current, dict(counts), sum(counts.values())))
        current -= timedelta(days=7)
    rank = {k: i for i, k in enumerate(EVENT_TYPES)}
    ordered = sorted(kinds, key=lambda k: (rank.get(k, len(rank)), k))
    return weeks, ordered


def correction_rows(corrections: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A lead's corrections newest first, each with ``undone`` (a later undo points at it)."""
    undone = {c["undo_of"] for c in corrections if c.get("undo_of") is not None}
    return [{**c, "undone": c["id"] in undone} for c in reversed(list(corrections))]
