"""The alignment dashboard: do reps agree with the model, and is the model going stale?

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from flask import Response, abort, current_app, render_template, request

from data import alignment
from review_ui import auth
from review_ui.models_page import MLFLOW_WAIT, in_thread, registry_unavailable, within
from review_ui.present import whole_percent
from review_ui.views import _store, bp

__all__ = ["MLFLOW_TTL", "MLFLOW_WAIT", "DriftCache", "ModelVersions", "read_model_versions"]

#: Seconds a read of the registry is reused.
MLFLOW_TTL = 60.0
_EXTENSION = "review_dashboard"
_WEEKS = 12
_MAX_DAYS = 90
_KAPPA_MIN_SHARED = 5
_INK, _MUTED, _LINE = "#1d2330", "#667085", "#e3e6eb"
_ACCENT, _OK, _BAD = "#3552c8", "#1c7c4a", "#b42318"
_GATE_METRICS = {
    "stage_f1": ("gate_challenger_stage_macro_f1", "stage_macro_f1"),
    "persona_f1": ("gate_challenger_persona_macro_f1", "persona_macro_f1"),
    "champion_stage_f1": ("gate_champion_stage_macro_f1",),
    "champion_persona_f1": ("gate_champion_persona_macro_f1",),
    "stage_accuracy": ("gate_challenger_stage_accuracy", "stage_accuracy"),
}


# ------------------------------------------------------------------ MLflow


def read_model_versions(tracking_uri: str, model_name: str, limit: int = 8) -> dict[str, Any]:
    """Registered versions of ``model_name``, newest first, with their gate metrics.

    ``{"versions": [...], "champion": ...}``; each version's gate F1s come from the gate set,
    else the run's holdout metrics (None when not logged).
    """
    from mlflow.tracking import MlflowClient

    from model.registry import versions_overview

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    versions, champion = [], None
    for found in versions_overview(model_name, client=client)[:limit]:
        metrics: dict[str, float] = {}
        tags: dict[str, str] = {}
        if found["run_id"]:
            run = client.get_run(found["run_id"])
            metrics, tags = dict(run.data.metrics), dict(run.data.tags)
        registered = datetime.fromtimestamp(found["registered_at"] / 1000, UTC)
        row: dict[str, Any] = {
            "version": found["version"],
            "aliases": found["aliases"],
            "registered_at": registered,
            "decision": tags.get("gate.decision"),
        }
        for key, names in _GATE_METRICS.items():
            row[key] = next((metrics[n] for n in names if n in metrics), None)
        versions.append(row)
        if "champion" in row["aliases"]:
            champion = {"version": row["version"], "registered_at": registered}
    return {"versions": versions, "champion": champion}


@dataclass
class ModelVersions:
    """Reads the registry in a worker thread and keeps the answer for :data:`MLFLOW_TTL`."""

    ttl: float = MLFLOW_TTL
    wait: float = MLFLOW_WAIT
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _future: Future[dict[str, Any]] | None = None
    _started: float = 0.0

    def get(self, tracking_uri: str | None, model_name: str) -> dict[str, Any]:
        """The versions, or ``{"error": words}`` when MLflow is not there in time."""
        why = registry_unavailable(tracking_uri, model_name)
        if why is not None:
            return {"error": why}
        with self._lock:
            fresh = time.monotonic() - self._started < self.ttl
            if self._future is None or (self._future.done() and not fresh):
                self._future = in_thread(
                    lambda: read_model_versions(tracking_uri, model_name), "dashboard-mlflow"
                )
                self._started = time.monotonic()
            future = self._future
        answer = within(future, self.wait)
        if future.done() and future.exception() is not None:
            with self._lock:
                if self._future is future:
                    self._started = 0.0  # ask again on the next page
        return answer


@dataclass
class DriftCache:
    """The last drift report, reused for ``ttl`` seconds (it reads up to 10k snapshots)."""

    ttl: float = 300.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _entry: tuple[Any, float, Any] | None = None

    def get(self, key: Any, compute: Any) -> Any:
        """``compute()``'s answer for ``key``, computed at most once per ``ttl``."""
        with self._lock:
            entry = self._entry
            if entry is not None and entry[0] == key and time.monotonic() - entry[1] < self.ttl:
                return entry[2]
        value = compute()
        with self._lock:
            self._entry = (key, time.monotonic(), value)
        return value


