"""The review queue: which scored leads a rep should check first, and why. A page reads
the ``lead_queue`` table the store keeps (:mod:`data.priority` builds its rows and holds
the one priority formula); the review UI, the API (``GET /v1/review/queue``) and the CLI
(``leadready queue --top K``) call the same :func:`review_queue`. How a page is planned
(index walks, read-time re-ranking) is in docs/design/data.md."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from data.priority import (
    PREDICTION_NUMBERS,
    RETRAINING_CONFIG,
    STORED_CONFIG,
    QueueConfig,
    marketing_probability,
    priority_scores,
    priority_sql,
    queue_rows,
    row_scores,
    runner_up,
)
from data.schema import DEFAULT_PERSONAS, DEFAULT_STAGES
from data.store import LeadRow, PredictionRow, QueueRow
from data.text import check_text, like_pattern
from data.values import as_utc, finite, percent, utc_now

__all__ = [
    "REASON_CODES",
    "RETRAINING_CONFIG",
    "STORED_CONFIG",
    "QueueConfig",
    "QueueItem",
    "QueuePage",
    "QueueReason",
    "label_choices",
    "marketing_probability",
    "model_versions",
    "priority_scores",
    "queue_facets",
    "queue_item",
    "queue_rows",
    "review_queue",
    "runner_up",
]

#: Codes of the reasons a lead is in the queue, in the order they are listed.
REASON_CODES: tuple[str, ...] = (
    "learned_wrong",
    "possible_mislabel",
    "sales_ready_unsure",
    "close_call",
    "stage_changed",
    "possible_persona_mislabel",
    "persona_close_call",
)

_MAX_LIMIT = 1000
#: A text search matching at most this many leads is ranked from one pass.
_SEARCH_ROWS = 5000

_P = PredictionRow.__table__
_L = LeadRow.__table__
_Q = QueueRow.__table__


@dataclass(frozen=True)
class QueueReason:
    """Why a lead is in the queue: a stable code and a sentence for a rep."""

    code: str
    text: str


@dataclass(frozen=True)
class QueueItem:
    """One lead in the queue: its latest prediction, profile basics, priority and reasons."""

    lead_id: str
    prediction_id: int
    model_version: str
    scored_at: datetime
    stage: str | None
    stage_confidence: float | None
    stage_margin: float | None
    persona: str | None
    persona_confidence: float | None
    persona_margin: float | None
    readiness: float | None
    route: str | None
    company: str | None
    job_title: str | None
    marketing_stage: str | None
    marketing_persona: str | None
    previous_stage: str | None
    marketing_stage_probability: float | None
    marketing_persona_probability: float | None
    reviewed: bool
    priority: float
    reasons: tuple[QueueReason, ...] = field(default=())
    #: ``"formula"`` (:func:`priority_scores`) or ``"learned"`` (after ``leadready queue
    #: --refit``: ``LEARNED_KEY_SCALE`` × ``p_wrong``); either way what the page is sorted by.
    priority_method: str = "formula"
    #: When learned: the estimated (discounted) probability that the served stage or
    #: persona is wrong; else None.
    p_wrong: float | None = None

    @property
    def reason_codes(self) -> tuple[str, ...]:
        """The codes of :attr:`reasons`."""
        return tuple(r.code for r in self.reasons)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: timestamps as ISO 8601, reasons as ``{"code", "text"}``."""
        out = asdict(self)
        out["scored_at"] = self.scored_at.isoformat()
        out["reasons"] = [asdict(r) for r in self.reasons]
        return out


@dataclass(frozen=True)
class QueuePage:
    """One page of the queue and the number of leads matching the filters."""

    items: list[QueueItem]
    total: int
    limit: int = 50
    offset: int = 0

    @property
    def has_next(self) -> bool:
        """True when leads remain after this page."""
        return self.offset + len(self.items) < self.total

    @property
    def has_previous(self) -> bool:
        """True when this is not the first page."""
        return self.offset > 0


