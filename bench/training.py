"""Training time, peak memory and quality on simulated leads.

``python -m bench.training`` writes ``bench/results/training.json``.

For each size (20,000 and 100,000 leads by default) the simulator writes leads
and events as Parquet in one process; then each timed run is a fresh process
that runs the whole of ``training.train.train`` — reading, feature building,
fitting both heads, evaluation with the baselines, MLflow logging and
registration, the gate — against a fresh SQLite tracking store (created before
the clock starts). Its peak resident memory is read from ``os.wait4`` for that
process alone, so the parent's memory never counts, with its CPU time (user +
system, imports and set-up included): on a machine shared with other work the
wall time grows with the load, the CPU time much less.

Quality (at 20,000 leads, the simulator's default label noise): the model is
trained on marketing's labels, as a user would, and measured against the
simulator's hidden truth on the held-out leads, next to the logistic-regression
and majority baselines trained on the same rows and labels, and next to
marketing's own labels on those leads (what the labels alone would give).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import summary, write_result

__all__ = ["main", "run", "summary_rows"]

#: Training on 100,000 leads should take less than this on 2 cores.
TARGET_SECONDS_100K = 120.0
_MARK = "BENCH-RESULT "


def _simulate(n_leads: int, seed: int, out: Path) -> None:
    from data.simulate import SimulationConfig, simulate, write

    write(simulate(SimulationConfig(n_leads=n_leads, seed=seed)), out, fmt="parquet")


def _train_once(data: Path, quality: bool, trees: int, threads: int) -> dict[str, Any]:
    """One timed training run in this process (a child of the benchmark)."""
    from model.registry import configure
    from training.train import TrainConfig, train

    with tempfile.TemporaryDirectory(prefix="bench-mlflow-") as tmp:
        config = TrainConfig(
            leads_path=data / "leads.parquet",
            events_path=data / "events.parquet",
            tracking_uri=f"sqlite:///{tmp}/mlflow.db",
            artifact_root=Path(tmp) / "artifacts",
            stage_col="stage",
            persona_col="persona",
            n_estimators=trees,
            num_threads=threads,
        )
        configure(config.tracking_uri, config.artifact_root)  # the store exists before timing
        start = time.perf_counter()
        result = train(config)
        seconds = time.perf_counter() - start
        out: dict[str, Any] = {
            "seconds": seconds,
            "phases": result.timings,
            "n_train": result.n_train,
            "n_holdout": result.n_holdout,
            "holdout_vs_marketing_labels": {
                head: {
                    "model": result.macro_f1(head),
                    "logreg": result.macro_f1(head, "logreg"),
                    "majority": result.macro_f1(head, "majority"),
                }
                for head in ("stage", "persona")
            },
        }
        if quality:
            out["quality_vs_truth"] = _quality(data, config, result.version)
    return out


def _quality(data: Path, config: Any, version: str) -> dict[str, Any]:
    """Holdout macro-F1 against the hidden truth: model, baselines, marketing's labels."""
    import pandas as pd

    from bench.quality import baselines_vs_truth
    from model.registry import load_model
    from training.dataset import holdout_mask, load_training_table
    from training.evaluate import HEADS, evaluate_heads

    ts = load_training_table(
        config.leads_path, events_path=config.events_path, stage_col="stage", persona_col="persona"
    )
    mask = holdout_mask(ts.ids, config.holdout_share)
    train_set, held = ts.subset(~mask), ts.subset(mask)
    truth = pd.read_parquet(data / "truth.parquet").set_index("lead_id")
    truth.index = truth.index.astype(str)
    truth = truth.loc[held.ids]
    model, _ = load_model(f"models:/{config.model_name}/{version}")
    true = {"stage": truth["true_stage"], "persona": truth["true_persona"]}
    scored = evaluate_heads(model, held.X, true["stage"], true["persona"])
    base = baselines_vs_truth(train_set, held, true, seed=config.seed)
    result: dict[str, Any] = {"n_holdout": len(held)}
    for head in HEADS:
        result[head] = {
            "model_macro_f1": scored[head]["macro_f1"],
            "model_accuracy": scored[head]["accuracy"],
            **base[head],
            "model_per_class_recall": {
                k: v["recall"] for k, v in scored[head]["per_class"].items()
            },
        }
    return result


