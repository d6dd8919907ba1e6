"""Read a column's values as a person would: one kind per column (number, date, boolean,
text, empty, constant) decided from CRM-style values and applied the same way to training
and scoring tables (docs/design/data.md).
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "KINDS",
    "ColumnReport",
    "ColumnSpec",
    "apply_types",
    "format_report",
    "infer_types",
    "parse_types",
    "stripped_text",
    "type_record",
]

#: Kinds a column can be given (``--types``).
KINDS = ("number", "date", "date-dmy", "date-mdy", "boolean", "text")
#: Share of a column's values that must fit a kind for it to be inferred.
FIT_SHARE = 0.9
#: Examples of unfit values a report keeps per column.
EXAMPLES = 3

_TRUE = {"true", "t", "yes", "y", "1", "oui", "ja", "si", "sí", "sim", "x", "checked"}
_FALSE = {"false", "f", "no", "n", "0", "non", "nein", "nee", "não", "nao", "unchecked"}
_WORD_BOOL = (_TRUE | _FALSE) - {"1", "0"}
_CURRENCY = r"[$€£¥₹]|\b(?:USD|EUR|GBP|CHF|JPY|CAD|AUD|BRL|INR)\b|R\$"
_SPACES = "[\u00a0\u202f\u2009 ']"
_EU_NUMBER = re.compile(r"^[+-]?\d{1,3}(?:\.\d{3})+(?:,\d+)?$|^[+-]?\d+,\d{1,2}$")
_US_NUMBER = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_SLASHED = r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{2}|\d{4})(?:[ T](.*))?$"
_DATE_NAME = re.compile(r"date|time|created|updated|_at$|\bat\b|day|datum|fecha", re.I)


@dataclass(frozen=True)
class ColumnSpec:
    """How one column is read: its kind and the options that settle ambiguity."""

    kind: str
    decimal_comma: bool = False
    dayfirst: bool | None = None
    percent: bool = False
    epoch: bool = False


@dataclass
class ColumnReport:
    """What was decided about one column and what did not fit."""

    name: str
    kind: str
    n_values: int
    n_unfit: int = 0
    examples: list[tuple[int | None, str]] = field(default_factory=list)
    note: str = ""
    forced: bool = False
    spec: ColumnSpec | None = None

    def describe(self) -> str:
        text = f"{self.name}: {self.kind}"
        if self.forced:
            text += " (--types)"
        if self.note:
            text += f" — {self.note}"
        if self.n_unfit:
            shown = ", ".join(
                f"{v!r}" + (f" (line {line})" if line is not None else "")
                for line, v in self.examples
            )
            text += (
                f"; {self.n_unfit:,} value{'s' if self.n_unfit != 1 else ''} did not fit: {shown}"
            )
        return text

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["examples"] = [{"line": line, "value": v} for line, v in self.examples]
        return out


def parse_types(text: str | None) -> dict[str, str]:
    """``"Annual Revenue=number, Close Date=date"`` → ``{"Annual Revenue": "number", ...}``."""
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, sep, kind = part.rpartition("=")
        if not sep or not name.strip():
            raise ValueError(f"--types: expected NAME=KIND, got {part.strip()!r}")
        kind = kind.strip().lower()
        if kind not in KINDS:
            raise ValueError(
                f"--types: unknown kind {kind!r} for {name.strip()!r}; use one of {', '.join(KINDS)}"
            )
        out[name.strip()] = kind
    return out


# --------------------------------------------------------------------------- parsers


def stripped_text(values: pd.Series) -> pd.Series:
    """Text with surrounding space stripped; empty text and missing values are missing."""
    if values.dtype != "str":
        values = values.astype("str")
    values = values.str.strip()
    return values.mask(values == "")


def _plain_numbers(u: pd.Series) -> pd.Series | None:
    """The distinct values ``u`` (stripped text) as float64 when every one is a plain
    number (``45``, ``-1.5``, ``1e3``), as pandas would read them, unless the dotted
    ones are thousands groups (then None: the text rules decide, per column)."""
    if not len(u):
        return None
    if not u.str.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?").all():
        return None
    # "12.000" beside whole numbers ("45", "1.200", "12.000") is a German export's
    # twelve thousand: only then are the text rules asked. A dot before other than three
    # digits, or after a 0 ("93.2", "0.634"), is a decimal point, as are dotted values
    # with no whole numbers beside them (an index, a rate: "93.994", "4.857").
    grouped = u.str.fullmatch(r"[+-]?[1-9]\d{0,2}(\.\d{3})+")
    if (
        grouped.any()
        and not u.str.fullmatch(r"[+-]?(\d*\.(\d{1,2}|\d{4,})|0\.\d+)").any()
        and u.str.fullmatch(r"[+-]?\d+").any()
    ):
        return None
    return pd.to_numeric(u, errors="coerce").astype("float64")


def _distinct_text(raw: pd.Series) -> tuple[np.ndarray, pd.Series, pd.Series | None]:
    """The column as codes into its distinct values, stripped (empty text is missing).

    Returns ``(codes, distinct values, the stripped column or None)``: the column is
    None when stripping changed some value (the caller builds it from the codes only
    when it needs the text).
    """
    if raw.dtype != "str":
        t = stripped_text(raw)
        codes, uniques = pd.factorize(t)
        return codes, pd.Series(uniques, dtype="str"), t
    codes, uniques = pd.factorize(raw)
    u = pd.Series(uniques, dtype="str")
    stripped = u.str.strip()
    changed = (stripped != u) | (stripped == "")
    if not changed.any():
        return codes, u, raw
    # Values equal once stripped become one; empty text becomes missing.
    remap, merged = pd.factorize(stripped.mask(stripped == ""))
    codes = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1)
    return codes, pd.Series(merged, dtype="str"), None


def _clean_number_text(s: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Strip currency, spaces and percent; (text, percent mask, negative-in-parentheses mask)."""
    t = s.str.replace(_CURRENCY, "", regex=True).str.replace(_SPACES, "", regex=True)
    paren = t.str.fullmatch(r"\(.*\)").fillna(False).astype(bool)
    t = t.mask(paren, t.str.slice(1, -1))
    pct = t.str.endswith("%").fillna(False).astype(bool)
    t = t.mask(pct, t.str.rstrip("%"))
    return t, pct, paren