#: ``sort_key = -LEARNED_KEY_SCALE * p`` after a refit of the adaptive queue
#: (:mod:`training.learned_queue`): on the scale of today's priorities, so the
#: read-time stage-change term keeps its weight.
LEARNED_KEY_SCALE = 3.0

# ------------------------------------------------------------------ connections


@contextlib.contextmanager
def _connection(source: Any) -> Iterator[Connection]:
    """A connection from a Store, an Engine, a Connection or an ORM Session."""
    if isinstance(source, Connection):
        yield source
    elif callable(getattr(source, "connection", None)):  # a Session
        yield source.connection()
    elif isinstance(getattr(source, "engine", None), Engine):  # an Engine's engine is itself
        with source.engine.connect() as conn:
            yield conn
    else:
        raise TypeError(
            f"expected a Store, an Engine, a Connection or a Session; got {type(source).__name__}"
        )


# ------------------------------------------------------------------ the query


@dataclass(frozen=True)
class _Page:
    """What a page asks for: its slice, the ranking, and since when a stage change is recent."""

    limit: int
    offset: int
    config: QueueConfig
    cutoff: datetime


def _contains(column: Any, pattern: str, dialect: str) -> Any:
    """``column`` contains the (lower-case) pattern, case-insensitively (SQLite's LIKE
    already folds ASCII case, as its ``lower()`` does; PostgreSQL: ``lower(column)``)."""
    if dialect == "sqlite":
        return column.like(pattern, escape="\\")
    return sa.func.lower(column).like(pattern, escape="\\")


def _filters(
    dialect: str,
    *,
    walking: bool,
    stage: str | None,
    persona: str | None,
    route: str | None,
    reviewed: bool | None,
    since: datetime | date | None,
    search: str | None,
) -> list[Any]:
    """The WHERE terms of the filters; ``walking``: for a walk of the rank indexes, where
    SQLite gets label terms no index can take (``coalesce(stage, '') = ?``: docs/design/data.md)."""
    where: list[Any] = []
    for column, value in ((_Q.c.stage, stage), (_Q.c.persona, persona), (_Q.c.route, route)):
        if value:
            padded = walking and dialect == "sqlite"
            where.append((sa.func.coalesce(column, "") if padded else column) == value)
    if reviewed is not None:
        where.append(_Q.c.reviewed == bool(reviewed))
    if since is not None:
        where.append(_Q.c.scored_at >= as_utc(since))
    needle = (search or "").strip()
    if needle:
        check_text(needle, "search")
        pattern = like_pattern(needle)
        where.append(
            sa.or_(
                _contains(_Q.c.lead_id, pattern, dialect),
                _contains(_Q.c.company, pattern, dialect),
            )
        )
    return where


def _stored_order_fits(config: QueueConfig) -> bool:
    """True when ``sort_key`` ranks as ``config`` does (the change term is added at read time)."""
    read_time = {"changed_days": 0.0, "w_changed": 0.0}
    return replace(config, **read_time) == replace(STORED_CONFIG, **read_time)


def _ranked_ids(conn: Connection, where: list[Any], page: _Page) -> list[str]:
    """The page's lead ids in the stored order, the change term applied at read time: the
    merge of two index walks, leads whose stage changed since ``cutoff`` and the others."""
    n = page.offset + page.limit
    order = (_Q.c.reviewed, _Q.c.sort_key, _Q.c.lead_id)

    def walk(condition: Any, shift: float) -> Any:
        key = _Q.c.sort_key - shift if shift else _Q.c.sort_key
        return (
            sa.select(_Q.c.lead_id, _Q.c.reviewed, key.label("key"))
            .where(*where, condition)
            .order_by(*order)
            .limit(n)
            .subquery()
        )

    changed = walk(_Q.c.changed_at >= page.cutoff, page.config.w_changed)
    others = walk(sa.or_(_Q.c.changed_at.is_(None), _Q.c.changed_at < page.cutoff), 0.0)
    merged = sa.union_all(sa.select(changed), sa.select(others)).subquery("ranked")
    stmt = (
        sa.select(merged.c.lead_id)
        .order_by(merged.c.reviewed, merged.c.key, merged.c.lead_id)
        .limit(page.limit)
        .offset(page.offset)
    )
    return list(conn.execute(stmt).scalars())


