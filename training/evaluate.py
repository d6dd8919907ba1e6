"""Evaluate a two-head model: metrics per head and per slice, baselines, plots.
Design notes: ``docs/design/training.md``."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

__all__ = [
    "HEADS",
    "HeadPrediction",
    "baselines",
    "evaluate_heads",
    "evaluate_on_table",
    "flatten_metrics",
    "head_metrics",
    "metric_key",
    "plots",
    "predict_heads",
]

#: The heads of a lead-readiness model, in the order they are reported.
HEADS: tuple[str, ...] = ("stage", "persona")

#: Probabilities are clipped to this before taking logs (a class the model never
#: saw gets this probability rather than an infinite loss).
_EPS = 1e-15
#: Slices smaller than this are not reported (their metrics are noise).
MIN_SLICE_ROWS = 10
#: At most this many values of one slice column are reported (the most frequent).
MAX_SLICE_VALUES = 20


@dataclass(frozen=True)
class HeadPrediction:
    """One head's class probabilities for a set of rows."""

    classes: tuple[str, ...]
    proba: np.ndarray
    index: pd.Index
    labels: np.ndarray | None = None

    @property
    def predicted(self) -> np.ndarray:
        """The label the model gives each row, shape (n_rows,)."""
        if self.labels is not None:
            return np.asarray(self.labels, dtype=object)
        return np.asarray(self.classes, dtype=object)[np.argmax(self.proba, axis=1)]


def _head_classes(model: Any, head: str) -> tuple[str, ...] | None:
    """The labels of one head of a fitted classifier, in predict_proba column order."""
    classes = getattr(model, "classes_", None)
    if isinstance(classes, Mapping):
        found = classes.get(head)
        return None if found is None else tuple(str(c) for c in found)
    heads = getattr(model, "heads_", None)
    if isinstance(heads, Mapping) and heads.get(head) is not None:
        return tuple(str(c) for c in heads[head].classes_)
    return None


def predict_heads(model: Any, X: pd.DataFrame) -> dict[str, HeadPrediction]:
    """Class probabilities of every head a model has, for the rows of ``X``."""
    if hasattr(model, "predict_frame"):
        out = model.predict_frame(X)
        result: dict[str, HeadPrediction] = {}
        for head in HEADS:
            prefix = f"{head}_proba__"
            cols = [c for c in out.columns if str(c).startswith(prefix)]
            if not cols:
                continue
            classes = tuple(str(c)[len(prefix) :] for c in cols)
            proba = out[cols].to_numpy(dtype=float)
            labels = out[head].astype(str).to_numpy(dtype=object) if head in out else None
            result[head] = HeadPrediction(classes, proba, pd.Index(X.index), labels)
        return result
    raw = model.predict_proba(X)
    decided = model.predict(X) if hasattr(model, "predict") else {}
    result = {}
    for head in HEADS:
        if head not in raw or raw[head] is None:
            continue
        classes = _head_classes(model, head)
        if classes is None:
            raise ValueError(
                f"cannot tell the classes of the {head!r} head of {type(model).__name__}"
            )
        labels = decided.get(head)
        result[head] = HeadPrediction(
            classes,
            np.asarray(raw[head], dtype=float),
            pd.Index(X.index),
            None if labels is None else np.asarray(labels, dtype=str).astype(object),
        )
    return result


def _labelled(y: pd.Series | None) -> pd.Series:
    """The non-missing labels of ``y`` as strings (empty when ``y`` is None)."""
    if y is None:
        return pd.Series([], dtype=object)
    y = y[y.notna()]
    return y.astype(object).map(str)