def _numbers(s: pd.Series, decimal_comma: bool) -> tuple[pd.Series, pd.Series]:
    """Parse text to float64; returns (numbers, percent mask)."""
    t, pct, paren = _clean_number_text(s)
    if decimal_comma:
        t = t.str.replace(".", "", regex=False).str.replace(",", ".", regex=False)
    else:
        t = t.str.replace(",", "", regex=False)
    x = pd.to_numeric(t, errors="coerce").astype("float64")
    x = x.mask(paren, -x)
    x = x.mask(pct, x / 100.0)
    return x, pct


def _decimal_comma(s: pd.Series) -> bool:
    """Whether the column writes numbers the European way (``1.234,5``; ``12.000``)."""
    t, _, _ = _clean_number_text(s.dropna())
    eu = t.str.match(_EU_NUMBER).sum()
    # A dot followed by other than three digits is a decimal point: US evidence.
    us = t.str.match(_US_NUMBER).sum() + t.str.fullmatch(r"[+-]?\d*\.(\d{1,2}|\d{4,})").sum()
    return bool(eu > us)


def _iso(t: pd.Series) -> pd.Series:
    return pd.to_datetime(t, utc=True, errors="coerce", format="ISO8601")


def _dates(t: pd.Series, dayfirst: bool | None) -> tuple[pd.Series, bool | None, str]:
    """Parse text dates; one day/month order for the whole column. Returns (UTC times,
    the order used, a note)."""
    parsed = _iso(t)
    note = ""
    slashed = t.str.extract(_SLASHED)
    has = slashed[0].notna() & parsed.isna()
    order = dayfirst
    if has.any():
        a = slashed.loc[has, 0].astype(int)
        b = slashed.loc[has, 1].astype(int)
        if order is None:
            if (a > 12).any() and not (b > 12).any():
                order, note = True, "day/month/year (a day above 12 comes first)"
            elif (b > 12).any() and not (a > 12).any():
                order, note = False, "month/day/year (a day above 12 comes second)"
            else:
                dotted = t[has].str.contains(r"^\d{1,2}\.", regex=True).mean() > 0.5
                order = bool(dotted)
                note = (
                    "ambiguous day/month order, read as "
                    + ("day.month.year (dotted dates)" if dotted else "month/day/year (US)")
                    + " for the whole column; force with --types 'NAME=date-dmy' or 'date-mdy'"
                )
        else:
            note = "day/month/year" if order else "month/day/year"
        y = slashed.loc[has, 2].astype(int)
        y = y.where(y >= 100, y + 2000)
        day, month = (a, b) if order else (b, a)
        rest = slashed.loc[has, 3].fillna("")
        ymd = [part.astype(str).str.zfill(width) for part, width in ((y, 4), (month, 2), (day, 2))]
        iso_text = ymd[0].str.cat(ymd[1:], sep="-") + rest.map(lambda r: f"T{r}" if r else "")
        parsed.loc[has] = _iso(iso_text)
    left = parsed.isna() & t.notna() & ~has
    if left.any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed.loc[left] = pd.to_datetime(
                t[left], utc=True, errors="coerce", format="mixed", dayfirst=bool(order)
            )
    return parsed, order, note


