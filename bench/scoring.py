"""In-process scoring: bulk throughput, reasons, and one-row reference points.

``python -m bench.scoring`` writes ``bench/results/scoring.json``.

On the demo champion of ``bench.serving`` (20,000 simulated leads; trained once
per version of the code), with its feature rows tiled to ``--rows`` rows:

* **bulk** (no reasons), all cores: ``LeadReadinessModel.predict_frame`` with the
  trees compiled to native code (``model.compiled``, when lleaves is installed)
  on all rows; ``predict_frame`` on LightGBM and raw ``booster.predict`` of both
  heads on a ``--lgbm-rows`` slice of the same rows (LightGBM is slow enough on
  a shared 2-core machine that a million rows would take most of the budget;
  throughput does not depend on the row count past one 50,000-row chunk); raw
  compiled scores on all rows;
* **reasons**: ``predict_frame(reasons=True)`` on 20,000 leads; reasons of one
  lead (``predict_records``) with path attribution vs TreeSHAP;
* **one row** (one thread): ``booster.predict`` on a numpy row vs a one-row
  DataFrame vs the sklearn-style ``HeadClassifier.predict_proba`` on the raw
  feature row, the compiled forest on the numpy row, and ``predict_records``.

Compared things run alternately (A B A B …); figures are min/median/max.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.common import summary, write_result
from bench.serving import champion_home

__all__ = ["main", "run", "summary_rows"]

#: Target of bulk scoring throughput on 2 cores.
TARGET_ROWS_PER_S = 100_000
#: Target for the reasons of one lead.
TARGET_REASONS_MS = 0.3


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _alternate(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """Run each function once per round, in turn (A B A B …); seconds per call."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(_timed(fn))
    return times


