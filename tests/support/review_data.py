"""Stored predictions and reps' reviews for the queue tests, and a small base training set.

``lead_rows(n, rng)`` builds predictions and leads where today's ranking and a learned
one disagree (confident students marked practitioner against close calls on stage
that reps confirm), with the truth per lead; ``review_leads`` stores reps' corrections
of it; ``top_of_queue`` reads today's queue; ``base_set`` is a two-feature
``TrainingSet`` with marketing's labels.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from data.review_queue import review_queue
from training.dataset import TrainingSet

__all__ = [
    "NOW",
    "PERSONAS",
    "STAGES",
    "base_set",
    "lead_rows",
    "predicted_stage",
    "probabilities_of",
    "review_leads",
    "top_of_queue",
]

NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
STAGES = ("awareness", "consideration", "decision", "purchase")
PERSONAS = ("economic_buyer", "technical_evaluator", "practitioner", "non_buyer")


def probabilities_of(labels, top, p_top, second=None, p_second=0.0):
    """``top`` at ``p_top`` (``second`` at ``p_second``), the rest shared evenly."""
    out = dict.fromkeys(labels, 0.0)
    out[top] = p_top
    rest = [label for label in labels if label not in (top, second)]
    left = 1.0 - p_top - (p_second if second else 0.0)
    if second:
        out[second] = p_second
    for label in rest:
        out[label] = left / len(rest)
    return out


def lead_rows(n: int, rng: np.random.Generator):
    """Predictions and leads: every third lead a confident 'practitioner' student."""
    predictions, leads, truth = [], [], {}
    for k in range(n):
        lead_id = f"L{k:04d}"
        student = k % 3 == 0
        if student:
            stage = probabilities_of(STAGES, "awareness", 0.9)
            margin = 0.9 - 0.1 / 3
        else:
            # A close call on stage, which reps confirm: today's queue puts it first.
            stage = probabilities_of(STAGES, "consideration", 0.45, "decision", 0.40)
            margin = 0.05
        persona = probabilities_of(PERSONAS, "practitioner", 0.9)
        predictions.append(
            {
                "lead_id": lead_id,
                "model_name": "lead-readiness",
                "model_version": "1",
                "source": "batch",
                "created_at": NOW,
                "stage": max(stage, key=stage.get),
                "stage_confidence": max(stage.values()),
                "stage_margin": margin,
                "persona": "practitioner",
                "persona_confidence": 0.9,
                "persona_margin": 0.9 - 0.1 / 3,
                "probabilities": {"stage": stage, "persona": persona},
                "route": "nurture",
                "features": {
                    "title_function": "student" if student else "engineering",
                    "n_page_view_30d": int(rng.integers(0, 20)),
                    "lead_age_days": float(rng.uniform(1, 90)),
                },
            }
        )
        leads.append(
            {
                "lead_id": lead_id,
                "company": f"{lead_id} Inc",
                "marketing_stage": max(stage, key=stage.get),
                "marketing_persona": "practitioner",
            }
        )
        truth[lead_id] = "non_buyer" if student else "practitioner"
    return predictions, leads, truth


def review_leads(store, lead_ids, truth, reviewer="ana"):
    for lead_id in lead_ids:
        label = truth[lead_id]
        kind = "confirm" if label == "practitioner" else "reclassify"
        store.add_correction(lead_id, "persona", label, reviewer=reviewer, kind=kind)
        store.add_correction(
            lead_id, "stage", predicted_stage(store, lead_id), reviewer=reviewer, kind="confirm"
        )


def predicted_stage(store, lead_id):
    return store.latest_prediction(lead_id)["stage"]


def top_of_queue(store, n):
    return [item.lead_id for item in review_queue(store, limit=n, reviewed=False, now=NOW).items]


def base_set(n: int = 400, *, persona: bool = True) -> TrainingSet:
    """A small training set: 2 features, stage and persona labels from marketing."""
    ids = pd.Index([f"L{i:04d}" for i in range(n)], name="lead_id", dtype=object)
    X = pd.DataFrame(
        {
            "visits": np.arange(n, dtype=float),
            "lead_source": np.where(np.arange(n) % 2, "webinar", "referral").astype(object),
        },
        index=ids,
    )
    stage = pd.Series(
        np.where(np.arange(n) % 3 == 0, "decision", "awareness").astype(object),
        index=ids,
        name="stage",
        dtype=object,
    )
    personas = pd.Series(
        np.array(["practitioner", "economic_buyer"], dtype=object)[np.arange(n) % 2],
        index=ids,
        name="persona",
        dtype=object,
    )
    slices = pd.DataFrame({"lead_source": X["lead_source"], "stage": stage}, index=ids)
    if persona:
        slices["persona"] = personas
    return TrainingSet(
        X=X,
        y_stage=stage,
        y_persona=personas if persona else None,
        ids=ids,
        leads=X.copy(),
        slices=slices,
        source="memory",
        name="base.csv",
        id_col="lead_id",
        stage_col="stage",
        persona_col="persona" if persona else None,
    )
