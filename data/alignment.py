"""How well reps and the model agree, and whether the model is going stale: plain functions
over the store for the alignment dashboard and the ``/metrics`` gauges (the definitions of
review, agreement, override rate and PSI: docs/design/data.md).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from data.store import CorrectionRow, PredictionRow
from data.values import as_utc, utc_now

__all__ = [
    "HEADS",
    "PSI_ACT",
    "PSI_FLOOR",
    "PSI_WATCH",
    "AgreementRow",
    "DriftReport",
    "FeatureDrift",
    "KappaRow",
    "RepRow",
    "SalesFollowUp",
    "agreement",
    "alignment_gauges",
    "confusion",
    "corrections_by_reason",
    "corrections_per_week",
    "drift_report",
    "feature_psi",
    "override_rate",
    "override_rate_per_week",
    "pairwise_kappa",
    "per_rep",
    "psi_from_counts",
    "psi_level",
    "reviews_frame",
    "sales_follow_up",
]

HEADS: tuple[str, ...] = ("stage", "persona")
#: PSI at or above this: watch the feature.
PSI_WATCH = 0.1
#: PSI at or above this: act (retrain, or find what changed upstream).
PSI_ACT = 0.25
#: Smallest share a PSI bin counts with (keeps empty bins finite).
PSI_FLOOR = 1e-4
#: Categorical features with more distinct reference values than this are text, not categories.
MAX_CATEGORIES = 30

_C = CorrectionRow.__table__
_P = PredictionRow.__table__


def _utc(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, utc=True, format="mixed")


def _in_effect(undos: pd.DataFrame) -> set[int]:
    """Ids of corrections an undo still in effect has undone (an undo can be undone in
    turn; undos come after their targets, so one pass from the newest id down settles it)."""
    undoers: dict[int, list[int]] = {}
    for uid, target in zip(undos["id"], undos["undo_of"], strict=True):
        if target is not None and not pd.isna(target):
            undoers.setdefault(int(target), []).append(int(uid))
    effective: dict[int, bool] = {}
    ids = sorted(set(undoers) | {int(i) for i in undos["id"]}, reverse=True)
    for row_id in ids:
        effective[row_id] = not any(effective.get(u, True) for u in undoers.get(row_id, ()))
    return {row_id for row_id in undoers if not effective[row_id]}


def reviews_frame(store: Any, *, since: datetime | None = None) -> pd.DataFrame:
    """Reps' reviews in effect (made at or after ``since`` when given), with the model's
    label of each reviewed prediction.

    One row per review: ``id, lead_id, field, reviewer, kind, reason, created_at`` (UTC),
    ``rep_label, prediction_id, model_version, model_label`` and ``agreed`` (False where
    ``model_label`` is missing: filter on ``model_label.notna()`` for rates).
    """
    columns = ("id", "lead_id", "field", "reviewer", "kind", "reason", "created_at")
    model_label = sa.case((_C.c.field == "stage", _P.c.stage), else_=_P.c.persona)
    stmt = (
        sa.select(
            *(_C.c[n] for n in columns),
            _C.c.new_label.label("rep_label"),
            _C.c.prediction_id,
            sa.func.coalesce(_P.c.model_version, _C.c.model_version).label("model_version"),
            model_label.label("model_label"),
        )
        .select_from(_C.outerjoin(_P, _P.c.id == _C.c.prediction_id))
        .where(_C.c.kind != "undo")
        .order_by(_C.c.id)
    )
    undo_stmt = sa.select(_C.c.id, _C.c.undo_of).where(_C.c.kind == "undo")
    if since is not None:
        stmt = stmt.where(_C.c.created_at >= since)
    with store.engine.connect() as conn:
        result = conn.execute(stmt)
        frame = pd.DataFrame.from_records(result.all(), columns=list(result.keys()))
        undos = pd.DataFrame(conn.execute(undo_stmt).all(), columns=["id", "undo_of"])
    if len(undos):
        frame = frame[~frame["id"].isin(_in_effect(undos))]
    frame = frame.drop_duplicates(
        ["reviewer", "lead_id", "field", "prediction_id"], keep="last"
    ).reset_index(drop=True)
    frame["created_at"] = _utc(frame["created_at"])
    frame["agreed"] = frame["model_label"].notna() & (frame["rep_label"] == frame["model_label"])
    return frame


@dataclass(frozen=True)
class AgreementRow:
    """Agreement of reps with the model for one head and one model label (or all)."""

    head: str
    label: str
    reviews: int
    agreed: int

    @property
    def rate(self) -> float | None:
        """Share of reviews that agreed (None without reviews)."""
        return self.agreed / self.reviews if self.reviews else None


def agreement(reviews: pd.DataFrame) -> dict[str, list[AgreementRow]]:
    """Agreement per head: first the whole head (``label="all"``), then per model label.

    Rows per label are sorted by the number of reviews, most first.
    """
    out: dict[str, list[AgreementRow]] = {}
    scored = reviews[reviews["model_label"].notna()]
    for head in HEADS:
        part = scored[scored["field"] == head]
        rows = [AgreementRow(head, "all", len(part), int(part["agreed"].sum()))]
        if len(part):
            grouped = part.groupby("model_label")["agreed"].agg(["size", "sum"])
            grouped = grouped.sort_values(["size"], ascending=False, kind="stable")
            rows += [
                AgreementRow(head, str(label), int(n), int(k))
                for label, n, k in zip(grouped.index, grouped["size"], grouped["sum"], strict=True)
            ]
        out[head] = rows
    return out


def confusion(reviews: pd.DataFrame, head: str) -> pd.DataFrame:
    """Model label (rows) against the rep's label (columns), counts of reviews.

    Labels are the union of both sides, in the same order on both axes (so the
    diagonal is agreement); empty when the head has no reviews.
    """
    part = reviews[(reviews["field"] == head) & reviews["model_label"].notna()]
    if part.empty:
        return pd.DataFrame(dtype=int)
    labels = sorted(set(part["model_label"]) | set(part["rep_label"]))
    table = pd.crosstab(part["model_label"], part["rep_label"])
    return table.reindex(index=labels, columns=labels, fill_value=0).astype(int)


def _week(series: pd.Series) -> pd.Series:
    days = series.dt.tz_convert(UTC).dt.normalize()
    return days - pd.to_timedelta(days.dt.weekday, unit="D")


def _every_week(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (indexed by week) with the weeks between its first and last filled with zeros."""
    full = pd.date_range(table.index.min(), table.index.max(), freq="7D", name="week")
    return table.reindex(full, fill_value=0).astype(int)


