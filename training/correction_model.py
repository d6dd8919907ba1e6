"""The model of corrections: where marketing's labels and the served answers are wrong."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

__all__ = [
    "CATEGORICAL_FEATURES",
    "CorrectionModel",
    "CorrectionModelConfig",
    "design_frame",
    "selection_weights",
]

HEADS: tuple[str, ...] = ("stage", "persona")

#: Snapshot columns used as categories (the free-text ones, like company and the
#: raw job title, are left out: too many values for a few hundred corrections).
CATEGORICAL_FEATURES: tuple[str, ...] = (
    "title_function",
    "title_seniority",
    "seniority",
    "department",
    "lead_source",
    "industry",
)
#: Served-answer and queue columns the design takes from the queue rows.
_QUEUE_NUMBERS: tuple[str, ...] = (
    "stage_confidence",
    "stage_margin",
    "persona_confidence",
    "persona_margin",
    "p_marketing_stage",
    "p_marketing_persona",
    "base_priority",
    # Out-of-fold disagreement (:func:`training.learned_queue.out_of_fold_disagreement`):
    # a model that did not train on the lead, on marketing's label and on the served one.
    "oof_p_marketing_stage",
    "oof_p_marketing_persona",
    "oof_p_served_stage",
    "oof_p_served_persona",
)
_QUEUE_LABELS: tuple[str, ...] = ("stage", "persona", "marketing_stage", "marketing_persona")
_MAX_CATEGORIES = 60
#: Wrong answers needed to learn which label a rep chooses (fewer: the most frequent).
_MIN_CHANGE_ROWS = 20


@dataclass(frozen=True)
class CorrectionModelConfig:
    """How the model of corrections is fitted."""

    min_corrections: int = 50
    min_wrong: int = 10
    max_iter: int = 150
    learning_rate: float = 0.08
    max_leaf_nodes: int = 15
    min_samples_leaf: int = 8
    l2_regularization: float = 1.0
    seed: int = 0
    n_threads: int = 1

    def __post_init__(self) -> None:
        if self.min_corrections < 1 or self.min_wrong < 1:
            raise ValueError("min_corrections and min_wrong must be at least 1")


def design_frame(
    features: pd.DataFrame, queue: pd.DataFrame, *, categories: Mapping[str, Sequence[str]] | None
) -> pd.DataFrame:
    """The correction model's inputs, one row per lead."""
    idx = queue.index
    feats = features.reindex(idx)
    out: dict[str, Any] = {}
    for name in feats.columns:
        if name in CATEGORICAL_FEATURES:
            continue
        col = feats[name]
        if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
            out[f"f_{name}"] = pd.to_numeric(col, errors="coerce").astype(float).to_numpy()
    for name in _QUEUE_NUMBERS:
        values = queue[name] if name in queue else pd.Series(np.nan, index=idx)
        out[f"q_{name}"] = pd.to_numeric(values, errors="coerce").astype(float).to_numpy()
    for head in HEADS:
        served = queue.get(head, pd.Series(None, index=idx)).astype(object)
        marketing = queue.get(f"marketing_{head}", pd.Series(None, index=idx)).astype(object)
        out[f"q_agree_{head}"] = (served.to_numpy() == marketing.to_numpy()).astype(float)
    frame = pd.DataFrame(out, index=idx)
    cat_sources = {f"c_{n}": feats[n] for n in CATEGORICAL_FEATURES if n in feats}
    cat_sources.update({f"c_{n}": queue[n] for n in _QUEUE_LABELS if n in queue})
    for name, values in cat_sources.items():
        text = values.astype(object).where(values.notna(), None)
        text = text.map(lambda v: None if v is None else str(v))
        if categories is not None:
            allowed = list(categories.get(name, ()))
        else:
            allowed = text.value_counts().index[:_MAX_CATEGORIES].tolist()
        frame[name] = pd.Categorical(text.where(text.isin(allowed), None), categories=allowed)
    return frame


