"""The review queue: which scored leads a rep should check first, and why.

A human check is worth most where the model is most likely wrong, where being
wrong costs most, or where the label we train on is most likely wrong. Over the
**latest prediction of every lead** the queue scores:

close call
    a small margin between the two most probable stages (margin sampling, the
    classic active-learning signal); the persona margin counts half;
sales-ready, unsure
    a sales-ready stage predicted with low confidence: such a lead goes to a
    rep's calendar, so a wrong call costs most;
stage changed
    the latest prediction's stage differs from the previous prediction's, and
    the latest is recent: the lead moved, or the model wobbles;
possible mislabel
    the model gives marketing's own label a low probability (cleanlab's
    *self-confidence* label-quality score, read from the stored probabilities):
    either marketing mislabelled the lead, or the model is confidently wrong —
    both worth a look, and the answer becomes a training label.

``priority`` is a weighted sum of these strengths (:class:`QueueConfig`); each
item carries the reasons that fired, in words. Leads a rep has labelled (the
latest correction of a field is a rep's label) sink below all others unless
the caller filters on ``reviewed``.

Everything that orders or filters is computed in one SQL statement (SQLite and
PostgreSQL), using the store's indexes: ``predictions(lead_id, id)`` for the
latest and previous prediction of each lead and ``corrections(lead_id, field,
id)`` for the reviewed flag. Only the page of items is turned into Python
objects. No Flask: the review UI, the API (``GET /v1/review/queue``) and the
CLI (``leadready queue --top K``) call the same :func:`review_queue`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from data.schema import DEFAULT_PERSONAS, DEFAULT_SALES_READY_STAGES, DEFAULT_STAGES
from data.store import CorrectionRow, LeadRow, PredictionRow

__all__ = [
    "REASON_CODES",
    "QueueConfig",
    "QueueItem",
    "QueuePage",
    "QueueReason",
    "label_choices",
    "model_versions",
    "queue_facets",
    "queue_item",
    "review_queue",
]

#: Codes of the reasons a lead is in the queue, in the order they are listed.
REASON_CODES: tuple[str, ...] = (
    "possible_mislabel",
    "sales_ready_unsure",
    "close_call",
    "stage_changed",
    "possible_persona_mislabel",
    "persona_close_call",
)

_MAX_LIMIT = 1000

_P = PredictionRow.__table__
_L = LeadRow.__table__
_C = CorrectionRow.__table__


@dataclass(frozen=True)
class QueueConfig:
    """Thresholds (when a reason fires) and weights (how much it adds to the priority).

    Parameters
    ----------
    sales_ready_stages
        Stage labels that send a lead to sales.
    close_call_margin
        A stage (or persona) margin below this is a close call.
    sales_confidence
        A sales-ready prediction less sure than this is "sales-ready, unsure".
    mislabel_threshold
        Marketing's label is suspect when the model gives it less than this.
    changed_days
        A stage change counts when the latest prediction is at most this old.
    w_margin, w_persona_margin, w_sales, w_changed, w_mislabel, w_persona_mislabel
        Weights: ``w_margin * (1 - stage_margin) + w_persona_margin * (1 -
        persona_margin) + w_sales * (1 - stage_confidence) [sales-ready] +
        w_changed [stage changed] + w_mislabel * (1 - p(marketing stage))
        [below threshold] + w_persona_mislabel * (1 - p(marketing persona))
        [below threshold]``.
    """

    sales_ready_stages: tuple[str, ...] = DEFAULT_SALES_READY_STAGES
    close_call_margin: float = 0.15
    sales_confidence: float = 0.6
    mislabel_threshold: float = 0.2
    changed_days: float = 14.0
    w_margin: float = 1.0
    w_persona_margin: float = 0.5
    w_sales: float = 1.0
    w_changed: float = 0.75
    w_mislabel: float = 1.0
    w_persona_mislabel: float = 0.5

    def __post_init__(self) -> None:
        if isinstance(self.sales_ready_stages, str):
            raise ValueError("sales_ready_stages must be a sequence of labels, not one string")
        object.__setattr__(self, "sales_ready_stages", tuple(self.sales_ready_stages))
        for name in ("close_call_margin", "sales_confidence", "mislabel_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value!r}")
        if self.changed_days < 0:
            raise ValueError(f"changed_days must not be negative, got {self.changed_days!r}")


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


# ------------------------------------------------------------ SQL: one label's probability


class _LabelProbability(FunctionElement[float]):
    """``probabilities[head][label]`` as a float, NULL when absent.

    ``head`` is ``"stage"`` or ``"persona"`` (fixed by this module, never user
    input); ``label`` is a column expression, so labels with any characters work.
    """

    type = sa.Float()
    inherit_cache = True
    name = "label_probability"

    def __init__(self, probabilities: Any, head: str, label: Any) -> None:
        if head not in ("stage", "persona"):
            raise ValueError(f"head must be 'stage' or 'persona', got {head!r}")
        self.head = head
        super().__init__(probabilities, label)


@compiles(_LabelProbability)
def _label_probability_default(element: _LabelProbability, compiler: SQLCompiler, **kw: Any) -> str:
    """Readable SQL for ``str(statement)``; only SQLite and PostgreSQL can run it."""
    probabilities, label = (compiler.process(c, **kw) for c in element.clauses)
    return f"label_probability({probabilities}, '{element.head}', {label})"


@compiles(_LabelProbability, "sqlite")
def _label_probability_sqlite(element: _LabelProbability, compiler: SQLCompiler, **kw: Any) -> str:
    probabilities, label = (compiler.process(c, **kw) for c in element.clauses)
    # json_extract shares SQLite's per-statement parse cache between the stage and
    # persona look-ups; a label with a double quote cannot be written in a JSON
    # path, so such labels are looked up with json_each instead.
    return (
        f"(CASE WHEN instr({label}, '\"') = 0 "
        f"THEN json_extract({probabilities}, '$.{element.head}.\"' || {label} || '\"') "
        f"ELSE (SELECT lp.value FROM json_each({probabilities}, '$.{element.head}') AS lp"
        f" WHERE lp.key = {label}) END)"
    )


@compiles(_LabelProbability, "postgresql")
def _label_probability_pg(element: _LabelProbability, compiler: SQLCompiler, **kw: Any) -> str:
    probabilities, label = (compiler.process(c, **kw) for c in element.clauses)
    value = f"(CAST({probabilities} AS json) -> '{element.head}' -> {label})"
    return (
        f"(CASE WHEN json_typeof({value}) = 'number' "
        f"THEN CAST({value} #>> '{{}}' AS DOUBLE PRECISION) END)"
    )


# ------------------------------------------------------------------ the query


@contextlib.contextmanager
def _own(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # The planner overestimates the correlated look-ups and JIT-compiles
            # the ranking query, which costs more than it saves (about 1 s at
            # 100,000 leads). Local to this read-only transaction.
            conn.exec_driver_sql("SET LOCAL jit = off")
        yield conn


@contextlib.contextmanager
def _connection(source: Any) -> Iterator[Connection]:
    """A connection from a Store, an Engine, a Connection or an ORM Session."""
    if isinstance(source, Connection):
        yield source
        return
    if isinstance(source, Engine):
        with _own(source) as conn:
            yield conn
        return
    engine = getattr(source, "engine", None)
    if isinstance(engine, Engine) and not hasattr(source, "connection"):
        with _own(engine) as conn:
            yield conn
        return
    connection = getattr(source, "connection", None)
    if callable(connection):
        yield connection()
        return
    raise TypeError(
        f"expected a Store, an Engine, a Connection or a Session; got {type(source).__name__}"
    )


def _as_utc(value: datetime | date) -> datetime:
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _ts_param(conn: Connection, value: datetime) -> datetime:
    """A timestamp as the store keeps it: naive UTC on SQLite, aware elsewhere."""
    value = _as_utc(value)
    return value.replace(tzinfo=None) if conn.dialect.name == "sqlite" else value


def _like_pattern(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _columns(conn: Connection, config: QueueConfig, now: datetime) -> dict[str, Any]:
    """The expressions the priority needs, over ``p`` (latest prediction) and ``l`` (lead)."""
    p = _P.alias("p")
    prev = _P.alias("prev")
    lead = _L.alias("l")
    corr = _C.alias("c")
    newer = _C.alias("c2")
    cutoff = _ts_param(conn, now - timedelta(days=config.changed_days))
    previous_stage = (
        sa.select(prev.c.stage)
        .where(prev.c.lead_id == p.c.lead_id, prev.c.id < p.c.id)
        .order_by(prev.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    latest_correction = (
        sa.select(sa.func.max(newer.c.id))
        .where(newer.c.lead_id == corr.c.lead_id, newer.c.field == corr.c.field)
        .scalar_subquery()
    )
    reviewed = (
        sa.exists()
        .where(
            corr.c.lead_id == p.c.lead_id,
            corr.c.is_rep_label.is_(True),
            corr.c.id == latest_correction,
        )
        .correlate(p)
    )

    def marketing_probability(head: str) -> Any:
        # When marketing agrees with the model, p(marketing label) is the model's
        # confidence (a stored column): the JSON is read only for disagreements.
        label = lead.c[f"marketing_{head}"]
        return sa.case(
            (label.is_(None), sa.null()),
            (label == p.c[head], p.c[f"{head}_confidence"]),
            else_=_LabelProbability(p.c.probabilities, head, label),
        )

    return {
        "p": p,
        "l": lead,
        # Only recent predictions are compared with the one before them.
        "previous_stage": sa.case((p.c.created_at >= cutoff, previous_stage), else_=sa.null()),
        "p_marketing_stage": marketing_probability("stage"),
        "p_marketing_persona": marketing_probability("persona"),
        "reviewed": sa.case((reviewed, 1), else_=0),
    }


def _priority(q: Any, config: QueueConfig) -> Any:
    """The priority over the inner query's columns (each computed once there)."""
    zero = sa.literal(0.0)
    one = sa.literal(1.0)
    margin = sa.func.coalesce(q.c.stage_margin, one)
    persona_margin = sa.func.coalesce(q.c.persona_margin, one)
    ready = q.c.stage.in_(config.sales_ready_stages) if config.sales_ready_stages else sa.false()
    sales = sa.case(
        (sa.and_(ready, q.c.stage_confidence.is_not(None)), one - q.c.stage_confidence),
        else_=zero,
    )
    changed = sa.case(
        (sa.and_(q.c.previous_stage.is_not(None), q.c.previous_stage != q.c.stage), one),
        else_=zero,
    )
    threshold = sa.literal(config.mislabel_threshold)
    mislabel = sa.case((q.c.p_marketing_stage < threshold, one - q.c.p_marketing_stage), else_=zero)
    persona_mislabel = sa.case(
        (q.c.p_marketing_persona < threshold, one - q.c.p_marketing_persona), else_=zero
    )
    return (
        sa.literal(config.w_margin) * (one - margin)
        + sa.literal(config.w_persona_margin) * (one - persona_margin)
        + sa.literal(config.w_sales) * sales
        + sa.literal(config.w_changed) * changed
        + sa.literal(config.w_mislabel) * mislabel
        + sa.literal(config.w_persona_mislabel) * persona_mislabel
    )