def _rows(conn: Connection, *where: Any) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(_Q).where(*where)).scalar_one())


def _searched_ids(conn: Connection, where: list[Any], page: _Page) -> tuple[list[str], int] | None:
    """A text search's page and total from one pass (its keys read and sorted here, the
    change term applied as the walks apply it), or None past :data:`_SEARCH_ROWS` matches."""
    rows = conn.execute(
        sa.select(_Q.c.lead_id, _Q.c.reviewed, _Q.c.sort_key, _Q.c.changed_at)
        .where(*where)
        .limit(_SEARCH_ROWS + 1)
    ).all()
    if len(rows) > _SEARCH_ROWS:
        return None

    def key(row: Any) -> tuple[bool, float, str]:
        changed = row.changed_at is not None and row.changed_at >= page.cutoff
        shift = page.config.w_changed if changed else 0.0
        return bool(row.reviewed), row.sort_key - shift, row.lead_id

    ranked = sorted(rows, key=key)[page.offset : page.offset + page.limit]
    return [row.lead_id for row in ranked], len(rows)


def _reranked_ids(conn: Connection, where: list[Any], page: _Page) -> tuple[list[str], int]:
    """The page's lead ids and the total under weights the stored order does not follow,
    ranked by :func:`data.priority.priority_sql`."""
    key = -priority_sql(_Q.c, page.config, _Q.c.changed_at >= page.cutoff)
    stmt = (
        sa.select(_Q.c.lead_id)
        .where(*where)
        .order_by(_Q.c.reviewed, key, _Q.c.lead_id)
        .limit(page.limit)
        .offset(page.offset)
    )
    return (list(conn.execute(stmt).scalars()) if page.limit else []), _rows(conn, *where)


def _page_rows(conn: Connection, lead_ids: Sequence[str]) -> dict[str, Mapping[str, Any]]:
    """The queue rows of these leads with the lead's job title, by lead id."""
    if not lead_ids:
        return {}
    stmt = (
        sa.select(_Q, _L.c.job_title)
        .select_from(_Q.outerjoin(_L, _L.c.lead_id == _Q.c.lead_id))
        .where(_Q.c.lead_id.in_(list(lead_ids)))
    )
    return {row["lead_id"]: row for row in conn.execute(stmt).mappings()}


def _run(conn: Connection, page: _Page, filters: dict[str, Any]) -> QueuePage:
    where = _filters(conn.dialect.name, walking=False, **filters)
    one_pass = None
    if not _stored_order_fits(page.config):
        one_pass = _reranked_ids(conn, where, page)
    elif (filters["search"] or "").strip():
        one_pass = _searched_ids(conn, where, page)
    if one_pass is not None:
        ids, total = one_pass
    else:
        walk = _filters(conn.dialect.name, walking=True, **filters)
        ids = _ranked_ids(conn, walk, page) if page.limit else []
        if filters["reviewed"] is False and len(where) == 1:
            # All rows minus the reviewed ones: both cheap, where counting the unreviewed
            # reads nearly every row.
            total = _rows(conn) - _rows(conn, _Q.c.reviewed == sa.true())
        else:
            total = _rows(conn, *where)
    rows = _page_rows(conn, ids)
    items = _items([rows[i] for i in ids if i in rows], page.config, page.cutoff)
    return QueuePage(items=items, total=total, limit=page.limit, offset=page.offset)


# --------------------------------------------------------------- rows → items