def _models() -> dict[str, Any]:
    cfg = current_app.config
    return current_app.extensions.setdefault(_EXTENSION, ModelVersions()).get(
        cfg.get("MLFLOW_TRACKING_URI"), cfg.get("MODEL_NAME") or ""
    )


# ------------------------------------------------------------------ figures


def _days() -> int:
    try:
        days = int(request.args.get("days", 7))
    except ValueError:
        abort(400, description="days: expected a whole number of days")
    if not 1 <= days <= _MAX_DAYS:
        abort(400, description=f"days: between 1 and {_MAX_DAYS}")
    return days


def _confusion_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of a confusion matrix with a heat level (0–4) per cell, shares of the row."""
    rows = []
    for label, counts in table.iterrows():
        total = int(counts.sum())
        cells = []
        for rep_label, n in counts.items():
            share = n / total if total else 0.0
            level = 0 if n == 0 else min(4, 1 + int(share * 4))
            cells.append({"n": int(n), "share": share, "level": level, "diag": rep_label == label})
        rows.append({"label": label, "cells": cells, "total": total})
    return rows


@bp.route("/review/dashboard")
@auth.role_required("rep")
def dashboard() -> Any:
    """The alignment dashboard."""
    days = _days()
    store = _store()
    now = datetime.now(UTC)
    reviews = alignment.reviews_frame(store)
    recent = reviews[reviews["created_at"] >= pd.Timestamp(now) - pd.Timedelta(days=30)]
    models = _models()
    champion = models.get("champion") or {}
    key = (champion.get("version"), champion.get("registered_at"))
    drift = current_app.extensions.setdefault(_EXTENSION + "_drift", DriftCache()).get(
        key,
        lambda: alignment.drift_report(
            store, champion_version=key[0], registered_at=key[1], now=now
        ),
    )
    weekly = alignment.corrections_per_week(reviews, weeks=_WEEKS)
    override_weeks = alignment.override_rate_per_week(reviews, weeks=_WEEKS)
    reasons = alignment.corrections_by_reason(reviews)
    top_reason = max((n for _, n in reasons), default=0)
    return render_template(
        "review/dashboard.html",
        days=days,
        max_days=_MAX_DAYS,
        n_reviews=len(reviews),
        n_leads=int(reviews["lead_id"].nunique()),
        n_field={h: int((reviews["field"] == h).sum()) for h in alignment.HEADS},
        agreement=alignment.agreement(reviews),
        confusions={h: _confusion_rows(alignment.confusion(reviews, h)) for h in alignment.HEADS},
        override_30d=alignment.override_rate(recent),
        override_all=alignment.override_rate(reviews),
        has_weeks=not weekly.empty,
        has_override_weeks=not override_weeks.empty,
        override_weeks=override_weeks,
        reasons=[(r, n, whole_percent(n / top_reason) if top_reason else 0) for r, n in reasons],
        follow=alignment.sales_follow_up(store, days=days, now=now),
        models=models,
        drift=drift,
        # Bar widths: the PSI scale ends at 0.5 (twice the "act" threshold).
        drift_top=[(d, whole_percent(d.psi / 0.5, floor=1)) for d in drift.top(10)],
        psi_watch=alignment.PSI_WATCH,
        psi_act=alignment.PSI_ACT,
        percent=whole_percent,
        now=now,
    )


@bp.route("/review/dashboard/reps")
@auth.role_required("analyst")
def dashboard_reps() -> Any:
    """Per rep: reviews, corrections vs confirms, agreement with the model and with each other."""
    reviews = alignment.reviews_frame(_store())
    kappas = alignment.pairwise_kappa(reviews, min_shared=_KAPPA_MIN_SHARED)
    return render_template(
        "review/reps.html",
        reps=alignment.per_rep(reviews),
        kappas={h: [k for k in kappas if k.head == h] for h in alignment.HEADS},
        min_shared=_KAPPA_MIN_SHARED,
        percent=whole_percent,
    )


# ------------------------------------------------------------------- charts


def _chart() -> tuple[Any, Any]:
    """A 6.4 x 2.5 in figure (transparent, Agg) and its one axes in the dashboard's style."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 2.5), dpi=100)
    fig.patch.set_alpha(0)
    ax = fig.add_subplot()
    ax.set_facecolor("none")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.spines["bottom"].set_color(_LINE)
    ax.tick_params(colors=_MUTED, labelsize=8, length=0)
    ax.grid(axis="y", color=_LINE, linewidth=0.8)
    ax.set_axisbelow(True)
    return fig, ax