def corrections_per_week(reviews: pd.DataFrame, *, weeks: int | None = None) -> pd.DataFrame:
    """Reviews per week (Monday, UTC) and kind: columns ``reclassify``, ``confirm``.

    Weeks without reviews between the first and the last are present with
    zeros; ``weeks`` keeps only the latest ones.
    """
    if reviews.empty:
        return pd.DataFrame(columns=["reclassify", "confirm"], dtype=int)
    table = pd.crosstab(_week(reviews["created_at"]), reviews["kind"])
    table = _every_week(table.reindex(columns=["reclassify", "confirm"], fill_value=0))
    return table.tail(weeks) if weeks else table


def corrections_by_reason(reviews: pd.DataFrame) -> list[tuple[str, int]]:
    """Leads reclassified per reason code, most first (None → ``"none given"``).

    A lead whose stage and persona a rep reclassified for the same reason counts once.
    """
    part = reviews[reviews["kind"] == "reclassify"]
    reasons = part.assign(reason=part["reason"].fillna("none given"))
    counts = reasons.drop_duplicates(["lead_id", "reason"])["reason"].value_counts()
    return sorted(((str(k), int(v)) for k, v in counts.items()), key=lambda kv: (-kv[1], kv[0]))


def _lead_overrides(reviews: pd.DataFrame) -> pd.DataFrame:
    part = reviews[reviews["model_label"].notna()]
    return part.assign(changed=~part["agreed"])


def override_rate(reviews: pd.DataFrame) -> float | None:
    """Share of reviewed leads where a rep changed the model's stage or persona."""
    part = _lead_overrides(reviews)
    if part.empty:
        return None
    return float(part.groupby("lead_id")["changed"].any().mean())