def _reasons(
    row: Mapping[str, Any], config: QueueConfig, previous: str | None
) -> tuple[QueueReason, ...]:
    """The reasons that fire for one queue row, in the order of :data:`REASON_CODES`."""
    stage, persona = row["stage"], row["persona"]
    p_stage, p_persona = finite(row["p_marketing_stage"]), finite(row["p_marketing_persona"])
    confidence = finite(row["stage_confidence"])
    margin, persona_margin = finite(row["stage_margin"]), finite(row["persona_margin"])
    out: list[QueueReason] = []
    if _below(p_stage, config.mislabel_threshold):
        text = _mislabel(row["marketing_stage"], p_stage, stage)
        out.append(QueueReason("possible_mislabel", text))
    if stage in config.sales_ready_stages and _below(confidence, config.sales_confidence):
        text = f"Would go to sales as {stage}, but the model is only {percent(confidence)} sure"
        out.append(QueueReason("sales_ready_unsure", text))
    if _below(margin, config.close_call_margin):
        text = "Close call between " + _versus(stage, row["stage_runner_up"], "stage", margin)
        out.append(QueueReason("close_call", text))
    if previous is not None and stage is not None and previous != stage:
        text = f"Stage changed from {previous} to {stage} in the latest scoring"
        out.append(QueueReason("stage_changed", text))
    if _below(p_persona, config.mislabel_threshold):
        text = _mislabel(row["marketing_persona"], p_persona, persona)
        out.append(QueueReason("possible_persona_mislabel", text))
    if _below(persona_margin, config.close_call_margin):
        other = _versus(persona, row["persona_runner_up"], "persona", persona_margin)
        text = "Persona is a close call between " + other
        out.append(QueueReason("persona_close_call", text))
    return tuple(out)


def _below(value: float | None, limit: float) -> bool:
    return value is not None and value < limit


def _mislabel(marketing: str | None, p: float | None, predicted: str | None) -> str:
    return (
        f"Marketing says {marketing}, but the model gives that only {percent(p)} "
        f"(it says {predicted or '?'})"
    )


def _versus(top: str | None, other: str | None, head: str, margin: float | None) -> str:
    versus = f" and {other}" if other else f" and the next {head}"
    return f"{top or '?'}{versus} ({margin:.0%} apart)"


def _items(
    rows: Sequence[Mapping[str, Any]], config: QueueConfig, cutoff: datetime
) -> list[QueueItem]:
    """Queue rows as items: the previous stage shows, and counts, only when recent. In the
    stored order an item's priority is the one it is sorted by (``-sort_key`` plus the
    change term); a key that is not today's formula is a refit's (``"learned"``)."""
    if not rows:
        return []
    recent = [as_utc(row["scored_at"]) >= cutoff for row in rows]
    previous = [row["previous_stage"] if r else None for row, r in zip(rows, recent, strict=True)]
    changed = [r and row["changed_at"] is not None for row, r in zip(rows, recent, strict=True)]
    scores = row_scores(rows, config, changed)
    learned = np.zeros(len(rows), dtype=bool)
    stored = np.full(len(rows), np.nan)
    if _stored_order_fits(config) and all("sort_key" in row for row in rows):
        stored = -np.asarray([float(row["sort_key"]) for row in rows])
        formula = row_scores(rows, config)
        learned = ~np.isclose(stored, formula, rtol=1e-9, atol=1e-12)
        change = np.where(np.asarray(changed, dtype=bool), config.w_changed, 0.0)
        scores = np.where(learned, stored + change, scores)
    parts = zip(rows, previous, scores, stored / LEARNED_KEY_SCALE, learned, strict=True)
    return [
        _item(row, prev, float(score), float(p_wrong) if is_learned else None, config)
        for row, prev, score, p_wrong, is_learned in parts
    ]


def _item(
    row: Mapping[str, Any],
    previous: str | None,
    score: float,
    p_wrong: float | None,
    config: QueueConfig,
) -> QueueItem:
    """One queue row as an item; ``p_wrong`` is set when its key is a learned one."""
    reasons = _reasons(row, config, previous)
    if p_wrong is not None:
        text = (
            "The model of reps' corrections puts the chance that this stage or "
            f"persona is wrong at {percent(p_wrong)}"
        )
        reasons = (QueueReason("learned_wrong", text), *reasons)
    numbers = {name: finite(row[name]) for name in PREDICTION_NUMBERS}
    names = ("stage", "persona", "route", "company", "job_title", "model_version")
    return QueueItem(
        lead_id=row["lead_id"],
        prediction_id=int(row["prediction_id"]),
        scored_at=as_utc(row["scored_at"]),
        **{name: row[name] for name in (*names, "marketing_stage", "marketing_persona")},
        **numbers,
        previous_stage=previous,
        marketing_stage_probability=finite(row["p_marketing_stage"]),
        marketing_persona_probability=finite(row["p_marketing_persona"]),
        reviewed=bool(row["reviewed"]),
        priority=round(score, 6),
        reasons=reasons,
        priority_method="formula" if p_wrong is None else "learned",
        p_wrong=None if p_wrong is None else round(p_wrong, 6),
    )


