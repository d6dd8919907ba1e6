"""What scoring needs at serving time, without scikit-learn, SciPy or LightGBM.

The encoder's transform half, the calibration map and the decision rule are plain
numpy/pandas code here; ``model.classifier`` fits them (``TableEncoder`` subclasses
``TableEncoding``; the heads keep a ``_Calibrator``). :func:`served_copy` turns a
prepared ``LeadReadinessModel`` whose heads all score with compiled trees into one
whose heads are :class:`ServedHead` objects: it unpickles without importing
scikit-learn, SciPy or LightGBM (about a second of a command's start-up), and
scores exactly as the full model (checked when it is made). It cannot explain (no
booster): commands that want reasons load the full model.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import math
import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data.values import is_missing

__all__ = ["HEADS", "ServedClassifier", "ServedHead", "TableEncoding", "served_copy"]

#: The heads of the two-head classifier, in output order.
HEADS: tuple[str, ...] = ("stage", "persona")

_TOKEN_RE = re.compile(r"[^\W_]+", re.UNICODE)
_TRUE_WORDS = frozenset({"true", "yes", "y", "t"})
_FALSE_WORDS = frozenset({"false", "no", "n", "f"})
#: Frames of at least this many rows encode each distinct string once (pd.factorize).
_FACTORIZE_ROWS = 256
#: Isotonic calibration floors each class probability at this value before renormalizing.
_PROBA_FLOOR = 1e-4
#: transform_records encodes at most this many records row by row, more column by column.
_ROW_WISE_RECORDS = 8
_PLAIN_NUMBERS = frozenset({int, float, bool, type(None)})


def _to_number(value: Any) -> float:
    """One cell of a numeric column as a float (bools 0/1, timedeltas in days, else NaN)."""
    kind = type(value)
    if kind is float:
        return value
    if kind is int:
        return float(value)
    if is_missing(value, blank=True):
        return math.nan
    if isinstance(value, bool | np.bool_):
        return 1.0 if value else 0.0
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, timedelta):
        return value.total_seconds() / 86400.0
    if isinstance(value, np.timedelta64):
        return float(value / np.timedelta64(1, "D"))
    if isinstance(value, str):
        text = value.strip()
        low = text.lower()
        if low in _TRUE_WORDS:
            return 1.0
        if low in _FALSE_WORDS:
            return 0.0
        try:
            return float(text.replace(",", ""))
        except ValueError:
            return math.nan
    return math.nan


def _to_key(value: Any) -> str | None:
    """One cell of a categorical or text column as a stripped string (None when missing)."""
    if is_missing(value, blank=True):
        return None
    if isinstance(value, bool | np.bool_):
        return "True" if value else "False"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def _key(value: Any) -> str | None:
    """:func:`_to_key`, with plain strings (most categorical cells) answered inline."""
    if type(value) is str:
        return value.strip() or None
    return _to_key(value)


def _tokens(text: str) -> set[str]:
    """Lower-cased word tokens of two or more characters."""
    return {t for t in _TOKEN_RE.findall(text.lower()) if len(t) >= 2}


# --------------------------------------------------------------------------- encoding


class TableEncoding:
    """The fitted encoder's mapping of a table to LightGBM's float matrix (the transform
    half of ``model.classifier.TableEncoder``, which fits its state)."""

    @staticmethod
    def _numeric_values(s: pd.Series) -> np.ndarray:
        if pd.api.types.is_timedelta64_dtype(s.dtype):
            return (s.dt.total_seconds() / 86400.0).to_numpy(dtype=float, na_value=np.nan)
        if isinstance(s.dtype, np.dtype) and s.dtype.kind in "biuf":
            return s.to_numpy(dtype=float)
        if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
            return s.to_numpy(dtype=float, na_value=np.nan)
        return np.array([_to_number(v) for v in s.to_numpy(dtype=object)], dtype=float)

    def _build_plan(self) -> list[tuple[str, str, int, Any]]:
        """Per used column: (name, kind, first output index, category codes or token index)."""
        plan: list[tuple[str, str, int, Any]] = []
        start = 0
        for col in self.columns_:
            kind = self.kinds_[col]
            payload: dict[str, Any] | None = None
            if kind == "categorical":
                payload = {c: float(i) for i, c in enumerate(self.categories_[col])}
            elif kind == "text":
                payload = {t: j for j, t in enumerate(self.tokens_[col])}
            plan.append((col, kind, start, payload))
            start += len(payload) if kind == "text" else 1
        return plan

    def encode_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode a DataFrame. Missing columns give NaN; columns not seen in ``fit`` are
        ignored."""
        lookup = {str(c): c for c in frame.columns}
        # Column-major: each input column fills contiguous memory (LightGBM reads either order).
        out = np.full((len(frame), len(self.feature_names_out_)), np.nan, order="F")
        for col, kind, start, payload in self._plan:
            if col not in lookup:
                continue
            s = frame[lookup[col]]
            if kind == "numeric":
                out[:, start] = self._numeric_values(s)
                continue
            block = out[:, start : start + (1 if kind == "categorical" else len(payload))]
            if len(s) >= _FACTORIZE_ROWS and self._encode_distinct(block, s, kind, payload):
                continue
            self._fill_coded(out, start, kind, payload, s.to_numpy(dtype=object))
        return out

    @classmethod
    def _encode_distinct(
        cls, block: np.ndarray, s: pd.Series, kind: str, payload: dict[str, Any]
    ) -> bool:
        """Encode each distinct string once and copy it to its rows (large frames)."""
        if isinstance(s.dtype, pd.StringDtype):
            codes, uniques = s.factorize()  # Arrow-backed strings: no Python objects per row
            uniques = uniques.to_numpy(dtype=object)
        else:
            codes, uniques = pd.factorize(s.to_numpy(dtype=object))
        if not all(type(u) is str for u in uniques):
            return False
        table = np.full((len(uniques) + 1, block.shape[1]), np.nan)  # row -1: missing
        cls._fill_coded(table[:-1], 0, kind, payload, uniques)
        block[:] = table[codes]
        return True

    @staticmethod
    def _fill_coded(
        out: np.ndarray, start: int, kind: str, payload: dict[str, Any], values: Sequence[Any]
    ) -> None:
        """A categorical or text column's outputs from ``start`` of ``out``, one row per value."""
        if kind == "categorical":
            out[:, start] = [payload.get(_key(v), math.nan) for v in values]
        else:
            for r, v in enumerate(values):
                TableEncoding._fill_text(out[r], start, v, payload)

    @staticmethod
    def _fill_text(row: Any, start: int, value: Any, tokens: dict[str, int]) -> None:
        """One text cell's token columns, from ``start`` of ``row`` (a list or a numpy
        row): 1.0 for its tokens, 0.0 for the others, left as they are when missing."""
        key = _key(value)
        if key is None:
            return
        row[start : start + len(tokens)] = [0.0] * len(tokens)
        for t in _tokens(key):
            j = tokens.get(t)
            if j is not None:
                row[start + j] = 1.0

    def encode_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Encode plain dicts without pandas; equals ``encode_frame(pd.DataFrame(records))``."""
        plan = self._plan
        width = len(self.feature_names_out_)
        if len(records) > _ROW_WISE_RECORDS:
            return self._transform_records_by_column(records, plan, width)
        nan = math.nan
        rows: list[list[float]] = []
        for rec in records:
            row = [nan] * width
            get = rec.get
            for col, kind, start, payload in plan:
                v = get(col)
                if kind == "numeric":
                    kind_v = type(v)
                    row[start] = (
                        v if kind_v is float else float(v) if kind_v is int else _to_number(v)
                    )
                elif kind == "categorical":
                    row[start] = payload.get(_key(v), nan)
                else:
                    self._fill_text(row, start, v, payload)
            rows.append(row)
        if not rows:
            return np.full((0, width), np.nan)
        return np.array(rows, dtype=np.float64)

    @staticmethod
    def _transform_records_by_column(
        records: Sequence[Mapping[str, Any]], plan: list[tuple[str, str, int, Any]], width: int
    ) -> np.ndarray:
        """:meth:`encode_records` column by column (many rows): a numeric column
        of plain ints, floats, bools and Nones converts in one numpy call (the
        values ``_to_number`` gives), any other cell by cell."""
        n = len(records)
        out = np.full((n, width), np.nan)
        plain = all(type(rec) is dict for rec in records)
        for col, kind, start, payload in plan:
            if plain:  # dict.get mapped in C
                values = list(map(dict.get, records, itertools.repeat(col, n)))
            else:
                values = [rec.get(col) for rec in records]
            if kind == "numeric":
                if set(map(type, values)) <= _PLAIN_NUMBERS:
                    out[:, start] = np.array(values, dtype=np.float64)  # None → NaN
                else:
                    out[:, start] = [_to_number(v) for v in values]
            else:
                TableEncoding._fill_coded(out, start, kind, payload, values)
        return out

    def decode(self, column: str, encoded: float) -> Any:
        """The readable value of one encoded numeric or categorical cell (None when missing)."""
        if encoded is None or math.isnan(encoded):
            return None
        if self.kinds_.get(column) == "categorical":
            return self.categories_[column][int(encoded)]
        return float(encoded)


# --------------------------------------------------------------------------- calibration


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _log_loss(proba: np.ndarray, y_index: np.ndarray, weight: np.ndarray) -> float:
    p = np.clip(proba[np.arange(len(y_index)), y_index], 1e-12, 1.0)
    return float(-np.average(np.log(p), weights=weight))


class _Calibrator:
    """Maps prior-corrected logits (n, k) to calibrated probabilities (n, k)."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.temperature = 1.0
        self.curves: list[tuple[np.ndarray, np.ndarray] | None] = []

    def fit(self, logits: np.ndarray, y_index: np.ndarray, weight: np.ndarray) -> _Calibrator:
        if self.method == "temperature":
            from scipy.optimize import minimize_scalar

            def nll(log_t: float) -> float:
                return _log_loss(_softmax(logits / math.exp(log_t)), y_index, weight)

            res = minimize_scalar(nll, bounds=(math.log(0.25), math.log(20.0)), method="bounded")
            self.temperature = float(math.exp(res.x))
        elif self.method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            base = _softmax(logits)
            self.curves = []
            for c in range(logits.shape[1]):
                target = (y_index == c).astype(float)
                if target.sum() < 2 or (1 - target).sum() < 2:
                    self.curves.append(None)
                    continue
                iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
                iso.fit(base[:, c], target, sample_weight=weight)
                curve = (iso.X_thresholds_.copy(), iso.y_thresholds_.copy())
                # The curve is kept as its public fitted thresholds, applied with np.interp
                # (no scikit-learn when scoring): checked equal to scikit-learn's own map.
                diff = np.max(np.abs(np.interp(base[:, c], *curve) - iso.predict(base[:, c])))
                if not diff <= 1e-9:
                    raise ValueError(f"isotonic curve of class {c} differs by {diff:g}")
                self.curves.append(curve)
        return self

    def transform(self, logits: np.ndarray) -> np.ndarray:
        if self.method == "temperature":
            return _softmax(logits / self.temperature)
        base = _softmax(logits)
        if self.method != "isotonic":
            return base
        out = base.copy()
        for c, curve in enumerate(self.curves):
            if curve is not None:
                out[:, c] = np.interp(base[:, c], curve[0], curve[1])
        out = np.maximum(out, _PROBA_FLOOR)
        return out / out.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------- served copy


