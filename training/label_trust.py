"""How much to trust each training label: reps by measured agreement, marketing by the model of corrections."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from data.review_queue import label_choices
from training.dataset import holdout_mask
from training.learned_queue import LearnedQueueConfig, refit_queue

__all__ = [
    "SoftRelabelResult",
    "TrustConfig",
    "TrustEvidence",
    "TrustResult",
    "adjust_weights",
    "apply_label_trust",
    "gather_evidence",
    "marketing_doubt",
    "rep_quality",
    "soft_relabel",
    "soft_row_id",
]

_HEADS: tuple[str, ...] = ("stage", "persona")


@dataclass(frozen=True)
class TrustConfig:
    """Thresholds of :func:`adjust_weights`."""

    min_shared_leads: int = 10
    min_factor: float = 0.25
    max_factor: float = 1.5
    marketing_threshold: float = 0.8
    marketing_floor: float = 0.1


@dataclass
class TrustResult:
    """What changed: per-rep factors, marketing rows down-weighted, notes in words."""

    rep_factors: dict[str, float] = field(default_factory=dict)
    rep_quality: dict[str, float] = field(default_factory=dict)
    n_shared_leads: int = 0
    marketing_downweighted: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: :class:`SoftRelabelResult` when marketing labels were soft-relabelled instead.
    soft: Any = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "rep_factors": self.rep_factors,
            "rep_quality": self.rep_quality,
            "n_shared_leads": self.n_shared_leads,
            "n_marketing_downweighted": len(self.marketing_downweighted),
            "n_marketing_soft_relabelled": 0
            if self.soft is None
            else sum(len(v) for v in self.soft.relabelled.values()),
            "notes": self.notes + ([] if self.soft is None else list(self.soft.notes)),
        }


def _rep_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """The latest rep label of each (lead, field, reviewer)."""
    rows = frame[frame["is_rep_label"].astype(bool) & frame["new_label"].notna()]
    rows = rows.sort_values("id", kind="stable")
    return rows.groupby(["lead_id", "field", "reviewer"], sort=False).tail(1)


def rep_quality(
    corrections: pd.DataFrame,
    probabilities: Mapping[str, Mapping[str, Mapping[str, float]]],
    classes: Mapping[str, Sequence[str]],
    config: TrustConfig | None = None,
) -> tuple[dict[str, float], int]:
    """Each rep's CROWDLAB quality (mean over heads) on multiply-reviewed leads."""
    from cleanlab.multiannotator import get_label_quality_multiannotator

    config = config or TrustConfig()
    if corrections.empty:
        return {}, 0
    labels = _rep_labels(corrections)
    scores: dict[str, list[float]] = {}
    shared_total = 0
    for head in _HEADS:
        names = list(classes.get(head, ()))
        rows = labels[(labels["field"] == head) & labels["new_label"].isin(names)]
        rows = rows[rows["lead_id"].isin(list(probabilities))]
        counts = rows.groupby("lead_id")["reviewer"].nunique()
        shared = counts.index[counts >= 2]
        shared_total += len(shared)
        if len(shared) < config.min_shared_leads:
            continue
        rows = rows[rows["lead_id"].isin(shared)]
        index = {label: i for i, label in enumerate(names)}
        matrix = rows.pivot_table(
            index="lead_id", columns="reviewer", values="new_label", aggfunc="last"
        )
        matrix = matrix.apply(lambda col, index=index: col.map(index.get)).astype(float)
        matrix = matrix.loc[:, matrix.notna().any(axis=0)]
        proba = np.array(
            [
                [float((probabilities[i].get(head) or {}).get(label, 0.0)) for label in names]
                for i in matrix.index
            ]
        )
        proba = np.clip(proba, 1e-6, None)
        proba = proba / proba.sum(axis=1, keepdims=True)
        with warnings.catch_warnings():
            # cleanlab warns about annotators who labelled few leads: that is
            # the normal case here, and their quality is shrunk towards the rest.
            warnings.simplefilter("ignore")
            result = get_label_quality_multiannotator(
                matrix.reset_index(drop=True), proba, verbose=False
            )
        stats = result["annotator_stats"]
        for reviewer, quality in stats["annotator_quality"].items():
            scores.setdefault(str(reviewer), []).append(float(quality))
    return {r: float(np.mean(q)) for r, q in scores.items()}, shared_total