# ------------------------------------------------------------------- public API


def review_queue(
    store_or_session: Any,
    *,
    limit: int = 50,
    offset: int = 0,
    stage: str | None = None,
    persona: str | None = None,
    route: str | None = None,
    reviewed: bool | None = None,
    since: datetime | date | None = None,
    search: str | None = None,
    config: QueueConfig | None = None,
    now: datetime | None = None,
) -> QueuePage:
    """The scored leads a rep should check first, most useful first, as a :class:`QueuePage`
    (``items`` by reviewed, priority descending, lead id; ``total`` matching the filters).

    ``store_or_session`` is a :class:`data.store.Store`, an ``Engine``, ``Connection``
    or ``Session`` on its database; ``limit`` (at most 1000) and ``offset`` page
    (``ValueError`` when negative). Filters: ``stage``, ``persona``, ``route`` of the
    latest prediction; ``reviewed`` (True: only leads a rep labelled, False: only the
    others, None: all, reviewed ones last); ``since`` (scored at or after; a date is
    its midnight UTC); ``search`` (text in the lead id or company, any case).
    ``config`` defaults to :class:`QueueConfig`: with :data:`STORED_CONFIG`'s weights
    and thresholds (any ``changed_days``, ``w_changed``) a page is an index walk,
    others are ranked at read time. ``now`` (default now) decides which changes are recent.
    """
    if limit < 0 or offset < 0:
        raise ValueError(f"limit and offset must not be negative; got {limit}, {offset}")
    config = config or QueueConfig()
    cutoff = as_utc(now or utc_now()) - timedelta(days=config.changed_days)
    page = _Page(min(int(limit), _MAX_LIMIT), int(offset), config, cutoff)
    filters = dict(stage=stage or None, persona=persona or None, route=route or None)
    with _connection(store_or_session) as conn:
        return _run(conn, page, {**filters, "reviewed": reviewed, "since": since, "search": search})


def queue_item(
    store_or_session: Any,
    lead_id: str,
    *,
    config: QueueConfig | None = None,
    now: datetime | None = None,
) -> QueueItem | None:
    """One lead as the queue shows it (latest prediction, priority, reasons), or None."""
    config = config or QueueConfig()
    now = as_utc(now or utc_now())
    with _connection(store_or_session) as conn:
        rows = _page_rows(conn, [lead_id])
    if lead_id not in rows:
        return None
    return _items([rows[lead_id]], config, now - timedelta(days=config.changed_days))[0]


def _labels_in_use(conn: Connection, column: Any) -> list[str]:
    """Distinct non-null values of an indexed column, one index probe per value (a recursive
    "loose index scan": the smallest value, then the smallest one above it, and so on)."""
    seed = sa.select(sa.func.min(column).label("v")).where(column.is_not(None))
    found = seed.cte("found", recursive=True)
    following = sa.select(sa.func.min(column)).where(column > found.c.v).scalar_subquery()
    found = found.union_all(sa.select(following.label("v")).where(found.c.v.is_not(None)))
    stmt = sa.select(found.c.v).where(found.c.v.is_not(None))
    return [str(v) for v in conn.execute(stmt).scalars()]


def queue_facets(store_or_session: Any) -> dict[str, list[str]]:
    """The stages, personas and routes of the leads in the queue (for filter menus).

    The labels of each lead's latest prediction: exactly what the queue's
    filters can match.
    """
    known = {"stage": DEFAULT_STAGES, "persona": DEFAULT_PERSONAS, "route": ()}
    with _connection(store_or_session) as conn:
        return {
            name: _ordered(_labels_in_use(conn, _Q.c[name]), order) for name, order in known.items()
        }


