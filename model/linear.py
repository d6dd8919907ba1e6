"""A regularised linear head on the encoder's matrix, and its additive reasons.
Design notes: ``docs/design/model.md``."""

from __future__ import annotations

import concurrent.futures
import copy
import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

__all__ = ["LinearHead", "fit_linear_cv"]

#: C values tried by :func:`fit_linear_cv` (on standardised columns), weakest fit first.
C_GRID: tuple[float, ...] = (0.003, 0.03, 0.3, 3.0)
#: Most rows a linear fit uses (a fixed random subset beyond; docs/design/model.md).
MAX_FIT_ROWS = 20_000


def _capped(rows: np.ndarray) -> np.ndarray:
    """``rows`` itself, or a fixed random subset of ``MAX_FIT_ROWS`` of them (sorted)."""
    if len(rows) <= MAX_FIT_ROWS:
        return rows
    pick = np.random.default_rng(0).choice(len(rows), size=MAX_FIT_ROWS, replace=False)
    return rows[np.sort(pick)]


class LinearHead:
    """Design matrix + standardisation + logistic regression of one head."""

    def __init__(
        self,
        n_classes: int,
        categorical: list[int],
        n_categories: list[int],
        *,
        C: float = 1.0,
        max_iter: int = 300,
    ) -> None:
        self.n_classes = n_classes
        self.categorical = list(categorical)
        self.n_categories = list(n_categories)
        self.C = C
        self.max_iter = max_iter

    # ---- design matrix

    def _layout(self, Z: np.ndarray) -> None:
        """Decide the design columns from training rows (clip bounds, fills, indicators)."""
        f = Z.shape[1]
        cat = set(self.categorical)
        self.numeric_ = np.asarray([j for j in range(f) if j not in cat], dtype=np.int64)
        num = Z[:, self.numeric_]
        missing = np.isnan(num)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing column
            lo = np.nanpercentile(num, 0.5, axis=0) if len(num) else np.zeros(0)
            hi = np.nanpercentile(num, 99.5, axis=0) if len(num) else np.zeros(0)
            self.lo_, self.hi_ = np.nan_to_num(lo), np.nan_to_num(hi)
            clipped = np.clip(num, self.lo_, self.hi_)
            self.fill_ = np.nan_to_num(np.nanmean(clipped, axis=0)) if len(num) else self.lo_
        self.indicator_ = np.flatnonzero(missing.any(axis=0))  # positions within numeric_
        # encoded column of every design column, in design order
        owner = [*self.numeric_.tolist(), *self.numeric_[self.indicator_].tolist()]
        for j, m in zip(self.categorical, self.n_categories, strict=True):
            owner.extend([j] * m)
        self.owner_ = np.asarray(owner, dtype=np.int64)
        self.n_features_ = f

    def design(self, Z: np.ndarray) -> np.ndarray:
        """The unstandardised design matrix of ``Z``, shape (n_rows, n_design)."""
        Z = np.asarray(Z, dtype=float)
        num = Z[:, self.numeric_]
        missing = np.isnan(num)
        filled = np.where(missing, self.fill_, np.clip(num, self.lo_, self.hi_))
        blocks = [filled, missing[:, self.indicator_].astype(float)]
        for j, m in zip(self.categorical, self.n_categories, strict=True):
            codes = Z[:, j]
            onehot = np.zeros((len(Z), m))
            ok = ~np.isnan(codes) & (codes >= 0) & (codes < m)
            onehot[np.flatnonzero(ok), codes[ok].astype(np.int64)] = 1.0
            blocks.append(onehot)
        return np.hstack(blocks) if blocks else np.zeros((len(Z), 0))

    # ---- fitting

    def prepare(self, Z: np.ndarray) -> np.ndarray:
        """Fix the layout and scaler on ``Z``; return its standardised design matrix."""
        self._layout(Z)
        D = self.design(Z)
        self.scaler_ = StandardScaler().fit(D)
        return self.scaler_.transform(D)

    def fit_standardised(
        self, S: np.ndarray, y_index: np.ndarray, weight: np.ndarray, *, warm: Any = None
    ) -> LinearHead:
        """Fit the logistic regression on an already standardised design matrix."""
        model = warm
        if model is None:
            model = LogisticRegression(C=self.C, max_iter=self.max_iter, warm_start=True)
        model.set_params(C=self.C)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(S, y_index, sample_weight=weight)
        self.converged_ = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        self.model_ = model
        coef = np.asarray(model.coef_, dtype=float)
        intercept = np.asarray(model.intercept_, dtype=float)
        if self.n_classes == 2:  # sklearn keeps one row for class 1
            coef = np.vstack([np.zeros_like(coef[0]), coef[0]])
            intercept = np.array([0.0, intercept[0]])
        self.coef_ = coef  # (k, n_design), on standardised columns
        self.intercept_ = intercept
        return self

    def standardise(self, Z: np.ndarray) -> np.ndarray:
        D = self.design(Z)
        return (D - self.scaler_.mean_) / self.scaler_.scale_

    # ---- predicting and explaining

    def raw_logits(self, Z: np.ndarray) -> np.ndarray:
        """Raw scores, shape (n_rows, n_classes) — the booster's convention."""
        return self.standardise(Z) @ self.coef_.T + self.intercept_

    def contributions(self, Z: np.ndarray, class_index: np.ndarray | None = None) -> np.ndarray:
        """Additive log-odds contributions per encoded column, the bias last."""
        S = self.standardise(Z)
        f = self.n_features_
        group = np.zeros((S.shape[1], f))
        group[np.arange(S.shape[1]), self.owner_] = 1.0
        coef, intercept = self.coef_, self.intercept_
        if self.n_classes == 2:  # the booster's convention: class 0 is class 1 negated
            coef, intercept = (
                np.vstack([-coef[1], coef[1]]),
                np.array([-intercept[1], intercept[1]]),
            )

        def of(index: np.ndarray) -> np.ndarray:  # contributions to class index[i] per row
            out = np.empty((len(S), f + 1))
            out[:, :f] = (S * coef[index]) @ group
            out[:, f] = intercept[index]
            return out

        if class_index is not None:
            return of(np.asarray(class_index, dtype=np.int64).reshape(-1))
        return np.stack([of(np.full(len(S), c)) for c in range(self.n_classes)], axis=1)


