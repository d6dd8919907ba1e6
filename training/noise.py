"""Label noise: find the training rows whose label is probably wrong (confident learning)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "LABEL_NOISE_MODES",
    "LEARNING_RATE",
    "N_ESTIMATORS",
    "N_FOLDS",
    "TRUSTED_WEIGHT",
    "HeadIssues",
    "LabelNoiseResult",
    "clean_labels",
    "confident_flags",
    "find_label_issues",
    "noise_metrics",
    "out_of_fold_proba",
]

#: The accepted values of ``TrainConfig.label_noise`` / ``--label-noise``.
LABEL_NOISE_MODES: tuple[str, ...] = ("none", "prune", "reweight")
#: The out-of-fold classifier: 2 folds of 40 trees at a high learning rate (measured:
#: ``docs/design/training.md``).
N_FOLDS = 2
N_ESTIMATORS = 40
LEARNING_RATE = 0.15
#: Weight of a rep-verified (trusted) row in the out-of-fold fits.
TRUSTED_WEIGHT = 4.0


@dataclass(frozen=True)
class HeadIssues:
    """What confident learning found for one head."""

    classes: tuple[str, ...]
    proba: np.ndarray
    thresholds: dict[str, float]
    flagged: np.ndarray
    suggested: np.ndarray
    self_confidence: np.ndarray

    def flagged_per_class(self, labels: Sequence[str]) -> dict[str, int]:
        """Flagged rows per given label (every class listed, zeros included)."""
        given = np.asarray(labels, dtype=object)
        return {c: int(np.sum(self.flagged & (given == c))) for c in self.classes}

    def weights(self, labels: Sequence[str]) -> np.ndarray:
        """Row weights for ``reweight``: 1, or self-confidence / threshold for flagged rows."""
        given = np.asarray(labels, dtype=object)
        thr = np.array([self.thresholds[str(g)] for g in given], dtype=float)
        ratio = np.clip(self.self_confidence / np.maximum(thr, 1e-12), 0.0, 1.0)
        return np.where(self.flagged, ratio, 1.0)


@dataclass
class LabelNoiseResult:
    """Cleaned labels and weights for a two-head fit, and what was flagged."""

    mode: str
    y: dict[str, np.ndarray | None]
    weights: dict[str, np.ndarray]
    flagged: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0

    def metrics(self) -> dict[str, float]:
        """MLflow metrics: flagged rows per head and class, and the time it took."""
        return noise_metrics(self.flagged, self.seconds)


def noise_metrics(flagged: dict[str, dict[str, int]], seconds: float) -> dict[str, float]:
    """The label-noise step's MLflow metrics, also from its record in a model's metadata."""
    out: dict[str, float] = {"label_noise_seconds": float(seconds)}
    for head, per_class in flagged.items():
        out[f"{head}_label_noise_flagged"] = float(sum(per_class.values()))
        for label, n in per_class.items():
            out[f"{head}_label_noise_flagged__{_metric_key(label)}"] = float(n)
    return out


def _metric_key(label: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in str(label))


def _folds(y_index: np.ndarray, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    """A stratified fold number per row."""
    fold = np.empty(len(y_index), dtype=int)
    for c in np.unique(y_index):
        rows = np.flatnonzero(y_index == c)
        rng.shuffle(rows)
        fold[rows] = np.arange(len(rows)) % n_folds
    return fold


def _hash_folds(keys: Sequence[Any], n_folds: int, seed: int) -> np.ndarray:
    """A fold number per row from a salted hash of its key (the lead id)."""
    salt = f"leadready-noise-folds-{seed}:".encode()
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b(salt + str(k).encode(), digest_size=8).digest(), "big")
            % n_folds
            for k in keys
        ),
        dtype=int,
        count=len(keys),
    )


def out_of_fold_proba(
    X: pd.DataFrame,
    labels: Sequence[str],
    *,
    n_folds: int = N_FOLDS,
    n_estimators: int = N_ESTIMATORS,
    learning_rate: float = LEARNING_RATE,
    num_leaves: int = 15,
    num_threads: int = 1,
    seed: int = 0,
    sample_weight: Sequence[float] | None = None,
    fold_keys: Sequence[Any] | None = None,
) -> tuple[tuple[str, ...], np.ndarray]:
    """Out-of-fold class probabilities of every row (``n_folds`` folds)."""
    from model.classifier import HeadClassifier

    y = np.asarray(labels, dtype=object).astype(str)
    classes = tuple(sorted(set(y)))
    if len(classes) < 2:
        raise ValueError(f"need at least 2 classes to look for label noise, got {classes}")
    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, got {n_folds}")
    y_index = np.searchsorted(np.asarray(classes), y)
    if fold_keys is not None:
        if len(fold_keys) != len(y):
            raise ValueError(f"fold_keys has {len(fold_keys)} rows, labels have {len(y)}")
        fold = _hash_folds(fold_keys, n_folds, seed)
    else:
        fold = _folds(y_index, n_folds, np.random.default_rng(seed))
    weight = None if sample_weight is None else np.asarray(sample_weight, dtype=float)
    if weight is not None and weight.shape != (len(y),):
        raise ValueError(f"sample_weight has {weight.shape[0]} rows, labels have {len(y)}")
    proba = np.zeros((len(y), len(classes)))
    for k in range(n_folds):
        test = fold == k
        train = ~test
        if not test.any():
            continue
        est = HeadClassifier(
            n_estimators=n_estimators,
            learning_rate=learning_rate,
            num_leaves=num_leaves,
            num_threads=num_threads,
            calibration="none",
            random_state=seed + k,
        )
        est.fit(
            X.iloc[np.flatnonzero(train)],
            y[train],
            sample_weight=None if weight is None else weight[train],
        )
        cols = np.searchsorted(np.asarray(classes), est.classes_.astype(str))
        proba[np.ix_(np.flatnonzero(test), cols)] = est.predict_proba(X.iloc[np.flatnonzero(test)])
    return classes, proba


def confident_flags(
    proba: np.ndarray, y_index: np.ndarray, *, min_keep_share: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Confident-learning flags from out-of-fold probabilities."""
    proba = np.asarray(proba, dtype=float)
    y_index = np.asarray(y_index, dtype=int)
    n, k = proba.shape
    thresholds = np.array(
        [proba[y_index == c, c].mean() if np.any(y_index == c) else np.inf for c in range(k)]
    )
    self_conf = proba[np.arange(n), y_index]
    above = proba >= thresholds[None, :]
    above[np.arange(n), y_index] = False
    flagged = (self_conf < thresholds[y_index]) & above.any(axis=1)
    for c in range(k):
        rows = np.flatnonzero(y_index == c)
        limit = int(np.floor(len(rows) * (1.0 - min_keep_share)))
        hit = rows[flagged[rows]]
        if len(hit) > limit:
            keep = hit[np.argsort(self_conf[hit], kind="stable")[limit:]]
            flagged[keep] = False
    masked = np.where(above, proba, -np.inf)
    suggested = np.where(flagged, masked.argmax(axis=1), -1)
    return thresholds, flagged, suggested


