"""Columns a model must not learn from unless someone says so: personal data, vendor scores,
dates after the outcome and id-like columns (docs/design/data.md).
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import IO

import numpy as np
import pandas as pd

from data.csvscan import field_spans

__all__ = [
    "LEAK_ACCURACY",
    "MASK",
    "Screened",
    "mask_line",
    "open_private",
    "screen_columns",
    "single_column_leaks",
]

_PERSONAL_NAME = re.compile(
    r"^(first|last|middle|given|family|full|sur|nick|contact|display)[\s_-]*name$|^name$|"
    r"^(pr[eé]nom|nom|vorname|nachname|nombre|apellidos?|voornaam|achternaam|sobrenome)$|"
    r"e[\s_-]?mail|courriel|correo|"
    r"phone|mobile|cell|\btel\b|telephone|t[eé]l[eé]phone|telefon|tel[eé]fono|fax|"
    r"street|address|adresse|direcci[oó]n|endere[cç]o|straße|strasse|postal[\s_-]*address|"
    r"linkedin|twitter|birth|geburt|ssn|social[\s_-]*security|passport",
    re.I,
)
_EMAIL = r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$"
_PHONE = r"^\+?[\d\s().\-/]{9,24}$"  # with nine digits at least (not a date): _share
_VENDOR_SCORE = re.compile(
    r"(hubspot|marketo|salesforce|einstein|pardot|6sense|demandbase|madkudu|predictive|"
    r"lead|behaviou?ral|engagement|fit)[\s_-]*(score|grade|rating)|^score$|^lead[\s_-]*grade$",
    re.I,
)
_AFTER_OUTCOME = re.compile(
    r"became[\s_-]+an?[\s_-]+\w+|clos(e|ed)[\s_-]*(won|lost)?[\s_-]*date|converted[\s_-]*"
    r"(date|at|on)|conversion[\s_-]*date|won[\s_-]*date|date[\s_-]*of[\s_-]*(conversion|close)|"
    r"days?[\s_-]*to[\s_-]*close|deal[\s_-]*stage|closed[\s_-]*deals?",
    re.I,
)


#: What a personal value is replaced by in a report.
MASK = "***"
_EMAIL_ANYWHERE = re.compile(r"[^@\s,;|\t\"]+@[^@\s,;|\t\"]+\.[A-Za-z]{2,}")
#: A phone number out of its column: international (``+49 30 …``) or with an area code
#: in parentheses; plain digit runs are left alone (amounts, dates, ids).
_PHONE_ANYWHERE = re.compile(r"(?:\+|\(\d)[\d\s().\-/]{7,22}\d")


def personal_by_name(name: str) -> bool:
    """A column whose name says it holds personal data (names, e-mail, phone, address)."""
    return bool(_PERSONAL_NAME.search(str(name)))


def mask_line(text: str, header: list[str], delimiter: str) -> str:
    """A rejected line as it can be kept in a report: the fields of personal columns
    (by the header's names, at their position) replaced by ``***``, and anything that
    looks like an e-mail address or an international phone number replaced wherever it
    is (a line with too many or too few fields may have its values shifted); the rest
    of the line is kept as it is in the file."""
    spans = field_spans(text, delimiter)
    out = text
    for index, (start, end) in reversed(list(enumerate(spans))):
        if index < len(header) and end > start and personal_by_name(header[index]):
            out = out[:start] + MASK + out[end:]
    return _PHONE_ANYWHERE.sub(MASK, _EMAIL_ANYWHERE.sub(MASK, out))


def open_private(path: str | os.PathLike[str]) -> IO[str]:
    """Open ``path`` for writing text (UTF-8, CSV newlines), readable and writable by
    its owner only (mode 0600), for reports that hold values of the user's data."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.chmod(path, 0o600)  # an existing file keeps its old mode through os.open
    return os.fdopen(fd, "w", newline="", encoding="utf-8")


@dataclass(frozen=True)
class Screened:
    """Columns to exclude by reason, and columns kept on purpose."""

    personal: tuple[str, ...] = ()
    vendor_scores: tuple[str, ...] = ()
    after_outcome: tuple[str, ...] = ()
    id_like: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()

    @property
    def excluded(self) -> tuple[str, ...]:
        return (*self.personal, *self.vendor_scores, *self.after_outcome)

    def messages(self) -> list[str]:
        out = []
        for what, cols in (
            ("personal data", self.personal),
            ("a vendor's score of the lead (it leaks the label)", self.vendor_scores),
            ("dates known only after the outcome (they leak the label)", self.after_outcome),
        ):
            if cols:
                out.append(f"excluded as {what}: {', '.join(cols)} (--allow-column NAME keeps one)")
        if self.id_like:
            out.append(f"id-like columns (unique per row), not features: {', '.join(self.id_like)}")
        if self.allowed:
            out.append(f"kept on purpose (--allow-column): {', '.join(self.allowed)}")
        return out


def _head_counts(col: pd.Series, present: np.ndarray) -> pd.Series:
    """How often each of the first 2,000 non-empty values occurs (among the first
    5,000 present ones; found without copying the whole column)."""
    text = col.iloc[present[:5_000]].astype("str").str.strip()
    return text[text != ""].head(2_000).value_counts()


def _share(counts: pd.Series, pattern: str) -> float:
    """The share of values (``counts``, by distinct value) that match ``pattern``."""
    if not len(counts):
        return 0.0
    values = pd.Series(counts.index, dtype="str")
    fits = values.str.fullmatch(pattern)
    if pattern == _PHONE:  # nine digits at least: a date is not a phone number
        fits &= values.str.count(r"\d") >= 9
    return float((fits.to_numpy(dtype=bool) * counts.to_numpy()).sum() / counts.sum())


def _unique_per_row(col: pd.Series, present: np.ndarray) -> bool:
    """More than 20 values, all different (the first 2,000 are checked first)."""
    if len(present) <= 20:
        return False
    head = col.iloc[present[:2_000]]
    if head.nunique() < len(head):
        return False
    return len(present) <= 2_000 or col.nunique(dropna=True) == len(present)


def screen_columns(
    frame: pd.DataFrame, *, skip: Collection[str] = (), allow: Collection[str] = ()
) -> Screened:
    """Find personal, vendor-score, after-outcome and id-like columns of ``frame`` (as read,
    before typing: content checks look at the text), but not of ``skip``.

    Columns of ``allow`` are kept even when they look personal or leaky; ``allow`` naming
    a column the table does not have is a ``ValueError``.
    """
    missing = [c for c in allow if c not in frame.columns]
    if missing:
        raise ValueError(
            f"--allow-column names columns the table does not have: {', '.join(map(repr, missing))}"
        )
    personal, vendor, after, id_like, allowed = [], [], [], [], []
    for name in frame.columns:
        if name in skip:
            continue
        col = frame[name]
        text_like = not (
            pd.api.types.is_numeric_dtype(col.dtype)
            or pd.api.types.is_datetime64_any_dtype(col.dtype)
            or pd.api.types.is_bool_dtype(col.dtype)
        )
        reason = None
        present = np.flatnonzero(col.notna().to_numpy()) if text_like else None
        if _VENDOR_SCORE.search(str(name)):
            reason = vendor
        elif _AFTER_OUTCOME.search(str(name)):
            reason = after
        elif _PERSONAL_NAME.search(str(name)) or (
            present is not None
            and (
                _share(counts := _head_counts(col, present), _EMAIL) > 0.5
                or _share(counts, _PHONE) > 0.5
            )
        ):
            reason = personal
        if reason is not None:
            if name in allow:
                allowed.append(str(name))
            else:
                reason.append(str(name))
            continue
        if present is not None and _unique_per_row(col, present):
            id_like.append(str(name))
    return Screened(tuple(personal), tuple(vendor), tuple(after), tuple(id_like), tuple(allowed))


#: Out-of-fold accuracy of one column alone above which it is flagged as a leak.
LEAK_ACCURACY = 0.99
_FOLDS = 5


def _leak_keys(col: pd.Series) -> np.ndarray | None:
    """A column as value codes: numbers in up to 20 quantile bins, text as it is."""
    if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
        try:
            bins = pd.qcut(col.astype("float64"), 20, labels=False, duplicates="drop")
        except ValueError:
            return None
        keys = np.where(np.isnan(bins.to_numpy(dtype="float64")), -1, bins).astype(np.int64)
        return pd.factorize(keys)[0]
    return pd.factorize(col, use_na_sentinel=False)[0]


def single_column_leaks(
    frame: pd.DataFrame,
    y: pd.Series,
    columns: Collection[str],
    cache: dict[str, np.ndarray | None] | None = None,
) -> list[tuple[str, float]]:
    """Columns that alone predict the label almost perfectly, out of fold, with their
    accuracy: each row's label predicted by the most frequent label of its value (a
    quantile bin of a number) in the other four of five folds reaches ``LEAK_ACCURACY``,
    where the majority class would not."""
    labelled = y.notna().to_numpy()
    if labelled.sum() < 50:
        return []
    target, classes = pd.factorize(y[labelled].astype(str))
    k = len(classes)
    majority = np.bincount(target).max() / len(target)
    if majority >= LEAK_ACCURACY:
        return []
    fold = np.arange(len(target)) % _FOLDS
    rows = np.flatnonzero(labelled)
    out = []
    cache = {} if cache is None else cache
    every = len(rows) == len(frame)
    for name in columns:
        if not every:
            keys = _leak_keys(frame[name].iloc[rows])
        elif name in cache:  # coded for another label of the same rows
            keys = cache[name]
        else:
            keys = cache[name] = _leak_keys(frame[name])
        if keys is None:
            continue
        m = int(keys.max()) + 1 if len(keys) else 0
        if m == 0 or m > len(target) // 2:
            continue  # (almost) one value a row: id-like, not a leak test
        right = 0
        for f in range(_FOLDS):
            train = fold != f
            counts = np.bincount(keys[train] * k + target[train], minlength=m * k).reshape(m, k)
            best = counts.argmax(axis=1)
            seen = counts.sum(axis=1) > 0
            test_keys = keys[~train]
            pred = np.where(seen[test_keys], best[test_keys], -1)
            right += int((pred == target[~train]).sum())
        accuracy = right / len(target)
        if accuracy >= LEAK_ACCURACY:
            out.append((str(name), round(accuracy, 4)))
    return out