def _week_labels(index: pd.Index) -> list[str]:
    return [d.strftime("%d %b") for d in index]


def _svg(fig: Any) -> Response:
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "leadready", "svg.fonttype": "path"}):
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    response = Response(buffer.getvalue(), mimetype="image/svg+xml")
    response.headers["Cache-Control"] = "private, max-age=60"
    return response


def _corrections_chart(reviews: pd.DataFrame) -> Any:
    table = alignment.corrections_per_week(reviews, weeks=_WEEKS)
    fig, ax = _chart()
    x = range(len(table))
    ax.bar(x, table["reclassify"], color=_ACCENT, width=0.62, label="reclassified")
    ax.bar(
        x,
        table["confirm"],
        bottom=table["reclassify"],
        color="#8aa0ea",
        width=0.62,
        edgecolor=_ACCENT,
        linewidth=0.8,
        label="confirmed",
    )  # fmt: skip  -- outlined, so the legend's swatch shows on a white card
    ax.set_xticks(list(x), _week_labels(table.index))
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend(frameon=False, fontsize=8, loc="upper left", ncols=2, labelcolor=_INK)
    ax.set_ylabel("reviews per week", color=_MUTED, fontsize=8)
    return fig


def _override_chart(reviews: pd.DataFrame) -> Any:
    table = alignment.override_rate_per_week(reviews, weeks=_WEEKS)
    fig, ax = _chart()
    x = list(range(len(table)))
    rate = table["rate"].astype(float)
    ax.fill_between(x, rate.fillna(0), color=_BAD, alpha=0.08, linewidth=0)
    ax.plot(x, rate, color=_BAD, marker="o", markersize=4, linewidth=1.8)
    ax.set_ylim(0, 1)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0], ["0%", "25%", "50%", "75%", "100%"])
    ax.set_xticks(x, _week_labels(table.index))
    ax.set_ylabel("reviewed leads changed", color=_MUTED, fontsize=8)
    for xi, (n, r) in enumerate(zip(table["leads"], rate, strict=True)):
        if n and r == r:
            ax.annotate(
                f"n={n}", (xi, r), textcoords="offset points", xytext=(0, 7),
                ha="center", fontsize=7, color=_MUTED,
            )  # fmt: skip
    return fig


_CHARTS = {"corrections": _corrections_chart, "override": _override_chart}


@bp.route("/review/dashboard/chart/<name>.svg")
@auth.role_required("rep")
def dashboard_chart(name: str) -> Any:
    """One of the dashboard's charts as SVG."""
    draw = _CHARTS.get(name)
    if draw is None:
        abort(404)
    reviews = alignment.reviews_frame(_store())
    if reviews.empty:
        abort(404)
    return _svg(draw(reviews))