def _child(args: list[str]) -> tuple[dict[str, Any], float, float]:
    """Run ``python -m bench.training <args>``: its result, peak RSS (MiB) and CPU seconds."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.training", *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines = proc.stdout.read().splitlines()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"bench.training {' '.join(args)} failed with exit {proc.returncode}")
    found = [line[len(_MARK) :] for line in lines if line.startswith(_MARK)]
    payload = json.loads(found[-1]) if found else {}
    return payload, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def run(
    sizes: tuple[int, ...] = (20_000, 100_000),
    runs: int = 2,
    trees: int = 200,
    threads: int = 1,
    quality_size: int = 20_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Simulate each size once, then time ``runs`` training processes per size.

    Returns
    -------
    dict
        Per size: seconds (min/median/max), phases of the median run, peak RSS
        (MiB, max over runs), holdout metrics; and the quality section.
    """
    result: dict[str, Any] = {"trees_per_head": trees, "threads": threads, "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        for n in sizes:
            data = Path(tmp) / f"sim_{n}"
            start = time.perf_counter()
            _child(["--simulate", str(n), "--seed", str(seed), "--data", str(data)])
            simulate_s = time.perf_counter() - start
            timings, peaks, cpus, last = [], [], [], {}
            for i in range(runs):
                quality = n == quality_size and i == 0
                args = ["--train-one", "--data", str(data), "--trees", str(trees)]
                args += ["--threads", str(threads)] + (["--quality"] if quality else [])
                payload, peak, cpu = _child(args)
                timings.append(payload["seconds"])
                peaks.append(peak)
                cpus.append(cpu)
                if quality:
                    result["quality"] = {"n_leads": n, **payload.pop("quality_vs_truth")}
                last = payload
                print(
                    f"{n:,} leads, run {i + 1}/{runs}: {payload['seconds']:.1f} s, "
                    f"{cpu:.1f} CPU s (process total), peak {peak:,.0f} MiB",
                    flush=True,
                )
            result["sizes"][str(n)] = {
                "n_leads": n,
                "simulate_seconds": round(simulate_s, 1),
                "seconds": summary(timings),
                "process_cpu_seconds": summary(cpus),
                "phases_last_run": last.get("phases", {}),
                "peak_rss_mb": round(max(peaks), 1),
                "n_train": last.get("n_train"),
                "n_holdout": last.get("n_holdout"),
                "holdout_vs_marketing_labels": last.get("holdout_vs_marketing_labels"),
            }
    big = result["sizes"].get("100000")
    if big is not None:
        result["target_100k_seconds"] = TARGET_SECONDS_100K
        result["meets_100k_target"] = big["seconds"]["median"] < TARGET_SECONDS_100K
    return result


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Rows for ``bench/results/SUMMARY.md``: (figure, value, target)."""
    rows = []
    for n, size in result.get("sizes", {}).items():
        sec = size["seconds"]
        target = f"< {TARGET_SECONDS_100K:.0f} s" if n == "100000" else ""
        rows.append((f"train {int(n):,} leads (median s)", f"{sec['median']:.1f}", target))
        rows.append((f"train {int(n):,} leads peak RSS (MiB)", f"{size['peak_rss_mb']:,.0f}", ""))
    quality = result.get("quality")
    if quality:
        for head in ("stage", "persona"):
            q = quality[head]
            rows.append(
                (
                    f"{head} macro-F1 vs truth (model / logreg)",
                    f"{q['model_macro_f1']:.3f} / {q['logreg_macro_f1']:.3f}",
                    "model ≥ logreg",
                )
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (or, with ``--simulate`` / ``--train-one``, one child step)."""
    parser = argparse.ArgumentParser(prog="python -m bench.training", description=__doc__)
    parser.add_argument("--sizes", default="20000,100000", help="lead counts, comma-separated")
    parser.add_argument("--runs", type=int, default=2, help="timed runs per size")
    parser.add_argument("--trees", type=int, default=200, help="boosting rounds per head")
    parser.add_argument("--threads", type=int, default=1, help="LightGBM threads")
    parser.add_argument("--quality-size", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--simulate", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--train-one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quality", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.simulate is not None:
        _simulate(args.simulate, args.seed, args.data)
        return
    if args.train_one:
        payload = _train_once(args.data, args.quality, args.trees, args.threads)
        print(_MARK + json.dumps(payload, default=str), flush=True)
        return
    sizes = tuple(int(s) for s in args.sizes.split(",") if s.strip())
    result = run(sizes, args.runs, args.trees, args.threads, args.quality_size, args.seed)
    path = write_result("training", result)
    for row in summary_rows(result):
        print(" | ".join(row))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
