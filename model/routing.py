"""Routing: from stage and persona probabilities to a readiness score and a route.
Design notes: ``docs/design/model.md``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from data.schema import DEFAULT_SALES_READY_STAGES

__all__ = [
    "ROUTES",
    "RoutingConfig",
    "infer_sales_ready",
    "readiness",
    "resolve_sales_ready",
    "route",
    "route_reasons",
    "routing_answers",
    "thresholds",
    "thresholds_note",
]

#: The routes a lead can take.
ROUTES: tuple[str, ...] = ("sales", "nurture", "review")
_TRUE_LIKE = ("true", "1", "yes", "y", "t")
_FALSE_LIKE = ("false", "0", "no", "n", "f")


@dataclass(frozen=True)
class RoutingConfig:
    """Routing settings."""

    sales_ready_stages: tuple[str, ...] | None = None
    sales_threshold: float = 0.5
    review_margin: float = 0.1
    min_confidence: float = 0.4
    nurture_personas: tuple[str, ...] = ("non_buyer",)

    def __post_init__(self) -> None:
        for name in ("sales_threshold", "review_margin", "min_confidence"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value!r}")
        if self.sales_ready_stages is not None:
            if isinstance(self.sales_ready_stages, str):
                raise ValueError("sales_ready_stages must be a sequence of labels, not one string")
            object.__setattr__(self, "sales_ready_stages", tuple(self.sales_ready_stages))
        if isinstance(self.nurture_personas, str):
            raise ValueError("nurture_personas must be a sequence of labels, not one string")
        object.__setattr__(self, "nurture_personas", tuple(self.nurture_personas))


def infer_sales_ready(stage_classes: Sequence[str]) -> tuple[str, ...]:
    """Which stage labels count as sales-ready when the settings do not say."""
    classes = [str(c) for c in stage_classes]
    ready = tuple(c for c in classes if c.strip().lower() in DEFAULT_SALES_READY_STAGES)
    if ready:
        return ready
    lowered = {c.strip().lower() for c in classes}
    if lowered and lowered <= set(_TRUE_LIKE) | set(_FALSE_LIKE):
        return tuple(c for c in classes if c.strip().lower() in _TRUE_LIKE)
    return ()


def resolve_sales_ready(config: RoutingConfig, stage_classes: Sequence[str]) -> tuple[str, ...]:
    """The sales-ready stages for these labels: the configured ones, or inferred."""
    if config.sales_ready_stages is None:
        return infer_sales_ready(stage_classes)
    unknown = sorted(set(config.sales_ready_stages) - {str(c) for c in stage_classes})
    if unknown:
        raise ValueError(
            f"sales_ready_stages {unknown} are not stage labels; the labels are {list(stage_classes)}"
        )
    return tuple(config.sales_ready_stages)


def readiness(
    stage_proba: np.ndarray, classes: Sequence[str], config: RoutingConfig
) -> np.ndarray | None:
    """Probability that each lead's stage is sales-ready."""
    ready = set(resolve_sales_ready(config, classes))
    if not ready:
        return None
    mask = np.array([str(c) in ready for c in classes])
    return np.asarray(stage_proba, dtype=float)[:, mask].sum(axis=1)


def route(
    *,
    stage_proba: np.ndarray | None,
    stage_classes: Sequence[str] | None,
    persona: Sequence[str] | np.ndarray | None = None,
    persona_confidence: np.ndarray | None = None,
    config: RoutingConfig,
    ready: np.ndarray | None = None,
) -> np.ndarray:
    """Route each lead to ``"sales"``, ``"nurture"`` or ``"review"`` (rules in the module doc)."""
    return _decide(
        stage_proba=stage_proba,
        stage_classes=stage_classes,
        persona=persona,
        persona_confidence=persona_confidence,
        config=config,
        ready=ready,
    )[0].astype(str)


def route_reasons(
    *,
    stage_proba: np.ndarray | None,
    stage_classes: Sequence[str] | None,
    persona: Sequence[str] | np.ndarray | None = None,
    persona_confidence: np.ndarray | None = None,
    config: RoutingConfig,
    ready: np.ndarray | None = None,
) -> list[str]:
    """Why each lead got its route, with the thresholds applied (same rules as :func:`route`;
    the ``why`` of :func:`routing_answers`)."""
    if stage_proba is None and persona is None:
        raise ValueError("route_reasons needs stage probabilities, personas or both")
    if ready is None and stage_proba is not None:
        ready = readiness(np.asarray(stage_proba, dtype=float), stage_classes, config)
        if ready is None:  # a stage head, but no sales-ready stage known
            ready = [None] * len(stage_proba)
    answers = routing_answers(
        config,
        ready=ready,
        persona=None if persona is None else list(persona),
        persona_confidence=persona_confidence,
    )
    return [str(a["why"]) for a in answers]