def _days(times: pd.Series) -> pd.Series:
    """UTC times → float days since 1970-01-01."""
    ns = times.astype("datetime64[ns, UTC]")
    out = (ns - pd.Timestamp("1970-01-01", tz="UTC")) / pd.Timedelta(days=1)
    return out.astype("float64")


def _epoch_days(x: pd.Series) -> pd.Series:
    mag = x.abs()
    seconds = x.where(mag < 1e11, x / 1e3)  # seconds or milliseconds
    return seconds / 86_400.0


def _examples(
    raw: pd.Series, unfit: pd.Series, lines: np.ndarray | None
) -> list[tuple[int | None, str]]:
    pos = np.flatnonzero(unfit.to_numpy())[:EXAMPLES]
    return [(None if lines is None else int(lines[p]), str(raw.iloc[p])) for p in pos.tolist()]


# --------------------------------------------------------------------------- inference


def _numeric_column(
    name: str, raw: pd.Series, spec: ColumnSpec | None, n: int, forced: bool
) -> tuple[pd.Series, ColumnReport]:
    """Type a column pandas read as numbers: 0/1 is boolean, large numbers in a date-named
    column are epoch times (as days since 1970), the rest numbers."""
    x = raw.astype("float64")
    if spec is not None and spec.kind == "boolean":
        return x, ColumnReport(name, "boolean", n, spec=spec, forced=forced)
    distinct = x.dropna().unique()
    if spec is None and len(distinct) and set(distinct.tolist()) <= {0.0, 1.0}:
        return x, ColumnReport(name, "boolean", n, note="0/1", spec=ColumnSpec("boolean"))
    if (
        spec is None
        and _DATE_NAME.search(name)
        and len(distinct)
        and ((x.dropna() > 1e8) & (x.dropna() < 2e12)).all()
    ):
        note = "epoch seconds" if x.abs().max() < 1e11 else "epoch milliseconds"
        spec = ColumnSpec("date", epoch=True)
        report = ColumnReport(name, "date", n, note=f"{note}, as days since 1970", spec=spec)
        return _epoch_days(x), report
    return x, ColumnReport(name, "number", n, spec=ColumnSpec("number"), forced=forced)


def _read_column(
    name: str,
    raw: pd.Series,
    spec: ColumnSpec | None,
    lines: np.ndarray | None,
    forced: bool = False,
) -> tuple[pd.Series, ColumnReport]:
    """Type one column by ``spec`` (a user's ``--types`` when ``forced``, else one a
    training table decided), or inferred when None."""
    n = int(raw.notna().sum())
    if pd.api.types.is_bool_dtype(raw.dtype):
        return raw.astype("float64"), ColumnReport(name, "boolean", n, spec=ColumnSpec("boolean"))
    if pd.api.types.is_numeric_dtype(raw.dtype) and (
        spec is None or spec.kind in ("number", "boolean")
    ):
        return _numeric_column(name, raw, spec, n, forced)
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        t = raw if isinstance(raw.dtype, pd.DatetimeTZDtype) else raw.dt.tz_localize("UTC")
        rep = ColumnReport(name, "date", n, note="as days since 1970", spec=ColumnSpec("date"))
        return _days(t), rep
    # Every decision and parse runs on the distinct values (weighted by their counts),
    # then is spread back over the rows: a column of 100,000 rows and 30 distinct
    # values costs 30 parses (stripping the spaces too).
    codes, u, t = _distinct_text(raw)
    if spec is None and raw.dtype == "str":
        plain_u = _plain_numbers(u)
        if plain_u is not None:  # as pandas would have read it: 0/1, epoch dates, numbers
            plain = np.full(len(raw), np.nan)
            plain[codes >= 0] = plain_u.to_numpy()[codes[codes >= 0]]
            return _read_column(name, pd.Series(plain, index=raw.index), None, lines)
    w = np.bincount(codes[codes >= 0], minlength=len(u)).astype(np.int64)
    values_u, unfit_u, report = _read_distinct(name, u, w, spec, forced)
    if report.kind in ("text", "empty", "constant"):
        if t is None:
            t = pd.Series(
                pd.array(u.to_numpy(dtype=object), dtype="str").take(codes, allow_fill=True),
                index=raw.index,
            )
        return t, report
    rows = codes >= 0
    out = np.full(len(raw), np.nan)
    out[rows] = values_u.to_numpy(dtype="float64")[codes[rows]]
    unfit = np.zeros(len(raw), dtype=bool)
    unfit[rows] = unfit_u[codes[rows]]
    report.examples = _examples(raw, pd.Series(unfit), lines)
    return pd.Series(out, index=raw.index), report