def _calibration(confidence: np.ndarray, correct: np.ndarray, n_bins: int) -> dict[str, Any]:
    """Top-label reliability: per equal-width confidence bin, mean confidence and accuracy."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins).tolist()
    sums = (np.bincount(which, weights=w, minlength=n_bins) for w in (confidence, correct))
    conf, acc = ([float(t / k) if k else None for t, k in zip(s, count, strict=True)] for s in sums)
    ece = sum(abs(a - c) * k for c, a, k in zip(conf, acc, count, strict=True) if k) / len(correct)
    return {
        "ece": float(ece),
        "bins": {"edges": edges.tolist(), "confidence": conf, "accuracy": acc, "count": count},
    }


def _scores(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[list[str], dict[str, Any]]:
    """macro-F1, accuracy and per-class scores over the labels seen in truth or predictions."""
    labels = sorted(set(y_true.tolist()) | set(y_pred.tolist()))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    per_class = {
        label: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }
    return labels, {
        "macro_f1": float(np.mean(f1)) if len(labels) else float("nan"),
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else float("nan"),
        "per_class": per_class,
    }


def head_metrics(
    y_true: pd.Series,
    prediction: HeadPrediction,
    *,
    slices: pd.DataFrame | None = None,
    n_bins: int = 10,
) -> dict[str, Any]:
    """Metrics of one head on the rows of ``y_true`` that have a label."""
    y = _labelled(y_true)
    if len(y) == 0:
        return {"n": 0}
    positions = prediction.index.get_indexer(y.index)
    if (positions < 0).any():
        missing = y.index[positions < 0][:5].tolist()
        raise ValueError(f"labels for rows the model did not score, e.g. {missing}")
    proba = prediction.proba[positions]
    y_pred = prediction.predicted[positions]
    y_arr = y.to_numpy(dtype=object)

    labels, scores = _scores(y_arr, y_pred)
    column_of = {c: i for i, c in enumerate(prediction.classes)}
    true_cols = np.array([column_of.get(v, -1) for v in y_arr])
    p_true = np.where(true_cols >= 0, proba[np.arange(len(y_arr)), np.maximum(true_cols, 0)], 0.0)
    log_loss = float(-np.mean(np.log(np.clip(p_true, _EPS, 1.0))))
    confidence = proba.max(axis=1)
    calibration = _calibration(confidence, y_pred == y_arr, n_bins)
    matrix = confusion_matrix(y_arr, y_pred, labels=labels)

    result: dict[str, Any] = {
        "n": len(y_arr),
        "macro_f1": scores["macro_f1"],
        "accuracy": scores["accuracy"],
        "log_loss": log_loss,
        "ece": calibration["ece"],
        "labels": labels,
        "per_class": scores["per_class"],
        "confusion_matrix": {"labels": labels, "matrix": matrix.tolist()},
        "calibration": calibration["bins"],
        "slices": {},
    }
    if slices is not None and len(slices.columns):
        frame = slices.reindex(y.index)
        for column in slices.columns:
            values = frame[column].astype(object).where(frame[column].notna(), "(missing)")
            values = values.map(str)
            counts = values.value_counts()
            kept = counts[counts >= MIN_SLICE_ROWS].index[:MAX_SLICE_VALUES]
            per_value: dict[str, Any] = {}
            for value in kept:
                mask = (values == value).to_numpy()
                _, s = _scores(y_arr[mask], y_pred[mask])
                per_value[str(value)] = {
                    "n": int(mask.sum()),
                    "macro_f1": s["macro_f1"],
                    "accuracy": s["accuracy"],
                }
            if per_value:
                result["slices"][str(column)] = per_value
    return result


def _slices_for(head: str, slices: pd.DataFrame | None) -> pd.DataFrame | None:
    """Slice columns for one head: never the head's own label (that is per-class recall)."""
    if slices is None:
        return None
    return slices.drop(columns=[c for c in slices.columns if c == head])


def evaluate_heads(
    model: Any,
    X: pd.DataFrame,
    y_stage: pd.Series | None,
    y_persona: pd.Series | None,
    *,
    slices: pd.DataFrame | None = None,
    predictions: Mapping[str, HeadPrediction] | None = None,
) -> dict[str, dict[str, Any]]:
    """Evaluate every head of ``model`` that has labels, on the rows of ``X`` (``predictions``:
    :func:`predict_heads` of them, when the caller has it already)."""
    predictions = predict_heads(model, X) if predictions is None else predictions
    result: dict[str, dict[str, Any]] = {}
    for head, y in zip(HEADS, (y_stage, y_persona), strict=True):
        y = _labelled(y)
        if len(y) == 0:
            continue
        if head not in predictions:
            result[head] = {"n": len(y), "missing_head": True}
            continue
        result[head] = head_metrics(y, predictions[head], slices=_slices_for(head, slices))
    return result


# -- baselines -------------------------------------------------------------------------


def _as_object_strings(frame: pd.DataFrame) -> np.ndarray:
    """Categorical columns as object strings, missing as NaN (for SimpleImputer)."""
    out = frame.astype(object)
    missing = out.isna()
    return out.map(str).mask(missing, np.nan).to_numpy(dtype=object)


