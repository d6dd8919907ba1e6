"""Feature building speed: a batch of 1,000,000 events and one lead with 40 events.

``python -m bench.features`` writes ``bench/results/features.json``.

The events are synthetic (numpy, fixed seed), shaped like the data contract:
tz-aware UTC timestamps over 180 days, the ten event types, page categories,
content types, topics and channels with nulls. The single-lead figure is the
median over many calls of ``build_features_one`` on a profile and 40 events
given as ISO-string records, the way the scoring API passes them.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import pandas as pd

from bench.common import peak_rss_mb, repeat, summary, write_result
from data.schema import CONTENT_TYPES, EVENT_TYPES, PAGE_CATEGORIES
from model.features import build_features, build_features_one, feature_names

__all__ = ["AS_OF", "TARGET_SECONDS", "main", "run", "summary_rows", "synthetic"]

#: Target of the batch path: 1,000,000 events → features.
TARGET_SECONDS = 10.0

#: End of the synthetic events' 180-day span and the reference time of every run.
AS_OF = pd.Timestamp("2025-06-30", tz="UTC")

_TITLES = (
    "VP of Engineering",
    "Chief Financial Officer",
    "Senior Data Scientist",
    "Marketing Manager",
    "Student",
    "Head of Procurement",
    "IT Director",
    None,
)


def _with_nulls(rng: np.random.Generator, values: tuple[str, ...], n: int, p_null: float) -> list:
    picked = rng.choice(np.asarray(values, dtype=object), size=n)
    picked[rng.random(n) < p_null] = None
    return list(picked)


def synthetic(n_leads: int, n_events: int, *, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Leads and events tables of the given sizes.

    Parameters
    ----------
    n_leads, n_events : int
        Table sizes.
    seed : int
        Random seed.

    Returns
    -------
    tuple of pandas.DataFrame
        ``leads`` (shape (n_leads, 6)) and ``events`` (shape (n_events, 7)).
    """
    rng = np.random.default_rng(seed)
    end = AS_OF
    ids = np.array([f"L{i:07d}" for i in range(n_leads)], dtype=object)
    leads = pd.DataFrame(
        {
            "lead_id": ids,
            "job_title": _with_nulls(rng, _TITLES[:-1], n_leads, 0.1),
            "company_size": rng.integers(1, 50_000, n_leads),
            "country": _with_nulls(rng, ("DE", "US", "FR", "IN"), n_leads, 0.05),
            "created_at": end - pd.to_timedelta(rng.integers(0, 400 * 86_400, n_leads), unit="s"),
            "stage": rng.choice(["awareness", "consideration", "decision"], n_leads),
        }
    )
    seconds = rng.integers(0, 180 * 86_400, n_events)
    events = pd.DataFrame(
        {
            "lead_id": ids[rng.integers(0, n_leads, n_events)],
            "timestamp": end - pd.to_timedelta(seconds, unit="s"),
            "type": rng.choice(np.asarray(EVENT_TYPES, dtype=object), n_events),
            "page_category": _with_nulls(rng, PAGE_CATEGORIES, n_events, 0.4),
            "content_type": _with_nulls(rng, CONTENT_TYPES, n_events, 0.6),
            "content_topic": _with_nulls(
                rng, tuple(f"topic_{i}" for i in range(40)), n_events, 0.5
            ),
            "channel": _with_nulls(rng, ("email", "web", "social", "paid", "event"), n_events, 0.1),
        }
    )
    return leads, events


def _single_lead_us(leads: pd.DataFrame, events: pd.DataFrame, calls: int) -> dict[str, float]:
    """min/median/max µs of ``build_features_one`` with 40 ISO-string events."""
    records = events.head(40).copy()
    records["timestamp"] = [t.isoformat() for t in records["timestamp"]]
    event_list = [
        {k: (None if v is None or v != v else v) for k, v in r.items()}
        for r in records.to_dict("records")
    ]
    profile = {
        "lead_id": "L0000000",
        "job_title": "VP of Engineering",
        "company_size": 1200,
        "country": "DE",
        "created_at": "2024-11-02T09:00:00+00:00",
    }
    for _ in range(50):
        build_features_one(profile, event_list, as_of=AS_OF.isoformat())
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        build_features_one(profile, event_list, as_of=AS_OF.isoformat())
        times.append((time.perf_counter() - start) * 1e6)
    return summary(times)


def run(
    n_leads: int = 50_000, n_events: int = 1_000_000, runs: int = 3, calls: int = 5_000
) -> dict[str, Any]:
    """Time the batch path and the one-lead path.

    Parameters
    ----------
    n_leads, n_events : int
        Size of the batch.
    runs : int
        Repetitions of the batch.
    calls : int
        Repetitions of the one-lead call (after 50 warm-up calls).

    Returns
    -------
    dict
        The result written to ``bench/results/features.json``.
    """
    leads, events = synthetic(n_leads, n_events)
    seconds, frame = repeat(
        lambda: build_features(leads, events, as_of=AS_OF, exclude=["stage"]), runs
    )
    return {
        "batch": {
            "n_leads": n_leads,
            "n_events": n_events,
            "n_columns": frame.shape[1],
            "n_engagement_features": len(feature_names()),
            "seconds": seconds,
            "events_per_second": round(n_events / seconds["median"]),
            "target_seconds": TARGET_SECONDS,
        },
        "single_lead": {"n_events": 40, "microseconds": _single_lead_us(leads, events, calls)},
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Rows for ``bench/results/SUMMARY.md``: the batch against its target, one lead."""
    batch, one = result["batch"], result["single_lead"]
    median = batch["seconds"]["median"]
    target = batch.get("target_seconds", TARGET_SECONDS)
    return [
        (
            f"features, {batch['n_events']:,} events → {batch['n_leads']:,} rows",
            f"{median:.1f} s ({batch['events_per_second']:,} events/s), "
            f"{median / target:.2f}× the time allowed",
            f"< {target:g} s: {'met' if median < target else 'NOT met'}",
        ),
        (
            f"features, one lead with {one['n_events']} events",
            f"{one['microseconds']['median'] / 1000:.2f} ms",
            "",
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and write ``bench/results/features.json``."""
    parser = argparse.ArgumentParser(prog="python -m bench.features", description=__doc__)
    parser.add_argument("--leads", type=int, default=50_000, help="leads in the batch")
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the batch")
    parser.add_argument("--runs", type=int, default=3, help="batch repetitions")
    parser.add_argument("--calls", type=int, default=5_000, help="one-lead repetitions")
    args = parser.parse_args(argv)
    result = run(args.leads, args.events, args.runs, args.calls)
    path = write_result("features", result)
    batch, single = result["batch"], result["single_lead"]["microseconds"]
    sec = batch["seconds"]
    print(
        f"batch: {batch['n_events']:,} events, {batch['n_leads']:,} leads -> "
        f"{batch['n_columns']} columns in {sec['min']:.2f} / {sec['median']:.2f} / "
        f"{sec['max']:.2f} s (min/median/max of {sec['runs']})"
    )
    print(
        f"one lead, 40 events: {single['min']:.0f} / {single['median']:.0f} / "
        f"{single['max']:.0f} µs (min/median/max of {single['runs']})"
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
