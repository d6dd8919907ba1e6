"""Estimators on LightGBM: a table encoder, one calibrated head, and the two-head classifier.
Design notes: ``docs/design/model.md``."""

from __future__ import annotations

import copy
import math
import numbers
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import assert_all_finite, check_array
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from data.values import is_missing
from model.linear import LinearHead, fit_linear_cv
from model.served import (  # the serving half, importable without sklearn or LightGBM
    HEADS,
    ServedHead,
    TableEncoding,
    _Calibrator,
    _log_loss,
    _softmax,
    _to_key,
    _to_number,
    _tokens,
)

__all__ = [
    "HEADS",
    "HeadClassifier",
    "TableEncoder",
    "TwoHeadClassifier",
    "expected_calibration_error",
    "normalize_labels",
    "tune_decision_weights",
]

#: HeadClassifier(family=...) values; "auto" chooses among the other three.
_FAMILIES = ("auto", "lightgbm", "linear", "blend")
#: Out-of-fold macro-F1 within this of the best counts as a tie (log loss decides).
_FAMILY_TIE = 0.002


# --------------------------------------------------------------------------- values


def normalize_labels(y: Any) -> np.ndarray:
    """Labels as an object array of ``str`` or ``None`` (missing), shape (n_rows,):
    ``True`` → ``"True"``, ``1``/``1.0`` → ``"1"``."""
    values = y.to_numpy(dtype=object) if isinstance(y, pd.Series) else np.asarray(y, dtype=object)
    values = values.reshape(-1) if values.ndim > 1 and values.shape[1] == 1 else values
    if values.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {values.shape}")
    return np.array([_to_key(v) for v in values], dtype=object)


def expected_calibration_error(
    proba: np.ndarray, y_index: np.ndarray, *, n_bins: int = 10, sample_weight=None
) -> float:
    """Top-label expected calibration error with equal-width confidence bins."""
    proba = np.asarray(proba, dtype=float)
    y_index = np.asarray(y_index, dtype=int)
    if proba.shape[0] == 0:
        return math.nan
    weight = np.ones(len(y_index)) if sample_weight is None else np.asarray(sample_weight, float)
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y_index).astype(float)
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    # Per bin, its weight share times |mean accuracy - mean confidence| is this sum's share.
    gaps = np.bincount(bins, weights=weight * (correct - confidence), minlength=n_bins)
    used = np.bincount(bins, weights=weight, minlength=n_bins) > 0
    return float(np.abs(gaps[used]).sum() / weight.sum()) if used.any() else 0.0


def _as_frame(X: Any) -> tuple[pd.DataFrame, bool]:
    """A DataFrame view of ``X`` and whether it came as one (arrays get columns x0, x1, …)."""
    if isinstance(X, pd.DataFrame):
        for size, what in zip(X.shape, ("sample", "feature"), strict=True):
            if size < 1:
                raise ValueError(
                    f"Found array with 0 {what}(s) (shape={X.shape}) "
                    "while a minimum of 1 is required."
                )
        return X, True
    array = check_array(X, dtype=None, ensure_all_finite="allow-nan", accept_sparse=False)
    frame = pd.DataFrame(array, columns=[f"x{i}" for i in range(array.shape[1])])
    if array.dtype == object:
        frame = frame.infer_objects()
    return frame, False


def _sample_weight(sample_weight: Any, n: int) -> np.ndarray:
    """``sample_weight`` as a float array of ``n`` rows."""
    weight = np.asarray(sample_weight, dtype=float).reshape(-1)
    if len(weight) != n:
        raise ValueError(f"sample_weight has {len(weight)} rows, X has {n}")
    return weight


def _check_fitted(estimator: Any, attribute: str) -> None:
    """``check_is_fitted`` for the scoring hot path: one attribute lookup, same error."""
    if attribute not in estimator.__dict__:
        check_is_fitted(estimator, attribute)  # raises sklearn's NotFittedError message
        raise NotFittedError(f"{type(estimator).__name__} is not fitted yet")


# --------------------------------------------------------------------------- encoder