@dataclass
class CorrectionModel:
    """Per head: P(served answer wrong) and, when wrong, which label a rep would choose."""

    config: CorrectionModelConfig = field(default_factory=CorrectionModelConfig)
    fitted_: bool = False
    n_reviewed_: int = 0
    n_wrong_: dict[str, int] = field(default_factory=dict)
    columns_: list[str] = field(default_factory=list)
    categories_: dict[str, list[str]] = field(default_factory=dict)
    wrong_: dict[str, Any] = field(default_factory=dict)
    change_: dict[str, Any] = field(default_factory=dict)

    def _classifier(self) -> Any:
        from sklearn.ensemble import HistGradientBoostingClassifier

        c = self.config
        return HistGradientBoostingClassifier(
            max_iter=c.max_iter,
            learning_rate=c.learning_rate,
            max_leaf_nodes=c.max_leaf_nodes,
            min_samples_leaf=c.min_samples_leaf,
            l2_regularization=c.l2_regularization,
            categorical_features="from_dtype",
            early_stopping=False,
            random_state=c.seed,
        )

    def _fit(
        self, X: pd.DataFrame, y: np.ndarray, weight: np.ndarray | None = None
    ) -> tuple[Any, list[str]]:
        """A classifier on the columns that have a value in these rows, and those columns."""
        columns = [c for c in X.columns if X[c].notna().any()]
        with threadpool_limits(limits=self.config.n_threads, user_api="openmp"):
            return self._classifier().fit(X[columns], y, sample_weight=weight), columns

    def fit(
        self,
        features: pd.DataFrame,
        queue: pd.DataFrame,
        rep_labels: pd.DataFrame,
        sample_weight: pd.Series | None = None,
    ) -> CorrectionModel:
        """Fit on the reviewed leads (each weighted by ``sample_weight[lead]``, if given)."""
        ids = rep_labels.index
        weight = (
            None
            if sample_weight is None
            else sample_weight.reindex(ids).fillna(1.0).to_numpy(dtype=float)
        )
        self.fitted_ = False
        self.wrong_, self.change_, self.n_wrong_ = {}, {}, {}
        self.n_reviewed_ = len(ids)
        if len(ids) < self.config.min_corrections:
            return self
        X = design_frame(features.reindex(ids), queue.reindex(ids), categories=None)
        self.columns_ = list(X.columns)
        self.categories_ = {
            name: [str(v) for v in X[name].cat.categories]
            for name in X.columns
            if isinstance(X[name].dtype, pd.CategoricalDtype)
        }
        any_wrong = 0
        for head in HEADS:
            rep = rep_labels.get(head)
            if rep is None:
                continue
            known = rep.notna().to_numpy()
            served = queue.reindex(ids)[head].astype(object).to_numpy()
            wrong = rep.astype(object).to_numpy() != served
            self.n_wrong_[head] = int((wrong & known).sum())
            any_wrong += self.n_wrong_[head]
            y = wrong[known]
            if y.all() or not y.any():
                continue
            self.wrong_[head] = self._fit(
                X[known], y.astype(int), None if weight is None else weight[known]
            )
            changed = known & wrong
            targets = rep.astype(object).to_numpy()[changed].astype(str)
            if len(set(targets)) >= 2 and len(targets) >= _MIN_CHANGE_ROWS:
                self.change_[head] = self._fit(
                    X[changed], targets, None if weight is None else weight[changed]
                )
            elif len(targets):
                # Too few changes to learn which: the most frequent one.
                values, counts = np.unique(targets, return_counts=True)
                self.change_[head] = str(values[np.argmax(counts)])
        self.fitted_ = bool(self.wrong_) and any_wrong >= self.config.min_wrong
        return self

    def predict(self, features: pd.DataFrame, queue: pd.DataFrame) -> pd.DataFrame | None:
        """P(served answer wrong) per head and overall, and the likely change, per lead."""
        if not self.fitted_:
            return None
        with threadpool_limits(limits=self.config.n_threads, user_api="openmp"):
            return self._predict(features, queue)

    def _predict(self, features: pd.DataFrame, queue: pd.DataFrame) -> pd.DataFrame:
        X = design_frame(features, queue, categories=self.categories_)[self.columns_]
        out = pd.DataFrame(index=queue.index)
        keep = np.ones(len(X))
        for head in HEADS:
            fitted = self.wrong_.get(head)
            p = np.zeros(len(X))
            if fitted is not None:
                clf, columns = fitted
                p = clf.predict_proba(X[columns])[:, 1]
            out[f"p_{head}_wrong"] = p
            keep *= 1.0 - p
            change = self.change_.get(head)
            if change is None:
                out[f"{head}_to"] = None
            elif isinstance(change, str):
                out[f"{head}_to"] = change
            else:
                clf, columns = change
                proba = clf.predict_proba(X[columns])
                served = queue[head].astype(object).to_numpy()
                classes = np.asarray(clf.classes_).astype(str)
                # The rep's label is never the served one: mask it before the argmax.
                proba = np.where(classes[None, :] == served[:, None].astype(str), -1.0, proba)
                out[f"{head}_to"] = classes[np.argmax(proba, axis=1)]
        out["p_wrong"] = 1.0 - keep
        return out