def _read_distinct(
    name: str, t: pd.Series, w: np.ndarray, spec: ColumnSpec | None, forced: bool
) -> tuple[pd.Series, np.ndarray, ColumnReport]:
    """Type the distinct values ``t`` of a text column (``w``: how often each occurs)."""
    n = int(w.sum())

    def share(mask: pd.Series) -> float:
        return float((mask.to_numpy(dtype=bool) * w).sum() / n) if n else 0.0

    none = np.zeros(len(t), dtype=bool)
    inferred: tuple[pd.Series, bool | None, str] | None = None
    if spec is None:
        if n == 0:
            return t, none, ColumnReport(name, "empty", 0, note="no values")
        if len(t) == 1:
            return t, none, ColumnReport(name, "constant", n, note=f"always {t.iloc[0]!r}")
        low = t.str.lower()
        digits = t.str.contains(r"\d", regex=True)
        if low.isin(_TRUE | _FALSE).all() and low.isin(_WORD_BOOL).any():
            spec = ColumnSpec("boolean")
        elif share(digits) >= FIT_SHARE:  # else too few hold a digit: text, without parsing
            comma = _decimal_comma(t)
            x, pct = _numbers(t, comma)
            if share(x.notna()) >= FIT_SHARE:
                spec = ColumnSpec("number", decimal_comma=comma, percent=bool(pct.any()))
            elif share(digits & t.str.contains(r"[-/.:]|\d{4}", regex=True)) >= FIT_SHARE:
                inferred = _dates(t, None)
                if share(inferred[0].notna()) >= FIT_SHARE:
                    spec = ColumnSpec("date", dayfirst=inferred[1])
        spec = spec or ColumnSpec("text")
    if spec.kind == "text":
        return t, none, ColumnReport(name, "text", n, spec=spec, forced=forced)
    if spec.kind == "boolean":
        low = t.str.lower()
        out = pd.Series(np.where(low.isin(_TRUE), 1.0, np.where(low.isin(_FALSE), 0.0, np.nan)))
        out.index = t.index
        report = ColumnReport(name, "boolean", n, spec=spec, forced=forced)
    elif spec.kind == "number":
        out, report = _read_numbers(name, t, n, spec, forced)
    else:
        out, report = _read_dates(name, t, n, spec, forced, inferred)
    unfit = out.isna().to_numpy()
    report.n_unfit = int((unfit * w).sum())
    return out, unfit, report


def _read_numbers(
    name: str, t: pd.Series, n: int, spec: ColumnSpec, forced: bool
) -> tuple[pd.Series, ColumnReport]:
    """A number column's distinct values parsed, and what the parse removed, said."""
    comma = spec.decimal_comma if not forced else _decimal_comma(t)
    x, pct = _numbers(t, comma)
    notes = []
    if comma:
        notes.append("decimal comma")
    if t.str.contains(_CURRENCY, regex=True).any():
        notes.append("currency signs removed")
    if t.str.contains(r"\d[,.\u00a0\u202f ']\d{3}\b", regex=True).any():
        notes.append("thousands separators removed")
    if pct.any():
        notes.append("percent as a fraction (12.5% → 0.125)")
    spec = ColumnSpec("number", decimal_comma=comma, percent=bool(pct.any()))
    return x, ColumnReport(name, "number", n, note=", ".join(notes), spec=spec, forced=forced)


