"""Suggestions ("leads like this one"): after a rep reclassifies a lead, the unreviewed
leads likely to carry the same mistake."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from data.review_queue import STORED_CONFIG, row_scores
from data.store import (
    CorrectionRow,
    LeadRow,
    PredictionRow,
    QueueRow,
    SuggestionRow,
    SuggestionSetRow,
)
from data.values import is_missing, utc_now
from training.correction_model import (
    CATEGORICAL_FEATURES,
    CorrectionModel,
    CorrectionModelConfig,
    change_probability,
)
from training.learned_queue import rep_label_frame
from training.rep_labels import current_corrections

if TYPE_CHECKING:
    from data.store import Store

__all__ = [
    "METHODS",
    "AcceptResult",
    "Ranking",
    "SimilarConfig",
    "StaleSuggestions",
    "SuggestionSet",
    "UnknownSuggestions",
    "accept_suggestions",
    "build_suggestions",
    "dismiss_suggestions",
    "forget_models",
    "pending_for_lead",
    "rank_candidates",
    "sets_for_lead",
    "suggestion_set",
    "suggestions_in_set",
]

_SETS = SuggestionSetRow.__table__
_SUGGESTIONS = SuggestionRow.__table__
_CORRECTIONS = CorrectionRow.__table__
_PREDICTIONS = PredictionRow.__table__
_QUEUE = QueueRow.__table__

#: How suggestions are ranked, and the words a rep reads for each.
METHODS: dict[str, str] = {
    "correction_model": "the model of corrections' probability of the same change",
    "neighbours": "nearest neighbours in feature space (too few corrections to learn from yet)",
}


@dataclass(frozen=True)
class SimilarConfig:
    """How suggestions are built."""

    keep: int = 200
    likely: float = 0.5
    refit_every: int = 25
    model: CorrectionModelConfig = field(default_factory=CorrectionModelConfig)

    def __post_init__(self) -> None:
        if self.keep < 1:
            raise ValueError(f"keep must be at least 1, got {self.keep}")
        if not 0.0 < self.likely < 1.0:
            raise ValueError(f"likely must be between 0 and 1, got {self.likely}")
        if self.refit_every < 0:
            raise ValueError(f"refit_every must not be negative, got {self.refit_every}")


@dataclass
class SuggestionSet:
    """One correction's suggestions: the change, the method, the counts, the leads."""

    correction_id: int
    lead_id: str
    field: str
    from_label: str
    to_label: str
    method: str
    n_candidates: int
    n_likely: int | None
    n_reviewed: int
    note: str | None
    seconds: float
    created_at: datetime
    items: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Open, accepted and dismissed suggestions among the stored ones."""
        counted = Counter(item["status"] for item in self.items)
        return {"open": 0, "accepted": 0, "dismissed": 0} | dict(counted)


class UnknownSuggestions(KeyError):
    """Suggestion ids that are not in the set (or not suggestions at all)."""

    def __init__(self, ids: Sequence[Any]) -> None:
        self.ids = list(ids)
        super().__init__(f"unknown suggestion id(s): {', '.join(map(str, self.ids))}")


class StaleSuggestions(ValueError):
    """Suggestions that no longer hold: decided already, or the lead changed since."""

    def __init__(self, problems: Mapping[int, str]) -> None:
        self.problems = dict(problems)
        words = "; ".join(f"{i}: {why}" for i, why in self.problems.items())
        super().__init__(f"stale suggestion(s) — {words}")


@dataclass
class AcceptResult:
    """What accepting suggestions wrote."""

    corrections: list[Any]
    suggestion_ids: list[int]
    batch_id: str | None

    @property
    def lead_ids(self) -> list[str]:
        """The leads that got a correction."""
        return [r.lead_id for r in self.corrections]


@contextlib.contextmanager
def _writing(store: Store) -> Iterator[Any]:
    """A write transaction that takes SQLite's write lock up front (as the store's own)."""
    with store.engine.connect() as conn:
        conn = conn.execution_options(leadready_write=True)
        with conn.begin():
            yield conn


# ------------------------------------------------------------------ the model


_MODELS: dict[str, tuple[int, CorrectionModel]] = {}
_MODELS_LOCK = threading.Lock()


def forget_models() -> None:
    """Drop the cached models of corrections (tests; after a restore of the store)."""
    with _MODELS_LOCK:
        _MODELS.clear()


def _queue(store: Store, where: Any, *, with_features: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``lead_queue`` rows matching ``where`` (with ``base_priority``) and, if asked, the
    feature snapshots of their served predictions — one query, no full-table frame.
    """
    columns = list(_QUEUE.c)
    stmt = sa.select(*columns).where(where)
    if with_features:
        stmt = stmt.add_columns(_PREDICTIONS.c.features).outerjoin(
            _PREDICTIONS, _PREDICTIONS.c.id == _QUEUE.c.prediction_id
        )
    names = [c.name for c in columns]
    with store.engine.connect() as conn:
        rows = conn.execute(stmt).all()
    frame = pd.DataFrame.from_records(
        [tuple(r)[: len(names)] for r in rows], columns=names
    ).set_index("lead_id")
    # Today's priority, as data.review_queue.queue_frame computes it.
    frame["base_priority"] = row_scores(frame.to_dict("records"), STORED_CONFIG)
    features = pd.DataFrame(index=frame.index)
    if with_features and rows:
        snaps = [r[-1] if isinstance(r[-1], Mapping) else {} for r in rows]
        features = pd.DataFrame.from_records(snaps, index=frame.index)
    return frame, features