def marketing_doubt(
    predictions: pd.DataFrame | None, queue: pd.DataFrame, config: TrustConfig | None = None
) -> dict[str, float]:
    """Leads whose marketing label the model of corrections doubts, and their weight factor."""
    config = config or TrustConfig()
    if predictions is None or predictions.empty:
        return {}
    q = queue.reindex(predictions.index)
    factor = pd.Series(1.0, index=predictions.index)
    for head in _HEADS:
        same = q[head].astype(object).to_numpy() == q[f"marketing_{head}"].astype(object).to_numpy()
        p = predictions[f"p_{head}_wrong"].to_numpy(dtype=float)
        doubted = same & (p >= config.marketing_threshold)
        head_factor = np.where(doubted, np.maximum(config.marketing_floor, 1.0 - p), 1.0)
        factor = np.minimum(factor, head_factor)
    factor = pd.Series(factor, index=predictions.index)
    return {str(i): float(v) for i, v in factor[factor < 1.0].items()}


def adjust_weights(
    ids: Sequence[str],
    sample_weight: np.ndarray,
    corrected: np.ndarray,
    used: pd.DataFrame,
    *,
    quality: Mapping[str, float],
    n_shared: int,
    doubt: Mapping[str, float],
    config: TrustConfig | None = None,
) -> tuple[np.ndarray, TrustResult]:
    """The retrain's sample weights with reps weighed by quality and doubted marketing rows down."""
    config = config or TrustConfig()
    weights = np.asarray(sample_weight, dtype=float).copy()
    result = TrustResult(n_shared_leads=n_shared, rep_quality=dict(quality))
    ids = [str(i) for i in ids]
    if quality:
        mean = float(np.mean(list(quality.values()))) or 1.0
        factors = {
            r: float(np.clip(q / mean, config.min_factor, config.max_factor))
            for r, q in quality.items()
        }
        result.rep_factors = factors
        training_rows = used[used.get("role", "training") == "training"] if len(used) else used
        by_lead: dict[str, list[float]] = {}
        for lead_id, reviewer in zip(
            training_rows["lead_id"], training_rows["reviewer"], strict=True
        ):
            by_lead.setdefault(str(lead_id), []).append(factors.get(str(reviewer), 1.0))
        for n, lead_id in enumerate(ids):
            if corrected[n] and lead_id in by_lead:
                weights[n] *= float(np.mean(by_lead[lead_id]))
        result.notes.append(
            "reps' labels weighed by agreement with consensus on "
            f"{n_shared} multiply-reviewed labels: "
            + ", ".join(f"{r} ×{f:.2f}" for r, f in sorted(factors.items()))
        )
    else:
        result.notes.append(
            f"every rep weighs the same: {n_shared} multiply-reviewed labels, "
            f"{config.min_shared_leads} needed per field to measure agreement"
        )
    for n, lead_id in enumerate(ids):
        if not corrected[n] and lead_id in doubt:
            weights[n] *= doubt[lead_id]
            result.marketing_downweighted[lead_id] = doubt[lead_id]
    result.notes.append(
        f"{len(result.marketing_downweighted)} marketing labels down-weighted: the model of "
        f"corrections says they are wrong with probability ≥ {config.marketing_threshold:.0%}"
    )
    return weights, result


@dataclass
class SoftRelabelResult:
    """What :func:`soft_relabel` changed: per lead and head, the inferred label and its weight."""

    threshold: float
    relabelled: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "threshold": self.threshold,
            "n_rows_added": sum(len(v) for v in self.relabelled.values()),
            "n_leads": len(self.relabelled),
            "relabelled": self.relabelled,
            "notes": self.notes,
        }


