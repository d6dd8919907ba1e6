"""The review queue's priority, written once: the weighted sum of a lead's signals
(:func:`priority_scores` in numpy, :func:`priority_sql` in SQL, both from
:func:`_formula`) and the ``lead_queue`` row the store keeps for a lead's latest
prediction (:func:`queue_rows`). It sits below both the store, which keeps the
rows, and :mod:`data.review_queue`, which reads them (docs/design/data.md)."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import sqlalchemy as sa

from data.schema import DEFAULT_SALES_READY_STAGES

__all__ = [
    "RETRAINING_CONFIG",
    "STORED_CONFIG",
    "QueueConfig",
    "marketing_probability",
    "priority_scores",
    "priority_sql",
    "queue_rows",
    "row_scores",
    "runner_up",
]


@dataclass(frozen=True)
class QueueConfig:
    """Thresholds (when a reason fires) and weights (how much it adds to the priority).

    A stage (or persona) margin below ``close_call_margin`` is a close call; a prediction
    in ``sales_ready_stages`` less sure than ``sales_confidence`` is "sales-ready, unsure";
    marketing's label is suspect when the model gives it less than ``mislabel_threshold``;
    a stage change counts for ``changed_days``. The ``w_*`` weights multiply those terms.
    """

    sales_ready_stages: tuple[str, ...] = DEFAULT_SALES_READY_STAGES
    close_call_margin: float = 0.15
    sales_confidence: float = 0.6
    mislabel_threshold: float = 0.2
    changed_days: float = 14.0
    w_margin: float = 1.0
    w_persona_margin: float = 0.5
    w_sales: float = 1.0
    w_changed: float = 0.75
    w_mislabel: float = 1.0
    w_persona_mislabel: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.sales_ready_stages, str):
            raise ValueError("sales_ready_stages must be a sequence of labels, not one string")
        object.__setattr__(self, "sales_ready_stages", tuple(self.sales_ready_stages))
        for name in ("close_call_margin", "sales_confidence", "mislabel_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value!r}")
        if self.changed_days < 0:
            raise ValueError(f"changed_days must not be negative, got {self.changed_days!r}")


#: The configuration the store ranks by (``lead_queue.sort_key``). Pages asked for
#: with other weights or thresholds are ranked at read time (docs/design/data.md).
STORED_CONFIG: QueueConfig = QueueConfig()

#: The order that makes reps' corrections pay most when the model is retrained on them
#: (close calls and unsure sales-ready calls first; "possible mislabel" adds nothing):
#: for a labelling sprint before a retrain (docs/design/data.md has the measurements).
RETRAINING_CONFIG: QueueConfig = QueueConfig(w_mislabel=0.0, w_persona_mislabel=0.0)


# ------------------------------------------------------------------ the formula


def _floats(values: Any, n: int, name: str, dtype: type = float) -> np.ndarray:
    """A vector of length ``n`` (floats: None becomes NaN)."""
    out = np.asarray(values, dtype=dtype).reshape(-1)
    if out.shape[0] != n:
        raise ValueError(f"{name}: expected {n} values, got {out.shape[0]}")
    return out


def priority_scores(
    *,
    stage: Sequence[str | None],
    stage_confidence: Any,
    stage_margin: Any,
    persona_margin: Any,
    p_marketing_stage: Any,
    p_marketing_persona: Any,
    stage_changed: Any = None,
    config: QueueConfig | None = None,
) -> np.ndarray:
    """The queue priority of each of n leads, vectorised (:func:`_formula` over numpy arrays).

    Each argument is array-like of length n (None or NaN where missing): the predicted
    ``stage``, its confidence and margins, and the model's probability of marketing's labels
    (:func:`marketing_probability`); ``stage_changed`` marks a recent stage change. Returns
    a float array of shape (n,).
    """
    config = config or QueueConfig()
    n = len(stage)
    confidence = _floats(stage_confidence, n, "stage_confidence")
    ready_labels = frozenset(config.sales_ready_stages)
    ready = np.fromiter((s in ready_labels for s in stage), dtype=bool, count=n)
    changed = np.zeros(n, dtype=bool)
    if stage_changed is not None:
        changed = _floats(stage_changed, n, "stage_changed", bool)
    terms = SimpleNamespace(
        ready=ready & ~np.isnan(confidence),
        stage_confidence=confidence,
        stage_margin=_floats(stage_margin, n, "stage_margin"),
        persona_margin=_floats(persona_margin, n, "persona_margin"),
        p_marketing_stage=_floats(p_marketing_stage, n, "p_marketing_stage"),
        p_marketing_persona=_floats(p_marketing_persona, n, "p_marketing_persona"),
        changed=changed,
    )
    return np.asarray(_formula(terms, config, fill=_nan_to, where=np.where), dtype=float)


def priority_sql(columns: Any, config: QueueConfig, changed: Any) -> Any:
    """:func:`priority_scores` as a SQL expression over the ``lead_queue`` columns
    (``columns``), ``changed`` the SQL condition of a recent stage change."""
    stages = config.sales_ready_stages
    terms = SimpleNamespace(
        ready=sa.and_(columns.stage.in_(stages), columns.stage_confidence.is_not(None))
        if stages
        else sa.false(),
        stage_confidence=columns.stage_confidence,
        stage_margin=columns.stage_margin,
        persona_margin=columns.persona_margin,
        p_marketing_stage=columns.p_marketing_stage,
        p_marketing_persona=columns.p_marketing_persona,
        changed=changed,
    )
    return _formula(terms, config, fill=sa.func.coalesce, where=_case)


def _nan_to(values: np.ndarray, fill: float) -> np.ndarray:
    return np.nan_to_num(values, nan=fill)


def _case(condition: Any, then: Any, otherwise: Any) -> Any:
    return sa.case((condition, then), else_=otherwise)


def _formula(
    t: Any, config: QueueConfig, *, fill: Callable[..., Any], where: Callable[..., Any]
) -> Any:
    """The queue priority, once, over numpy arrays or SQL columns (``fill`` a missing
    value, ``where`` a condition; docs/design/data.md): a missing margin counts as 1 (no
    close call), a missing probability never fires, the stage-change term comes last."""
    threshold = config.mislabel_threshold
    score = (
        config.w_margin * (1.0 - fill(t.stage_margin, 1.0))
        + config.w_persona_margin * (1.0 - fill(t.persona_margin, 1.0))
        + config.w_sales * where(t.ready, 1.0 - t.stage_confidence, 0.0)
        + config.w_mislabel * where(t.p_marketing_stage < threshold, 1.0 - t.p_marketing_stage, 0.0)
        + config.w_persona_mislabel
        * where(t.p_marketing_persona < threshold, 1.0 - t.p_marketing_persona, 0.0)
    )
    return score + where(t.changed, config.w_changed, 0.0)


def _probability(value: Any) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def marketing_probability(
    probabilities: Any,
    head: str,
    marketing_label: str | None,
    predicted: str | None,
    confidence: float | None,
) -> float | None:
    """The model's probability of marketing's label for one head, or None.

    When marketing agrees with the model it is the model's confidence; otherwise
    ``probabilities[head][marketing_label]`` (None when marketing gave no label,
    or the model knows no such class).
    """
    if head not in ("stage", "persona"):
        raise ValueError(f"head must be 'stage' or 'persona', got {head!r}")
    if marketing_label is None:
        return None
    if marketing_label == predicted:
        return _probability(confidence)
    probs = probabilities.get(head) if isinstance(probabilities, Mapping) else None
    return _probability(probs.get(marketing_label)) if isinstance(probs, Mapping) else None


def runner_up(probabilities: Any, head: str, top: str | None) -> str | None:
    """The most probable label of ``head`` other than ``top`` (None when there is none)."""
    probs = probabilities.get(head) if isinstance(probabilities, Mapping) else None
    if not isinstance(probs, Mapping):
        return None
    ranked = [
        (float(value), str(label))
        for label, value in probs.items()
        if type(value) in (float, int) and str(label) != top and math.isfinite(value)
    ]
    # Among equals the first listed wins: max keeps the first of equal keys.
    return max(ranked, key=lambda item: item[0])[1] if ranked else None


def queue_rows(
    predictions: Sequence[Mapping[str, Any]],
    *,
    leads: Mapping[str, Mapping[str, Any]],
    previous_stages: Mapping[str, str | None],
    reviewed: Collection[str],
) -> list[dict[str, Any]]:
    """Column values of the store's ``lead_queue`` rows (:class:`data.store.QueueRow`),
    one per lead's latest prediction (as stored, with ``id`` and ``probabilities``).

    ``leads`` maps lead ids to ``company`` and marketing's labels (may lack a lead);
    ``previous_stages`` the stage of the prediction before; ``reviewed`` the leads with a
    rep's label. ``sort_key`` is minus :func:`priority_scores` under :data:`STORED_CONFIG`
    without the stage-change term.
    """
    rows = [
        _queue_row(
            prediction,
            leads.get(prediction["lead_id"]) or {},
            previous_stages.get(prediction["lead_id"]),
            prediction["lead_id"] in reviewed,
        )
        for prediction in predictions
    ]
    scores = row_scores(rows, STORED_CONFIG)
    for row, score in zip(rows, scores, strict=True):
        row["sort_key"] = -float(score)
    return rows


#: A prediction's numbers (confidences, margins, readiness).
PREDICTION_NUMBERS: tuple[str, ...] = (
    "stage_confidence",
    "stage_margin",
    "persona_confidence",
    "persona_margin",
    "readiness",
)
#: Prediction columns a queue row copies as they are.
_COPIED: tuple[str, ...] = (*PREDICTION_NUMBERS, "route")


def _queue_row(
    prediction: Mapping[str, Any], lead: Mapping[str, Any], previous: str | None, reviewed: bool
) -> dict[str, Any]:
    """One ``lead_queue`` row without its ``sort_key``."""
    probabilities = prediction.get("probabilities")
    stage, persona = prediction.get("stage"), prediction.get("persona")
    changed = previous is not None and stage is not None and previous != stage
    row = {name: prediction.get(name) for name in _COPIED}
    row.update(
        lead_id=prediction["lead_id"],
        prediction_id=prediction["id"],
        scored_at=prediction["created_at"],
        model_version=prediction["model_version"],
        stage=stage,
        persona=persona,
        previous_stage=previous,
        changed_at=prediction["created_at"] if changed else None,
        company=lead.get("company"),
        reviewed=reviewed,
    )
    for head, top in (("stage", stage), ("persona", persona)):
        marketing = lead.get(f"marketing_{head}")
        confidence = prediction.get(f"{head}_confidence")
        row[f"{head}_runner_up"] = runner_up(probabilities, head, top)
        row[f"marketing_{head}"] = marketing
        row[f"p_marketing_{head}"] = marketing_probability(
            probabilities, head, marketing, top, confidence
        )
    return row


def row_scores(
    rows: Sequence[Mapping[str, Any]], config: QueueConfig, changed: Any = None
) -> np.ndarray:
    """:func:`priority_scores` over rows carrying the ``lead_queue`` columns."""
    columns = ("stage", "stage_confidence", "stage_margin", "persona_margin")
    columns += ("p_marketing_stage", "p_marketing_persona")
    values = {name: [r[name] for r in rows] for name in columns}
    return priority_scores(**values, stage_changed=changed, config=config)
