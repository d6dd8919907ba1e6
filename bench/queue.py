"""The review queue at 100,000 leads: page latency and the cost of keeping it current.

``python -m bench.queue [--leads 100000] [--runs 7] [--no-pg]`` writes
``bench/results/queue.json``.

For each backend (a SQLite file in a temporary folder; a throwaway schema on
the PostgreSQL server of ``LEADREADY_BENCH_PG_URL``, default the test server,
when it answers) it fills a store through the store's own write paths:

* ``--leads`` leads with companies and marketing's labels, drawn at random
  (so about three in four disagree with the model);
* one prediction per lead and a second one for ~30% of them (~1.3 predictions
  a lead), spread over 60 days, so some stage changes are recent;
* 2,000 reps' corrections.

Then it times (median of ``--runs``, after one warm-up call) the first page
(50 items) unfiltered, filtered by stage, filtered by ``reviewed=False``, a
search for a company, leads scored in the last 3 days, page 100, a page under
weights the store does not rank by (ranked at read time), and one lead's queue
item; and the cost of recording 20,000 predictions through
``Store.record_predictions`` (with the queue upkeep) against the bare bulk
insert of the same rows into ``predictions`` (the store's own
``_bulk_insert``, which is what ``record_predictions`` did before the queue was
materialized).

Each page figure carries the wall time (min / median / max) and the CPU time
of this process (median; on SQLite that includes the database's own work). The
machine is shared: the load average at the start and end of the run is in the
result, to read the wall times against.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from bench.common import repeat, summary, write_result

__all__ = ["main", "run", "summary_rows", "synthetic_predictions"]

NOW = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
STAGES = ("awareness", "consideration", "decision", "purchase")
PERSONAS = ("economic_buyer", "technical_evaluator", "practitioner", "non_buyer")
_PAGE = 50
#: The page figures of the summary, in order.
_PAGE_CASES = (
    "first_page",
    "first_page_learned",
    "stage_filter",
    "unreviewed",
    "search",
    "since",
    "page_100",
    "other_weights",
)
_RECORD_ROWS = 20_000
_PG_URL = os.environ.get(
    "LEADREADY_BENCH_PG_URL",
    os.environ.get("LEADREADY_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
)


def _head(rng: np.random.Generator, labels: tuple[str, ...], n: int) -> dict[str, Any]:
    """Probabilities (Dirichlet, some sharp, some flat), top label, confidence, margin."""
    alpha = rng.choice([0.3, 1.0, 3.0], size=(n, 1))
    probs = rng.gamma(np.broadcast_to(alpha, (n, len(labels))))
    probs = probs / probs.sum(axis=1, keepdims=True)
    order = np.argsort(-probs, axis=1)
    top = probs[np.arange(n), order[:, 0]]
    second = probs[np.arange(n), order[:, 1]]
    return {
        "probs": probs,
        "label": np.asarray(labels, dtype=object)[order[:, 0]],
        "confidence": top,
        "margin": top - second,
    }


def synthetic_predictions(
    lead_ids: list[str],
    *,
    seed: int,
    created_at: list[datetime],
    version: str = "1",
) -> list[dict[str, Any]]:
    """Prediction rows for ``Store.record_predictions`` (no feature snapshot)."""
    rng = np.random.default_rng(seed)
    n = len(lead_ids)
    stage = _head(rng, STAGES, n)
    persona = _head(rng, PERSONAS, n)
    rows = []
    for i, lead_id in enumerate(lead_ids):
        sp = stage["probs"][i]
        pp = persona["probs"][i]
        label = stage["label"][i]
        rows.append(
            {
                "lead_id": lead_id,
                "model_name": "lead-readiness",
                "model_version": version,
                "source": "batch",
                "created_at": created_at[i],
                "stage": label,
                "stage_confidence": float(stage["confidence"][i]),
                "stage_margin": float(stage["margin"][i]),
                "persona": persona["label"][i],
                "persona_confidence": float(persona["confidence"][i]),
                "persona_margin": float(persona["margin"][i]),
                "probabilities": {
                    "stage": {s: float(p) for s, p in zip(STAGES, sp, strict=True)},
                    "persona": {s: float(p) for s, p in zip(PERSONAS, pp, strict=True)},
                },
                "readiness": float(sp[2] + sp[3]),
                "route": "sales" if label in ("decision", "purchase") else "nurture",
            }
        )
    return rows


def _fill(store: Any, n_leads: int, *, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    ids = [f"L{i:07d}" for i in range(n_leads)]
    companies = [f"Company {i % (n_leads // 3 + 1):06d} GmbH" for i in range(n_leads)]
    companies[123] = "Zyxwv Analytics"
    start = time.perf_counter()
    store.upsert_leads(
        {
            "lead_id": lead_id,
            "company": companies[i],
            "job_title": "Head of Data",
            "marketing_stage": STAGES[int(rng.integers(len(STAGES)))],
            "marketing_persona": PERSONAS[int(rng.integers(len(PERSONAS)))],
        }
        for i, lead_id in enumerate(ids)
    )
    leads_s = time.perf_counter() - start
    days = rng.uniform(20, 60, size=n_leads)
    first_at = [NOW - timedelta(days=float(d)) for d in days]
    start = time.perf_counter()
    for lo in range(0, n_leads, 20_000):
        chunk = ids[lo : lo + 20_000]
        store.record_predictions(
            synthetic_predictions(chunk, seed=seed + 1 + lo, created_at=first_at[lo : lo + 20_000])
        )
    again = sorted(rng.choice(n_leads, size=int(n_leads * 0.3), replace=False))
    second_ids = [ids[i] for i in again]
    second_at = [NOW - timedelta(days=float(d)) for d in rng.uniform(0, 20, size=len(again))]
    for lo in range(0, len(second_ids), 20_000):
        store.record_predictions(
            synthetic_predictions(
                second_ids[lo : lo + 20_000],
                seed=seed + 7 + lo,
                created_at=second_at[lo : lo + 20_000],
                version="2",
            )
        )
    predictions_s = time.perf_counter() - start
    start = time.perf_counter()
    for i in rng.choice(n_leads, size=min(2000, n_leads), replace=False):
        store.add_correction(ids[int(i)], "stage", "decision", reviewer="bench")
    corrections_s = time.perf_counter() - start
    return {
        "leads": n_leads,
        "predictions": n_leads + len(second_ids),
        "corrections": min(2000, n_leads),
        "fill_seconds": {
            "upsert_leads": round(leads_s, 2),
            "record_predictions": round(predictions_s, 2),
            "add_correction_2000": round(corrections_s, 2),
        },
        "ids": ids,
    }


def _ms(stats: dict[str, float]) -> dict[str, float]:
    return {k: (round(v * 1000, 2) if k != "runs" else v) for k, v in stats.items()}


def _time(fn: Callable[[], Any], runs: int) -> dict[str, float]:
    fn()  # warm-up: plans, caches
    cpu: list[float] = []

    def timed() -> Any:
        start = time.process_time()
        out = fn()
        cpu.append(time.process_time() - start)
        return out

    stats, _ = repeat(timed, runs=runs)
    return {**_ms(stats), "cpu_median": round(statistics.median(cpu) * 1000, 2)}


def _pages(store: Any, runs: int) -> dict[str, Any]:
    from data.review_queue import QueueConfig, queue_item, review_queue

    other_weights = QueueConfig(w_mislabel=2.0)
    recent = NOW - timedelta(days=3)
    cases: dict[str, Callable[[], Any]] = {
        "first_page": lambda: review_queue(store, limit=_PAGE, now=NOW),
        "stage_filter": lambda: review_queue(store, limit=_PAGE, stage="purchase", now=NOW),
        "unreviewed": lambda: review_queue(store, limit=_PAGE, reviewed=False, now=NOW),
        "search": lambda: review_queue(store, limit=_PAGE, search="zyxwv", now=NOW),
        "since": lambda: review_queue(store, limit=_PAGE, since=recent, now=NOW),
        "page_100": lambda: review_queue(store, limit=_PAGE, offset=99 * _PAGE, now=NOW),
        "other_weights": lambda: review_queue(store, limit=_PAGE, config=other_weights, now=NOW),
        "queue_item": lambda: queue_item(store, "L0000042", now=NOW),
    }
    out: dict[str, Any] = {}
    for name, fn in cases.items():
        out[name] = _time(fn, runs)
        print(
            f"   {name:>13}: median {out[name]['median']:.1f} ms "
            f"(min {out[name]['min']:.1f}, cpu {out[name]['cpu_median']:.1f})",
            flush=True,
        )
    page = review_queue(store, limit=_PAGE, now=NOW)
    out["total"] = page.total
    out["first_ids"] = [item.lead_id for item in page.items[:5]]
    out.update(_learned(store, runs))
    return out


def _learned(store: Any, runs: int) -> dict[str, Any]:
    """After a refit of the adaptive queue: every key learned (``-3 p``), then the first page.

    The keys are random probabilities written by ``write_sort_keys`` (as
    :func:`training.learned_queue.refit_queue` writes them); the page then shows
    ``priority_method="learned"``, which costs a second pass of the formula over
    the page's rows.
    """
    import numpy as np

    from data.review_queue import LEARNED_KEY_SCALE, queue_frame, review_queue, write_sort_keys

    frame = queue_frame(store)
    rng = np.random.default_rng(7)
    keys = {
        str(i): -LEARNED_KEY_SCALE * float(p)
        for i, p in zip(frame.index, rng.uniform(0, 1, len(frame)), strict=True)
    }
    start = time.perf_counter()
    write_sort_keys(store, keys)
    write_s = time.perf_counter() - start
    page = review_queue(store, limit=_PAGE, now=NOW)
    assert {item.priority_method for item in page.items} == {"learned"}
    timed = _time(lambda: review_queue(store, limit=_PAGE, now=NOW), runs)
    print(
        f"   learned keys: wrote {len(keys):,} in {write_s:.1f} s; first page median "
        f"{timed['median']:.1f} ms (min {timed['min']:.1f}, cpu {timed['cpu_median']:.1f})",
        flush=True,
    )
    return {"first_page_learned": timed, "write_learned_keys_s": round(write_s, 2)}


def _record(store: Any, ids: list[str], runs: int) -> dict[str, Any]:
    """20,000 predictions: ``record_predictions`` against the bare insert of the same rows."""
    from data.store import PredictionRow
    from data.store.predictions import _prediction_values

    table = PredictionRow.__table__
    with_upkeep: list[float] = []
    bare: list[float] = []
    for run in range(runs):
        chunk = ids[run * _RECORD_ROWS % len(ids) :][:_RECORD_ROWS]
        at = [NOW - timedelta(hours=run)] * len(chunk)
        rows = synthetic_predictions(chunk, seed=100 + run, created_at=at, version="3")
        start = time.perf_counter()
        store.record_predictions(rows)
        with_upkeep.append(time.perf_counter() - start)
        rows = synthetic_predictions(chunk, seed=200 + run, created_at=at, version="3")
        start = time.perf_counter()
        values = [_prediction_values(row, i, NOW) for i, row in enumerate(rows, start=1)]
        store._write(lambda conn, values=values: store._bulk_insert(conn, table, values))
        bare.append(time.perf_counter() - start)
    upkeep = _ms(summary(with_upkeep))
    plain = _ms(summary(bare))
    return {
        "rows": min(_RECORD_ROWS, len(ids)),
        "record_predictions_ms": upkeep,
        "bare_insert_ms": plain,
        "overhead_ratio": round(upkeep["median"] / plain["median"], 2),
    }


@contextmanager
def _sqlite_store() -> Iterator[Any]:
    from data.store import Store

    folder = tempfile.mkdtemp(prefix="bench-queue-")
    store = Store(f"sqlite:///{folder}/store.db")
    try:
        store.upgrade()
        yield store
    finally:
        store.dispose()
        shutil.rmtree(folder, ignore_errors=True)


def _pg_reachable(url: str) -> bool:
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception:
        return False
    return True


@contextmanager
def _pg_store(url: str) -> Iterator[Any]:
    import sqlalchemy as sa

    from data.store import Store

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'create schema "{schema}"'))
    sep = "&" if "?" in url else "?"
    store = Store(f"{url}{sep}options=-csearch_path%3D{schema}")
    try:
        store.upgrade()
        yield store
    finally:
        store.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'drop schema "{schema}" cascade'))
        admin.dispose()


def _backend(name: str, store: Any, n_leads: int, runs: int) -> dict[str, Any]:
    print(f"== {name}: filling {n_leads} leads", flush=True)
    filled = _fill(store, n_leads)
    ids = filled.pop("ids")
    print(f"   filled in {filled['fill_seconds']}", flush=True)
    if store.dialect == "postgresql":
        import sqlalchemy as sa

        # What autovacuum does after a bulk load: statistics and the visibility
        # map (index-only scans need it).
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
    pages = _pages(store, runs)
    record = _record(store, ids, max(3, runs // 2))
    print(
        f"   record {record['rows']}: {record['record_predictions_ms']['median']:.0f} ms with upkeep, "
        f"{record['bare_insert_ms']['median']:.0f} ms bare",
        flush=True,
    )
    return {**filled, "pages_ms": pages, "record": record}


def run(n_leads: int = 100_000, runs: int = 7, pg: bool = True) -> dict[str, Any]:
    """Fill each reachable backend and time the queue; the result as written to JSON."""
    backends: dict[str, Any] = {}
    load_before = os.getloadavg()
    with _sqlite_store() as store:
        backends["sqlite"] = _backend("sqlite", store, n_leads, runs)
    if pg and _pg_reachable(_PG_URL):
        with _pg_store(_PG_URL) as store:
            backends["postgresql"] = _backend("postgresql", store, n_leads, runs)
    elif pg:
        print(f"   PostgreSQL does not answer at {_PG_URL}: skipped", flush=True)
    return {
        "leads": n_leads,
        "runs": runs,
        "page_size": _PAGE,
        "load_average": {"start": load_before, "end": os.getloadavg()},
        "backends": backends,
    }


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, value, target) rows for ``bench/results/SUMMARY.md``."""
    rows: list[tuple[str, str, str]] = []
    n = result.get("leads", 0)
    for backend, figures in result.get("backends", {}).items():
        pages = figures["pages_ms"]
        for name in _PAGE_CASES:
            if name not in pages:
                continue
            rows.append(
                (
                    f"{backend}: queue {name.replace('_', ' ')} at {n:,} leads",
                    f"{pages[name]['median']:.1f} ms (cpu {pages[name]['cpu_median']:.1f})",
                    "< 50 ms",
                )
            )
        rows.append(
            (
                f"{backend}: queue item of one lead",
                f"{pages['queue_item']['median']:.1f} ms",
                "< 50 ms",
            )
        )
        rec = figures["record"]
        rows.append(
            (
                f"{backend}: record {rec['rows']:,} predictions (with queue upkeep / bare insert)",
                f"{rec['record_predictions_ms']['median']:.0f} ms / "
                f"{rec['bare_insert_ms']['median']:.0f} ms",
                "upkeep ≤ 2x",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.queue", description=__doc__)
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    args = parser.parse_args(argv)
    result = run(args.leads, args.runs, pg=not args.no_pg)
    path = write_result("queue", result)
    for figure, value, target in summary_rows(result):
        print(f"{figure:<75} {value:>22}  {target}")
    print(f"wrote {path}")
    medians = [
        figures["pages_ms"][name]["median"]
        for figures in result["backends"].values()
        for name in _PAGE_CASES
    ]
    print(f"slowest page median: {max(medians):.1f} ms; all: {statistics.median(medians):.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