def soft_row_id(lead_id: str, head: str, holdout_share: float) -> str:
    """The id of a lead's inferred (soft-label) row: in the same holdout side as the lead."""
    side = bool(holdout_mask([lead_id], holdout_share)[0])
    for n in range(200):
        candidate = f"{lead_id}~soft-{head}" + (f"-{n}" if n else "")
        if bool(holdout_mask([candidate], holdout_share)[0]) == side:
            return candidate
    raise RuntimeError(f"no soft-row id on the holdout side of {lead_id!r}")  # pragma: no cover


@dataclass
class _SoftRows:
    """The extra rows :func:`soft_relabel` adds: source row, id, labels per head, weight."""

    rows: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    labels: dict[str, list[Any]] = field(default_factory=lambda: {h: [] for h in _HEADS})
    weights: list[float] = field(default_factory=list)
    #: Per source row, the highest p of its doubted heads (marketing's row keeps 1 − p).
    down: dict[int, float] = field(default_factory=dict)


def _doubted_rows(
    training: Any,
    corrected: np.ndarray,
    weights: np.ndarray,
    predictions: pd.DataFrame,
    queue: pd.DataFrame,
    result: SoftRelabelResult,
    holdout_share: float,
) -> _SoftRows:
    """Uncorrected marketing rows doubted at ``result.threshold``, as extra (soft) rows."""
    position = {str(lead_id): n for n, lead_id in enumerate(training.ids)}
    q = queue.reindex(predictions.index)
    soft = _SoftRows()
    for head in _HEADS:
        y = training.labels(head)
        if y is None or f"p_{head}_wrong" not in predictions or f"{head}_to" not in predictions:
            continue
        served = q[head].astype(object).to_numpy()
        marketing = q[f"marketing_{head}"].astype(object).to_numpy()
        p = predictions[f"p_{head}_wrong"].to_numpy(dtype=float)
        to = predictions[f"{head}_to"].astype(object).to_numpy()
        for k, lead_id in enumerate(predictions.index.astype(str)):
            n = position.get(lead_id)
            if n is None or corrected[n] or p[k] < result.threshold or to[k] is None:
                continue
            if served[k] != marketing[k] or str(to[k]) == str(marketing[k]):
                continue
            if str(y.iloc[n]) != str(marketing[k]):
                continue
            soft.rows.append(n)
            soft.ids.append(soft_row_id(lead_id, head, holdout_share))
            for other in _HEADS:
                other_y = training.labels(other)
                value = None if other_y is None else other_y.iloc[n]
                soft.labels[other].append(str(to[k]) if other == head else value)
            soft.weights.append(float(p[k]) * weights[n])
            soft.down[n] = max(soft.down.get(n, 0.0), float(p[k]))
            result.relabelled.setdefault(lead_id, {})[head] = {
                "marketing": str(marketing[k]),
                "inferred": str(to[k]),
                "p_wrong": round(float(p[k]), 4),
            }
    return soft


def _with_soft_rows(training: Any, soft: _SoftRows) -> Any:
    """``training`` with the soft rows appended (``label_source`` inferred)."""
    new_index = pd.Index(soft.ids, name=training.ids.name, dtype=object)
    src = training.ids[soft.rows]

    def add(frame: pd.DataFrame) -> pd.DataFrame:
        return pd.concat([frame, frame.loc[src].set_axis(new_index)])

    def extended(head: str, y: pd.Series | None) -> pd.Series | None:
        if y is None:
            return None
        return pd.concat([y, pd.Series(soft.labels[head], index=new_index, name=y.name)])

    labels = {head: extended(head, training.labels(head)) for head in _HEADS}
    slices = add(training.slices)
    slices.loc[new_index, "label_source"] = "inferred"
    ids = training.ids.append(new_index)
    leads = add(training.leads)
    return training.relabelled(labels, X=add(training.X), ids=ids, leads=leads, slices=slices)


