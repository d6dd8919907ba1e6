"""Paired bootstrap intervals of macro-F1 for the promotion gate.
Design notes: ``docs/design/training.md``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["HeadComparison", "compare_head", "macro_f1"]

#: Resamples per interval, and the interval's coverage.
N_BOOTSTRAP = 1000
CONFIDENCE = 0.95
_DRAWS_PER_CHUNK = 2_000_000


@dataclass(frozen=True)
class HeadComparison:
    """One head compared on one gate set."""

    head: str
    n: int
    challenger: float | None
    champion: float | None
    challenger_interval: tuple[float, float] | None = None
    champion_interval: tuple[float, float] | None = None
    difference: float | None = None
    difference_interval: tuple[float, float] | None = None
    verdict: str = ""
    confidence: float = CONFIDENCE

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (intervals as lists)."""
        out = asdict(self)
        for key in ("challenger_interval", "champion_interval", "difference_interval"):
            if out[key] is not None:
                out[key] = [float(v) for v in out[key]]
        return out

    @property
    def inside_noise(self) -> bool:
        """True when the difference's interval contains 0."""
        lo_hi = self.difference_interval
        return lo_hi is not None and lo_hi[0] <= 0.0 <= lo_hi[1]


def _codes(*arrays: np.ndarray) -> tuple[list[np.ndarray], int]:
    labels = sorted({str(v) for a in arrays for v in a.tolist()})
    index = {label: i for i, label in enumerate(labels)}
    return [
        np.fromiter((index[str(v)] for v in a), dtype=np.int64, count=len(a)) for a in arrays
    ], len(labels)


def _macro_f1_rows(truth: np.ndarray, pred: np.ndarray, draws: np.ndarray, k: int) -> np.ndarray:
    """Macro-F1 of every resample (rows of ``draws`` are row positions)."""
    t = truth[draws]
    p = pred[draws]
    b = draws.shape[0]
    offset = (np.arange(b) * k)[:, None]
    size = b * k
    correct = t == p
    tp = np.bincount((t + offset)[correct], minlength=size).reshape(b, k)
    true_count = np.bincount((t + offset).ravel(), minlength=size).reshape(b, k)
    pred_count = np.bincount((p + offset).ravel(), minlength=size).reshape(b, k)
    # 2·tp + fp + fn is every true and every predicted count: F1 = 2·tp / that (0 unseen).
    denom = true_count + pred_count
    seen = denom > 0
    f1 = 2 * tp / np.maximum(denom, 1)
    return (f1 * seen).sum(axis=1) / np.maximum(seen.sum(axis=1), 1)


def macro_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    """Macro-F1 over the labels seen in ``truth`` or ``pred`` (as ``head_metrics``)."""
    (t, p), k = _codes(np.asarray(truth, dtype=object), np.asarray(pred, dtype=object))
    if len(t) == 0:
        return float("nan")
    return float(_macro_f1_rows(t, p, np.arange(len(t))[None, :], k)[0])


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(values, [tail, 1.0 - tail])
    return float(lo), float(hi)


def compare_head(
    head: str,
    truth: np.ndarray,
    challenger_pred: np.ndarray,
    champion_pred: np.ndarray | None,
    *,
    n_bootstrap: int = N_BOOTSTRAP,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> HeadComparison:
    """Macro-F1 of both models on the same rows, with paired bootstrap intervals."""
    truth = np.asarray(truth, dtype=object)
    n = len(truth)
    chall = np.asarray(challenger_pred, dtype=object)
    champ = None if champion_pred is None else np.asarray(champion_pred, dtype=object)
    arrays = [truth, chall] + ([] if champ is None else [champ])
    codes, k = _codes(*arrays)
    if n == 0:
        return HeadComparison(head, 0, None, None, verdict="no labelled leads")
    whole = np.arange(n)[None, :]
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    chall_f1 = float(_macro_f1_rows(codes[0], codes[1], whole, k)[0])
    champ_f1 = None
    # Bounded memory: at most ~2 million drawn positions at a time (16 MB), whatever n;
    # both models are scored on each chunk of draws (the pairing), then it is dropped.
    chunk = max(1, min(n_bootstrap, _DRAWS_PER_CHUNK // n))
    parts_chall: list[np.ndarray] = []
    parts_champ: list[np.ndarray] = []
    for start in range(0, n_bootstrap, chunk):
        draws = rng.integers(0, n, size=(min(chunk, n_bootstrap - start), n))
        parts_chall.append(_macro_f1_rows(codes[0], codes[1], draws, k))
        if champ is not None:
            parts_champ.append(_macro_f1_rows(codes[0], codes[2], draws, k))
    boot_chall = np.concatenate(parts_chall)
    out["challenger_interval"] = _interval(boot_chall, confidence)
    verdict = "no champion to compare with"
    if champ is not None:
        champ_f1 = float(_macro_f1_rows(codes[0], codes[2], whole, k)[0])
        boot_champ = np.concatenate(parts_champ)
        out["champion_interval"] = _interval(boot_champ, confidence)
        out["difference"] = chall_f1 - champ_f1
        lo, hi = _interval(boot_chall - boot_champ, confidence)
        out["difference_interval"] = (lo, hi)
        verdict = "better" if lo > 0 else "worse" if hi < 0 else "inside the noise"
    return HeadComparison(
        head, n, chall_f1, champ_f1, verdict=verdict, confidence=confidence, **out
    )
