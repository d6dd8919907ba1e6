"""The adaptive review queue: refit the model of corrections, write the queue's keys."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from data.review_queue import LEARNED_KEY_SCALE, queue_frame, write_sort_keys
from training.correction_model import (
    HEADS,
    CorrectionModel,
    CorrectionModelConfig,
    selection_weights,
)
from training.noise import out_of_fold_proba
from training.rep_labels import current_corrections

if TYPE_CHECKING:
    from data.store import Store

__all__ = [
    "LearnedQueueConfig",
    "RefitResult",
    "diversified",
    "out_of_fold_disagreement",
    "refit_queue",
    "rep_label_frame",
]

#: How the learned key is described where the queue shows it (``lead_queue.priority_method``).
METHOD_LEARNED = "learned"
#: Today's formula (:func:`data.review_queue.priority_scores`).
METHOD_FORMULA = "formula"


@dataclass(frozen=True)
class LearnedQueueConfig:
    """How the adaptive queue ranks."""

    model: CorrectionModelConfig = field(default_factory=CorrectionModelConfig)
    diversity_scale: float = 150.0
    key_scale: float = LEARNED_KEY_SCALE
    out_of_fold: bool = False
    #: Weigh the reviewed leads as the unreviewed ones (:func:`training.correction_model.
    #: selection_weights`) when fitting the model of corrections.
    importance_weighted: bool = False

    def __post_init__(self) -> None:
        if self.diversity_scale < 0:
            raise ValueError(f"diversity_scale must not be negative, got {self.diversity_scale}")
        if self.key_scale <= 0:
            raise ValueError(f"key_scale must be positive, got {self.key_scale}")


@dataclass
class RefitResult:
    """What one refit did."""

    fitted: bool
    n_reviewed: int
    n_wrong: dict[str, int]
    n_keys: int
    seconds: float
    model: CorrectionModel
    predictions: pd.DataFrame | None = None
    queue: pd.DataFrame | None = None
    out_of_fold_seconds: float = 0.0

    def summary(self) -> str:
        """One line for a person."""
        if not self.fitted:
            return (
                f"cold start: {self.n_reviewed} reviewed leads are too few to learn from; "
                f"{self.n_keys} leads keep today's ranking"
            )
        wrong = ", ".join(f"{h} {n}" for h, n in self.n_wrong.items())
        oof = (
            f", out-of-fold disagreement {self.out_of_fold_seconds:.1f} s of it"
            if self.out_of_fold_seconds
            else ""
        )
        return (
            f"learned from {self.n_reviewed} reviewed leads (served answer wrong: {wrong}); "
            f"re-ranked {self.n_keys} leads in {self.seconds:.1f} s{oof}; the queue now shows "
            "each lead's estimated chance that its served answer is wrong"
        )


def rep_label_frame(corrections: pd.DataFrame) -> pd.DataFrame:
    """Reps' current labels, one row per lead: ``stage`` and ``persona`` (NaN: not labelled)."""
    if corrections.empty:
        return pd.DataFrame(columns=list(HEADS), dtype=object)
    wide = corrections.pivot_table(
        index="lead_id", columns="field", values="new_label", aggfunc="last"
    )
    return wide.reindex(columns=list(HEADS)).astype(object)


def _features(store: Store, lead_ids: Any) -> pd.DataFrame:
    latest = store.latest_predictions(lead_ids, with_features=True)
    snapshots = {i: row.get("features") or {} for i, row in latest.items()}
    return pd.DataFrame.from_dict(snapshots, orient="index")


_OOF_CACHE: dict[str, pd.DataFrame] = {}


def _oof_key(features: pd.DataFrame, queue: pd.DataFrame) -> str:
    digest = hashlib.blake2b(digest_size=16)
    cols = ["prediction_id", "marketing_stage", "marketing_persona", "stage", "persona"]
    part = queue.reindex(columns=cols).astype(str)
    digest.update(pd.util.hash_pandas_object(part, index=True).to_numpy().tobytes())
    digest.update(str(features.shape).encode())
    return digest.hexdigest()


