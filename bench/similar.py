"""Suggestions ("leads like this one") at 100,000 scored leads: building one correction's
suggestions, and reading them back for a page.

``python -m bench.similar [--leads 100000] [--corrections 2000] [--runs 5]`` writes
``bench/results/similar.json``.

A SQLite store in a temporary folder is filled through the store's own write
paths: ``--leads`` leads, one prediction each with a feature snapshot of 60
numbers and the 6 categorical columns the model of corrections uses (about the
size of a real snapshot), served labels drawn at random; then ``--corrections``
reps' corrections of random leads, where a systematic mistake is planted
(students served *practitioner* are really *non_buyer*, and a rep says so) next
to confirmations. Then it times:

* ``build_model`` — :func:`training.similar.build_suggestions` for a fresh
  reclassify (practitioner → non_buyer) with no cached model of corrections:
  the queue frame, the fit on every reviewed lead, the probability of the same
  change for every unreviewed lead served practitioner (~25,000), storing the
  top 200. This is what the reclassify POST costs once every ``refit_every``
  corrections;
* ``build_cached`` — the same for further reclassifies while the fitted model
  is cached (what the POST costs otherwise);
* ``build_neighbours`` — the cold-start method (nearest neighbours) on the same
  leads;
* ``lead_block`` and ``suggestions_page`` — what a page view costs: reading a
  lead's sets with a 10-lead preview, and one set with its 200 leads.

Wall time (min / median / max over ``--runs``) and the CPU time of this
process; the load average at start and end is in the result (the machine is
shared). Precision of the planted mistake among the top 200 is reported too
(a sanity check of the ranking on synthetic data, not a quality figure).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from bench.common import write_result

__all__ = ["main", "run"]

NOW = datetime(2025, 6, 30, 12, 0, tzinfo=UTC)
STAGES = ("awareness", "consideration", "decision", "purchase")
PERSONAS = ("economic_buyer", "technical_evaluator", "practitioner", "non_buyer")
FUNCTIONS = ("engineering", "data", "it", "finance", "marketing", "student", "operations")
SENIORITY = ("junior", "mid", "senior", "head", "vp", "c_level")


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _fill(store: Any, n: int, n_corrections: int, seed: int) -> dict[str, Any]:
    from bench.queue import synthetic_predictions

    rng = np.random.default_rng(seed)
    ids = [f"L{i:07d}" for i in range(n)]
    function = rng.choice(FUNCTIONS, size=n, p=[0.25, 0.15, 0.1, 0.1, 0.1, 0.15, 0.15])
    start = time.perf_counter()
    store.upsert_leads(
        {
            "lead_id": lead_id,
            "company": f"Company {i % 30000:05d}",
            "job_title": "Student" if function[i] == "student" else "Engineer",
            "marketing_stage": STAGES[int(rng.integers(4))],
            "marketing_persona": "practitioner"
            if function[i] == "student"
            else PERSONAS[int(rng.integers(4))],
        }
        for i, lead_id in enumerate(ids)
    )
    numbers = rng.gamma(1.5, 2.0, size=(n, 60))
    for lo in range(0, n, 20_000):
        chunk = ids[lo : lo + 20_000]
        rows = synthetic_predictions(
            chunk, seed=seed + lo, created_at=[NOW - timedelta(days=3)] * len(chunk)
        )
        for k, row in enumerate(rows):
            i = lo + k
            if function[i] == "student":
                row["persona"] = "practitioner"
            row["features"] = {
                **{f"x{j:02d}": float(numbers[i, j]) for j in range(60)},
                "title_function": str(function[i]),
                "title_seniority": str(SENIORITY[i % 6]),
                "seniority": str(SENIORITY[(i // 6) % 6]),
                "department": "it" if i % 2 else "data",
                "lead_source": ("webinar", "ads", "referral")[i % 3],
                "industry": ("software", "finance", "retail", "health")[i % 4],
            }
        store.record_predictions(rows)
    fill_s = time.perf_counter() - start
    served = {
        r["lead_id"]: r["persona"] for r in store.latest_predictions(with_features=False).values()
    }
    start = time.perf_counter()
    reviewed = rng.choice(n, size=n_corrections, replace=False)
    for i in reviewed:
        lead_id = ids[int(i)]
        truth = "non_buyer" if function[int(i)] == "student" else served[lead_id]
        kind = "reclassify" if truth != served[lead_id] else "confirm"
        store.add_correction(lead_id, "persona", truth, reviewer="bench", kind=kind)
    corrections_s = time.perf_counter() - start
    return {
        "ids": ids,
        "function": function,
        "reviewed": {ids[int(i)] for i in reviewed},
        "served": served,
        "fill_seconds": {
            "leads_and_predictions": round(fill_s, 1),
            "corrections": round(corrections_s, 1),
        },
    }


def _timed(fn: Any) -> tuple[float, float, Any]:
    cpu, start = _cpu(), time.perf_counter()
    out = fn()
    return time.perf_counter() - start, _cpu() - cpu, out


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "min_ms": round(min(values) * 1000, 1),
        "median_ms": round(statistics.median(values) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
        "runs": len(values),
    }


def run(
    n_leads: int = 100_000, n_corrections: int = 2000, runs: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Fill a SQLite store, then time building and reading suggestions."""
    from data.store import Store
    from training.correction_model import CorrectionModelConfig
    from training.similar import (
        SimilarConfig,
        build_suggestions,
        forget_models,
        sets_for_lead,
        suggestion_set,
    )

    load_start = _load()
    folder = tempfile.mkdtemp(prefix="bench-similar-")
    store = Store(f"sqlite:///{folder}/store.db")
    try:
        store.upgrade()
        filled = _fill(store, n_leads, n_corrections, seed)
        fn = dict(zip(filled["ids"], filled["function"], strict=True))
        # Leads to reclassify: unreviewed students served practitioner, one per timed build.
        pool = [i for i in filled["ids"] if fn[i] == "student" and i not in filled["reviewed"]][
            : 3 * runs + 3
        ]

        def reclassify(lead_id: str) -> int:
            return store.add_correction(
                lead_id, "persona", "non_buyer", reviewer="bench", reason="student_job_seeker"
            ).id

        out: dict[str, Any] = {"leads": n_leads, "corrections": n_corrections, "seed": seed}
        cases: dict[str, dict[str, list[float]]] = {}
        precision = {}

        def record(name: str, wall: float, cpu: float) -> None:
            case = cases.setdefault(name, {"wall": [], "cpu": []})
            case["wall"].append(wall)
            case["cpu"].append(cpu)

        def top_precision(built: Any, k: int = 200) -> float:
            hits = [fn[i["lead_id"]] == "student" for i in built.items[:k]]
            return round(float(np.mean(hits)), 3) if hits else float("nan")

        model_sets = []
        for _ in range(runs):
            forget_models()
            cid = reclassify(pool.pop())
            wall, cpu, built = _timed(lambda cid=cid: build_suggestions(store, cid))
            record("build_model", wall, cpu)
            model_sets.append(built)
        for _ in range(runs):
            cid = reclassify(pool.pop())
            wall, cpu, built = _timed(
                lambda cid=cid: build_suggestions(store, cid, SimilarConfig(refit_every=10_000))
            )
            record("build_cached", wall, cpu)
        last = model_sets[-1]
        precision["correction_model"] = top_precision(last)
        out["top50_share_of_planted_mistake"] = {"correction_model": top_precision(last, 50)}
        out["correction_model_set"] = {
            "method": last.method,
            "n_candidates": last.n_candidates,
            "n_likely": last.n_likely,
            "n_reviewed": last.n_reviewed,
            "stored": len(last.items),
        }
        cold = SimilarConfig(model=CorrectionModelConfig(min_corrections=10**9))
        for _ in range(runs):
            forget_models()
            cid = reclassify(pool.pop())
            wall, cpu, built = _timed(lambda cid=cid: build_suggestions(store, cid, cold))
            record("build_neighbours", wall, cpu)
        precision["neighbours"] = top_precision(built)
        out["top50_share_of_planted_mistake"]["neighbours"] = top_precision(built, 50)
        out["neighbours_set"] = {"method": built.method, "n_candidates": built.n_candidates}
        lead = last.lead_id
        for _ in range(runs):
            wall, cpu, sets = _timed(lambda: sets_for_lead(store, lead))
            record("lead_block", wall, cpu)
            wall, cpu, one = _timed(lambda: suggestion_set(store, last.correction_id))
            record("suggestions_page", wall, cpu)
        out["cases"] = {
            name: {
                "wall": _stats(v["wall"]),
                "cpu_median_ms": round(statistics.median(v["cpu"]) * 1000, 1),
            }
            for name, v in cases.items()
        }
        out["top200_share_of_planted_mistake"] = precision
        out["base_rate_students_among_candidates"] = round(
            float(
                np.mean(
                    [
                        fn[i] == "student"
                        for i in filled["ids"]
                        if filled["served"][i] == "practitioner" and i not in filled["reviewed"]
                    ]
                )
            ),
            3,
        )
        out["fill_seconds"] = filled["fill_seconds"]
    finally:
        store.dispose()
        shutil.rmtree(folder, ignore_errors=True)
    out["load_average"] = {"start": load_start, "end": _load()}
    return out


def main(argv: list[str] | None = None) -> int:
    """Run and write ``bench/results/similar.json``."""
    parser = argparse.ArgumentParser(prog="python -m bench.similar", description=__doc__)
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--corrections", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="similar", help="result file name")
    args = parser.parse_args(argv)
    result = run(args.leads, args.corrections, args.runs, args.seed)
    path = write_result(args.name, result)
    for name, case in result["cases"].items():
        print(
            f"{name:18s} median {case['wall']['median_ms']:9.1f} ms wall, {case['cpu_median_ms']:9.1f} ms CPU"
        )
    print("top-200 share of the planted mistake:", result["top200_share_of_planted_mistake"])
    print(
        "base rate:", result["base_rate_students_among_candidates"], "load:", result["load_average"]
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
