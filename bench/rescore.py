"""Re-scoring every stored lead after a promotion: 100,000 leads, target < 2 min on 2 cores.

``python -m bench.rescore [--leads 100000] [--batch-size 1000] [--no-pg]`` writes
``bench/results/rescore.json``.

Set-up (not timed): two versions of a model trained like the demo's champion
(simulated leads, LightGBM heads of up to 200 trees with early stopping, as
``leadready train`` fits them); the feature rows of 10,000 simulated leads,
repeated under new ids up to ``--leads``; every lead scored by version 1 and
stored through ``Store.record_predictions`` (the queue kept current), as the
API would have.

Timed: ``serve.rescore.rescore_to`` moving every stored lead to version 2 —
reading each batch's feature snapshots, scoring them with reasons (as the API
does) and recording the new predictions with the queue upkeep — on a SQLite
file and, when it answers, on PostgreSQL (``LEADREADY_BENCH_PG_URL``, default
the test server). Each figure gives the wall time and the CPU time (user +
sys) of this process; on SQLite the CPU time includes the database's own work,
on PostgreSQL the server's work is not in it. The machine is shared: the load
average at the start and at the end is in the result, to read the wall times
against.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
import uuid
from typing import Any

from bench.common import write_result

__all__ = ["main", "run", "summary_rows"]

_PG_URL = os.environ.get(
    "LEADREADY_BENCH_PG_URL",
    os.environ.get("LEADREADY_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
)
TARGET_SECONDS = 120.0


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _models(seed_leads: int = 10_000) -> tuple[Any, Any, Any]:
    """Two versions (different seeds) and the feature rows of ``seed_leads`` simulated leads."""
    from data.simulate import SimulationConfig, simulate
    from model.features import build_features
    from training.dataset import TrainingSet
    from training.train import TrainConfig, fit_lead_model

    sim = simulate(SimulationConfig(n_leads=seed_leads, seed=7))
    leads = sim.leads
    X = build_features(leads.drop(columns=["stage", "persona"]), sim.events, as_of=sim.config.end)
    X.index = X.index.astype(str)
    ids = X.index
    y_stage = leads.set_index(leads["lead_id"].astype(str))["stage"].loc[ids]
    y_persona = leads.set_index(leads["lead_id"].astype(str))["persona"].loc[ids]
    ts = TrainingSet(
        X=X,
        y_stage=y_stage,
        y_persona=y_persona,
        ids=ids,
        leads=X,
        slices=X[[]],
        source="bench",
        name="bench",
        id_col="lead_id",
    )
    out = []
    for seed in (1, 2):
        config = TrainConfig(leads_path="bench", tracking_uri="", seed=seed, label_noise="none")
        out.append(fit_lead_model(ts, config))
    return out[0], out[1], X


def _fill(store: Any, v1: Any, X: Any, n_leads: int) -> None:
    """Score the seed rows with version 1 once, store them under ``n_leads`` ids."""
    from serve.scoring import Prepared, prediction_rows, score

    records = [{k: v for k, v in r.items() if v == v} for r in X.to_dict("records")]
    base = [Prepared(index=i, lead_id=str(i), features=r) for i, r in enumerate(records)]
    rows = prediction_rows(
        base, score(base, v1), model_name="bench", model_version="1", source="api"
    )
    written = 0
    copy = 0
    while written < n_leads:
        take = min(len(rows), n_leads - written)
        batch = [{**row, "lead_id": f"L{copy:03d}-{row['lead_id']}"} for row in rows[:take]]
        for start in range(0, len(batch), 5000):
            store.record_predictions(batch[start : start + 5000])
        written += take
        copy += 1


def _backend(url: str, v1: Any, v2: Any, X: Any, n_leads: int, batch_size: int) -> dict[str, Any]:
    from data.rescore import version_counts
    from data.store import Store
    from serve.rescore import rescore_to

    store = Store(url)
    try:
        store.upgrade()
        t0 = time.perf_counter()
        _fill(store, v1, X, n_leads)
        fill_s = time.perf_counter() - t0
        assert version_counts(store).by_version == {"1": n_leads}
        wall0, cpu0 = time.perf_counter(), _cpu()
        result = rescore_to(store, v2, model_name="bench", version="2", batch_size=batch_size)
        wall, cpu = time.perf_counter() - wall0, _cpu() - cpu0
        counts = version_counts(store)
        return {
            "leads": n_leads,
            "rescored": result.rescored,
            "all_on_new_version": counts.by_version == {"2": n_leads},
            "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2),
            "leads_per_s_wall": round(n_leads / wall, 1),
            "setup_s": round(fill_s, 1),
            "batch_size": batch_size,
        }
    finally:
        store.dispose()


def run(n_leads: int = 100_000, batch_size: int = 1000, pg: bool = True) -> dict[str, Any]:
    """Both backends; see the module notes."""
    load_start = os.getloadavg()
    v1, v2, X = _models()
    backends: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="leadready-bench-rescore-") as tmp:
        backends["sqlite"] = _backend(
            f"sqlite:///{tmp}/leadready.db", v1, v2, X, n_leads, batch_size
        )
    if pg:
        import sqlalchemy as sa

        schema = f"bench_{uuid.uuid4().hex[:10]}"
        try:
            engine = sa.create_engine(_PG_URL)
            with engine.begin() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        except Exception as exc:  # no server: say so in the result
            backends["postgresql"] = {"skipped": f"{type(exc).__name__}: {exc}"[:200]}
        else:
            try:
                url = f"{_PG_URL}?options=-csearch_path%3D{schema}"
                backends["postgresql"] = _backend(url, v1, v2, X, n_leads, batch_size)
            finally:
                with engine.begin() as conn:
                    conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
                engine.dispose()
    return {
        "target_seconds": TARGET_SECONDS,
        "backends": backends,
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
    }


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, value, target) rows for ``bench/results/SUMMARY.md``."""
    rows = []
    for backend, fig in result.get("backends", {}).items():
        if "wall_s" not in fig:
            continue
        rows.append(
            (
                f"{backend}: re-score {fig['leads']:,} stored leads after a promotion",
                f"{fig['wall_s']:.1f} s wall, {fig['cpu_s']:.1f} s CPU",
                f"< {TARGET_SECONDS:.0f} s",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.leads, args.batch_size, pg=not args.no_pg)
    path = write_result("rescore", result)
    for row in summary_rows(result):
        print(" | ".join(row))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