def override_rate_per_week(reviews: pd.DataFrame, *, weeks: int | None = None) -> pd.DataFrame:
    """Per week: ``leads`` reviewed, ``changed`` (a rep overrode the model), ``rate``."""
    part = _lead_overrides(reviews)
    if part.empty:
        return pd.DataFrame(columns=["leads", "changed", "rate"])
    part = part.assign(week=_week(part["created_at"]))
    per_lead = part.groupby(["week", "lead_id"])["changed"].any().reset_index()
    table = _every_week(per_lead.groupby("week")["changed"].agg(leads="size", changed="sum"))
    with np.errstate(invalid="ignore", divide="ignore"):
        table["rate"] = np.where(table["leads"] > 0, table["changed"] / table["leads"], np.nan)
    return table.tail(weeks) if weeks else table


# ------------------------------------------------------------------ per rep


@dataclass(frozen=True)
class RepRow:
    """One rep's reviewing: leads, reclassifications, confirms, agreement with the model."""

    reviewer: str
    leads: int
    reclassified: int
    confirmed: int
    scored_reviews: int
    agreed: int

    @property
    def agreement(self) -> float | None:
        """Share of this rep's reviews (of scored leads) that agree with the model."""
        return self.agreed / self.scored_reviews if self.scored_reviews else None


def per_rep(reviews: pd.DataFrame) -> list[RepRow]:
    """Each reviewer's counts, most leads reviewed first."""
    out = []
    for reviewer, part in reviews.groupby("reviewer", sort=True):
        scored = part[part["model_label"].notna()]
        out.append(
            RepRow(
                reviewer=str(reviewer),
                leads=int(part["lead_id"].nunique()),
                reclassified=int((part["kind"] == "reclassify").sum()),
                confirmed=int((part["kind"] == "confirm").sum()),
                scored_reviews=len(scored),
                agreed=int(scored["agreed"].sum()),
            )
        )
    return sorted(out, key=lambda r: (-r.leads, r.reviewer))


@dataclass(frozen=True)
class KappaRow:
    """Cohen's kappa of two reps on the leads both labelled, for one head."""

    head: str
    rep_a: str
    rep_b: str
    shared: int
    kappa: float | None
    agreed: int


def pairwise_kappa(reviews: pd.DataFrame, *, min_shared: int = 5) -> list[KappaRow]:
    """Cohen's kappa per pair of reps and head, on each rep's latest label of shared leads.

    ``kappa`` is None when the pair shares fewer than ``min_shared`` leads, or
    when both used one and the same label throughout (kappa is undefined then).
    Pairs sharing no lead are left out.
    """
    from sklearn.metrics import cohen_kappa_score

    out: list[KappaRow] = []
    latest = reviews.sort_values("id").drop_duplicates(
        ["reviewer", "lead_id", "field"], keep="last"
    )
    for head in HEADS:
        part = latest[latest["field"] == head]
        if part.empty:
            continue
        wide = part.pivot(index="lead_id", columns="reviewer", values="rep_label")
        for a, b in itertools.combinations(sorted(wide.columns), 2):
            both = wide[[a, b]].dropna()
            if both.empty:
                continue
            n = len(both)
            agreed = int((both[a] == both[b]).sum())
            kappa: float | None = None
            if n >= min_shared and len(set(both[a]) | set(both[b])) > 1:
                kappa = float(cohen_kappa_score(both[a], both[b]))
            out.append(KappaRow(head, str(a), str(b), n, kappa, agreed))
    return out


# ------------------------------------------------------------ sales follow-up


@dataclass(frozen=True)
class SalesFollowUp:
    """Leads the model routed to sales, and whether a rep reviewed them in time.

    ``pending`` leads were routed less than ``days`` ago and are not reviewed yet; ``due``
    counts every routed lead whose ``days`` are over, ``due_in_time`` those a rep reviewed
    in time (so ``share_in_time`` counts the leads nobody reviewed too).
    """

    days: int
    routed: int
    in_time: int
    late: int
    overdue: int
    pending: int
    median_hours: float | None
    due: int = 0
    due_in_time: int = 0

    @property
    def never_reviewed(self) -> int:
        """Routed leads no rep has reviewed since (overdue or still in time)."""
        return self.overdue + self.pending

    @property
    def share_in_time(self) -> float | None:
        """Reviewed within ``days`` among all routed leads whose ``days`` are over."""
        return self.due_in_time / self.due if self.due else None


