"""Bulk scoring throughput: Spark local mode against `leadready score`, 100k and 1M rows.

``python -m bench.spark [--sizes 100000,1000000] [--runs N]`` writes
``bench/results/spark.json``.

The model is a demo-sized champion (200 trees and 15 leaves per head, trained
on 20,000 simulated leads) registered in a throwaway SQLite MLflow registry as
a model of a ready feature table (no feature config), so both engines score
the rows exactly as they are. The rows are real feature rows: simulations of
100,000 leads (seeds 1, 2, …, ids prefixed by seed) through
``model.features.build_features``, one Parquet file per simulation with
50,000-row row groups (Spark splits a Parquet file by row group, so this is
what lets it use both cores). A size of N rows is the first N / 100,000 files.

Timed, per size, end to end from Parquet to Parquet on the same rows:

* ``local``: the ``leadready score --in rows.parquet --out scored.parquet
  --model URI`` command in a subprocess (the files of the size streamed into
  one Parquet file first, untimed), chunks of 50,000 rows in one process: its
  wall time (Python start and model load included), the time it reports for
  the scoring itself, and its peak RSS (``os.wait4``);
* ``spark``: ``training.spark.score_spark`` (``mlflow.pyfunc.spark_udf``,
  ``env_manager="local"``) in a ``local[2]`` session, model resolution and the
  count of routes included. The session start and a first (cold) run, which
  starts the Python workers and loads the model in them, are reported apart
  from the warm runs.

``scaling`` gives, for each engine, the time factor and rows/s from the
smallest to the largest size (linear scaling: time factor = rows factor).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from bench.common import peak_rss_mb, repeat, summary, write_result

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["SIZES", "main", "make_features", "run", "summary_rows", "train_champion"]

#: Rows scored per size.
SIZES: tuple[int, ...] = (100_000, 1_000_000)
_PART_ROWS = 100_000
_ROW_GROUP = 50_000
_MODEL_NAME = "lead-readiness"


def make_features(folder: Path, n_rows: int) -> list[Path]:
    """Feature rows of ``n_rows`` simulated leads, one Parquet file per 100,000.

    Below 100,000 rows, one file of ``n_rows`` leads.

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
        sim = simulate(SimulationConfig(n_leads=min(_PART_ROWS, n_rows), seed=seed))
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
    from model.features import build_features
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
    # A model of a ready feature table: both engines score the feature rows as they are.
    model = LeadReadinessModel(clf, input_columns=list(features.columns), feature_config=None)
    with mlflow.start_run(run_name="bench-spark"):
        info = log_model(model, registered_model_name=_MODEL_NAME, input_example=features.head(3))
    version = str(info.registered_model_version)
    registry.set_alias(_MODEL_NAME, "champion", version)
    return tracking_uri, f"models:/{_MODEL_NAME}/{version}"


def _one_file(paths: list[Path], out: Path) -> None:
    """Stream Parquet files with one schema into one file (``leadready score`` reads files)."""
    import pyarrow.parquet as pq

    writer = None
    try:
        for path in paths:
            source = pq.ParquetFile(path)
            for group in range(source.num_row_groups):
                table = source.read_row_group(group)
                if writer is None:
                    writer = pq.ParquetWriter(out, table.schema)
                writer.write_table(table, row_group_size=_ROW_GROUP)
    finally:
        if writer is not None:
            writer.close()


_REPORTED = re.compile(r"scored ([\d,]+) rows .*?\(([\d.]+) s, ([\d,]+) rows/s\)", re.S)


def _local_command(
    rows_file: Path, out: Path, *, tracking_uri: str, model_uri: str, home: Path
) -> dict[str, Any]:
    """``leadready score`` in a subprocess: wall seconds, its own seconds, peak RSS."""
    env = {**os.environ, "LEADREADY_HOME": str(home), "MLFLOW_TRACKING_URI": tracking_uri}
    env["COLUMNS"] = "400"  # one line per message, so the summary line parses
    cmd = [sys.executable, "-m", "leadready", "score", "--in", str(rows_file), "--out", str(out)]
    cmd += ["--model", model_uri]
    log = out.with_suffix(".log")
    start = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=fh)
        _, status, rusage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = log.read_text()
    if proc.returncode != 0:
        raise RuntimeError(f"leadready score failed ({proc.returncode}):\n{stderr[-3000:]}")
    peak = rusage.ru_maxrss / 1024
    found = _REPORTED.search(stderr)
    if found is None:
        raise RuntimeError(f"no summary line in the output of leadready score:\n{stderr[-3000:]}")
    return {
        "wall": wall,
        "reported": float(found.group(2)),
        "rows": int(found.group(1).replace(",", "")),
        "peak_rss_mb": round(peak, 1),
    }