def _filters(
    conn: Connection,
    p: Any,
    lead: Any,
    *,
    stage: str | None,
    persona: str | None,
    route: str | None,
    since: datetime | date | None,
    search: str | None,
    lead_id: str | None,
) -> list[Any]:
    where: list[Any] = []
    if stage:
        where.append(p.c.stage == stage)
    if persona:
        where.append(p.c.persona == persona)
    if route:
        where.append(p.c.route == route)
    if since is not None:
        where.append(p.c.created_at >= _ts_param(conn, _as_utc(since)))
    needle = (search or "").strip()
    if needle:
        pattern = _like_pattern(needle)
        where.append(
            sa.or_(
                sa.func.lower(p.c.lead_id).like(pattern, escape="\\"),
                sa.func.lower(lead.c.company).like(pattern, escape="\\"),
            )
        )
    if lead_id is not None:
        where.append(p.c.lead_id == lead_id)
    return where


def _latest_ids(lead_id: str | None) -> Any:
    """``max(id)`` per lead: a walk over the ``predictions(lead_id, id)`` index."""
    newest = sa.select(sa.func.max(_P.c.id).label("id"))
    if lead_id is not None:
        newest = newest.where(_P.c.lead_id == lead_id)
    return newest.group_by(_P.c.lead_id).subquery("latest")