def _per_call_us(
    fns: dict[str, Callable[[], Any]], calls: int, block: int = 50
) -> dict[str, dict[str, float]]:
    """Median-friendly micro timings: blocks of ``block`` calls, alternating between functions."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm
    for _ in range(max(1, calls // block)):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(block):
                fn()
            samples[name].append((time.perf_counter() - start) / block * 1e6)
    return {name: summary(values) for name, values in samples.items()}


def _load(home: Path) -> tuple[Any, pd.DataFrame]:
    from leadready.commands.demo import DEMO_EXCLUDE
    from leadready.config import Settings
    from model import registry
    from model.features import build_features

    settings = Settings.for_home(home)
    registry.configure(settings.mlflow_tracking_uri, settings.artifact_root)
    model, _ = registry.load_model(f"models:/{settings.model_name}@champion")
    cache = home / "bench-features.parquet"
    if cache.exists():
        return model, pd.read_parquet(cache)
    leads = pd.read_parquet(home / "data" / "leads.parquet")
    events = pd.read_parquet(home / "data" / "events.parquet")
    features = build_features(
        leads.drop(columns=["stage", "persona"]),
        events,
        as_of=events["timestamp"].max().to_pydatetime(),
        config=model.feature_config,
        exclude=DEMO_EXCLUDE,
    )
    features.to_parquet(cache)
    return model, features


def _compiled_copy(model: Any, home: Path, sample: pd.DataFrame) -> tuple[Any, dict[str, Any]]:
    """``model`` on native code, and what happened.

    The champion loaded from the registry already scores with its ``compiled``
    artifact when it has one (``LeadReadinessModel.prepare`` in the pyfunc's
    ``load_context``, as ``leadready score`` and the API load it); a champion
    logged without it is compiled here once per champion.
    """
    from model import compiled

    info: dict[str, Any] = {"available": compiled.available()}
    if model.engine == "compiled":
        info["source"] = "the champion's compiled artifact (loaded with the model)"
        info["status"] = model.engine_status
        return model, info
    info["source"] = "compiled by the benchmark"
    copy = pickle.loads(pickle.dumps(model))
    if not info["available"]:
        info["status"] = {h: "lightgbm: lleaves is not installed" for h in copy.heads}
        return copy, info
    folder = home / "compiled"
    if not (folder / compiled.MANIFEST).exists():
        start = time.perf_counter()
        manifest = compiled.compile_model(model, folder, check_rows=sample)
        info["compile_seconds"] = round(time.perf_counter() - start, 1)
        info["manifest"] = manifest
    start = time.perf_counter()
    info["status"] = compiled.attach_compiled(copy, folder)
    info["load_seconds"] = round(time.perf_counter() - start, 2)
    return copy, info


def run(
    *, rows: int = 1_000_000, lgbm_rows: int = 50_000, rounds: int = 3, calls: int = 500
) -> dict[str, Any]:
    """Measure everything in the module docstring."""
    started = time.perf_counter()
    home, facts = champion_home()
    loaded, features = _load(home)
    native, compile_info = _compiled_copy(loaded, home, features.sample(256, random_state=0))
    # The LightGBM side: a copy without native code (it is never pickled).
    model = pickle.loads(pickle.dumps(loaded))
    model.prepare(None)
    cores = os.cpu_count() or 1
    for m in (model, native):
        for est in m.heads.values():
            est.num_threads = cores
            est.prepare_explanations()
    reps = -(-rows // len(features))
    big = pd.concat([features] * reps, ignore_index=True).head(rows)
    small = big.head(lgbm_rows)
    encoded_small = {h: est.encode(small) for h, est in model.heads.items()}
    encoded_big = {h: np.ascontiguousarray(est.encode(big)) for h, est in native.heads.items()}
    out: dict[str, Any] = {
        "config": {
            "rows": rows,
            "lgbm_rows": lgbm_rows,
            "rounds": rounds,
            "threads": cores,
            "champion_version": facts["version"],
            "load_average_at_start": os.getloadavg(),
            "trees": {h: est.booster_.num_trees() for h, est in model.heads.items()},
            "engine": native.engine,
            "encoded_features": {h: est.n_features_out_ for h, est in model.heads.items()},
        },
        "compiled": compile_info,
    }

    # ---- bulk
    def raw_lgbm() -> None:
        for h, est in model.heads.items():
            est.booster_.predict(encoded_small[h], raw_score=True, num_threads=cores)

    def raw_native() -> None:
        for h, est in native.heads.items():
            est._raw_logits(encoded_big[h], cores)

    fns: dict[str, Callable[[], Any]] = {
        "predict_frame_lightgbm": lambda: model.predict_frame(small, num_threads=cores),
        "booster_predict_raw": raw_lgbm,
    }
    sizes = {"predict_frame_lightgbm": lgbm_rows, "booster_predict_raw": lgbm_rows}
    if any(est.uses_compiled for est in native.heads.values()):
        fns["predict_frame_compiled"] = lambda: native.predict_frame(big, num_threads=cores)
        fns["compiled_predict_raw"] = raw_native
        sizes["predict_frame_compiled"] = rows
        sizes["compiled_predict_raw"] = rows
    times = _alternate(fns, rounds)
    bulk: dict[str, Any] = {}
    for name, secs in times.items():
        bulk[name] = {
            "rows": sizes[name],
            "seconds": summary(secs),
            "rows_per_s": summary([sizes[name] / s for s in secs]),
        }
    out["bulk"] = bulk
    a = native.predict_frame(small.head(5_000))
    b = model.predict_frame(small.head(5_000))
    numeric = [c for c in a.columns if a[c].dtype.kind == "f"]
    out["bulk_equal"] = {
        "max_abs_diff": float(np.nanmax(np.abs(a[numeric].to_numpy() - b[numeric].to_numpy()))),
        "labels_equal": bool((a.drop(columns=numeric) == b.drop(columns=numeric)).all().all()),
    }

    # ---- reasons
    twenty = features.head(20_000)
    times = _alternate(
        {"predict_frame_reasons_20k": lambda: native.predict_frame(twenty, reasons=True)}, rounds
    )
    out["reasons_20k"] = {
        "rows": len(twenty),
        "seconds": summary(times["predict_frame_reasons_20k"]),
    }
    records = features.head(1).to_dict("records")
    lead = records[0]
    for m in (model, native):
        for est in m.heads.values():
            est.num_threads = 1
    stage = model.heads["stage"]
    z1 = stage.encode_records([lead])
    index = stage.predict_proba_encoded(z1, num_threads=1).argmax(axis=1)
    out["reasons_one_lead_us"] = _per_call_us(
        {
            "path_both_heads": lambda: [
                est.class_contributions_encoded(
                    est.encode_records([lead]), np.zeros(1, int), num_threads=1, method="path"
                )
                for est in model.heads.values()
            ],
            "shap_both_heads": lambda: [
                est.class_contributions_encoded(
                    est.encode_records([lead]), np.zeros(1, int), num_threads=1, method="shap"
                )
                for est in model.heads.values()
            ],
        },
        calls=min(calls, 100),
        block=10,
    )
    out["predict_records_one_lead_us"] = _per_call_us(
        {
            "lightgbm_no_reasons": lambda: model.predict_records(records),
            "lightgbm_reasons": lambda: model.predict_records(records, reasons=True),
            "compiled_no_reasons": lambda: native.predict_records(records),
            "compiled_reasons": lambda: native.predict_records(records, reasons=True),
        },
        calls=calls,
    )

    # ---- one row, one thread
    row_np = np.ascontiguousarray(z1)
    row_df = pd.DataFrame(row_np, columns=[f"f{i}" for i in range(row_np.shape[1])])
    raw_row = features.head(1)
    one: dict[str, Callable[[], Any]] = {
        "booster_predict_numpy": lambda: stage.booster_.predict(
            row_np, raw_score=True, num_threads=1
        ),
        "booster_predict_dataframe": lambda: stage.booster_.predict(
            row_df, raw_score=True, num_threads=1
        ),
        "head_predict_proba_sklearn_style": lambda: stage.predict_proba(raw_row),
    }
    nstage = native.heads["stage"]
    if nstage.uses_compiled:
        one["compiled_predict_numpy"] = lambda: nstage._raw_logits(row_np, 1)
    out["one_row_us"] = _per_call_us(one, calls=calls)
    out["check"] = {"reasons_index": int(index[0])}
    best = bulk.get("predict_frame_compiled") or bulk["predict_frame_lightgbm"]
    rate = best["rows_per_s"]["median"]
    raw = bulk["booster_predict_raw"]["rows_per_s"]["median"]
    out["targets"] = {
        "bulk_rows_per_s": {"value": rate, "target": TARGET_ROWS_PER_S},
        "bulk_vs_raw_booster_predict": rate / raw if raw > 0 else None,
        "met": {"bulk_rows_per_s": rate >= TARGET_ROWS_PER_S},
    }
    out["seconds_total"] = round(time.perf_counter() - started, 1)
    out["load_average_at_end"] = os.getloadavg()
    return out


def _rate(fig: dict[str, Any]) -> str:
    r = fig["rows_per_s"]
    return f"{r['median']:,.0f} rows/s (min {r['min']:,.0f}, max {r['max']:,.0f}) on {fig['rows']:,} rows"


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Rows for ``bench/results/SUMMARY.md``."""
    rows: list[tuple[str, str, str]] = []
    bulk = result.get("bulk", {})
    threads = result.get("config", {}).get("threads")
    labels = {
        "predict_frame_compiled": "bulk predict_frame, compiled trees",
        "compiled_predict_raw": "bulk raw scores, compiled trees (both heads)",
        "predict_frame_lightgbm": "bulk predict_frame, LightGBM",
        "booster_predict_raw": "bulk raw booster.predict (both heads)",
    }
    for key, label in labels.items():
        if key in bulk:
            target = f"≥ {TARGET_ROWS_PER_S:,} rows/s" if key.startswith("predict_frame") else ""
            rows.append((f"{label}, {threads} threads", _rate(bulk[key]), target))
    targets = result.get("targets")
    if targets:
        met = targets["met"]["bulk_rows_per_s"]
        rows.append(
            (
                "bulk scoring (leadready score's predict_frame) vs target",
                f"{targets['bulk_rows_per_s']['value']:,.0f} rows/s = "
                f"{targets['bulk_rows_per_s']['value'] / TARGET_ROWS_PER_S:.2f}× the target; "
                f"{targets['bulk_vs_raw_booster_predict']:.1f}× raw booster.predict",
                f"≥ {TARGET_ROWS_PER_S:,} rows/s: {'met' if met else 'NOT met'}",
            )
        )
    if "reasons_20k" in result:
        s = result["reasons_20k"]["seconds"]
        rows.append(
            (
                "predict_frame with reasons, 20,000 leads",
                f"{s['median']:.2f} s (min {s['min']:.2f})",
                "well under 5 s",
            )
        )
    one = result.get("reasons_one_lead_us", {})
    if one:
        rows.append(
            (
                "reasons of one lead (both heads): path attribution vs TreeSHAP",
                f"{one['path_both_heads']['median'] / 1000:.3f} ms vs {one['shap_both_heads']['median'] / 1000:.2f} ms",
                f"< {TARGET_REASONS_MS} ms",
            )
        )
    rec = result.get("predict_records_one_lead_us", {})
    for key, fig in rec.items():
        rows.append(
            (f"predict_records, one lead, {key.replace('_', ' ')}", f"{fig['median']:.0f} µs", "")
        )
    for key, fig in result.get("one_row_us", {}).items():
        rows.append(
            (f"one row, stage head: {key.replace('_', ' ')}", f"{fig['median']:.0f} µs", "")
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scoring", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--lgbm-rows", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=500)
    args = parser.parse_args(argv)
    result = run(rows=args.rows, lgbm_rows=args.lgbm_rows, rounds=args.rounds, calls=args.calls)
    path = write_result("scoring", result)
    for figure, value, target in summary_rows(result):
        print(f"{figure}: {value}" + (f"  [target {target}]" if target else ""))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