def sales_follow_up(store: Any, *, days: int = 7, now: datetime | None = None) -> SalesFollowUp:
    """Of the leads first routed to sales, how many a rep reviewed within ``days`` of that.

    A lead counts as routed at its first prediction with route ``sales``; it is
    reviewed at the first reclassify or confirm at or after that moment.
    """
    if days < 1:
        raise ValueError("days must be at least 1")
    now = now or utc_now()
    routed_stmt = (
        sa.select(_P.c.lead_id, sa.func.min(_P.c.created_at).label("routed_at"))
        .where(_P.c.route == "sales")
        .group_by(_P.c.lead_id)
    )
    review_stmt = sa.select(_C.c.lead_id, _C.c.created_at).where(_C.c.kind != "undo")
    with store.engine.connect() as conn:
        routed = pd.DataFrame(conn.execute(routed_stmt).all(), columns=["lead_id", "routed_at"])
        reviews = pd.DataFrame(conn.execute(review_stmt).all(), columns=["lead_id", "reviewed"])
    routed["routed_at"] = _utc(routed["routed_at"])
    reviews["reviewed"] = _utc(reviews["reviewed"])
    # The first review at or after the routing, per lead (a merge on the few reviewed leads).
    both = routed.merge(reviews, on="lead_id", how="inner")
    both = both[both["reviewed"] >= both["routed_at"]]
    first = both.groupby("lead_id")["reviewed"].min()
    frame = routed.merge(first.rename("reviewed"), left_on="lead_id", right_index=True, how="left")
    routed_at = frame["routed_at"]
    reviewed_at = pd.to_datetime(frame["reviewed"], utc=True)
    delay = reviewed_at - routed_at
    window = pd.Timedelta(days=days)
    reviewed = reviewed_at.notna()
    in_time = reviewed & (delay <= window)
    due = (pd.Timestamp(now) - routed_at) > window
    hours = delay[reviewed].dt.total_seconds() / 3600.0
    return SalesFollowUp(
        days=days,
        routed=len(frame),
        in_time=int(in_time.sum()),
        late=int((reviewed & ~in_time).sum()),
        overdue=int((~reviewed & due).sum()),
        pending=int((~reviewed & ~due).sum()),
        median_hours=float(hours.median()) if len(hours) else None,
        due=int(due.sum()),
        due_in_time=int((in_time & due).sum()),
    )


# ---------------------------------------------------------------------- drift


