"""Library calibrator and noise finder against leadready's own, on the real tables.

``python -m bench.calibration_noise`` writes ``bench/results/calibration_noise.json``.

Issue #15 asks to use scikit-learn's ``CalibratedClassifierCV(FrozenEstimator(...))``
and cleanlab's ``find_label_issues`` in place of the hand-written calibrator
(``model.classifier._Calibrator``) and flagging rule (``training.noise.confident_flags``)
*where they are as good*. On the splits of :mod:`bench.quality_real` (80/20 by the
stage label; the simulator scored against its hidden truth) this measures, per head:

calibration
    One head (``HeadClassifier(cv_folds=3, decision="macro_f1")``, family chosen as
    in training) is fitted on the 80%. Its calibrator is fitted on the out-of-fold
    logits of the chosen family; the library's is fitted on the very same logits
    (``FrozenEstimator`` of an estimator whose ``decision_function`` is those
    logits) with ``method`` temperature, sigmoid and isotonic. On the 20%: log
    loss, top-label ECE and macro-F1 (each with its decision weights tuned on its
    own out-of-fold probabilities).
label noise
    The same out-of-fold probabilities of ``training.noise.find_label_issues``
    flagged by leadready's rule and by ``cleanlab.filter.find_label_issues``; the
    flagged rows down-weighted the same way (``reweight``: self-confidence over
    the class threshold) and the head refitted. Flag counts and the 20%'s
    macro-F1 of each, next to no noise handling.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import f1_score

from bench.common import RESULTS, write_result

SEEDS = (11,)


class _Logits(ClassifierMixin, BaseEstimator):
    """A fitted 'model' whose decision function is its input: logits in, logits out."""

    def __init__(self, n_classes: int = 2) -> None:
        self.n_classes = n_classes

    def fit(self, X: Any, y: Any = None) -> _Logits:
        self.classes_ = np.arange(self.n_classes)
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        return X[:, 1] - X[:, 0] if self.n_classes == 2 else X

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(X, dtype=float).argmax(axis=1)


def _capturing_head(**params: Any) -> Any:
    from model.classifier import HeadClassifier

    class Capturing(HeadClassifier):
        def _fit_calibration(self, Z, y_index, weight, halves, *, raw=None):  # noqa: ANN001
            self.__dict__.setdefault("captured_", []).append((raw, y_index, weight))
            return super()._fit_calibration(Z, y_index, weight, halves, raw=raw)

    return Capturing(**params)


def _metrics(proba: np.ndarray, y_index: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import f1_score, log_loss

    from model.classifier import expected_calibration_error

    p = np.clip(proba, 1e-15, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    k = proba.shape[1]
    return {
        "log_loss": float(log_loss(y_index, p, labels=list(range(k)))),
        "ece": float(expected_calibration_error(p, y_index)),
        "macro_f1": float(f1_score(y_index, (p * weights).argmax(axis=1), average="macro")),
    }


def calibration_side_by_side(head: Any, Z_test: np.ndarray, y_test: np.ndarray) -> dict:
    """Leadready's calibrator and sklearn's, fitted on the same out-of-fold logits."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    from model.classifier import tune_decision_weights

    order = list(head.cv_["families"])
    raw, y_index, weight = head.captured_[order.index(head.family_)]
    oof = raw + head.logit_shift_
    test = head._raw_logits(Z_test, 1) + head.logit_shift_
    out = {"leadready": {**_metrics(head.predict_proba_encoded(Z_test), y_test,
                                    head.decision_weights_),
                         "method": head.calibration_["method"]}}  # fmt: skip
    k = len(head.classes_)
    for method in ("temperature", "sigmoid", "isotonic"):
        start = time.process_time()
        cal = CalibratedClassifierCV(FrozenEstimator(_Logits(k).fit(oof)), method=method)
        cal.fit(oof, y_index, sample_weight=weight)
        seconds = time.process_time() - start
        w, _ = tune_decision_weights(cal.predict_proba(oof), y_index, weight)
        out[f"sklearn_{method}"] = {
            **_metrics(cal.predict_proba(test), y_test, w),
            "fit_cpu_seconds": seconds,
        }
    return out