def find_label_issues(
    X: pd.DataFrame,
    labels: Sequence[str],
    *,
    min_keep_share: float = 0.5,
    **fit: Any,
) -> HeadIssues:
    """Flag the rows of one head whose label is probably wrong (confident learning); ``fit``:
    the keywords of :func:`out_of_fold_proba` (folds, trees, seed, weights, fold keys)."""
    y = np.asarray(labels, dtype=object).astype(str)
    classes, proba = out_of_fold_proba(X, y, **fit)
    y_index = np.searchsorted(np.asarray(classes), y)
    thresholds, flagged, suggested = confident_flags(proba, y_index, min_keep_share=min_keep_share)
    names = np.asarray(classes, dtype=object)
    return HeadIssues(
        classes=classes,
        proba=proba,
        thresholds={c: float(t) for c, t in zip(classes, thresholds, strict=True)},
        flagged=flagged,
        suggested=np.where(suggested >= 0, names[np.maximum(suggested, 0)], None),
        self_confidence=proba[np.arange(len(y)), y_index],
    )


def clean_labels(
    X: pd.DataFrame,
    y: dict[str, Any],
    mode: str,
    *,
    n_folds: int = N_FOLDS,
    n_estimators: int = N_ESTIMATORS,
    num_threads: int = 1,
    seed: int = 0,
    trusted: Sequence[bool] | None = None,
    trusted_weight: float = TRUSTED_WEIGHT,
    **kwargs: Any,
) -> LabelNoiseResult:
    """Flag noisy labels of each head and prune or down-weight them."""
    if mode not in LABEL_NOISE_MODES:
        raise ValueError(f"label_noise must be one of {', '.join(LABEL_NOISE_MODES)}, got {mode!r}")
    n = len(X)
    keep = np.zeros(n, dtype=bool) if trusted is None else np.asarray(trusted, dtype=bool)
    if keep.shape != (n,):
        raise ValueError(f"trusted has {keep.shape[0]} rows, X has {n}")
    if not trusted_weight > 0:
        raise ValueError(f"trusted_weight must be positive, got {trusted_weight}")
    row_weight = np.where(keep, float(trusted_weight), 1.0)
    keys = np.asarray(X.index, dtype=object) if X.index.is_unique else None
    out_y: dict[str, np.ndarray | None] = {}
    weights: dict[str, np.ndarray] = {}
    flagged: dict[str, dict[str, int]] = {}
    start = time.perf_counter()
    for head, labels in y.items():
        if labels is None:
            out_y[head] = None
            weights[head] = np.ones(n)
            continue
        values = np.asarray(labels, dtype=object).copy()
        weight = np.ones(n)
        rows = np.flatnonzero([v is not None for v in values])
        if mode != "none" and len({str(v) for v in values[rows]}) >= 2:
            issues = find_label_issues(
                X.iloc[rows],
                values[rows].astype(str),
                n_folds=n_folds,
                n_estimators=n_estimators,
                num_threads=num_threads,
                seed=seed,
                sample_weight=row_weight[rows] if keep[rows].any() else None,
                fold_keys=None if keys is None else keys[rows],
                **kwargs,
            )
            issues = replace(issues, flagged=issues.flagged & ~keep[rows])
            flagged[head] = issues.flagged_per_class(values[rows].astype(str))
            if mode == "prune":
                values[rows[issues.flagged]] = None
            else:
                weight[rows] = issues.weights(values[rows].astype(str))
        out_y[head] = values
        weights[head] = weight
    seconds = time.perf_counter() - start if mode != "none" else 0.0
    return LabelNoiseResult(mode=mode, y=out_y, weights=weights, flagged=flagged, seconds=seconds)