class TableEncoder(TransformerMixin, BaseEstimator, TableEncoding):
    """Encode a lead table as a float matrix for LightGBM."""

    def __init__(
        self, *, max_categories: int = 50, max_text_tokens: int = 20, min_token_count: int = 2
    ) -> None:
        self.max_categories = max_categories
        self.max_text_tokens = max_text_tokens
        self.min_token_count = min_token_count

    # ---- fitting

    def fit(self, X: Any, y: Any = None) -> TableEncoder:
        """Detect column kinds, categories and text tokens."""
        frame, is_frame = _as_frame(X)
        self.n_features_in_ = frame.shape[1]
        if is_frame and all(isinstance(c, str) for c in frame.columns):
            self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.input_columns_ = [str(c) for c in frame.columns]
        y_codes = None
        if y is not None:
            labels = normalize_labels(y)
            if len(labels) != len(frame):
                raise ValueError(f"y has {len(labels)} rows, X has {len(frame)}")
            filled = np.array(["" if v is None else v for v in labels], dtype=str)
            _, y_codes = np.unique(filled, return_inverse=True)

        self.kinds_: dict[str, str] = {}
        self.categories_: dict[str, list[str]] = {}
        self.tokens_: dict[str, list[str]] = {}
        self.dropped_columns_: dict[str, str] = {}
        for name, column in zip(self.input_columns_, frame.columns, strict=True):
            self._fit_column(name, frame[column], y_codes)
        self.columns_ = [c for c in self.input_columns_ if c in self.kinds_]

        self._plan = self._build_plan()
        outputs = {  # a text column has one output per token, the others one
            col: [f"{col}__{tok}" for tok in self.tokens_[col]] if kind == "text" else [col]
            for col, kind, _, _ in self._plan
        }
        self.feature_names_out_ = np.asarray([n for o in outputs.values() for n in o], dtype=object)
        self.output_sources_ = [col for col, o in outputs.items() for _ in o]
        self.output_slices_ = {col: (at, at + len(outputs[col])) for col, _, at, _ in self._plan}
        self.categorical_indices_ = [at for _, kind, at, _ in self._plan if kind == "categorical"]
        return self

    def _fit_column(self, name: str, s: pd.Series, y_codes: np.ndarray | None) -> None:
        if pd.api.types.is_datetime64_any_dtype(s.dtype):
            self.dropped_columns_[name] = "datetime: convert to a day count first"
            return
        if (
            pd.api.types.is_bool_dtype(s.dtype)
            or pd.api.types.is_numeric_dtype(s.dtype)
            or pd.api.types.is_timedelta64_dtype(s.dtype)
        ):
            self._fit_numeric(name, self._numeric_values(s))
            return
        values = s.to_numpy(dtype=object)
        present = [v for v in values if not is_missing(v, blank=True)]
        if not present:
            self.dropped_columns_[name] = "all missing"
            return
        if any(isinstance(v, dict | list | tuple | set) for v in present):
            self.dropped_columns_[name] = "nested values (lists or mappings) are not supported"
            return
        if any(isinstance(v, datetime | date | pd.Timestamp | np.datetime64) for v in present):
            self.dropped_columns_[name] = "datetime: convert to a day count first"
            return
        if all(isinstance(v, numbers.Real | np.bool_ | timedelta) for v in present):
            self._fit_numeric(name, np.array([_to_number(v) for v in values], dtype=float))
            return
        keys = [_to_key(v) for v in values]
        counts = Counter(k for k in keys if k is not None)
        n_present = sum(counts.values())
        has_missing = n_present < len(keys)
        if len(counts) == 1 and not has_missing:
            self.dropped_columns_[name] = f"constant (always {next(iter(counts))!r})"
            return
        if len(counts) <= self.max_categories:
            self.kinds_[name] = "categorical"
            self.categories_[name] = sorted(counts)
            return
        spaced = sum(1 for k in keys if k is not None and " " in k) / n_present
        if len(counts) / n_present >= 0.9 and spaced < 0.5:
            self.dropped_columns_[name] = (
                f"id-like: {len(counts)} distinct single-word values in {n_present} rows"
            )
            return
        tokens = self._select_tokens(keys, y_codes)
        if not tokens:
            self.dropped_columns_[name] = "free text without words repeated across rows"
            return
        self.kinds_[name] = "text"
        self.tokens_[name] = tokens

    def _fit_numeric(self, name: str, values: np.ndarray) -> None:
        finite = values[~np.isnan(values)]
        if finite.size == 0:
            self.dropped_columns_[name] = "all missing"
        elif finite.size == values.size and np.all(finite == finite[0]):
            self.dropped_columns_[name] = f"constant (always {finite[0]:g})"
        else:
            self.kinds_[name] = "numeric"

    def _select_tokens(self, keys: list[str | None], y_codes: np.ndarray | None) -> list[str]:
        rows = [(i, _tokens(k)) for i, k in enumerate(keys) if k is not None]
        n = len(rows)
        df = Counter(t for _, toks in rows for t in toks)
        # Rare tokens have noisy association scores: a token must be in 1% of rows too.
        floor = max(self.min_token_count, math.ceil(0.01 * n))
        candidates = [t for t, c in df.items() if floor <= c <= 0.95 * n]
        candidates.sort(key=lambda t: (-df[t], t))
        candidates = candidates[:500]
        if not candidates:
            return []
        if y_codes is None or len(np.unique(y_codes)) < 2:
            return candidates[: self.max_text_tokens]
        index = {t: j for j, t in enumerate(candidates)}
        present = np.zeros((n, len(candidates)), dtype=bool)
        for r, (_, toks) in enumerate(rows):
            for t in toks:
                j = index.get(t)
                if j is not None:
                    present[r, j] = True
        y = y_codes[[i for i, _ in rows]]
        scores = _mutual_information(present, y)
        order = sorted(
            range(len(candidates)), key=lambda j: (-scores[j], -df[candidates[j]], candidates[j])
        )
        return [candidates[j] for j in order[: self.max_text_tokens]]

    # ---- transforming

    def transform(self, X: Any) -> np.ndarray:
        """Encode a table. Missing columns give NaN; columns not seen in ``fit`` are ignored."""
        _check_fitted(self, "columns_")
        frame, is_frame = _as_frame(X)
        if not is_frame and frame.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {frame.shape[1]} features, but {type(self).__name__} "
                f"is expecting {self.n_features_in_} features as input"
            )
        return self.encode_frame(frame)

    def transform_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Encode plain dicts without pandas; equals ``transform(pd.DataFrame(records))``."""
        _check_fitted(self, "columns_")
        return self.encode_records(records)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the encoded columns, shape (n_features_out,)."""
        check_is_fitted(self, "columns_")
        return self.feature_names_out_.copy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags


def _mutual_information(present: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mutual information (nats) of each 0/1 column of ``present`` with class codes ``y``."""
    n = len(y)
    classes = np.unique(y)
    onehot = (y[:, None] == classes[None, :]).astype(float)
    a = present.T.astype(float) @ onehot  # (n_tokens, n_classes) token present & class
    n_c = onehot.sum(axis=0)[None, :]
    d = present.sum(axis=0).astype(float)[:, None]
    b = n_c - a
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = np.where(a > 0, a / n * np.log(a * n / (d * n_c)), 0.0)
        t0 = np.where(b > 0, b / n * np.log(b * n / ((n - d) * n_c)), 0.0)
    return np.nan_to_num(t1 + t0).sum(axis=1)


# --------------------------------------------------------------------------- calibration


def _macro_f1(y_index: np.ndarray, pred: np.ndarray, k: int, weight: np.ndarray) -> float:
    """Weighted macro-F1 over the classes present in truth or predictions."""
    tp = np.bincount(y_index[pred == y_index], weights=weight[pred == y_index], minlength=k)
    true = np.bincount(y_index, weights=weight, minlength=k)
    predicted = np.bincount(pred, weights=weight, minlength=k)
    seen = (true > 0) | (predicted > 0)
    denom = true + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)
    return float(f1[seen].mean()) if seen.any() else 0.0


#: The factors each class weight is tried at, no change first.
_WEIGHT_GRID = np.exp(np.linspace(-2.5, 2.5, 51))
_WEIGHT_GRID = _WEIGHT_GRID[np.argsort(np.abs(np.log(_WEIGHT_GRID)), kind="stable")]


def tune_decision_weights(
    proba: np.ndarray, y_index: np.ndarray, weight: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """Per-class weights ``w`` maximising the macro-F1 of ``argmax(proba * w)`` (at most
    three rounds of trying each class's weight at every factor of the grid)."""
    proba = np.asarray(proba, dtype=float)
    n, k = proba.shape
    weight = np.ones(n) if weight is None else np.asarray(weight, dtype=float)
    w = np.ones(k)
    best = _macro_f1(y_index, proba.argmax(axis=1), k, weight)
    for _ in range(3):
        improved = False
        for c in range(k):
            start, chosen = w[c], w[c]
            for g in _WEIGHT_GRID:
                w[c] = start * g
                score = _macro_f1(y_index, (proba * w).argmax(axis=1), k, weight)
                if score > best + 1e-9:
                    best, chosen, improved = score, w[c], True
            w[c] = chosen
        if not improved:
            break
    w = w / np.exp(np.mean(np.log(w)))
    return w, float(best)


def _row_uniforms(index: pd.Index, seed: int, salt: str) -> np.ndarray:
    """A uniform number in [0, 1) per row from a hash of the row's key and the seed."""
    keys = np.arange(len(index)) if isinstance(index, pd.RangeIndex) else index.to_numpy()
    key = f"{salt}{seed}".encode().hex()[:16].ljust(16, "0")
    hashed = pd.util.hash_array(np.asarray(keys, dtype=object).astype(str), hash_key=key)
    return (hashed >> np.uint64(11)).astype(np.float64) / float(2**53)


def _held_out(
    y_index: np.ndarray, uniforms: np.ndarray, fraction: float, min_per_class: int
) -> np.ndarray:
    """Boolean mask of held-out rows: those whose uniform is below ``fraction``, in
    classes with ≥ ``min_per_class`` rows, never every row of a class."""
    held = uniforms < fraction
    for c in np.unique(y_index):
        rows = np.flatnonzero(y_index == c)
        if len(rows) < min_per_class:
            held[rows] = False
        elif held[rows].all():
            held[rows[np.argmax(uniforms[rows])]] = False
    return held


# --------------------------------------------------------------------------- path attribution


class _PathAttribution:
    """Per-leaf path contributions of a LightGBM booster (Saabas / treeinterpreter)."""

    #: Rows explained per block (bounds the memory of the gathered entries).
    BLOCK_ROWS = 4096

    def __init__(self, booster: lgb.Booster, n_features: int) -> None:
        dump = booster.dump_model()
        self.n_features = n_features
        self.per_iteration = int(dump.get("num_tree_per_iteration", 1))
        trees = dump["tree_info"]
        bias = n_features
        offsets = np.zeros(len(trees) + 1, dtype=np.int64)
        for t, info in enumerate(trees):
            offsets[t + 1] = offsets[t] + int(info.get("num_leaves", 1))
        entries: list[list[tuple[int, float]]] = [[] for _ in range(int(offsets[-1]))]
        for t, info in enumerate(trees):
            base = int(offsets[t])
            root = info["tree_structure"]
            if "leaf_value" in root:  # a tree of one leaf: all of it is bias
                entries[base + int(root.get("leaf_index", 0))] = [(bias, float(root["leaf_value"]))]
                continue
            root_value = float(root["internal_value"])
            stack: list[tuple[dict[str, Any], dict[int, float]]] = [(root, {})]
            while stack:
                node, path = stack.pop()
                parent = float(node["internal_value"])
                feature = int(node["split_feature"])
                for child in (node["left_child"], node["right_child"]):
                    is_leaf = "leaf_value" in child
                    value = float(child["leaf_value"] if is_leaf else child["internal_value"])
                    credit = dict(path)
                    credit[feature] = credit.get(feature, 0.0) + (value - parent)
                    if is_leaf:
                        entries[base + int(child["leaf_index"])] = [
                            *sorted(credit.items()),
                            (bias, root_value),
                        ]
                    else:
                        stack.append((child, credit))
        lengths = np.array([len(e) for e in entries], dtype=np.int64)
        self.offsets = offsets
        self.start = np.concatenate([[0], np.cumsum(lengths)])
        self.lengths = lengths
        self.features = np.array([f for e in entries for f, _ in e], dtype=np.int64)
        self.values = np.array([v for e in entries for _, v in e], dtype=np.float64)

    def contributions(self, leaves: np.ndarray, model_class: np.ndarray) -> np.ndarray:
        """Contributions to one model class per row."""
        n, n_trees = leaves.shape
        width = self.n_features + 1
        out = np.zeros((n, width))
        per_row = n_trees // self.per_iteration
        if n == 0 or per_row == 0:
            return out
        steps = self.per_iteration * np.arange(per_row)
        model_class = np.asarray(model_class, dtype=np.int64)
        for lo in range(0, n, self.BLOCK_ROWS):
            hi = min(n, lo + self.BLOCK_ROWS)
            trees = model_class[lo:hi, None] + steps[None, :]
            leaf = np.take_along_axis(leaves[lo:hi], trees, axis=1) + self.offsets[trees]
            leaf = leaf.ravel()
            counts = self.lengths[leaf]
            ends = np.cumsum(counts)
            # Entry positions of each selected leaf, in order: start[leaf] + 0, 1, …
            take = np.arange(int(ends[-1])) + np.repeat(self.start[leaf] - (ends - counts), counts)
            rows = np.repeat(np.arange(hi - lo) * width, counts.reshape(hi - lo, -1).sum(axis=1))
            out[lo:hi] = np.bincount(
                rows + self.features[take], weights=self.values[take], minlength=(hi - lo) * width
            ).reshape(hi - lo, width)
        return out


class _ClassTreeShap:
    """Exact TreeSHAP of one class of a multiclass booster, on that class's trees only."""

    def __init__(self, booster: lgb.Booster) -> None:
        text = booster.model_to_string()  # the best iteration's trees, as predict uses
        head, _, rest = text.partition("\nTree=")
        trees_text, _, _ = ("Tree=" + rest).partition("end of trees")
        blocks = [b for b in re.split(r"\n(?=Tree=\d+\n)", trees_text.strip()) if b.strip()]
        header = dict(line.split("=", 1) for line in head.splitlines() if "=" in line)
        k = int(header.get("num_tree_per_iteration", "1"))
        if k < 2 or len(blocks) % k:
            raise ValueError(
                f"not a multiclass booster: {k} trees per iteration, {len(blocks)} trees"
            )
        lines = []
        for line in head.splitlines():
            key = line.partition("=")[0]
            if key in ("num_class", "num_tree_per_iteration"):
                line = f"{key}=1"
            elif key == "objective":
                line = "objective=regression"
            elif key == "tree_sizes":
                continue  # optional; LightGBM then reads the trees one by one
            lines.append(line)
        self.boosters: list[lgb.Booster] = []
        for c in range(k):
            own = [
                re.sub(r"^Tree=\d+", f"Tree={t}", blocks[i], count=1)
                for t, i in enumerate(range(c, len(blocks), k))
            ]
            model = "\n".join(lines).rstrip() + "\n\n" + "\n\n".join(own) + "\n\n\nend of trees\n"
            self.boosters.append(lgb.Booster(model_str=model))

    def contributions(self, Z: np.ndarray, class_index: np.ndarray, num_threads: int) -> np.ndarray:
        """TreeSHAP values of each row's ``class_index`` class, shape (n_rows, n_features + 1)."""
        out = np.empty((len(Z), Z.shape[1] + 1))
        for c in np.unique(class_index):
            rows = np.flatnonzero(class_index == c)
            part = Z if len(rows) == len(Z) else Z[rows]
            out[rows] = self.boosters[int(c)].predict(
                part, pred_contrib=True, num_threads=num_threads
            )
        return out


# --------------------------------------------------------------------------- one head


class HeadClassifier(ClassifierMixin, BaseEstimator):
    """One head: ``TableEncoder`` → LightGBM → probability calibration."""

    def __init__(
        self,
        *,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int = 10,
        num_threads: int = 1,
        class_weight: str | None = "balanced",
        max_class_weight: float = 10.0,
        calibration: str = "auto",
        calibration_fraction: float = 0.2,
        max_categories: int = 50,
        max_text_tokens: int = 20,
        random_state: int = 0,
        lgbm_params: dict[str, Any] | None = None,
        early_stopping_rounds: int | None = 20,
        cv_folds: int = 0,
        decision: str = "argmax",
        family: str = "auto",
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.num_threads = num_threads
        self.class_weight = class_weight
        self.max_class_weight = max_class_weight
        self.calibration = calibration
        self.calibration_fraction = calibration_fraction
        self.max_categories = max_categories
        self.max_text_tokens = max_text_tokens
        self.random_state = random_state
        self.lgbm_params = lgbm_params
        self.early_stopping_rounds = early_stopping_rounds
        self.cv_folds = cv_folds
        self.decision = decision
        self.family = family

    # ---- fitting

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> HeadClassifier:
        """Fit encoder, booster and calibrator."""
        frame, labels, y_index, weight = self._fit_inputs(X, y, sample_weight)
        self.encoder_ = TableEncoder(
            max_categories=self.max_categories, max_text_tokens=self.max_text_tokens
        ).fit(frame, labels)
        self.n_features_in_ = self.encoder_.n_features_in_
        if hasattr(self.encoder_, "feature_names_in_"):
            self.feature_names_in_ = self.encoder_.feature_names_in_
        Z = self.encoder_.transform(frame)

        k = len(self.classes_)
        counts = np.bincount(y_index, minlength=k).astype(float)
        if self.class_weight == "balanced":
            cw = np.minimum(counts.sum() / (k * np.maximum(counts, 1.0)), self.max_class_weight)
            cw = cw / np.average(cw, weights=counts)
        else:
            cw = np.ones(k)
        self.class_weight_ = {str(c): float(w) for c, w in zip(self.classes_, cw, strict=True)}
        self.logit_shift_ = -np.log(cw)
        fit_weight = weight * cw[y_index]  # what boosting weighs each row by

        self.n_features_out_ = Z.shape[1]
        self.decision_weights_ = np.ones(k)
        self.cv_ = None
        self.family_ = "lightgbm"
        self.linear_ = None
        folds = self._folds(frame.index, y_index)
        if folds is not None:
            self._fit_cross(Z, y_index, weight, fit_weight, folds, frame.index)
            return self
        held = _held_out(
            y_index,
            _row_uniforms(frame.index, self.random_state, "calibration"),
            self.calibration_fraction,
            min_per_class=5,
        )
        if self.calibration == "none" or held.sum() < 20 or len(np.unique(y_index[held])) < 2:
            held[:] = False
        train = ~held
        if len(np.unique(y_index[train])) < k:
            raise ValueError("every class needs a training row")
        valid = None
        if self.early_stopping_rounds and held.any():
            valid = (Z[held], y_index[held], fit_weight[held])
        self.booster_ = self._train_booster(Z[train], y_index[train], fit_weight[train], valid)
        self.n_train_rows_ = int(train.sum())
        halves = _row_uniforms(frame.index[held], self.random_state, "halves")
        self._fit_calibration(Z[held], y_index[held], weight[held], halves)
        if held.any():
            raw = self._raw_logits(Z[held], self.num_threads)
            self._fit_decision(
                self.calibrator_.transform(raw + self.logit_shift_), y_index[held], weight[held]
            )
        return self

    def _fit_inputs(
        self, X: Any, y: Any, sample_weight: Any
    ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
        """Check the settings and inputs of :meth:`fit`; set ``classes_``. Returns (the
        table, the normalised labels, each row's class index, each row's weight)."""
        if self.calibration not in ("auto", "temperature", "isotonic", "none"):
            raise ValueError(
                f"calibration must be auto, temperature, isotonic or none, got {self.calibration!r}"
            )
        if self.class_weight not in ("balanced", None):
            raise ValueError(f"class_weight must be 'balanced' or None, got {self.class_weight!r}")
        if self.family not in _FAMILIES:
            raise ValueError(f"family must be auto, lightgbm, linear or blend, got {self.family!r}")
        frame, _ = _as_frame(X)
        y_raw = column_or_1d(np.asarray(y), warn=True)
        if len(y_raw) != len(frame):
            raise ValueError(f"X has {len(frame)} rows but y has {len(y_raw)}")
        labels = normalize_labels(y_raw)
        if any(v is None for v in labels):
            raise ValueError("y contains missing labels; drop those rows first")
        if y_raw.dtype.kind == "f":
            assert_all_finite(y_raw, input_name="y")
            check_classification_targets(y_raw)  # rejects a continuous target
        self.classes_ = np.asarray(sorted(set(labels)), dtype=object)
        if len(self.classes_) < 2:
            raise ValueError(
                f"need at least 2 classes to train, got one class: {self.classes_[0]!r}"
            )
        y_index = np.searchsorted(self.classes_.astype(str), labels.astype(str))
        weight = (
            np.ones(len(labels))
            if sample_weight is None
            else _sample_weight(sample_weight, len(labels))
        )
        if np.any(weight < 0):
            raise ValueError("sample_weight must be non-negative")
        if weight.sum() <= 0:
            raise ValueError("Sample weights must contain at least one non-zero number.")
        return frame, labels, y_index, weight

    def _folds(self, index: pd.Index, y_index: np.ndarray) -> np.ndarray | None:
        """Fold number per row for cross-fitting, or None (too few rows: the slice)."""
        K = int(self.cv_folds or 0)
        if K < 2:
            return None
        counts = np.bincount(y_index, minlength=len(self.classes_))
        if counts.min() < 2 * K or len(y_index) < 20 * K:
            return None
        u = _row_uniforms(index, self.random_state, "folds")
        # Within each class, deal rows to folds in the order of their hash: every fold
        # gets its share of every class, and a row keeps its fold whatever the others.
        folds = np.empty(len(y_index), dtype=np.int64)
        for c in range(len(self.classes_)):
            rows = np.flatnonzero(y_index == c)
            order = rows[np.argsort(u[rows], kind="stable")]
            folds[order] = np.arange(len(order)) % K
        return folds

    def _fit_cross(
        self,
        Z: np.ndarray,
        y_index: np.ndarray,
        weight: np.ndarray,
        fit_weight: np.ndarray,
        folds: np.ndarray,
        index: pd.Index,
    ) -> None:
        """Cross-fitting: out-of-fold logits and round counts, then one booster on all rows,
        then the family chosen (:meth:`_choose_family`)."""
        K = int(folds.max()) + 1
        k = len(self.classes_)
        oof = np.zeros((len(y_index), k))
        rounds: list[int] = []
        stop = self.early_stopping_rounds
        for f in range(K):
            out = folds == f
            valid = (Z[out], y_index[out], fit_weight[out]) if stop else None
            booster = self._train_booster(Z[~out], y_index[~out], fit_weight[~out], valid)
            rounds.append(int(self.n_rounds_))
            self.booster_ = booster  # _raw_logits reads it
            oof[out] = self._raw_logits(Z[out], self.num_threads)
        n_rounds = max(1, int(round(float(np.mean(rounds)))))
        full = clone(self).set_params(n_estimators=n_rounds, early_stopping_rounds=None)
        full.classes_ = self.classes_
        full.encoder_ = self.encoder_
        self.booster_ = full._train_booster(Z, y_index, fit_weight, None)
        self.n_rounds_ = n_rounds
        self.n_train_rows_ = len(y_index)
        halves = _row_uniforms(index, self.random_state, "halves")
        candidates = {"lightgbm": oof}
        linear = linear_report = None
        if self.family != "lightgbm":
            linear, linear_oof, linear_report = self._fit_linear(
                Z, y_index, weight=weight, fit_weight=fit_weight, folds=folds
            )
            candidates.update(linear=linear_oof, blend=0.5 * (oof + linear_oof))
            if self.family != "auto":
                candidates = {self.family: candidates[self.family]}
        chosen, scores, proba = self._choose_family(Z, y_index, weight, halves, candidates)
        self.family_ = chosen
        self.linear_ = linear if chosen in ("linear", "blend") else None
        self.cv_ = {
            "folds": K,
            "fold_rounds": rounds,
            "rounds": n_rounds,
            "oof_macro_f1": _macro_f1(y_index, proba.argmax(axis=1), k, weight),
            "oof_log_loss": _log_loss(proba, y_index, weight),
            "family": chosen,
            "families": scores,
            "linear": linear_report,
        }

    def _fit_linear(
        self,
        Z: np.ndarray,
        y_index: np.ndarray,
        *,
        weight: np.ndarray,
        fit_weight: np.ndarray,
        folds: np.ndarray,
    ) -> tuple[LinearHead, np.ndarray, dict[str, Any]]:
        """The linear family cross-fitted on the same folds: (model, out-of-fold logits, report)."""
        encoder = self.encoder_
        return fit_linear_cv(
            Z,
            y_index,
            weight,
            fit_weight,
            folds,
            n_classes=len(self.classes_),
            categorical=list(encoder.categorical_indices_),
            n_categories=[
                len(encoder.categories_[encoder.output_sources_[j]])
                for j in encoder.categorical_indices_
            ],
            logit_shift=self.logit_shift_,
        )

    def _choose_family(
        self,
        Z: np.ndarray,
        y_index: np.ndarray,
        weight: np.ndarray,
        halves: np.ndarray,
        candidates: Mapping[str, np.ndarray],
    ) -> tuple[str, dict[str, dict[str, float]], np.ndarray]:
        """Calibrate and tune the decision of every candidate's out-of-fold logits; keep the
        best by decided macro-F1 (ties within ``_FAMILY_TIE`` go to the lower log loss).
        Returns (its name, every candidate's scores, its out-of-fold probabilities)."""
        scores: dict[str, dict[str, float]] = {}
        states: dict[str, tuple[Any, ...]] = {}
        for name, raw in candidates.items():
            self._fit_calibration(Z, y_index, weight, halves, raw=raw)
            proba = self.calibrator_.transform(raw + self.logit_shift_)
            self._fit_decision(proba, y_index, weight)
            scores[name] = {
                "macro_f1_decided": float(self.decision_["macro_f1"]),
                "macro_f1_argmax": float(self.decision_["macro_f1_argmax"]),
                "log_loss": _log_loss(proba, y_index, weight),
                "calibration": self.calibration_["method"],
            }
            states[name] = (
                self.calibrator_, self.calibration_, self.decision_, self.decision_weights_, proba
            )  # fmt: skip
        best_f1 = max(s["macro_f1_decided"] for s in scores.values())
        tied = [n for n, s in scores.items() if s["macro_f1_decided"] >= best_f1 - _FAMILY_TIE]
        chosen = min(tied, key=lambda n: (scores[n]["log_loss"], list(scores).index(n)))
        (self.calibrator_, self.calibration_, self.decision_, self.decision_weights_,
         proba) = states[chosen]  # fmt: skip
        return chosen, scores, proba

    def _fit_decision(self, proba: np.ndarray, y_index: np.ndarray, weight: np.ndarray) -> None:
        k = len(self.classes_)
        before = _macro_f1(y_index, proba.argmax(axis=1), k, weight)
        self.decision_ = {"method": self.decision, "macro_f1_argmax": before, "n_rows": len(proba)}
        if self.decision == "argmax" or len(proba) < 20 * k:
            self.decision_weights_ = np.ones(k)
            self.decision_["macro_f1"] = before
            return
        w, self.decision_["macro_f1"] = tune_decision_weights(proba, y_index, weight)
        self.decision_weights_ = w
        self.decision_["weights"] = {
            str(c): float(x) for c, x in zip(self.classes_, w, strict=True)
        }

    decide = ServedHead.decide  # the decision rule of ``decision``, shared with the served head

    def _booster_params(self, k: int) -> dict[str, Any]:
        params: dict[str, Any] = {
            "objective": "binary" if k == 2 else "multiclass",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "min_data_per_group": max(2, self.min_child_samples),
            "cat_smooth": 5.0,
            "max_cat_to_onehot": 8,
            "lambda_l2": 1.0,
            "feature_fraction": 0.9,
            "num_threads": self.num_threads,
            "seed": self.random_state,
            "deterministic": True,
            "force_col_wise": True,
            "verbosity": -1,
        }
        if k > 2:
            params["num_class"] = k
        params.update(self.lgbm_params or {})
        return params

    def _train_booster(
        self,
        Z: np.ndarray,
        y_index: np.ndarray,
        weight: np.ndarray,
        valid: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> lgb.Booster:
        """Boost ``n_estimators`` rounds; with ``valid`` (the calibration rows, weighted
        like training), stop after ``early_stopping_rounds`` rounds without a better
        validation log loss and keep only the rounds up to the best one, so the model
        that is stored, compiled and explained is the one that predicts."""
        k = len(self.classes_)
        if Z.shape[1] == 0:
            Z = np.zeros((len(Z), 1))
            if valid is not None:
                valid = (np.zeros((len(valid[0]), 1)), valid[1], valid[2])
        categorical = list(self.encoder_.categorical_indices_)
        dataset = lgb.Dataset(
            Z,
            label=y_index,
            weight=weight,
            feature_name=[f"f{i}" for i in range(Z.shape[1])],
            categorical_feature=categorical,
            free_raw_data=True,
            params={"verbosity": -1},
        )
        params = self._booster_params(k)
        if valid is None:
            self.n_rounds_ = self.n_estimators
            return lgb.train(params, dataset, num_boost_round=self.n_estimators)
        check = lgb.Dataset(
            valid[0], label=valid[1], weight=valid[2], reference=dataset, params={"verbosity": -1}
        )
        booster = lgb.train(
            params,
            dataset,
            num_boost_round=self.n_estimators,
            valid_sets=[check],
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
        )
        best = int(booster.best_iteration) or self.n_estimators
        self.n_rounds_ = best
        if best >= booster.current_iteration():
            return booster
        return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))

    def _fit_calibration(
        self,
        Z: np.ndarray,
        y_index: np.ndarray,
        weight: np.ndarray,
        halves: np.ndarray,
        *,
        raw: np.ndarray | None = None,
    ) -> None:
        n = len(y_index)
        report: dict[str, Any] = {"n_rows": int(n), "candidates": {}}
        if n == 0:
            self.calibrator_ = _Calibrator("none")
            report.update(method="none", reason="too few rows to hold out for calibration")
            self.calibration_ = report
            return
        if raw is None:
            raw = self._raw_logits(Z, self.num_threads)
        else:
            report["out_of_fold"] = True
        base = _softmax(raw)
        report["ece_uncalibrated"] = expected_calibration_error(base, y_index, sample_weight=weight)
        report["log_loss_uncalibrated"] = _log_loss(base, y_index, weight)
        logits = raw + self.logit_shift_
        if self.calibration == "auto":
            # isotonic only with 100 rows of every class (docs/design/model.md, "auto")
            counts = np.bincount(y_index, minlength=len(self.classes_))
            methods = ["temperature", "isotonic"] if counts.min() >= 100 else ["temperature"]
            candidates = ["none", *methods]
        else:
            methods = candidates = [self.calibration]
        half = _held_out(y_index, halves, 0.5, min_per_class=2)
        if half.all() or not half.any():
            half = np.arange(n) % 2 == 0
        for method in candidates:
            oof = np.empty((n, len(self.classes_)))
            for fit_rows in (half, ~half):
                cal = _Calibrator(method).fit(logits[fit_rows], y_index[fit_rows], weight[fit_rows])
                oof[~fit_rows] = cal.transform(logits[~fit_rows])
            report["candidates"][method] = {
                "ece": expected_calibration_error(oof, y_index, sample_weight=weight),
                "log_loss": _log_loss(oof, y_index, weight),
            }
        best = min(
            candidates, key=lambda m: (report["candidates"][m]["log_loss"], candidates.index(m))
        )
        self.calibrator_ = _Calibrator(best).fit(logits, y_index, weight)
        report["method"] = best
        report["ece_calibrated"] = report["candidates"][best]["ece"]
        report["log_loss_calibrated"] = report["candidates"][best]["log_loss"]
        report["temperature"] = self.calibrator_.temperature
        self.calibration_ = report

    # ---- predicting

    def _raw_logits(self, Z: np.ndarray, num_threads: int) -> np.ndarray:
        family = self.__dict__.get("family_", "lightgbm")
        if family == "linear":
            return self.linear_.raw_logits(Z)
        if family == "blend":
            return 0.5 * (self._tree_logits(Z, num_threads) + self.linear_.raw_logits(Z))
        return self._tree_logits(Z, num_threads)

    def _tree_logits(self, Z: np.ndarray, num_threads: int) -> np.ndarray:
        """The booster's raw scores (compiled code when attached), (n_rows, n_classes)."""
        if Z.shape[1] == 0:
            Z = np.zeros((len(Z), 1))
        compiled = self.__dict__.get("_compiled")
        if compiled is not None and compiled[0] is self.booster_:
            raw = compiled[1](Z, num_threads)
        else:
            raw = self.booster_.predict(Z, raw_score=True, num_threads=num_threads)
        if len(self.classes_) == 2:
            raw = np.column_stack([np.zeros(len(raw)), raw])
        return np.asarray(raw, dtype=float).reshape(len(Z), len(self.classes_))

    def encode(self, X: Any) -> np.ndarray:
        """The encoder's matrix for ``X``, shape (n_rows, n_features_out)."""
        _check_fitted(self, "booster_")
        return self.encoder_.transform(X)

    def encode_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The encoder's matrix for plain dicts, shape (n_rows, n_features_out)."""
        _check_fitted(self, "booster_")
        return self.encoder_.transform_records(records)

    def predict_proba_encoded(self, Z: np.ndarray, *, num_threads: int | None = None) -> np.ndarray:
        """Calibrated probabilities from an encoded matrix."""
        _check_fitted(self, "booster_")
        threads = self.num_threads if num_threads is None else num_threads
        return self.calibrator_.transform(self._raw_logits(Z, threads) + self.logit_shift_)

    def raw_logits_encoded(self, Z: np.ndarray, *, num_threads: int | None = None) -> np.ndarray:
        """Class scores before calibration (the ones contributions add up to), (n_rows, k)."""
        _check_fitted(self, "booster_")
        return self._raw_logits(Z, self.num_threads if num_threads is None else num_threads)

    def contributions_encoded(
        self, Z: np.ndarray, *, num_threads: int | None = None, method: str = "shap"
    ) -> np.ndarray:
        """Per-feature contributions to each class's raw score, (n_rows, n_classes, f + 1)."""
        return self.class_contributions_encoded(Z, None, num_threads=num_threads, method=method)

    def class_contributions_encoded(
        self,
        Z: np.ndarray,
        class_index: np.ndarray | None,
        *,
        num_threads: int | None = None,
        method: str = "shap",
    ) -> np.ndarray:
        """Contributions to one class per row (the one to explain), without the others,
        (n_rows, f + 1), the bias last; with ``class_index=None`` to every class, (n_rows,
        n_classes, f + 1)."""
        _check_fitted(self, "booster_")
        if method not in ("path", "shap"):
            raise ValueError(f"method must be 'path' or 'shap', got {method!r}")
        n, f = Z.shape
        k = len(self.classes_)
        index = None if class_index is None else np.asarray(class_index, dtype=np.int64).ravel()
        if index is not None and index.shape[0] != n:
            raise ValueError(f"class_index has {index.shape[0]} rows, Z has {n}")
        if f == 0:
            return np.zeros((n, k, 1) if index is None else (n, 1))
        if self.__dict__.get("family_", "lightgbm") != "lightgbm":
            return self._family_contributions(Z, index, num_threads, method)
        threads = self.num_threads if num_threads is None else num_threads
        if method == "shap":
            per_class = None if index is None else self._class_tree_shap()
            if per_class is not None:
                return per_class.contributions(Z, index, threads)
            contrib = np.asarray(self.booster_.predict(Z, pred_contrib=True, num_threads=threads))
        elif index is not None and k > 2:
            return self._path_attribution().contributions(self._leaves(Z, threads), index)
        else:
            paths = self._path_attribution()
            leaves = self._leaves(Z, threads)
            contrib = np.stack(
                [
                    paths.contributions(leaves, np.full(n, c, dtype=np.int64))
                    for c in range(paths.per_iteration)
                ],
                axis=1,
            )
        if index is not None:  # a binary head: class 0's contributions are class 1's negated
            contrib = contrib.reshape(n, f + 1)
            return np.where((index == 0)[:, None], -contrib, contrib)
        if k == 2:
            contrib = contrib.reshape(n, 1, f + 1)
            return np.concatenate([-contrib, contrib], axis=1)
        return contrib.reshape(n, k, f + 1)

    def _family_contributions(
        self, Z: np.ndarray, index: np.ndarray | None, num_threads: int | None, method: str
    ) -> np.ndarray:
        """Contributions of a linear or blend head."""
        linear = self.linear_.contributions(Z, index)
        if self.family_ == "linear":
            return linear
        cached = self.__dict__.get("_tree_view")
        if cached is None or cached[0] is not self.booster_:
            view = copy.copy(self)
            view.family_, view.linear_ = "lightgbm", None
            compiled = self.__dict__.get("_compiled")
            if compiled is not None:
                view.__dict__["_compiled"] = compiled
            cached = (self.booster_, view)
            self.__dict__["_tree_view"] = cached
        tree = cached[1].class_contributions_encoded(
            Z, index, num_threads=num_threads, method=method
        )
        return 0.5 * (tree + linear)

    def attach_compiled(
        self, predict_raw: Callable[[np.ndarray, int], np.ndarray] | None
    ) -> HeadClassifier:
        """Score raw logits with native code instead of the booster (None: back to LightGBM)."""
        check_is_fitted(self, "booster_")
        if predict_raw is None:
            self.__dict__.pop("_compiled", None)
        else:
            self.__dict__["_compiled"] = (self.booster_, predict_raw)
        return self

    @property
    def uses_compiled(self) -> bool:
        """Whether raw logits come from attached native code."""
        compiled = self.__dict__.get("_compiled")
        return compiled is not None and compiled[0] is getattr(self, "booster_", None)

    def prepare_explanations(self) -> HeadClassifier:
        """Build the one-class TreeSHAP boosters now (else on the first explained row)."""
        check_is_fitted(self, "booster_")
        if self.n_features_out_ > 0:
            self._class_tree_shap()
        return self

    def _leaves(self, Z: np.ndarray, threads: int) -> np.ndarray:
        leaves = self.booster_.predict(Z, pred_leaf=True, num_threads=threads)
        return np.asarray(leaves, dtype=np.int64).reshape(len(Z), -1)

    def _class_tree_shap(self) -> _ClassTreeShap | None:
        """One-class boosters of the current booster for TreeSHAP (None for a binary head)."""
        cached = self.__dict__.get("_shap_cache")
        if cached is None or cached[0] is not self.booster_:
            per_class = None
            if int(self.booster_.num_model_per_iteration()) > 1:
                per_class = _ClassTreeShap(self.booster_)
            cached = (self.booster_, per_class)
            self.__dict__["_shap_cache"] = cached
        return cached[1]

    def _path_attribution(self) -> _PathAttribution:
        """The path tables of the current booster (built once, kept out of pickles)."""
        cached = self.__dict__.get("_path_cache")
        if cached is None or cached[0] is not self.booster_:
            cached = (self.booster_, _PathAttribution(self.booster_, self.n_features_out_))
            self.__dict__["_path_cache"] = cached
        return cached[1]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        for cache in ("_path_cache", "_compiled", "_shap_cache", "_tree_view"):
            state.pop(cache, None)
        return state

    def predict_proba(self, X: Any) -> np.ndarray:
        """Calibrated class probabilities."""
        return self.predict_proba_encoded(self.encode(X))

    def predict(self, X: Any) -> np.ndarray:
        """Most probable class label (str) per row, shape (n_rows,)."""
        index = self.decide(self.predict_proba(X))  # checks fitted first
        return self.classes_[index]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        return tags


# --------------------------------------------------------------------------- two heads


class TwoHeadClassifier(BaseEstimator):
    """The buying-stage head and the persona head, each fit on the rows with its label."""

    def __init__(
        self,
        *,
        stage_estimator: HeadClassifier | None = None,
        persona_estimator: HeadClassifier | None = None,
    ) -> None:
        self.stage_estimator = stage_estimator
        self.persona_estimator = persona_estimator

    def fit(
        self, X: pd.DataFrame, y_stage: Any = None, y_persona: Any = None, sample_weight: Any = None
    ) -> TwoHeadClassifier:
        """Fit each head on the rows that carry its label."""
        frame, _ = _as_frame(X)
        n = len(frame)
        weight = None if sample_weight is None else _sample_weight(sample_weight, n)
        templates = {"stage": self.stage_estimator, "persona": self.persona_estimator}
        fitted: dict[str, HeadClassifier] = {}
        for head, y in (("stage", y_stage), ("persona", y_persona)):
            if y is None:
                continue
            labels = normalize_labels(y)
            if len(labels) != n:
                raise ValueError(f"y_{head} has {len(labels)} rows, X has {n}")
            rows = np.flatnonzero([v is not None for v in labels])
            if rows.size == 0:
                continue
            est = clone(templates[head]) if templates[head] is not None else HeadClassifier()
            try:
                est.fit(
                    frame.iloc[rows],
                    labels[rows],
                    sample_weight=None if weight is None else weight[rows],
                )
            except ValueError as exc:
                raise ValueError(f"{head} head: {exc}") from exc
            fitted[head] = est
        if not fitted:
            raise ValueError("no labels: give y_stage or y_persona with at least one label")
        self.heads_ = fitted
        self.stage_ = fitted.get("stage")
        self.persona_ = fitted.get("persona")
        self.classes_ = {h: est.classes_ for h, est in fitted.items()}
        self.n_features_in_ = frame.shape[1]
        return self

    def predict_proba(self, X: Any) -> dict[str, np.ndarray]:
        """Calibrated probabilities per present head."""
        check_is_fitted(self, "heads_")
        return {h: est.predict_proba(X) for h, est in self.heads_.items()}

    def predict(self, X: Any) -> dict[str, np.ndarray]:
        """Most probable label per present head: head name → ndarray (n_rows,) of str."""
        check_is_fitted(self, "heads_")
        return {h: est.predict(X) for h, est in self.heads_.items()}