def noise_side_by_side(X: Any, labels: np.ndarray, fit: Any, plain: float) -> dict:
    """No handling, leadready's flags and cleanlab's flags: counts and held-out macro-F1."""
    from cleanlab.filter import find_label_issues as cleanlab_issues

    from training.noise import find_label_issues

    issues = find_label_issues(X, labels)
    y_index = np.searchsorted(np.asarray(issues.classes), labels)
    flags = {"leadready": issues.flagged}
    start = time.process_time()
    flags["cleanlab"] = cleanlab_issues(y_index, issues.proba)
    cleanlab_seconds = time.process_time() - start
    thr = np.array([issues.thresholds[c] for c in issues.classes])[y_index]
    ratio = np.clip(issues.self_confidence / np.maximum(thr, 1e-12), 0.0, 1.0)
    out: dict[str, Any] = {"none": {"macro_f1": plain}}
    for name, flagged in flags.items():
        weights = np.where(flagged, ratio, 1.0)
        out[name] = {"flagged": int(flagged.sum()), "macro_f1": fit(weights)}
    out["both_flag"] = int((flags["leadready"] & flags["cleanlab"]).sum())
    out["cleanlab"]["flag_cpu_seconds"] = cleanlab_seconds
    return out


def run(table: Any, seed: int) -> dict[str, Any]:
    from bench.quality_real import HEADS, _prepare

    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-calnoise-") as tmp:
        data = _prepare(table, seed, Path(tmp), 20_000)
        for head in HEADS:
            y_train = data["y_train"][head]
            keep = np.asarray(y_train.notna()) if hasattr(y_train, "notna") else None
            X = data["X_train"] if keep is None else data["X_train"].loc[keep]
            labels = np.asarray(y_train if keep is None else y_train[keep]).astype(str)
            params = {"cv_folds": 3, "decision": "macro_f1", "num_threads": 1,
                      "learning_rate": 0.1, "random_state": seed}  # fmt: skip
            start = time.process_time()
            est = _capturing_head(**params).fit(X, labels)
            fit_cpu = time.process_time() - start
            classes = list(est.classes_.astype(str))
            known = np.isin(data["y_test"][head], classes)
            Z_test = est.encode(data["X_test"].loc[known])
            y_test = np.searchsorted(classes, data["y_test"][head][known])

            plain = float(
                f1_score(y_test, est.decide(est.predict_proba_encoded(Z_test)), average="macro")
            )

            def fit(weights, X=X, labels=labels, Z=Z_test, y=y_test, params=params) -> float:  # noqa: ANN001
                from model.classifier import HeadClassifier

                h = HeadClassifier(**params).fit(X, labels, sample_weight=weights)
                return float(f1_score(y, h.decide(h.predict_proba_encoded(Z)), average="macro"))

            result[head] = {
                "family": est.family_,
                "fit_cpu_seconds": fit_cpu,
                "calibration": calibration_side_by_side(est, Z_test, y_test),
                "noise": noise_side_by_side(X, labels, fit, plain),
            }
            print(f"   {table.name} {seed} {head}: {json.dumps(result[head])}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    from bench.quality_real import SHARED, TABLES

    parser = argparse.ArgumentParser(prog="python -m bench.calibration_noise", description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--tables", nargs="+", default=[t.name for t in TABLES])
    args = parser.parse_args(argv)
    if not SHARED.is_dir():
        print(f"bench.calibration_noise: skipped, {SHARED} is absent")
        return 0
    path = RESULTS / "calibration_noise.json"
    runs: dict[str, Any] = json.loads(path.read_text())["runs"] if path.exists() else {}
    for table in [t for t in TABLES if t.name in args.tables]:
        for seed in args.seeds:
            print(f"== {table.name} seed {seed}", flush=True)
            runs.setdefault(table.name, {})[str(seed)] = run(table, seed)
            write_result("calibration_noise", {"runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