def _run(
    conn: Connection,
    *,
    limit: int,
    offset: int,
    stage: str | None,
    persona: str | None,
    route: str | None,
    reviewed: bool | None,
    since: datetime | date | None,
    search: str | None,
    config: QueueConfig,
    now: datetime,
    lead_id: str | None = None,
    count: bool = True,
) -> QueuePage:
    """Rank in SQL over narrow rows, then read the page's full rows by primary key."""
    cols = _columns(conn, config, now)
    p, lead = cols["p"], cols["l"]
    latest = _latest_ids(lead_id)
    source = p.join(latest, p.c.id == latest.c.id).outerjoin(lead, lead.c.lead_id == p.c.lead_id)
    where = _filters(
        conn,
        p,
        lead,
        stage=stage,
        persona=persona,
        route=route,
        since=since,
        search=search,
        lead_id=lead_id,
    )
    inner = (
        sa.select(
            p.c.id,
            p.c.lead_id,
            p.c.stage,
            p.c.stage_confidence,
            p.c.stage_margin,
            p.c.persona_margin,
            cols["previous_stage"].label("previous_stage"),
            cols["p_marketing_stage"].label("p_marketing_stage"),
            cols["p_marketing_persona"].label("p_marketing_persona"),
            cols["reviewed"].label("reviewed"),
        )
        .select_from(source)
        .where(*where)
    )
    if reviewed is not None:
        inner = inner.where(cols["reviewed"] == (1 if reviewed else 0))
    q = inner.cte("q").prefix_with("MATERIALIZED")
    priority = _priority(q, config).label("priority")
    ranked = (
        conn.execute(
            sa.select(
                q.c.id,
                q.c.previous_stage,
                q.c.p_marketing_stage,
                q.c.p_marketing_persona,
                q.c.reviewed,
                priority,
            )
            .order_by(q.c.reviewed, priority.desc(), q.c.lead_id)
            .limit(limit)
            .offset(offset)
        )
        .mappings()
        .all()
    )

    items: list[QueueItem] = []
    if ranked:
        full = {
            row["prediction_id"]: row
            for row in conn.execute(
                sa.select(
                    _P.c.id.label("prediction_id"),
                    _P.c.lead_id,
                    _P.c.model_version,
                    _P.c.created_at.label("scored_at"),
                    _P.c.stage,
                    _P.c.stage_confidence,
                    _P.c.stage_margin,
                    _P.c.persona,
                    _P.c.persona_confidence,
                    _P.c.persona_margin,
                    _P.c.readiness,
                    _P.c.route,
                    _P.c.probabilities,
                    _L.c.company,
                    _L.c.job_title,
                    _L.c.marketing_stage,
                    _L.c.marketing_persona,
                )
                .select_from(_P.outerjoin(_L, _L.c.lead_id == _P.c.lead_id))
                .where(_P.c.id.in_([row["id"] for row in ranked]))
            ).mappings()
        }
        items = [_item({**full[row["id"]], **row}, config) for row in ranked]

    if not count:
        total = len(items)
    elif reviewed is None and not where:
        # Every scored lead: count the leads on the (lead_id, id) index alone.
        leads = sa.select(_P.c.lead_id).group_by(_P.c.lead_id).subquery()
        total = int(conn.execute(sa.select(sa.func.count()).select_from(leads)).scalar_one())
    elif reviewed is None:
        total_stmt = sa.select(sa.func.count()).select_from(source).where(*where)
        total = int(conn.execute(total_stmt).scalar_one())
    else:
        total = int(conn.execute(sa.select(sa.func.count()).select_from(q)).scalar_one())
    return QueuePage(items=items, total=total, limit=limit, offset=offset)