def _read_dates(
    name: str,
    t: pd.Series,
    n: int,
    spec: ColumnSpec,
    forced: bool,
    inferred: tuple[pd.Series, bool | None, str] | None,
) -> tuple[pd.Series, ColumnReport]:
    """A date column's distinct values as days since 1970 (epoch seconds, or dates in the
    day/month order decided: ``inferred`` when the inference already parsed them)."""
    dayfirst = {"date-dmy": True, "date-mdy": False}.get(spec.kind, spec.dayfirst)
    if spec.epoch:
        days = _epoch_days(pd.to_numeric(t, errors="coerce"))
        note = "epoch seconds, as days since 1970"
    else:
        parsed, dayfirst, note = inferred if inferred is not None else _dates(t, dayfirst)
        if not forced and inferred is None:
            note = ""  # the order a training table decided: said when it was decided
        days = _days(parsed)
        note = ", ".join(p for p in (note, "as days since 1970") if p)
    spec = ColumnSpec("date", dayfirst=dayfirst, epoch=spec.epoch)
    return days, ColumnReport(name, "date", n, note=note, spec=spec, forced=forced)


def infer_types(
    frame: pd.DataFrame,
    *,
    overrides: Mapping[str, str] | None = None,
    skip: Collection[str] = (),
    lines: np.ndarray | None = None,
) -> tuple[pd.DataFrame, list[ColumnReport]]:
    """Give every column of ``frame`` (as read) but ``skip`` one kind and parse it that way.

    ``overrides`` maps a column to a kind of ``KINDS`` (``ValueError`` for a column the
    table lacks); ``lines`` are the rows' physical lines, for examples. Number, date (days
    since 1970) and boolean columns come back float64, text as text; one report a column.
    """
    overrides = dict(overrides or {})
    unknown = [c for c in overrides if c not in frame.columns]
    if unknown:
        raise ValueError(
            f"--types names columns the table does not have: {', '.join(map(repr, unknown))}"
        )
    out = frame.copy()
    reports: list[ColumnReport] = []
    for name in frame.columns:
        if name in skip:
            continue
        spec = ColumnSpec(overrides[name]) if name in overrides else None
        values, report = _read_column(str(name), frame[name], spec, lines, name in overrides)
        out[name] = values
        reports.append(report)
    return out, reports


def apply_types(frame: pd.DataFrame, specs: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Read the columns of ``frame`` as a training table's were read (``specs`` from
    :meth:`ColumnReport.as_dict`'s ``spec``); other columns are left as they are."""
    out = frame.copy()
    for name, spec in specs.items():
        if name not in out.columns or not spec or spec.get("kind") in (None, "text"):
            continue
        values, _ = _read_column(name, out[name], ColumnSpec(**spec), None)
        out[name] = values
    return out


@functools.lru_cache(maxsize=8192)
def _typed_value(name: str, spec: tuple[tuple[str, Any], ...], value: Any) -> Any:
    """One value read by :func:`apply_types` (the bulk path) on a one-row table."""
    frame = pd.DataFrame(
        {name: pd.Series([value], dtype="str" if isinstance(value, str) else None)}
    )
    out = apply_types(frame, {name: dict(spec)})[name].iloc[0]
    return None if pd.isna(out) else float(out) if isinstance(out, int | float | np.number) else out


def type_record(
    record: Mapping[str, Any],
    specs: Mapping[str, Mapping[str, Any]] | None,
    title_column: str | None = None,
) -> dict[str, Any]:
    """One lead (the API's profile, CRM columns under ``"extra"``) read as the training
    table's columns were, by :func:`apply_types` (each value once: cached); the title
    column (``title_column``, e.g. ``"Job Title"``) is also its ``job_title``.
    """
    out = dict(record)
    extra = out.get("extra")
    extra = dict(extra) if isinstance(extra, Mapping) else None
    for name, spec in (specs or {}).items():
        if not spec or spec.get("kind") in (None, "text"):
            continue
        key = tuple(sorted(spec.items()))
        for holder in (out, extra):
            if holder is not None and holder.get(name) is not None and name != "extra":
                value = holder[name]
                if isinstance(value, bool):
                    value = float(value)
                holder[name] = _typed_value(name, key, value)
    if extra is not None:
        out["extra"] = extra
    if title_column and not out.get("job_title"):
        title = (extra or {}).get(title_column, out.get(title_column))
        if isinstance(title, str) and title.strip():
            out["job_title"] = title
    return out


def format_report(reports: list[ColumnReport]) -> list[str]:
    """One line per column, for the terminal."""
    return [f"  {r.describe()}" for r in reports]