def _logreg_columns(X: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Numeric and categorical columns usable by the logistic-regression baseline."""
    numeric, categorical = [], []
    n = len(X)
    for col in X.columns:
        s = X[col]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            if s.notna().any():
                numeric.append(col)
        elif pd.api.types.is_datetime64_any_dtype(s):
            continue
        else:
            distinct = s.nunique(dropna=True)
            if distinct >= 1 and (n < 50 or distinct <= n / 2):
                categorical.append(col)
    return numeric, categorical


def _logreg_pipeline(numeric: list[str], categorical: list[str], seed: int) -> Any:
    """Imputation + scaling / one-hot + multinomial logistic regression."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    transformers = []
    if numeric:
        steps = (FunctionTransformer(_as_float), SimpleImputer(strategy="median"), StandardScaler())
        transformers.append(("numeric", make_pipeline(*steps), numeric))
    if categorical:
        steps = (
            FunctionTransformer(_as_object_strings),
            SimpleImputer(strategy="constant", fill_value="(missing)"),
            OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=5, max_categories=30),
        )
        transformers.append(("categorical", make_pipeline(*steps), categorical))
    # tol 1e-3: ~45 L-BFGS iterations instead of ~280 on simulator data,
    # macro-F1 within 0.002 of the tight fit.
    logreg = LogisticRegression(max_iter=300, tol=1e-3, random_state=seed)
    return make_pipeline(ColumnTransformer(transformers), logreg)


def _as_float(frame: pd.DataFrame) -> np.ndarray:
    """Numeric / boolean columns as float, missing as NaN."""
    return frame.astype("float64").to_numpy()


def _majority(y_train: pd.Series, index: pd.Index) -> HeadPrediction:
    """Always the most frequent training label, with the training label frequencies."""
    counts = y_train.value_counts()
    classes = tuple(str(c) for c in counts.index)
    freqs = (counts / counts.sum()).to_numpy(dtype=float)
    return HeadPrediction(classes, np.tile(freqs, (len(index), 1)), index)


def baselines(
    X_train: pd.DataFrame,
    X_test: pd.DataFrame,
    *,
    y_train_stage: pd.Series | None,
    y_train_persona: pd.Series | None,
    y_test_stage: pd.Series | None,
    y_test_persona: pd.Series | None,
    slices: pd.DataFrame | None = None,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Majority-class and logistic-regression baselines on the same split."""
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    result: dict[str, dict[str, dict[str, Any]]] = {"majority": {}, "logreg": {}}
    numeric, categorical = _logreg_columns(X_train)
    pairs = zip(
        HEADS, (y_train_stage, y_train_persona), (y_test_stage, y_test_persona), strict=True
    )
    for head, y_tr, y_te in pairs:
        y_tr, y_te = _labelled(y_tr), _labelled(y_te)
        if len(y_te) == 0 or len(y_tr) == 0:
            continue
        head_slices = _slices_for(head, slices)
        result["majority"][head] = head_metrics(
            y_te, _majority(y_tr, X_test.index), slices=head_slices
        )
        if y_tr.nunique() < 2 or not (numeric or categorical):
            result["logreg"][head] = result["majority"][head]
            continue
        pipe = _logreg_pipeline(numeric, categorical, seed)
        # One BLAS thread: on a busy machine a multi-threaded BLAS spins and makes
        # these small products up to ten times slower.
        with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
            # A baseline that stops at max_iter is still a fair baseline.
            warnings.simplefilter("ignore", ConvergenceWarning)
            pipe.fit(X_train.loc[y_tr.index, numeric + categorical], y_tr.to_numpy())
            proba = pipe.predict_proba(X_test[numeric + categorical])
        prediction = HeadPrediction(
            tuple(str(c) for c in pipe.classes_), proba, pd.Index(X_test.index)
        )
        result["logreg"][head] = head_metrics(y_te, prediction, slices=head_slices)
    return result


# -- flattening for MLflow -------------------------------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


#: Longest part of a metric name taken from data (a label or a slice value).
_MAX_PART = 60


def metric_key(*parts: str) -> str:
    """An MLflow-safe metric name from parts (labels may hold any character)."""
    return "_".join(
        (_UNSAFE.sub("_", str(p)).strip("_") or "_")[:_MAX_PART] for p in parts if p != ""
    )


def _is_finite_number(value: Any) -> bool:
    """A real number (not a bool) that is neither NaN nor infinite: a loggable metric."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def flatten_metrics(
    evaluation: Mapping[str, Mapping[str, Any]], *, prefix: str = "", infix: str = ""
) -> dict[str, float]:
    """Flatten an evaluation into scalar metrics for ``mlflow.log_metrics``."""
    out: dict[str, float] = {}

    def put(name: str, value: Any) -> None:
        if _is_finite_number(value):
            out[name] = float(value)

    for head, m in evaluation.items():
        base = metric_key(f"{prefix}{head}", infix)
        for name in ("n", "macro_f1", "accuracy", "log_loss", "ece"):
            put(f"{base}_{name}", m.get(name))
        for label, scores in (m.get("per_class") or {}).items():
            for name in ("precision", "recall", "f1"):
                put(f"{base}_{name}__{metric_key(label)}", scores.get(name))
        for column, values in (m.get("slices") or {}).items():
            for value, scores in values.items():
                key = f"{base}_slice__{metric_key(column)}__{metric_key(value)}"
                put(f"{key}_macro_f1", scores.get("macro_f1"))
                put(f"{key}_n", scores.get("n"))
    return out