# --------------------------------------------------------------- rows → items


def _pct(value: float | None) -> str:
    return "?" if value is None else f"{value:.0%}"


def _runner_up(probabilities: Any, head: str, top: str | None) -> str | None:
    if not isinstance(probabilities, Mapping):
        return None
    probs = probabilities.get(head)
    if not isinstance(probs, Mapping):
        return None
    ranked = sorted(
        ((str(k), float(v)) for k, v in probs.items() if isinstance(v, int | float)),
        key=lambda kv: -kv[1],
    )
    others = [label for label, _ in ranked if label != top]
    return others[0] if others else None


def _reasons(row: Mapping[str, Any], config: QueueConfig) -> tuple[QueueReason, ...]:
    out: list[QueueReason] = []
    stage, persona = row["stage"], row["persona"]
    p_stage = _opt_float(row["p_marketing_stage"])
    p_persona = _opt_float(row["p_marketing_persona"])
    if p_stage is not None and p_stage < config.mislabel_threshold:
        out.append(
            QueueReason(
                "possible_mislabel",
                f"Marketing says {row['marketing_stage']}, but the model gives that only "
                f"{_pct(p_stage)} (it says {stage or '?'})",
            )
        )
    confidence = row["stage_confidence"]
    if (
        stage in config.sales_ready_stages
        and confidence is not None
        and confidence < config.sales_confidence
    ):
        out.append(
            QueueReason(
                "sales_ready_unsure",
                f"Would go to sales as {stage}, but the model is only {_pct(confidence)} sure",
            )
        )
    margin = row["stage_margin"]
    if margin is not None and margin < config.close_call_margin:
        other = _runner_up(row["probabilities"], "stage", stage)
        versus = f" and {other}" if other else " and the next stage"
        out.append(
            QueueReason(
                "close_call",
                f"Close call between {stage or '?'}{versus} ({margin:.0%} apart)",
            )
        )
    previous = row["previous_stage"]
    if previous is not None and previous != stage:
        out.append(
            QueueReason(
                "stage_changed",
                f"Stage changed from {previous} to {stage or '?'} in the latest scoring",
            )
        )
    if p_persona is not None and p_persona < config.mislabel_threshold:
        out.append(
            QueueReason(
                "possible_persona_mislabel",
                f"Marketing says {row['marketing_persona']}, but the model gives that only "
                f"{_pct(p_persona)} (it says {persona or '?'})",
            )
        )
    persona_margin = row["persona_margin"]
    if persona_margin is not None and persona_margin < config.close_call_margin:
        other = _runner_up(row["probabilities"], "persona", persona)
        versus = f" and {other}" if other else " and the next persona"
        out.append(
            QueueReason(
                "persona_close_call",
                f"Persona is a close call between {persona or '?'}{versus} "
                f"({persona_margin:.0%} apart)",
            )
        )
    return tuple(out)