def _ordered(labels: Sequence[str], known: Sequence[str]) -> list[str]:
    """Known labels in their natural order first, then the others alphabetically."""
    rank = {label: i for i, label in enumerate(known)}
    return sorted(set(labels), key=lambda x: (rank.get(x, len(rank)), x))


def label_choices(store_or_session: Any) -> dict[str, list[str]]:
    """The labels a rep can choose, per field: the newest prediction's classes.

    Stages and personas are learned from the data, so the choices are the keys of
    the newest stored prediction's probabilities; with no prediction (or no
    probabilities) the demo taxonomy of :mod:`data.schema`.
    """
    with _connection(store_or_session) as conn:
        probabilities = conn.execute(
            sa.select(_P.c.probabilities)
            .where(_P.c.probabilities.is_not(None))
            .order_by(_P.c.id.desc())
            .limit(1)
        ).scalar()
    out: dict[str, list[str]] = {}
    for head, default in (("stage", DEFAULT_STAGES), ("persona", DEFAULT_PERSONAS)):
        probs = probabilities.get(head) if isinstance(probabilities, Mapping) else None
        labels = [str(k) for k in probs] if isinstance(probs, Mapping) and probs else list(default)
        out[head] = _ordered(labels, default)
    return out


def model_versions(store_or_session: Any) -> list[dict[str, Any]]:
    """Model versions found in the stored predictions: count, first and last use.

    Newest use first; for the models page (which version scored how many leads).
    """
    stmt = (
        sa.select(
            _P.c.model_name,
            _P.c.model_version,
            sa.func.count().label("predictions"),
            sa.func.min(_P.c.created_at).label("first_used"),
            sa.func.max(_P.c.created_at).label("last_used"),
        )
        .group_by(_P.c.model_name, _P.c.model_version)
        .order_by(sa.func.max(_P.c.created_at).desc())
    )
    with _connection(store_or_session) as conn:
        rows = conn.execute(stmt).mappings().all()
    times = ("first_used", "last_used")
    return [{**row, **{t: row[t] and as_utc(row[t]) for t in times}} for row in rows]


# ------------------------------------------------ learned keys (docs/design/data.md)


def queue_frame(store_or_session: Any) -> Any:
    """Every ``lead_queue`` row as a DataFrame indexed by lead id, with ``base_priority``.

    ``base_priority`` is today's priority (:func:`priority_scores` under
    :data:`STORED_CONFIG`, without the stage-change term), recomputed from the
    row's terms: after a refit ``sort_key`` holds the learned ranking instead.
    """
    import pandas as pd

    columns = [c for c in _Q.c]
    with _connection(store_or_session) as conn:
        rows = conn.execute(sa.select(*columns)).mappings().all()
    frame = pd.DataFrame.from_records([dict(r) for r in rows], columns=[c.name for c in columns])
    frame["base_priority"] = row_scores(frame.to_dict("records"), STORED_CONFIG)
    return frame.set_index("lead_id")


def write_sort_keys(store_or_session: Any, keys: Mapping[str, float]) -> int:
    """Set ``lead_queue.sort_key`` of these leads (lower ranks first); returns rows written.

    One executemany in lead id order (concurrent writers lock rows in the
    same order as the store's own upserts).
    """
    if not keys:
        return 0
    stmt = (
        sa.update(_Q)
        .where(_Q.c.lead_id == sa.bindparam("k_lead_id"))
        .values(sort_key=sa.bindparam("k_sort_key"))
    )
    params = [
        {"k_lead_id": lead_id, "k_sort_key": float(keys[lead_id])} for lead_id in sorted(keys)
    ]
    if isinstance(store_or_session, Connection):
        store_or_session.execute(stmt, params)
    else:
        with store_or_session.engine.begin() as conn:  # an Engine's engine is itself
            conn.execute(stmt, params)
    return len(params)
