"""Request examples and known values for ``/openapi.json`` (and so for ``/docs``).

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

from typing import Any

from data.schema import CONTENT_TYPES, PAGE_CATEGORIES

__all__ = ["EXAMPLES", "KNOWN_VALUES", "PATH_EXAMPLES"]

_LEAD: dict[str, Any] = {
    "lead_id": "L000001",
    "job_title": "Solutions Architect",
    "seniority": "senior",
    "department": "engineering",
    "company": "Northwind Analytics",
    "company_size": 420,
    "industry": "software",
    "country": "DE",
    "lead_source": "webinar",
    "created_at": "2026-05-04T09:12:00+00:00",
}
_EVENTS: list[dict[str, Any]] = [
    {"timestamp": "2026-06-02T08:15:00+00:00", "type": "email_open", "channel": "email"},
    {
        "timestamp": "2026-06-02T08:17:00+00:00",
        "type": "email_click",
        "channel": "email",
        "content_topic": "data pipelines",
    },
    {
        "timestamp": "2026-06-10T14:02:00+00:00",
        "type": "page_view",
        "page_category": "product",
        "channel": "organic_search",
    },
    {
        "timestamp": "2026-06-19T10:00:00+00:00",
        "type": "webinar_attend",
        "content_type": "webinar",
        "content_topic": "data pipelines",
    },
    {
        "timestamp": "2026-06-26T16:40:00+00:00",
        "type": "page_view",
        "page_category": "pricing",
        "channel": "direct",
    },
    {"timestamp": "2026-06-27T11:05:00+00:00", "type": "demo_request", "channel": "direct"},
]
_SCORE_LEAD = {"lead": _LEAD, "events": _EVENTS, "as_of": "2026-06-29T23:59:33+00:00"}
_SCORE_FEATURES = {
    "lead_id": "L000002",
    "features": {"company_size": 50, "n_page_view_30d": 4, "days_since_demo": None},
}

EXAMPLES: dict[str, dict[str, dict[str, Any]]] = {
    "api_score_one": {
        "lead_with_events": {
            "summary": "A lead's profile with its engagement events (the README's example)",
            "value": _SCORE_LEAD,
        },
        "feature_row": {
            "summary": "A ready feature row (columns the model does not know are an error)",
            "value": _SCORE_FEATURES,
        },
    },
    "api_score_batch": {
        "two_leads": {
            "summary": "A lead with events and a feature row, scored in one call",
            "value": {"leads": [_SCORE_LEAD, _SCORE_FEATURES]},
        }
    },
    "api_invocations": {
        "dataframe_split": {
            "summary": "MLflow's pandas split orientation, with reasons",
            "value": {
                "dataframe_split": {
                    "columns": ["lead_id", "company_size", "n_page_view_30d"],
                    "data": [["L000003", 120, 7]],
                },
                "params": {"reasons": True},
            },
        },
        "dataframe_records": {
            "summary": "One record per lead",
            "value": {"dataframe_records": [{"lead_id": "L000004", "company_size": 35}]},
        },
    },
    "review_api_add_correction": {
        "reclassify": {
            "summary": "A rep moves a lead to the decision stage",
            "value": {
                "stage": "decision",
                "reviewer": "crm:jane.doe",
                "reason": "talking_to_sales",
                "note": "Asked for a quote on the call.",
                "expected": {"stage": "consideration"},
            },
        },
        "confirm": {
            "summary": "A rep agrees with the model",
            "value": {"kind": "confirm", "reviewer": "crm:jane.doe"},
        },
    },
}

PATH_EXAMPLES: dict[str, str] = {"lead_id": "L000001", "correction_id": "42"}

KNOWN_VALUES: dict[str, tuple[str, ...]] = {
    "page_category": PAGE_CATEGORIES,
    "content_type": CONTENT_TYPES,
}