def soft_relabel(
    retrain_set: Any,
    predictions: pd.DataFrame | None,
    queue: pd.DataFrame,
    *,
    threshold: float = 0.8,
    holdout_share: float = 0.2,
) -> tuple[Any, SoftRelabelResult]:
    """Split doubted marketing rows into marketing's label (1 − p) and the predicted change (p)."""
    result = SoftRelabelResult(threshold=threshold)
    if predictions is None or predictions.empty:
        result.notes.append(
            "no marketing label soft-relabelled: the model of corrections is not fitted"
        )
        return retrain_set, result
    training = retrain_set.training
    weights = np.asarray(retrain_set.sample_weight, dtype=float).copy()
    corrected = np.asarray(retrain_set.corrected, dtype=bool)
    soft = _doubted_rows(training, corrected, weights, predictions, queue, result, holdout_share)
    for n, p_max in soft.down.items():
        weights[n] *= 1.0 - p_max
    if not soft.rows:
        result.notes.append(
            f"no marketing label soft-relabelled: none doubted with probability ≥ {threshold:.0%}"
        )
        return replace(retrain_set, sample_weight=weights), result
    result.notes.append(
        f"{len(soft.rows)} marketing label(s) on {len(result.relabelled)} lead(s) soft-relabelled: "
        f"the model of corrections says they are wrong with probability ≥ {threshold:.0%}; "
        "marketing's label keeps weight 1 − p and the predicted rep label is an extra "
        "row at weight p (label_source inferred, never a rep label)"
    )
    return (
        replace(
            retrain_set,
            training=_with_soft_rows(training, soft),
            sample_weight=np.concatenate([weights, np.asarray(soft.weights)]),
            corrected=np.concatenate([corrected, np.zeros(len(soft.rows), dtype=bool)]),
            notes=(*retrain_set.notes, *result.notes),
        ),
        result,
    )


@dataclass
class TrustEvidence:
    """Reps' measured quality and the model of corrections' predictions (None at cold start)."""

    quality: dict[str, float]
    n_shared: int
    predictions: pd.DataFrame | None
    queue: pd.DataFrame


def gather_evidence(store: Any, *, importance_weighted: bool = False) -> TrustEvidence:
    """Fit what :func:`apply_label_trust` needs from ``store`` (a :class:`data.store.Store`).

    ``importance_weighted``: the model of corrections weighs the reviewed leads as the
    unreviewed ones it relabels (:func:`training.correction_model.selection_weights`).
    """
    frame = store.corrections_frame()
    reviewed = sorted(set(frame["lead_id"])) if not frame.empty else []
    latest = store.latest_predictions(reviewed, with_features=False)
    probabilities = {i: row.get("probabilities") or {} for i, row in latest.items()}
    quality, n_shared = rep_quality(frame, probabilities, label_choices(store))
    refit = refit_queue(
        store,
        LearnedQueueConfig(out_of_fold=True, importance_weighted=importance_weighted),
        write=False,
    )
    queue = refit.queue if refit.queue is not None else pd.DataFrame()
    return TrustEvidence(quality, n_shared, refit.predictions, queue)


def apply_label_trust(
    retrain_set: Any,
    evidence: TrustEvidence,
    *,
    soft_threshold: float | None = None,
    holdout_share: float = 0.2,
    config: TrustConfig | None = None,
) -> tuple[Any, TrustResult]:
    """The retrain set with reps weighed and doubted marketing labels handled, and what changed."""
    config = config or TrustConfig()
    soft = soft_threshold is not None  # soft labels replace down-weighting marketing's
    doubt = {} if soft else marketing_doubt(evidence.predictions, evidence.queue, config)
    weights, trust = adjust_weights(
        [str(i) for i in retrain_set.training.ids],
        retrain_set.sample_weight,
        retrain_set.corrected,
        retrain_set.used,
        quality=evidence.quality,
        n_shared=evidence.n_shared,
        doubt=doubt,
        config=config,
    )
    if soft:
        # adjust_weights' note on marketing rows would say 0 down-weighted: soft labels replace it.
        trust.notes = [n for n in trust.notes if "marketing labels down-weighted" not in n]
    out = replace(retrain_set, sample_weight=weights, notes=(*retrain_set.notes, *trust.notes))
    if soft:
        out, trust.soft = soft_relabel(
            out,
            evidence.predictions,
            evidence.queue,
            threshold=soft_threshold,
            holdout_share=holdout_share,
        )
    return out, trust