def thresholds(config: RoutingConfig) -> dict[str, object]:
    """The routing thresholds as shown with each answer (JSON-ready)."""
    t, m = config.sales_threshold, config.review_margin
    return {
        "sales_at": t,
        "review_band": [round(max(0.0, t - m), 10), round(min(1.0, t + m), 10)],
        "sales_ready_stages": list(config.sales_ready_stages or ()),
        "nurture_personas": list(config.nurture_personas),
        "min_persona_confidence": config.min_confidence,
    }


def thresholds_note(config: RoutingConfig) -> str:
    """One line that states the routing rules and thresholds (for ``leadready score``)."""
    th = thresholds(config)
    low, high = th["review_band"]
    stages = "/".join(th["sales_ready_stages"]) or "none known"
    personas = "/".join(th["nurture_personas"]) or "none"
    return (
        f"routing: readiness = P({stages}); sales at readiness >= {th['sales_at']:.2f}, "
        f"review when {low:.2f} < readiness < {high:.2f}, nurture below; "
        f"persona {personas} at confidence >= {th['min_persona_confidence']:.2f} → nurture"
    )


def routing_answers(
    config: RoutingConfig,
    *,
    ready: Sequence[float | None] | np.ndarray | None,
    persona: Sequence[str | None] | None = None,
    persona_confidence: Sequence[float | None] | None = None,
) -> list[dict[str, object]]:
    """Per lead: the thresholds, its readiness, the rule that decided its route and why."""
    n = len(ready) if ready is not None else len(persona or ())
    values = (
        np.full(n, np.nan)
        if ready is None
        else np.array([np.nan if r is None else float(r) for r in ready], dtype=float)
    )
    known = ~np.isnan(values)
    personas = (
        None
        if persona is None
        else np.array(["" if p is None else p for p in persona], dtype=object)
    )
    conf = None
    if persona_confidence is not None:
        conf = np.array([0.0 if c is None else float(c) for c in persona_confidence])
    routes, rule, _, conf_used = _decide(
        stage_proba=None,
        stage_classes=None,
        persona=personas,
        persona_confidence=conf,
        config=config,
        ready=np.where(known, values, 0.0) if known.any() else None,
        n=n,
    )
    th = thresholds(config)
    t, m = config.sales_threshold, config.review_margin
    out: list[dict[str, object]] = []
    for i in range(n):
        r = rule[i]
        if r != "persona" and not known[i]:
            r = "no_readiness"
        if r == "persona":
            why = f"persona {personas[i]} ({conf_used[i]:.2f} >= {config.min_confidence:.2f})"
        elif r == "no_readiness":
            why = "no sales-ready stage known" if ready is not None else "no stage head"
        elif r == "doubt":
            why = f"readiness {values[i]:.2f} within ±{m:.2f} of sales threshold {t:.2f}"
        else:
            sign = ">=" if routes[i] == "sales" else "<"
            why = (
                f"readiness {values[i]:.2f} {sign} sales threshold {t:.2f} (review within ±{m:.2f})"
            )
        out.append(
            {
                **th,
                "readiness": None if not known[i] else float(values[i]),
                "rule": "review_band" if r == "doubt" else str(r),
                "why": why,
            }
        )
    return out


def _decide(
    *,
    stage_proba: np.ndarray | None,
    stage_classes: Sequence[str] | None,
    persona: Sequence[str] | np.ndarray | None,
    persona_confidence: np.ndarray | None,
    config: RoutingConfig,
    ready: np.ndarray | None,
    n: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """Routes, the rule that decided each (persona / no_readiness / doubt / readiness),
    readiness and the persona confidence; ``n`` rows (by default those of ``stage_proba``
    or ``persona``, one of which :func:`route` needs)."""
    if n is None:
        if stage_proba is None and persona is None:
            raise ValueError("route needs stage probabilities, personas or both")
        n = len(stage_proba) if stage_proba is not None else len(persona)
    out = np.full(n, "review", dtype=object)
    rule = np.full(n, "no_readiness", dtype=object)
    if stage_proba is not None or ready is not None:
        if ready is None:
            ready = readiness(np.asarray(stage_proba, dtype=float), stage_classes, config)
        if ready is not None:
            ready = np.asarray(ready, dtype=float)
            # (1e-9: readiness 0.6 summed from 0.4 + 0.2 must not fall inside a 0.1 margin)
            doubt = np.abs(ready - config.sales_threshold) < config.review_margin - 1e-9
            decided = ~doubt
            out[decided] = np.where(ready[decided] >= config.sales_threshold, "sales", "nurture")
            rule[:] = np.where(doubt, "doubt", "readiness")
    conf = np.ones(n)
    if persona is not None:
        persona = np.asarray(persona, dtype=object)
        if persona_confidence is not None:
            conf = np.asarray(persona_confidence, dtype=float)
        sure = conf >= config.min_confidence
        nurture = np.isin(persona, list(config.nurture_personas)) & sure
        out[nurture] = "nurture"
        rule[nurture] = "persona"
    return out, rule, ready, conf
