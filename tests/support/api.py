"""Requests to the scoring API built from the tiny registry's simulated leads."""

from __future__ import annotations

import uuid

from data.values import is_missing
from serve.state import get_state

__all__ = ["lead_request", "post_correction", "scored_lead"]


def lead_request(sim, index: int = 0, *, lead_id: str | None = None, as_of=None) -> dict:
    """A /v1/score body for the simulated lead at ``index``: its profile and its events."""
    lead = sim.leads.iloc[index]
    events = sim.events[sim.events["lead_id"] == lead["lead_id"]]
    profile = {
        k: (None if is_missing(v) else v)
        for k, v in lead.drop(["stage", "persona"]).to_dict().items()
    }
    profile["created_at"] = profile["created_at"].isoformat() if profile["created_at"] else None
    profile["lead_id"] = lead_id or profile["lead_id"]
    body = {
        "lead": profile,
        "events": [
            {
                k: (v.isoformat() if k == "timestamp" else (None if is_missing(v) else v))
                for k, v in ev.items()
                if k != "lead_id"
            }
            for ev in events.to_dict("records")
        ],
    }
    if as_of is not None:
        body["as_of"] = as_of.isoformat()
    return body


def scored_lead(api_app, api_client, api_headers, tiny_registry, index: int = 0) -> str:
    """Score a simulated lead through /v1/score and wait until the store has it."""
    lead_id = f"rev-{uuid.uuid4().hex[:8]}"
    body = lead_request(tiny_registry.simulation, index, lead_id=lead_id, as_of=tiny_registry.as_of)
    assert api_client.post("/v1/score", json=body, headers=api_headers["client"]).status_code == 200
    assert get_state(api_app).writer.flush(timeout=10)
    return lead_id


def post_correction(client, lead_id, body, headers):
    return client.post(f"/v1/leads/{lead_id}/corrections", json=body, headers=headers)
