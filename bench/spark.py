"""Bulk scoring throughput: Spark local mode against in-process scoring, 100k and 1M rows.

``python -m bench.spark`` writes ``bench/results/spark.json``.

The model is a demo-sized champion (200 trees and 15 leaves per head, trained
on 20,000 simulated leads) registered in a throwaway SQLite MLflow registry.
The feature rows are real: ten simulations of 100,000 leads (seeds 1…10, ids
prefixed by seed) through ``model.features.build_features``, written as one
Parquet file per simulation with 50,000-row row groups (Spark splits a Parquet
file by row group, so this is what lets it use both cores). The 100k size is
the first file, the 1M size all ten.

Scoring through the pyfunc costs more than ``predict_frame`` alone: MLflow
enforces the input schema of the logged signature (every column optional and
of ``AnyType``) value by value in Python, which on this model's 80 columns
takes a third to three quarters of the pyfunc's predict time (more for object
columns than for pandas text columns). ``predict_frame`` alone is reported
beside the local end-to-end time so the gap is visible.

Timed, per size, end to end from Parquet to Parquet:

* ``local``: ``pandas.read_parquet`` → ``LeadReadinessModel.predict_frame`` (one
  call, LightGBM on every core) → ``to_parquet`` of the input with the
  predictions; ``predict_frame`` alone is reported too;
* ``spark``: ``training.spark.score_spark`` (``mlflow.pyfunc.spark_udf``,
  ``env_manager="local"``) in a ``local[2]`` session, model resolution and the
  count of routes included. The session start and a first (cold) run, which
  starts the Python workers and loads the model in them, are reported apart
  from the warm runs.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from bench.common import peak_rss_mb, repeat, summary, write_result

__all__ = ["SIZES", "main", "make_features", "run", "summary_rows", "train_champion"]

#: Rows scored per size.
SIZES: tuple[int, ...] = (100_000, 1_000_000)
_PART_ROWS = 100_000
_ROW_GROUP = 50_000
_MODEL_NAME = "lead-readiness"


def make_features(folder: Path, n_rows: int) -> list[Path]:
    """Feature rows of ``n_rows`` simulated leads, one Parquet file per 100,000.

    Returns
    -------
    list of Path
        The files, in seed order.
    """
    from data.simulate import SimulationConfig, simulate
    from model.features import build_features

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(1, -(-n_rows // _PART_ROWS) + 1):
        sim = simulate(SimulationConfig(n_leads=_PART_ROWS, seed=seed))
        features = build_features(
            sim.leads.drop(columns=["stage", "persona"]), sim.events, as_of=sim.config.end
        ).reset_index()
        features["lead_id"] = f"s{seed}-" + features["lead_id"].astype(str)
        path = folder / f"part-{seed:02d}.parquet"
        features.to_parquet(path, index=False, row_group_size=_ROW_GROUP)
        paths.append(path)
    return paths


def train_champion(root: Path) -> tuple[str, str]:
    """Fit the demo-sized model, register it as champion in a SQLite registry under ``root``.

    Returns
    -------
    (str, str)
        The tracking URI and the pinned model URI.
    """
    import mlflow

    from data.simulate import SimulationConfig, simulate
    from model import registry
    from model.classifier import HeadClassifier, TwoHeadClassifier
    from model.features import FeatureConfig, build_features
    from model.package import LeadReadinessModel
    from model.pyfunc import log_model

    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    registry.configure(tracking_uri, root / "artifacts")
    sim = simulate(SimulationConfig(n_leads=20_000, seed=100))
    leads = sim.leads
    features = build_features(
        leads.drop(columns=["stage", "persona"]), sim.events, as_of=sim.config.end
    )
    head = HeadClassifier(n_estimators=200, num_leaves=15, random_state=0)
    clf = TwoHeadClassifier(stage_estimator=head, persona_estimator=head)
    clf.fit(features, leads["stage"].to_numpy(), leads["persona"].to_numpy())
    model = LeadReadinessModel(
        clf, input_columns=list(features.columns), feature_config=FeatureConfig()
    )
    with mlflow.start_run(run_name="bench-spark"):
        info = log_model(model, registered_model_name=_MODEL_NAME, input_example=features.head(3))
    version = str(info.registered_model_version)
    registry.set_alias(_MODEL_NAME, "champion", version)
    return tracking_uri, f"models:/{_MODEL_NAME}/{version}"


def _local(model: Any, paths: list[Path], out: Path) -> dict[str, float]:
    """Parquet → predict_frame → Parquet in this process; seconds of each step."""
    start = time.perf_counter()
    frame = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    read = time.perf_counter()
    scored = model.predict_frame(frame.set_index("lead_id"))
    predicted = time.perf_counter()
    pd.concat([frame, scored.reset_index(drop=True)], axis=1).to_parquet(out, index=False)
    done = time.perf_counter()
    return {"read": read - start, "predict": predicted - read, "total": done - start}


def run(sizes: tuple[int, ...] = SIZES, runs: int = 2, master: str = "local[2]") -> dict[str, Any]:
    """Time local and Spark scoring at each size.

    Parameters
    ----------
    sizes : tuple of int
        Row counts (multiples of 100,000).
    runs : int
        Warm repetitions per size and engine.
    master : str
        Spark master of the session.

    Returns
    -------
    dict
        The result written to ``bench/results/spark.json``.
    """
    from model.registry import load_model
    from training.spark import local_session, score_spark

    tmp = Path(tempfile.mkdtemp(prefix="bench-spark-"))
    try:
        prep = time.perf_counter()
        paths = make_features(tmp / "features", max(sizes))
        tracking_uri, model_uri = train_champion(tmp / "mlflow")
        model, _ = load_model(model_uri)
        prepare_seconds = time.perf_counter() - prep

        start = time.perf_counter()
        spark = local_session(
            master,
            app_name="bench-spark",
            driver_memory="6g",
            shuffle_partitions=8,
            local_dir=tmp / "spark",
        )
        session_seconds = time.perf_counter() - start
        results: dict[str, Any] = {}
        try:
            for size in sorted(sizes):
                files = paths[: size // _PART_ROWS]
                folder = tmp / f"in-{size}"
                folder.mkdir()
                for p in files:
                    shutil.copy(p, folder / p.name)

                def spark_once(folder: Path = folder, size: int = size) -> Any:
                    return score_spark(
                        spark,
                        folder,
                        tmp / f"spark-out-{size}",
                        model_uri=model_uri,
                        features_ready=True,
                    )

                cold_seconds = None
                if not results:  # the first run starts the Python workers, loads the model
                    cold_start = time.perf_counter()
                    spark_once()
                    cold_seconds = time.perf_counter() - cold_start
                spark_seconds, last = repeat(spark_once, runs)
                assert last.rows == size, (last.rows, size)

                local_runs = [
                    _local(model, files, tmp / f"local-{size}.parquet") for _ in range(runs)
                ]
                local_total = summary([r["total"] for r in local_runs])
                local_predict = summary([r["predict"] for r in local_runs])
                results[str(size)] = {
                    "rows": size,
                    "input_files": len(files),
                    "spark": {
                        "seconds": spark_seconds,
                        "rows_per_second": round(size / spark_seconds["median"]),
                        "first_run_seconds": cold_seconds,
                        "routes": last.routes,
                    },
                    "local": {
                        "seconds": local_total,
                        "rows_per_second": round(size / local_total["median"]),
                        "predict_frame_seconds": local_predict,
                        "predict_frame_rows_per_second": round(size / local_predict["median"]),
                    },
                }
        finally:
            spark.stop()
        small, large = (results[str(s)] for s in (min(sizes), max(sizes)))
        scale = max(sizes) / min(sizes)
        return {
            "master": master,
            "model": {"uri": model_uri, "trees_per_head": 200, "num_leaves": 15},
            "n_input_columns": len(model.input_columns),
            "runs": runs,
            "prepare_seconds": round(prepare_seconds, 1),
            "session_start_seconds": round(session_seconds, 1),
            "sizes": results,
            "scaling": {
                "rows_factor": scale,
                "spark_time_factor": round(
                    large["spark"]["seconds"]["median"] / small["spark"]["seconds"]["median"], 2
                ),
                "local_time_factor": round(
                    large["local"]["seconds"]["median"] / small["local"]["seconds"]["median"], 2
                ),
            },
            "spark_vs_local_at_largest": round(
                large["spark"]["rows_per_second"] / large["local"]["rows_per_second"], 2
            ),
            "peak_rss_mb_driver_python": round(peak_rss_mb(), 1),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, value, target) rows for ``bench/results/SUMMARY.md``."""
    rows: list[tuple[str, str, str]] = []
    master = result.get("master", "local[2]")
    for size, entry in sorted(result["sizes"].items(), key=lambda kv: int(kv[0])):
        n = f"{int(size):,}"
        spark_s = entry["spark"]["seconds"]["median"]
        local_s = entry["local"]["seconds"]["median"]
        rows.append(
            (
                f"Spark {master} scoring, {n} feature rows (Parquet → Parquet)",
                f"{entry['spark']['rows_per_second']:,} rows/s ({spark_s:.1f} s)",
                "1M rows < 10 min on 2 cores" if int(size) >= 1_000_000 else "",
            )
        )
        rows.append(
            (
                f"in-process scoring, {n} feature rows (Parquet → Parquet)",
                f"{entry['local']['rows_per_second']:,} rows/s ({local_s:.1f} s)",
                "",
            )
        )
    scaling = result["scaling"]
    rows.append(
        (
            f"time ×{scaling['rows_factor']:g} rows: Spark / in-process",
            f"×{scaling['spark_time_factor']} / ×{scaling['local_time_factor']}",
            f"≈ ×{scaling['rows_factor']:g} (linear)",
        )
    )
    rows.append(
        (
            "Spark session start / first run at 100k (workers, model load)",
            f"{result['session_start_seconds']} s / "
            f"{result['sizes'][str(min(int(s) for s in result['sizes']))]['spark']['first_run_seconds']:.1f} s",
            "",
        )
    )
    return rows


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and write ``bench/results/spark.json``."""
    parser = argparse.ArgumentParser(prog="python -m bench.spark", description=__doc__)
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=list(SIZES), help="rows per size (×100,000)"
    )
    parser.add_argument("--runs", type=int, default=2, help="warm runs per size and engine")
    parser.add_argument("--master", default="local[2]", help="Spark master")
    args = parser.parse_args(argv)
    # PySpark 4 warns on every pandas conversion that it does not fully support pandas 3.
    warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
    if any(s % _PART_ROWS or s <= 0 for s in args.sizes):
        parser.error(f"sizes must be positive multiples of {_PART_ROWS:,}")
    result = run(tuple(args.sizes), args.runs, args.master)
    path = write_result("spark", result)
    for figure, value, target in summary_rows(result):
        print(f"{figure}: {value}" + (f"  (target: {target})" if target else ""))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