def _n_reviewed(store: Store) -> int:
    stmt = sa.select(sa.func.count()).select_from(_QUEUE).where(_QUEUE.c.reviewed.is_(True))
    with store.engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def _model(store: Store, config: SimilarConfig) -> CorrectionModel:
    """The model of corrections for this store, cached until ``refit_every`` more reviews."""

    n = _n_reviewed(store)
    model = CorrectionModel(config.model)
    if n < config.model.min_corrections:
        model.n_reviewed_ = n  # cold start: nothing to fit, nothing to cache
        return model
    with _MODELS_LOCK:
        cached = _MODELS.get(store.url)
    if cached is not None and 0 <= n - cached[0] < max(config.refit_every, 1):
        return cached[1]
    queue, features = _queue(store, _QUEUE.c.reviewed.is_(True), with_features=True)
    reps = rep_label_frame(current_corrections(store))
    reps = reps[reps.index.isin(queue.index)]
    model.fit(features.loc[reps.index], queue.loc[reps.index], reps)
    with _MODELS_LOCK:
        _MODELS[store.url] = (n, model)
    return model


# -------------------------------------------------------------- neighbours


def _neighbour_distances(source: Mapping[str, Any], candidates: pd.DataFrame) -> np.ndarray:
    """Euclidean distance of each candidate to the source lead (standardised, one-hot)."""
    from sklearn.preprocessing import StandardScaler

    both = pd.concat([pd.DataFrame([dict(source)]), candidates], ignore_index=True)
    parts = []
    numeric = [
        c
        for c in both.columns
        if c not in CATEGORICAL_FEATURES
        and (pd.api.types.is_numeric_dtype(both[c]) or pd.api.types.is_bool_dtype(both[c]))
    ]
    if numeric:
        values = both[numeric].apply(pd.to_numeric, errors="coerce").astype(float)
        values = values.loc[:, values.notna().any()]
        if values.shape[1]:
            scaled = StandardScaler().fit_transform(values)
            parts.append(np.nan_to_num(scaled, nan=0.0))
    cats = [c for c in CATEGORICAL_FEATURES if c in both.columns]
    if cats:
        dummies = pd.get_dummies(both[cats].astype(object).astype(str), dtype=float)
        parts.append(dummies.to_numpy())
    if not parts:
        return np.zeros(len(candidates))
    matrix = np.hstack(parts)
    return np.sqrt(((matrix[1:] - matrix[0]) ** 2).sum(axis=1))


# ------------------------------------------------------------------- build


def _correction(store: Store, correction_id: int) -> Mapping[str, Any]:
    stmt = sa.select(_CORRECTIONS).where(_CORRECTIONS.c.id == correction_id)
    with store.engine.connect() as conn:
        row = conn.execute(stmt).mappings().first()
    if row is None:
        raise KeyError(f"unknown correction {correction_id}")
    return row


def _source_snapshot(store: Store, correction: Mapping[str, Any]) -> Mapping[str, Any]:
    pid = correction["prediction_id"]
    if pid is not None:
        stmt = sa.select(_PREDICTIONS.c.features).where(_PREDICTIONS.c.id == pid)
        with store.engine.connect() as conn:
            features = conn.execute(stmt).scalar()
        if isinstance(features, Mapping):
            return features
    latest = store.latest_prediction(correction["lead_id"]) or {}
    return latest.get("features") or {}