class ServedHead:
    """One fitted head as it serves: encoder state, compiled trees, calibration and
    decision weights (``model.classifier.HeadClassifier`` without its booster)."""

    def __init__(self, est: Any) -> None:
        encoder = TableEncoding()
        encoder.__dict__.update(est.encoder_.__dict__)
        self.encoder_ = encoder
        self.classes_ = est.classes_
        self.n_features_out_ = est.n_features_out_
        self.num_threads = est.num_threads
        self.logit_shift_ = est.logit_shift_
        self.calibrator_ = est.calibrator_
        self.calibration_ = est.calibration_
        self.decision_weights_ = est.__dict__.get("decision_weights_")
        #: What the compiled trees must be built from (their manifest records it too).
        self.model_sha256_ = hashlib.sha256(est.booster_.model_to_string().encode()).hexdigest()

    def encode(self, X: pd.DataFrame) -> np.ndarray:
        """The encoder's matrix for a DataFrame, shape (n_rows, n_features_out)."""
        return self.encoder_.encode_frame(X)

    def encode_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """The encoder's matrix for plain dicts, shape (n_rows, n_features_out)."""
        return self.encoder_.encode_records(records)

    def predict_proba_encoded(self, Z: np.ndarray, *, num_threads: int | None = None) -> np.ndarray:
        """Calibrated probabilities from an encoded matrix (compiled trees only)."""
        compiled = self.__dict__.get("_compiled")
        if compiled is None:
            raise RuntimeError("the served head has no compiled trees attached")
        threads = self.num_threads if num_threads is None else num_threads
        raw = compiled(Z if Z.shape[1] else np.zeros((len(Z), 1)), threads)
        if len(self.classes_) == 2:
            raw = np.column_stack([np.zeros(len(raw)), raw])
        raw = np.asarray(raw, dtype=float).reshape(len(Z), len(self.classes_))
        return self.calibrator_.transform(raw + self.logit_shift_)

    def decide(self, proba: np.ndarray) -> np.ndarray:
        """The chosen class index per row of calibrated probabilities: decision weights
        times probabilities (``HeadClassifier.decide`` too; a head pickled before decision
        weights existed has none: argmax)."""
        weights = self.__dict__.get("decision_weights_")
        if weights is None:
            return np.asarray(proba).argmax(axis=1)
        return (np.asarray(proba) * weights).argmax(axis=1)

    def attach_compiled(self, predict_raw: Callable[[np.ndarray, int], np.ndarray] | None) -> None:
        """Score with this native code (None: detach it; the head cannot score then)."""
        if predict_raw is None:
            self.__dict__.pop("_compiled", None)
        else:
            self.__dict__["_compiled"] = predict_raw

    @property
    def uses_compiled(self) -> bool:
        """Whether compiled trees are attached."""
        return "_compiled" in self.__dict__

    def prepare_explanations(self) -> None:
        """A served head cannot explain: reasons need the full model's booster."""
        raise ValueError("the served copy cannot explain; load the full model for reasons")

    def class_contributions_encoded(self, *args: Any, **kwargs: Any) -> np.ndarray:
        """See :meth:`prepare_explanations`."""
        self.prepare_explanations()
        raise AssertionError("unreachable")

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_compiled", None)
        return state