def run(sizes: tuple[int, ...] = SIZES, runs: int = 1, master: str = "local[2]") -> dict[str, Any]:
    """Time ``leadready score`` and Spark scoring on the same rows at each size.

    Parameters
    ----------
    sizes : tuple of int
        Row counts (multiples of 100,000, or one size below 100,000).
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

    sizes = tuple(sorted(set(sizes)))
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
            for size in sizes:
                files = paths[: max(size // _PART_ROWS, 1)]
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
                    )

                cold_seconds = None
                if not results:  # the first run starts the Python workers, loads the model
                    cold_start = time.perf_counter()
                    spark_once()
                    cold_seconds = time.perf_counter() - cold_start
                spark_seconds, last = repeat(spark_once, runs)
                assert last.rows == size, (last.rows, size)
                shutil.rmtree(tmp / f"spark-out-{size}", ignore_errors=True)

                rows_file = tmp / f"rows-{size}.parquet"
                _one_file(files, rows_file)
                local_runs = [
                    _local_command(
                        rows_file,
                        tmp / f"local-{size}.parquet",
                        tracking_uri=tracking_uri,
                        model_uri=model_uri,
                        home=tmp / "home",
                    )
                    for _ in range(runs)
                ]
                assert all(r["rows"] == size for r in local_runs), local_runs
                rows_file.unlink()
                (tmp / f"local-{size}.parquet").unlink(missing_ok=True)
                local_wall = summary([r["wall"] for r in local_runs])
                local_own = summary([r["reported"] for r in local_runs])
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
                        "command": "leadready score --in rows.parquet --out scored.parquet "
                        "--model URI (chunks of 50,000)",
                        "seconds": local_wall,
                        "rows_per_second": round(size / local_wall["median"]),
                        "scoring_seconds_reported": local_own,
                        "scoring_rows_per_second_reported": round(size / local_own["median"]),
                        "peak_rss_mb": max(r["peak_rss_mb"] for r in local_runs),
                    },
                }
        finally:
            spark.stop()
        return {
            "master": master,
            "model": {
                "uri": model_uri,
                "trees_per_head": 200,
                "num_leaves": 15,
                "feature_config": None,
            },
            "n_input_columns": len(model.input_columns),
            "runs": runs,
            "prepare_seconds": round(prepare_seconds, 1),
            "session_start_seconds": round(session_seconds, 1),
            "sizes": results,
            "scaling": _scaling(results),
            "spark_vs_local_at_largest": round(
                results[str(max(sizes))]["spark"]["rows_per_second"]
                / results[str(max(sizes))]["local"]["rows_per_second"],
                2,
            ),
            "peak_rss_mb_driver_python": round(peak_rss_mb(), 1),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _scaling(results: dict[str, Any]) -> dict[str, Any]:
    """Time factor and rows/s of each engine from the smallest to the largest size."""
    sizes = sorted(int(s) for s in results)
    small, large = results[str(sizes[0])], results[str(sizes[-1])]
    out: dict[str, Any] = {"from_rows": sizes[0], "to_rows": sizes[-1]}
    out["rows_factor"] = sizes[-1] / sizes[0]
    for engine in ("spark", "local"):
        a, b = small[engine], large[engine]
        out[f"{engine}_time_factor"] = round(b["seconds"]["median"] / a["seconds"]["median"], 2)
        out[f"{engine}_rows_per_second"] = [a["rows_per_second"], b["rows_per_second"]]
    a, b = small["local"], large["local"]
    out["local_scoring_time_factor"] = round(
        b["scoring_seconds_reported"]["median"] / max(a["scoring_seconds_reported"]["median"], 0.1),
        2,
    )
    return out


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
                f"`leadready score` in-process, {n} feature rows (Parquet → Parquet, wall)",
                f"{entry['local']['rows_per_second']:,} rows/s ({local_s:.1f} s; scoring alone "
                f"{entry['local']['scoring_rows_per_second_reported']:,} rows/s, peak RSS "
                f"{entry['local']['peak_rss_mb']:,.0f} MiB)",
                "",
            )
        )
    scaling = result["scaling"]
    if scaling["rows_factor"] > 1:
        rows.append(
            (
                f"time ×{scaling['rows_factor']:g} rows "
                f"({scaling.get('from_rows', 100_000):,} → {scaling.get('to_rows', 1_000_000):,}): "
                "Spark / in-process",
                f"×{scaling['spark_time_factor']} / ×{scaling['local_time_factor']} "
                f"(scoring alone ×{scaling.get('local_scoring_time_factor', '?')})",
                f"≈ ×{scaling['rows_factor']:g} (linear)",
            )
        )
    first = result["sizes"][str(min(int(s) for s in result["sizes"]))]["spark"]
    rows.append(
        (
            "Spark session start / first (cold) run at the smallest size",
            f"{result['session_start_seconds']} s / {first['first_run_seconds']:.1f} s",
            "",
        )
    )
    return rows


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s.replace("_", "")) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated row counts") from None
    if not sizes or any(s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError("sizes must be positive")
    if any(s % _PART_ROWS and (len(sizes) > 1 or s > _PART_ROWS) for s in sizes):
        raise argparse.ArgumentTypeError(
            f"sizes must be multiples of {_PART_ROWS:,} (or one size below it, "
            "as make bench runs it)"
        )
    return sizes


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and write ``bench/results/spark.json``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.spark",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=SIZES,
        help="comma-separated row counts, multiples of 100,000, or one smaller size "
        "(default: 100000,1000000)",
    )
    parser.add_argument("--runs", type=int, default=1, help="warm runs per size and engine")
    parser.add_argument("--master", default="local[2]", help="Spark master")
    args = parser.parse_args(argv)
    # PySpark 4 warns on every pandas conversion that it does not fully support pandas 3.
    warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
    result = run(args.sizes, args.runs, args.master)
    path = write_result("spark", result)
    for figure, value, target in summary_rows(result):
        print(f"{figure}: {value}" + (f"  (target: {target})" if target else ""))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