@dataclass
class Ranking:
    """The unreviewed leads served the same answer as a corrected lead, ranked."""

    method: str
    order: pd.Index
    candidates: pd.DataFrame
    probability: pd.Series | None
    distance: pd.Series | None
    n_reviewed: int
    note: str | None


def rank_candidates(
    store: Store, correction: Mapping[str, Any], config: SimilarConfig | None = None
) -> Ranking:
    """Rank the leads likely to carry the same mistake as ``correction`` (nothing is stored)."""
    config = config or SimilarConfig()
    head, before, after = correction["field"], correction["old_label"], correction["new_label"]
    model = _model(store, config)
    # Not yet reviewed, served the same answer: the store keeps `reviewed` with the labels.
    open_rows, features = _queue(
        store,
        sa.and_(
            _QUEUE.c[head] == before,
            _QUEUE.c.reviewed.is_(False),
            _QUEUE.c.lead_id != correction["lead_id"],
        ),
        with_features=True,
    )
    ids = list(open_rows.index)
    probability = None
    note = None
    if ids and model.fitted_:
        probability = change_probability(model, features, open_rows, head, after)
        if probability is None:
            note = (
                f"the model of corrections (fitted on {model.n_reviewed_} reviewed leads) has "
                f"not seen a {head} change to {after} yet: ranked by nearest neighbours instead"
            )
    elif not model.fitted_:
        n_wrong, n_rev = sum(model.n_wrong_.values()), model.n_reviewed_
        wrong = f" ({n_wrong} with a wrong served answer)" if model.n_wrong_ else ""
        note = (
            f"cold start: {n_rev} reviewed lead{'' if n_rev == 1 else 's'}{wrong}; "
            f"the model of corrections needs {config.model.min_corrections} reviewed leads with "
            f"{config.model.min_wrong} wrong answers"
        )
    if probability is not None:
        score = pd.Series(probability, index=open_rows.index)
        order = score.sort_values(ascending=False, kind="stable").index
        return Ranking(
            "correction_model", order, open_rows, score, None, int(model.n_reviewed_), note
        )
    if ids:
        distance = pd.Series(
            _neighbour_distances(_source_snapshot(store, correction), features.reindex(ids)),
            index=open_rows.index,
        )
    else:
        distance = pd.Series(dtype=float)
    order = distance.sort_values(kind="stable").index
    return Ranking("neighbours", order, open_rows, None, distance, int(model.n_reviewed_), note)


def build_suggestions(
    store: Store, correction_id: int, config: SimilarConfig | None = None
) -> SuggestionSet | None:
    """Rank the unreviewed leads served the same answer, store the top ones as suggestions."""
    config = config or SimilarConfig()
    existing = suggestion_set(store, correction_id)
    if existing is not None:
        return existing
    correction = _correction(store, correction_id)
    head, before, after = correction["field"], correction["old_label"], correction["new_label"]
    if not _suggestible(correction):
        return None
    start = time.perf_counter()
    ranked = rank_candidates(store, correction, config)
    probability, distance = ranked.probability, ranked.distance
    n_likely = None if probability is None else int((probability >= config.likely).sum())
    # What the set and each of its suggestions say alike: the change, the method, the time.
    change = {"field": head, "from_label": before, "to_label": after}
    common = {**change, "method": ranked.method, "created_at": utc_now()}
    set_values = {
        "correction_id": int(correction_id),
        "lead_id": correction["lead_id"],
        "n_candidates": len(ranked.candidates),
        "n_likely": n_likely,
        "n_reviewed": ranked.n_reviewed,
        "note": ranked.note,
        "seconds": float(time.perf_counter() - start),
        **common,
    }
    rows = [
        {
            "source_correction_id": int(correction_id),
            "lead_id": lead_id,
            "prediction_id": _int(ranked.candidates.at[lead_id, "prediction_id"]),
            "rank": rank,
            "probability": None if probability is None else float(probability[lead_id]),
            "distance": None if distance is None else float(distance[lead_id]),
            "status": "open",
            **common,
        }
        for rank, lead_id in enumerate(ranked.order[: config.keep], start=1)
    ]
    try:
        with _writing(store) as conn:
            conn.execute(sa.insert(_SETS), [set_values])
            if rows:
                conn.execute(sa.insert(_SUGGESTIONS), rows)
    except sa.exc.IntegrityError:
        # Built by another request meanwhile: theirs stands.
        pass
    return suggestion_set(store, correction_id)