class ServedClassifier:
    """The heads of a served copy by name (what ``LeadReadinessModel`` reads of its
    classifier)."""

    def __init__(self, heads: Mapping[str, ServedHead]) -> None:
        self.heads_ = dict(heads)


def served_copy(model: Any, compiled_dir: str | Path) -> Any | None:
    """``model`` (a ``model.package.LeadReadinessModel``, prepared, every head on
    compiled trees) with :class:`ServedHead` heads attached to the compiled trees of
    ``compiled_dir``; None when a head is not on compiled trees or not of the LightGBM
    family. Checked to give the same probabilities and decisions as ``model`` on the
    compiled artifact's check rows (else ValueError)."""
    heads = model.heads
    if not heads or not all(
        est.uses_compiled and est.__dict__.get("family_", "lightgbm") == "lightgbm"
        for est in heads.values()
    ):
        return None
    served = copy.copy(model)
    served.classifier = ServedClassifier({h: ServedHead(est) for h, est in heads.items()})
    status = served.prepare(compiled_dir, explanations=False)
    if any(s != "compiled" for s in status.values()):
        return None
    with np.load(Path(compiled_dir) / "check.npz") as checks:
        for name, est in heads.items():
            Z = checks[f"{name}__Z"]
            want = est.predict_proba_encoded(Z, num_threads=1)
            got = served.heads[name].predict_proba_encoded(Z, num_threads=1)
            diff = float(np.max(np.abs(want - got))) if want.size else 0.0
            if want.shape != got.shape or not diff <= 1e-12:
                raise ValueError(f"{name} head: the served copy differs by {diff:g}")
            if not np.array_equal(est.decide(want), served.heads[name].decide(got)):
                raise ValueError(f"{name} head: the served copy decides differently")
    return served