def psi_from_counts(expected: Sequence[float], actual: Sequence[float]) -> float:
    """PSI of two histograms over the same bins (counts or shares; empty bins allowed);
    ``ValueError`` for different numbers of bins, negative counts or an empty histogram.
    """
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    if e.shape != a.shape or e.ndim != 1:
        raise ValueError("expected and actual need the same number of bins")
    if (e < 0).any() or (a < 0).any():
        raise ValueError("counts cannot be negative")
    if e.sum() <= 0 or a.sum() <= 0:
        raise ValueError("a histogram is empty")
    e = np.maximum(e / e.sum(), PSI_FLOOR)
    a = np.maximum(a / a.sum(), PSI_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_level(value: float | None) -> str:
    """``stable`` (< 0.1), ``watch`` (< 0.25) or ``act``; ``n/a`` for None."""
    if value is None or math.isnan(value):
        return "n/a"
    if value >= PSI_ACT:
        return "act"
    if value >= PSI_WATCH:
        return "watch"
    return "stable"


def _numeric(series: pd.Series) -> pd.Series | None:
    if pd.api.types.is_bool_dtype(series):
        return series.astype(float)
    converted = pd.to_numeric(series, errors="coerce")
    if converted.notna().sum() < series.notna().sum():
        return None
    return converted.astype(float)


def feature_psi(
    reference: pd.Series, recent: pd.Series, *, bins: int = 10
) -> tuple[float, str] | None:
    """PSI of one feature and its kind (``numeric``: binned at the reference's deciles, or
    ``categorical``; missing values in a bin of their own). None when a sample is empty, or
    a categorical feature has more than :data:`MAX_CATEGORIES` values or more than half the
    reference's rows (text or identifiers, not categories).
    """
    if reference.empty or recent.empty:
        return None
    ref_num, new_num = _numeric(reference), _numeric(recent)
    if ref_num is not None and new_num is not None:
        finite = ref_num.dropna()
        if finite.empty:
            edges = np.array([-np.inf, np.inf])
        else:
            inner = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]))
            edges = np.concatenate([[-np.inf], inner, [np.inf]])

        def hist(values: pd.Series) -> np.ndarray:
            present = values.dropna().to_numpy()
            counts, _ = np.histogram(present, bins=edges)
            return np.append(counts, values.isna().sum())

        return psi_from_counts(hist(ref_num), hist(new_num)), "numeric"
    ref_cat = reference.astype(object).where(reference.notna(), "\0missing")
    new_cat = recent.astype(object).where(recent.notna(), "\0missing")
    ref_cat, new_cat = ref_cat.map(str), new_cat.map(str)
    distinct = ref_cat.nunique()
    if distinct > MAX_CATEGORIES or distinct > len(ref_cat) / 2:
        return None  # free text or an identifier, not a category
    values = sorted(set(ref_cat) | set(new_cat))
    e = ref_cat.value_counts().reindex(values, fill_value=0)
    a = new_cat.value_counts().reindex(values, fill_value=0)
    return psi_from_counts(e.to_numpy(), a.to_numpy()), "categorical"


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's PSI between the reference and the recent predictions."""

    feature: str
    psi: float
    kind: str

    @property
    def level(self) -> str:
        """``stable``, ``watch`` or ``act``."""
        return psi_level(self.psi)


@dataclass(frozen=True)
class DriftReport:
    """PSI of every comparable feature, highest first, and what was compared.

    ``features`` is empty and ``note`` says why when there is nothing to compare.
    """

    reference: str
    reference_start: datetime | None
    reference_end: datetime | None
    reference_n: int
    recent_start: datetime
    recent_n: int
    features: list[FeatureDrift] = field(default_factory=list)
    skipped: int = 0
    note: str | None = None

    def top(self, n: int = 10) -> list[FeatureDrift]:
        """The ``n`` features with the highest PSI."""
        return self.features[:n]

    def count(self, level: str) -> int:
        """How many features are at ``level`` (``stable``, ``watch``, ``act``)."""
        return sum(1 for f in self.features if f.level == level)


def _snapshots(
    store: Any,
    *,
    start: datetime | None,
    end: datetime | None,
    version: str | None = None,
    exclude_from: datetime | None = None,
    limit: int,
) -> pd.DataFrame:
    """Feature snapshots of the newest ``limit`` predictions in a window, one per lead."""
    stmt = sa.select(_P.c.lead_id, _P.c.features).where(_P.c.features.is_not(None))
    if start is not None:
        stmt = stmt.where(_P.c.created_at >= start)
    for bound in (end, exclude_from):
        if bound is not None:
            stmt = stmt.where(_P.c.created_at < bound)
    if version is not None:
        stmt = stmt.where(_P.c.model_version == version)
    stmt = stmt.order_by(_P.c.id.desc()).limit(limit)
    with store.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    newest: dict[str, Mapping[str, Any]] = {}
    for lead_id, features in rows:
        if isinstance(features, Mapping):
            newest.setdefault(lead_id, features)
    return pd.DataFrame.from_records(list(newest.values()))


def _first_prediction(store: Any, version: str | None) -> datetime | None:
    stmt = sa.select(sa.func.min(_P.c.created_at))
    if version is not None:
        stmt = stmt.where(_P.c.model_version == version)
    with store.engine.connect() as conn:
        value = conn.execute(stmt).scalar()
    return None if value is None else as_utc(value)