def _opt_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _item(row: Mapping[str, Any], config: QueueConfig) -> QueueItem:
    return QueueItem(
        lead_id=row["lead_id"],
        prediction_id=int(row["prediction_id"]),
        model_version=row["model_version"],
        scored_at=_as_utc(row["scored_at"]),
        stage=row["stage"],
        stage_confidence=_opt_float(row["stage_confidence"]),
        stage_margin=_opt_float(row["stage_margin"]),
        persona=row["persona"],
        persona_confidence=_opt_float(row["persona_confidence"]),
        persona_margin=_opt_float(row["persona_margin"]),
        readiness=_opt_float(row["readiness"]),
        route=row["route"],
        company=row["company"],
        job_title=row["job_title"],
        marketing_stage=row["marketing_stage"],
        marketing_persona=row["marketing_persona"],
        previous_stage=row["previous_stage"],
        marketing_stage_probability=_opt_float(row["p_marketing_stage"]),
        marketing_persona_probability=_opt_float(row["p_marketing_persona"]),
        reviewed=bool(row["reviewed"]),
        priority=round(float(row["priority"] or 0.0), 6),
        reasons=_reasons(row, config),
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
    """The scored leads a rep should check first, most useful first.

    Parameters
    ----------
    store_or_session
        A :class:`data.store.Store`, a SQLAlchemy ``Engine``, ``Connection`` or
        ORM ``Session`` on the store's database.
    limit, offset
        Paging (``limit`` is capped at 1000).
    stage, persona, route
        Keep leads whose latest prediction has this stage, persona or route.
    reviewed
        True: only leads a rep has labelled; False: only the others; None: all,
        reviewed ones after the rest.
    since
        Keep leads whose latest prediction is at or after this time (a date
        means its midnight UTC).
    search
        Text found (case-insensitively) in the lead id or the company.
    config
        Thresholds and weights (default :class:`QueueConfig`).
    now
        The present, for "recent" stage changes (default: now).

    Returns
    -------
    QueuePage
        ``items`` ordered by (reviewed, priority descending, lead id) and
        ``total``, the number of leads matching the filters.

    Raises
    ------
    ValueError
        A negative ``limit`` or ``offset``.
    """
    if limit < 0 or offset < 0:
        raise ValueError(f"limit and offset must not be negative; got {limit}, {offset}")
    config = config or QueueConfig()
    now = _as_utc(now or datetime.now(UTC))
    with _connection(store_or_session) as conn:
        return _run(
            conn,
            limit=min(int(limit), _MAX_LIMIT),
            offset=int(offset),
            stage=stage or None,
            persona=persona or None,
            route=route or None,
            reviewed=reviewed,
            since=since,
            search=search,
            config=config,
            now=now,
        )


def queue_item(
    store_or_session: Any,
    lead_id: str,
    *,
    config: QueueConfig | None = None,
    now: datetime | None = None,
) -> QueueItem | None:
    """One lead as the queue shows it (latest prediction, priority, reasons), or None."""
    config = config or QueueConfig()
    now = _as_utc(now or datetime.now(UTC))
    with _connection(store_or_session) as conn:
        page = _run(
            conn,
            limit=1,
            offset=0,
            stage=None,
            persona=None,
            route=None,
            reviewed=None,
            since=None,
            search=None,
            config=config,
            now=now,
            lead_id=lead_id,
            count=False,
        )
    return page.items[0] if page.items else None


def queue_facets(store_or_session: Any) -> dict[str, list[str]]:
    """The stages, personas and routes the store's predictions use (for filter menus)."""
    out: dict[str, list[str]] = {}
    with _connection(store_or_session) as conn:
        for name in ("stage", "persona", "route"):
            column = _P.c[name]
            stmt = sa.select(column).where(column.is_not(None)).distinct()
            out[name] = sorted(str(v) for v in conn.execute(stmt).scalars())
    out["stage"] = _ordered(out["stage"], DEFAULT_STAGES)
    out["persona"] = _ordered(out["persona"], DEFAULT_PERSONAS)
    return out


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
    return [
        {
            **dict(row),
            "first_used": _as_utc(row["first_used"]) if row["first_used"] else None,
            "last_used": _as_utc(row["last_used"]) if row["last_used"] else None,
        }
        for row in rows
    ]