def _suggestible(correction: Mapping[str, Any]) -> bool:
    """A reclassification from one label to another: what suggestions are built for."""
    before, after = correction["old_label"], correction["new_label"]
    return correction["kind"] == "reclassify" and bool(before and after) and before != after


def _int(value: Any) -> int | None:
    try:
        return None if is_missing(value) else int(value)
    except (TypeError, ValueError):
        return None


# -------------------------------------------------------------------- read


def suggestions_in_set(
    store: Store, correction_id: int, *, status: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """The stored suggestions of one correction, best first, with the lead's profile columns."""
    leads = LeadRow.__table__
    stmt = (
        sa.select(_SUGGESTIONS, leads.c.company, leads.c.job_title, leads.c.country)
        .outerjoin(leads, leads.c.lead_id == _SUGGESTIONS.c.lead_id)
        .where(_SUGGESTIONS.c.source_correction_id == correction_id)
        .order_by(_SUGGESTIONS.c.rank)
    )
    if status is not None:
        stmt = stmt.where(_SUGGESTIONS.c.status == status)
    if limit is not None:
        stmt = stmt.limit(limit)
    with store.engine.connect() as conn:
        items = [dict(r) for r in conn.execute(stmt).mappings()]
        # An accepted suggestion whose correction was undone since (say, its batch):
        # one lookup for the accepted ones only (most sets have few or none).
        made = [i["correction_id"] for i in items if i["correction_id"] is not None]
        c = _CORRECTIONS.c
        undo = sa.select(c.undo_of).where(c.undo_of.in_(made), c.kind == "undo")
        undone = set(conn.execute(undo).scalars()) if made else set()
    for item in items:
        item["undone"] = item["correction_id"] in undone
    return items


def suggestion_set(
    store: Store, correction_id: int, *, limit: int | None = None
) -> SuggestionSet | None:
    """One correction's stored set (None: none built), with its suggestions (``limit``)."""
    stmt = sa.select(_SETS).where(_SETS.c.correction_id == correction_id)
    with store.engine.connect() as conn:
        row = conn.execute(stmt).mappings().first()
    if row is None:
        return None
    items = suggestions_in_set(store, correction_id, limit=limit)
    return SuggestionSet(**dict(row), items=items)


def sets_for_lead(store: Store, lead_id: str, *, preview: int = 10) -> list[SuggestionSet]:
    """The sets built from this lead's corrections, newest first, each with a preview."""
    stmt = sa.select(_SETS).where(_SETS.c.lead_id == lead_id).order_by(_SETS.c.correction_id.desc())
    with store.engine.connect() as conn:
        rows = conn.execute(stmt).mappings().all()
    if not rows:
        return []
    latest = {c["field"]: c["id"] for c in store.corrections_for(lead_id)}
    out = []
    for row in rows:
        if latest.get(row["field"]) != row["correction_id"]:
            continue
        items = suggestions_in_set(store, row["correction_id"], status="open", limit=preview)
        out.append(SuggestionSet(**dict(row), items=items))
    return out


def pending_for_lead(store: Store, lead_id: str) -> list[dict[str, Any]]:
    """This lead's current reclassify corrections that suggestions can be built for but
    have none yet (being built in the background, or made before this feature).
    """
    latest = {c["field"]: c for c in store.corrections_for(lead_id)}
    candidates = [
        dict(c) for c in latest.values() if _suggestible(c) and c["suggestion_id"] is None
    ]
    if not candidates:
        return []
    ids = [c["id"] for c in candidates]
    stmt = sa.select(_SETS.c.correction_id).where(_SETS.c.correction_id.in_(ids))
    with store.engine.connect() as conn:
        built = set(conn.execute(stmt).scalars())
    return [c for c in candidates if c["id"] not in built]


# ------------------------------------------------------------------ decide


def _in_set(conn: Any, correction_id: int, suggestion_ids: Iterable[int]) -> list[Any]:
    """The rows of the suggestion ids (each once, in order); ids not in the set raise."""
    wanted = list(dict.fromkeys(int(i) for i in suggestion_ids))
    if not wanted:
        return []
    stmt = sa.select(_SUGGESTIONS).where(
        _SUGGESTIONS.c.id.in_(wanted), _SUGGESTIONS.c.source_correction_id == correction_id
    )
    found = {r["id"]: r for r in conn.execute(stmt).mappings()}
    unknown = [i for i in wanted if i not in found]
    if unknown:
        raise UnknownSuggestions(unknown)
    return [found[i] for i in wanted]


def _checked(
    store: Store, correction_id: int, suggestion_ids: Iterable[int]
) -> list[Mapping[str, Any]]:
    """The suggestions, checked: all in the set, open, and the lead still served the same."""
    with store.engine.connect() as conn:
        rows = _in_set(conn, correction_id, suggestion_ids)
    problems: dict[int, str] = {}
    reps = store.current_labels([r["lead_id"] for r in rows])
    for r in rows:
        if r["status"] != "open":
            problems[r["id"]] = f"{r['lead_id']} was {r['status']} already"
            continue
        if (reps.get(r["lead_id"]) or {}).get(r["field"]):
            problems[r["id"]] = f"a rep has labelled the {r['field']} of {r['lead_id']} since"
            continue
        try:
            now = store.labels_for(r["lead_id"]).get(r["field"])
        except KeyError:
            problems[r["id"]] = f"{r['lead_id']} is no longer stored"
            continue
        if now != r["from_label"]:
            problems[r["id"]] = (
                f"the {r['field']} of {r['lead_id']} is now {now or 'unset'}, not {r['from_label']}"
            )
    if problems:
        raise StaleSuggestions(problems)
    return rows


def accept_suggestions(
    store: Store,
    correction_id: int,
    suggestion_ids: Iterable[int],
    *,
    reviewer: str,
    reason: str | None,
    note: str | None = None,
    batch_id: str | None = None,
    source: str = "ui",
) -> AcceptResult:
    """Turn the suggestions a rep ticked into that rep's corrections (marked as from a suggestion)."""
    rows = _checked(store, correction_id, suggestion_ids)
    ids = [int(r["id"]) for r in rows]
    # Claim them first (open → accepted), so two reps confirming the same
    # suggestions at once make one correction each, not two.
    with _writing(store) as conn:
        claimed = conn.execute(
            sa.update(_SUGGESTIONS)
            .where(_SUGGESTIONS.c.id.in_(ids), _SUGGESTIONS.c.status == "open")
            .values(status="accepted", decided_by=reviewer, decided_at=utc_now())
        ).rowcount
        if claimed != len(ids):
            raise StaleSuggestions(dict.fromkeys(ids, "another rep decided on these meanwhile"))
    results = []
    try:
        for r in rows:
            result = store.add_correction(
                r["lead_id"],
                r["field"],
                r["to_label"],
                reviewer=reviewer,
                kind="reclassify",
                reason=reason,
                note=note,
                source=source,
                prediction_id=r["prediction_id"],
                expected_label=r["from_label"],
                batch_id=batch_id,
                suggestion_id=int(r["id"]),
            )
            with _writing(store) as conn:
                conn.execute(
                    sa.update(_SUGGESTIONS)
                    .where(_SUGGESTIONS.c.id == r["id"])
                    .values(correction_id=result.id)
                )
            results.append(result)
    finally:
        # Whatever was not written goes back to open.
        unwritten = ids[len(results) :]
        if unwritten:
            with _writing(store) as conn:
                conn.execute(
                    sa.update(_SUGGESTIONS)
                    .where(_SUGGESTIONS.c.id.in_(unwritten), _SUGGESTIONS.c.correction_id.is_(None))
                    .values(status="open", decided_by=None, decided_at=None)
                )
    return AcceptResult(results, ids, batch_id)


def dismiss_suggestions(
    store: Store, correction_id: int, suggestion_ids: Iterable[int], *, reviewer: str
) -> list[int]:
    """Mark suggestions dismissed (no correction is written); returns their ids."""
    with _writing(store) as conn:
        rows = _in_set(conn, correction_id, suggestion_ids)
        if not rows:
            return []
        wanted = [int(r["id"]) for r in rows]
        stale = {
            r["id"]: f"{r['lead_id']} was {r['status']} already"
            for r in rows
            if r["status"] != "open"
        }
        if stale:
            raise StaleSuggestions(stale)
        conn.execute(
            sa.update(_SUGGESTIONS)
            .where(_SUGGESTIONS.c.id.in_(wanted), _SUGGESTIONS.c.status == "open")
            .values(status="dismissed", decided_by=reviewer, decided_at=utc_now())
        )
    return wanted