def out_of_fold_disagreement(
    features: pd.DataFrame, queue: pd.DataFrame, *, seed: int = 0
) -> pd.DataFrame:
    """Per lead, the out-of-fold probability of marketing's label and of the served answer."""
    key = _oof_key(features, queue) + f":{seed}"
    if key in _OOF_CACHE:
        return _OOF_CACHE[key].copy()
    out = pd.DataFrame(index=queue.index)
    X = features.reindex(queue.index)
    for head in HEADS:
        marketing = queue.get(f"marketing_{head}", pd.Series(None, index=queue.index))
        served = queue.get(head, pd.Series(None, index=queue.index)).astype(object)
        has = marketing.notna().to_numpy()
        p_marketing = np.full(len(queue), np.nan)
        p_served = np.full(len(queue), np.nan)
        labels = marketing[has].astype(str)
        if labels.nunique() >= 2 and has.sum() >= 20:
            rows = np.flatnonzero(has)
            classes, proba = out_of_fold_proba(
                X.iloc[rows], labels.to_list(), fold_keys=[str(i) for i in labels.index], seed=seed
            )
            index = {c: n for n, c in enumerate(classes)}
            col = np.array([index[v] for v in labels])
            p_marketing[rows] = proba[np.arange(len(rows)), col]
            served_col = np.array([index.get(str(v), -1) for v in served.to_numpy()[rows]])
            ok = served_col >= 0
            p_served[rows[ok]] = proba[np.flatnonzero(ok), served_col[ok]]
        out[f"oof_p_marketing_{head}"] = p_marketing
        out[f"oof_p_served_{head}"] = p_served
    if len(_OOF_CACHE) > 8:
        _OOF_CACHE.clear()
    _OOF_CACHE[key] = out
    return out.copy()


def diversified(p_wrong: pd.Series, group: pd.Series, scale: float) -> pd.Series:
    """``p_wrong / (1 + r / scale)``, r the lead's rank by ``p_wrong`` within its group."""
    if scale <= 0 or p_wrong.empty:
        return p_wrong.astype(float)
    frame = pd.DataFrame({"p": p_wrong.astype(float), "g": group.astype(str)})
    rank = frame.groupby("g")["p"].rank(method="first", ascending=False) - 1.0
    return frame["p"] / (1.0 + rank / scale)


def _groups(pred: pd.DataFrame, queue: pd.DataFrame) -> pd.Series:
    """The predicted change of each lead: its likelier wrong head, served label → rep label."""
    stage_first = pred["p_stage_wrong"] >= pred["p_persona_wrong"]
    stage = "stage:" + queue["stage"].astype(str) + ">" + pred["stage_to"].astype(str)
    persona = "persona:" + queue["persona"].astype(str) + ">" + pred["persona_to"].astype(str)
    return stage.where(stage_first, persona)


def refit_queue(
    store: Store, config: LearnedQueueConfig | None = None, *, write: bool = True
) -> RefitResult:
    """Fit the model of corrections on the corrections so far and re-key the queue."""
    config = config or LearnedQueueConfig()
    start = time.perf_counter()
    queue = queue_frame(store)
    reps = rep_label_frame(current_corrections(store))
    reps = reps[reps.index.isin(queue.index)]
    model = CorrectionModel(config.model)
    open_ids = queue.index[~queue["reviewed"].astype(bool) & ~queue.index.isin(reps.index)]
    oof_seconds = 0.0
    features: pd.DataFrame | None = None
    if len(reps) >= config.model.min_corrections:
        features = _features(store, list(queue.index))
        if config.out_of_fold:
            started = time.perf_counter()
            queue = queue.join(out_of_fold_disagreement(features, queue))
            oof_seconds = time.perf_counter() - started
        weights = (
            selection_weights(features, queue, reps.index, seed=config.model.seed)
            if config.importance_weighted
            else None
        )
        model.fit(features.reindex(reps.index), queue.loc[reps.index], reps, weights)
    predictions = None
    if model.fitted_:
        assert features is not None
        open_queue = queue.loc[open_ids]
        predictions = model.predict(features.reindex(open_ids), open_queue)
        assert predictions is not None
        predictions["group"] = _groups(predictions, open_queue)
        predictions["priority"] = diversified(
            predictions["p_wrong"], predictions["group"], config.diversity_scale
        )
        keys = {i: -config.key_scale * float(p) for i, p in predictions["priority"].items()}
    else:
        keys = {i: -float(p) for i, p in queue.loc[open_ids, "base_priority"].items()}
    # Reviewed rows get today's key back (they sink below the others in any case).
    reviewed = queue.index.difference(open_ids)
    keys.update({i: -float(p) for i, p in queue.loc[reviewed, "base_priority"].items()})
    n = write_sort_keys(store, keys) if write else 0
    return RefitResult(
        fitted=model.fitted_,
        n_reviewed=len(reps),
        n_wrong=dict(model.n_wrong_),
        n_keys=n,
        seconds=time.perf_counter() - start,
        model=model,
        predictions=predictions,
        queue=queue,
        out_of_fold_seconds=oof_seconds,
    )