def _reference_start(
    store: Any,
    champion_version: str | None,
    registered_at: datetime | None,
    reference_days: int,
    recent_start: datetime,
) -> tuple[datetime | None, str]:
    """Where the reference sample starts, and how to say it: the champion's
    registration when it has predictions then, else its (or any model's) first."""
    if champion_version is not None and registered_at is not None:
        probe = _snapshots(
            store,
            start=registered_at,
            end=registered_at + timedelta(days=reference_days),
            version=champion_version,
            exclude_from=recent_start,
            limit=1,
        )
        if len(probe):
            how = f"version {champion_version}'s first {reference_days} days after its registration"
            return registered_at, how
    who = f"version {champion_version}" if champion_version else "any model"
    how = f"the first {reference_days} days of predictions by {who}"
    return _first_prediction(store, champion_version), how


def drift_report(
    store: Any,
    *,
    champion_version: str | None = None,
    registered_at: datetime | None = None,
    window_days: int = 7,
    reference_days: int = 7,
    bins: int = 10,
    limit: int = 5000,
    min_leads: int = 50,
    now: datetime | None = None,
) -> DriftReport:
    """PSI of the recent predictions' features against a reference, per feature.

    The reference is the champion's first ``reference_days`` days of predictions
    (from ``registered_at``, its registration in MLflow, when it has predictions
    then: docs/design/data.md), the recent sample the last ``window_days`` days;
    each keeps the newest prediction of at most ``limit`` leads. With fewer than
    ``min_leads`` leads on a side the report has no features, and says why.
    """
    now = now or utc_now()
    recent_start = now - timedelta(days=window_days)
    recent = _snapshots(store, start=recent_start, end=None, limit=limit)
    start, how = _reference_start(
        store, champion_version, registered_at, reference_days, recent_start
    )
    end = start + timedelta(days=reference_days) if start is not None else None
    window = {"start": start, "end": end, "version": champion_version, "limit": limit}
    reference = pd.DataFrame()
    if start is not None:
        reference = _snapshots(store, **window, exclude_from=recent_start)
    report = DriftReport(how, start, end, len(reference), recent_start, len(recent))
    if reference.empty or recent.empty:
        when = "before" if reference.empty else "in"
        note = f"No predictions with feature snapshots {when} the last {window_days} days."
        return replace(report, note=note)
    if len(reference) < min_leads or len(recent) < min_leads:
        note = (
            f"Too few leads to compare ({len(reference)} in the reference, {len(recent)} recent;"
            f" at least {min_leads} each)."
        )
        return replace(report, note=note)
    drifts = {
        str(column): feature_psi(reference[column], recent[column], bins=bins)
        for column in set(reference.columns) & set(recent.columns)
    }
    features = [FeatureDrift(name, *psi) for name, psi in drifts.items() if psi is not None]
    features.sort(key=lambda d: (-d.psi, d.feature))
    return replace(report, features=features, skipped=len(drifts) - len(features))


# --------------------------------------------------------------------- gauges


def alignment_gauges(
    store: Any,
    *,
    window_days: int = 30,
    top: int = 5,
    drift: DriftReport | None = None,
    champion_version: str | None = None,
    registered_at: datetime | None = None,
    now: datetime | None = None,
) -> dict[str, float]:
    """Figures for Prometheus gauges: ``override_rate``, ``agreement_rate:<head>`` and
    ``reviews`` over the last ``window_days``, and ``feature_psi:<feature>`` for the ``top``
    features of :func:`drift_report` (``drift`` reuses one). Figures without data are left
    out rather than reported as zero.
    """
    now = now or utc_now()
    reviews = reviews_frame(store, since=now - timedelta(days=window_days))
    out: dict[str, float] = {"reviews": float(len(reviews))}
    rate = override_rate(reviews)
    if rate is not None:
        out["override_rate"] = rate
    for head, rows in agreement(reviews).items():
        overall = rows[0].rate
        if overall is not None:
            out[f"agreement_rate:{head}"] = overall
    if drift is None:
        drift = drift_report(
            store, champion_version=champion_version, registered_at=registered_at, now=now
        )
    for item in drift.top(top):
        out[f"feature_psi:{item.feature}"] = item.psi
    return out