def _weighted_log_loss(raw: np.ndarray, shift: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    z = raw + shift
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-np.average(logp[np.arange(len(y)), y], weights=w))


@threadpool_limits.wrap(limits=1, user_api="blas")
def fit_linear_cv(
    Z: np.ndarray,
    y_index: np.ndarray,
    weight: np.ndarray,
    fit_weight: np.ndarray,
    folds: np.ndarray,
    *,
    n_classes: int,
    categorical: list[int],
    n_categories: list[int],
    logit_shift: np.ndarray,
    grid: tuple[float, ...] = C_GRID,
) -> tuple[LinearHead, np.ndarray, dict[str, Any]]:
    """Choose ``C`` on the given folds, return the head fitted on all rows."""
    probe = LinearHead(n_classes, categorical, n_categories)
    S = probe.prepare(Z)
    K = int(folds.max()) + 1
    oof = {c: np.zeros((len(y_index), n_classes)) for c in grid}

    def fold_chain(f: int) -> None:
        out = folds == f
        fit_rows = _capped(np.flatnonzero(~out))
        warm = None
        for c in grid:
            part = LinearHead(n_classes, categorical, n_categories, C=c)
            part.fit_standardised(S[fit_rows], y_index[fit_rows], fit_weight[fit_rows], warm=warm)
            warm = part.model_
            oof[c][out] = S[out] @ part.coef_.T + part.intercept_

    # Two threads, one fold's chain each (docs/design/model.md, fit_linear_cv).
    with concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="linear-cv") as pool:
        list(pool.map(fold_chain, range(K)))
    scores = {c: _weighted_log_loss(oof[c], logit_shift, y_index, weight) for c in grid}
    best = min(grid, key=lambda c: (scores[c], grid.index(c)))
    head = copy.copy(probe)  # the layout and scaler of every fit above
    head.C = best
    rows = _capped(np.arange(len(y_index)))
    head.fit_standardised(S[rows], y_index[rows], fit_weight[rows])
    report = {
        "C": best,
        "oof_log_loss_by_C": {str(c): s for c, s in scores.items()},
        "design_columns": int(S.shape[1]),
        "converged": bool(head.converged_),
        "fit_rows": int(len(rows)),
    }
    return head, oof[best], report