# -- plots -----------------------------------------------------------------------------


def plots(
    evaluation: Mapping[str, Mapping[str, Any]], out_dir: Path | str, *, title: str = ""
) -> list[Path]:
    """Confusion-matrix and reliability-diagram PNGs, one of each per head."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    lead = f"{title} — " if title else ""
    for head, m in evaluation.items():
        if "confusion_matrix" not in m:
            continue
        for name, draw in (
            ("confusion_matrix", _confusion_plot),
            ("calibration", _calibration_plot),
        ):
            fig = draw(plt, head, m, lead)
            fig.tight_layout()
            path = out / f"{head}_{name}.png"
            fig.savefig(path, dpi=100)
            plt.close(fig)
            written.append(path)
    return written


def _confusion_plot(plt: Any, head: str, m: Mapping[str, Any], lead: str) -> Any:
    """A head's confusion matrix, coloured by share of the true class."""
    labels = m["confusion_matrix"]["labels"]
    matrix = np.asarray(m["confusion_matrix"]["matrix"], dtype=float)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    size = max(4.0, 0.6 * len(labels) + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels=labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels=labels)
    for (i, j), n in np.ndenumerate(matrix):
        color = "white" if share[i, j] > 0.5 else "black"
        ax.text(j, i, f"{int(n)}", ha="center", va="center", color=color, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{lead}{head}: confusion matrix (n={m['n']}, macro-F1 {m['macro_f1']:.3f})")
    fig.colorbar(image, ax=ax, label="share of true class")
    return fig


def _calibration_plot(plt: Any, head: str, m: Mapping[str, Any], lead: str) -> Any:
    """A head's reliability diagram over the count of rows per confidence bin."""
    bins = m["calibration"]
    edges = np.asarray(bins["edges"])
    centers = (edges[:-1] + edges[1:]) / 2
    filled = [i for i, c in enumerate(bins["count"]) if c]
    fig, (ax, ax_count) = plt.subplots(
        2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    ax.plot(
        [bins["confidence"][i] for i in filled],
        [bins["accuracy"][i] for i in filled],
        marker="o",
        label=head,
    )
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left")
    ax.set_title(f"{lead}{head}: reliability (ECE {m['ece']:.3f})")
    ax_count.bar(centers, bins["count"], width=edges[1] - edges[0], color="grey")
    ax_count.set_xlabel("confidence of the predicted class")
    ax_count.set_ylabel("rows")
    return fig


# -- a registered model on a labelled table --------------------------------------------


def evaluate_on_table(
    model: Any,
    leads_path: str | Path,
    *,
    events_path: str | Path | None = None,
    id_col: str = "lead_id",
    stage_col: str | None = None,
    persona_col: str | None = None,
    exclude: Sequence[str] = (),
    as_of: Any = None,
    holdout_share: float = 0.2,
    slice_cols: Sequence[str] = ("lead_source",),
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate a packaged model on the held-out leads of a labelled table."""
    from training.dataset import holdout_mask, load_training_table

    ts = load_training_table(
        leads_path,
        events_path=events_path,
        id_col=id_col,
        stage_col=stage_col,
        persona_col=persona_col,
        exclude=exclude,
        as_of=as_of,
        slice_cols=slice_cols,
        feature_config=getattr(model, "feature_config", None),
    )
    mask = holdout_mask(ts.ids, holdout_share)
    train, held = ts.subset(~mask), ts.subset(mask)
    if len(held) == 0:
        raise ValueError(f"{ts.name}: no held-out leads at share {holdout_share}")
    evaluation, base = evaluate_with_baselines(model, train, held, seed=seed)
    return {"model": evaluation, "baselines": base, "n_holdout": len(held), "n_train": len(train)}


def evaluate_with_baselines(
    model: Any, train: Any, held: Any, *, seed: int = 0
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the model's evaluation on the held-out ``TrainingSet``, the baselines' evaluations,
    fitted on ``train``)."""
    evaluation = evaluate_heads(model, held.X, held.y_stage, held.y_persona, slices=held.slices)
    base = baselines(
        train.X,
        held.X,
        y_train_stage=train.y_stage,
        y_train_persona=train.y_persona,
        y_test_stage=held.y_stage,
        y_test_persona=held.y_persona,
        slices=held.slices,
        seed=seed,
    )
    return evaluation, base