# ------------------------------------- the reviewed leads weighed as the unreviewed population


def selection_weights(
    features: pd.DataFrame,
    queue: pd.DataFrame,
    reviewed: pd.Index,
    *,
    folds: int = 3,
    max_ratio: float = 10.0,
    seed: int = 0,
) -> pd.Series:
    """Per reviewed lead, the odds of *not* being reviewed given its inputs (mean 1).

    A queue reviews the leads it ranks first, so a model of corrections fitted on
    them learns where it looked, not where it is applied (the leads not reviewed).
    A classifier of reviewed vs not (cross-fitted over ``folds`` parts of the
    leads, so no lead's own row scores it) gives each lead's probability π of
    having been reviewed; weighing each reviewed lead by (1 − π) / π makes the
    reviewed leads stand for the unreviewed ones (importance weighting under
    covariate shift). Weights are capped at ``max_ratio`` × their median and
    scaled to mean 1; leads reviewed at random all weigh about 1.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    X = design_frame(features.reindex(queue.index), queue, categories=None)
    X = X[[c for c in X.columns if X[c].notna().any()]]
    y = queue.index.isin(reviewed).astype(int)
    if y.sum() == 0 or y.sum() == len(y):
        return pd.Series(1.0, index=queue.index[y == 1], dtype=float)
    part = pd.util.hash_pandas_object(queue.index.to_series(), index=False).to_numpy() % folds
    pi = np.full(len(X), y.mean())
    for k in range(folds):
        fit_rows = part != k
        if y[fit_rows].min() == y[fit_rows].max():
            continue
        clf = HistGradientBoostingClassifier(
            max_iter=100,
            learning_rate=0.1,
            max_leaf_nodes=15,
            min_samples_leaf=40,
            l2_regularization=1.0,
            categorical_features="from_dtype",
            # Stopped on held-out loss: with nothing to learn (leads reviewed at
            # random) it stops near the base rate instead of fitting noise.
            early_stopping=True,
            validation_fraction=0.25,
            n_iter_no_change=5,
            random_state=seed,
        )
        with threadpool_limits(limits=1, user_api="openmp"):
            clf.fit(X[fit_rows], y[fit_rows])
            pi[~fit_rows] = clf.predict_proba(X[~fit_rows])[:, 1]
    pi = np.clip(pi[y == 1], 1e-3, 1.0 - 1e-3)
    odds = (1.0 - pi) / pi
    odds = np.minimum(odds, max_ratio * float(np.median(odds)))
    return pd.Series(odds / odds.mean(), index=queue.index[y == 1], dtype=float)


# ------------------------------------------------- issue #19 part A: one change's probability


def change_probability(
    model: CorrectionModel,
    features: pd.DataFrame,
    queue: pd.DataFrame,
    head: str,
    to_label: str,
) -> np.ndarray | None:
    """P(a rep changes the served ``head`` answer of each lead to ``to_label``)."""
    if not model.fitted_ or head not in model.wrong_ or head not in model.change_:
        return None
    change = model.change_[head]
    if isinstance(change, str):
        if change != to_label:
            return None
        share = np.ones(len(queue))
    else:
        clf, columns = change
        classes = np.asarray(clf.classes_).astype(str)
        if to_label not in classes:
            return None
    with threadpool_limits(limits=model.config.n_threads, user_api="openmp"):
        X = design_frame(features, queue, categories=model.categories_)[model.columns_]
        wrong_clf, wrong_columns = model.wrong_[head]
        p_wrong = wrong_clf.predict_proba(X[wrong_columns])[:, 1]
        if not isinstance(change, str):
            proba = clf.predict_proba(X[columns])
            served = queue[head].astype(object).to_numpy().astype(str)
            proba = np.where(classes[None, :] == served[:, None], 0.0, proba)
            total = proba.sum(axis=1)
            target = proba[:, int(np.flatnonzero(classes == to_label)[0])]
            share = np.divide(target, total, out=np.zeros(len(queue)), where=total > 0)
    return np.asarray(p_wrong * share, dtype=float)
