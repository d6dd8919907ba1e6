"""A 2 GB lead table through `leadready train` and `leadready score` with bounded memory.

Registers a tiny champion in a throwaway home and writes a CSV of ``--gb``
gigabytes by repeating a block of simulated leads (profile columns and the
``stage`` / ``persona`` labels) with fresh lead ids; there is no events table,
so the features are those of the profile. Then, each in a subprocess whose wall
time and peak resident memory (``os.wait4``) are measured:

* ``leadready train --leads big.csv --stage-col stage --persona-col persona
  --max-rows N`` (default N: the command's default, 1,000,000): the documented
  handling of a table too big to hold — the file is streamed in chunks and a
  seeded uniform sample of N leads is trained on, as the command says on
  stderr (captured in ``train.notice``) and records in MLflow;
* ``leadready score --in FILE --out scored.csv --chunk-size C`` on the same
  file, or, with ``--score-gb`` smaller than ``--gb``, on a file of that size
  written the same way (scoring streams at a few thousand rows a second on
  this 2-core machine: a 2 GB file of about 20 million leads would take hours,
  so ``make bench`` and the committed result score a smaller file; the result
  says which). The output is checked to have one row per input row.

The figures are time and memory, not quality: the file repeats the same 2,000
simulated profiles, so the training run's holdout metrics (printed in its log)
compare copies of training rows and mean nothing.

Both files are deleted afterwards. Writes ``bench/results/bigfile.json``.

    python -m bench.bigfile --gb 2 --score-gb 0.1
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import write_result

ROOT = Path(__file__).resolve().parents[1]
MODEL = "lead-readiness"


def _register(home: Path) -> tuple[str, Any]:
    """A tiny champion; returns the tracking URI and the labelled lead profiles."""
    import mlflow

    from data.simulate import SimulationConfig, simulate
    from model import registry
    from model.classifier import HeadClassifier, TwoHeadClassifier
    from model.features import FeatureConfig, build_features
    from model.package import LeadReadinessModel
    from model.pyfunc import log_model

    tracking = f"sqlite:///{home / 'mlflow.db'}"
    registry.configure(tracking, home / "mlartifacts")
    sim = simulate(SimulationConfig(n_leads=2000, seed=11))
    feats = build_features(
        sim.leads.drop(columns=["stage", "persona"]), sim.events, as_of=sim.config.end
    )
    head = HeadClassifier(n_estimators=30, num_leaves=15, random_state=0)
    clf = TwoHeadClassifier(stage_estimator=head, persona_estimator=head)
    clf.fit(feats, sim.leads["stage"].to_numpy(), sim.leads["persona"].to_numpy())
    model = LeadReadinessModel(
        clf, input_columns=list(feats.columns), feature_config=FeatureConfig()
    )
    with mlflow.start_run(run_name="bigfile"):
        info = log_model(model, registered_model_name=MODEL, input_example=feats.head(3))
    registry.set_alias(MODEL, "champion", str(info.registered_model_version))
    return tracking, sim.leads


def write_csv(path: Path, leads: Any, target_bytes: int) -> int:
    """Repeat the lead rows with fresh ids until the file reaches ``target_bytes``."""
    block = leads[["lead_id", *[c for c in leads.columns if c != "lead_id"]]]
    header = block.head(0).to_csv(index=False)
    body = block.drop(columns=["lead_id"]).to_csv(index=False, header=False).splitlines()
    rows = 0
    with path.open("w") as fh:
        fh.write(header)
        size = len(header)
        rep = 0
        while size < target_bytes and rep < 1_000_000:
            chunk = "".join(f"b{rep}-{i},{line}\n" for i, line in enumerate(body))
            fh.write(chunk)
            size += len(chunk)
            rows += len(body)
            rep += 1
    return rows


def _measure(cmd: list[str], env: dict[str, str], log: Path, timeout: float) -> dict[str, Any]:
    """Run ``cmd``; wall seconds, peak RSS (MiB), exit code and the end of its output."""
    start = time.perf_counter()
    timed_out = False
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                timed_out = True
                pid, status, rusage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.5)
    seconds = time.perf_counter() - start
    text = log.read_text(errors="replace")
    return {
        "command": " ".join(["leadready", *cmd[3:]]),
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(rusage.ru_maxrss / 1024, 1),
        "exit_code": os.waitstatus_to_exitcode(status),
        "timed_out": timed_out,
        "traceback": "Traceback (most recent call last)" in text,
        "log_tail": text[-2000:],
        "_log": text,
    }


def _file(path: Path, rows: int, seconds: float) -> dict[str, Any]:
    size = path.stat().st_size
    return {
        "bytes": size,
        "gb": round(size / 2**30, 2),
        "rows": rows,
        "generate_seconds": round(seconds, 1),
    }


def run(
    gb: float,
    *,
    score_gb: float | None = None,
    chunk_size: int = 50_000,
    max_rows: int | None = None,
    n_estimators: int = 100,
    threads: int = 2,
    timeout: float = 7200.0,
) -> dict[str, Any]:
    """Write the table, train on it, score it (or a smaller one); see the module doc."""
    score_gb = gb if score_gb is None else min(score_gb, gb)
    with tempfile.TemporaryDirectory(prefix="bigfile-") as tmp:
        home = Path(tmp)
        tracking, leads = _register(home)
        env = {**os.environ, "LEADREADY_HOME": str(home), "MLFLOW_TRACKING_URI": tracking}
        env["COLUMNS"] = "200"
        big = home / "big.csv"
        start = time.perf_counter()
        rows = write_csv(big, leads, int(gb * 2**30))
        train_file = _file(big, rows, time.perf_counter() - start)

        cmd = [sys.executable, "-m", "leadready", "train", "--leads", str(big)]
        cmd += ["--stage-col", "stage", "--persona-col", "persona", "--no-gate"]
        cmd += ["--n-estimators", str(n_estimators), "--threads", str(threads)]
        if max_rows is not None:
            cmd += ["--max-rows", str(max_rows)]
        trained = _measure(cmd, env, home / "train.log", timeout)
        notice = re.search(r"[^\n]*uniform random sample[^\n]*", trained.pop("_log"))
        trained["notice"] = notice.group(0).strip() if notice else None
        trained["rows_per_second_read"] = (
            round(rows / trained["seconds"]) if trained["seconds"] else None
        )

        if score_gb < gb:
            big.unlink()
            target = home / "score.csv"
            start = time.perf_counter()
            score_rows = write_csv(target, leads, int(score_gb * 2**30))
            score_file = _file(target, score_rows, time.perf_counter() - start)
        else:
            target, score_rows, score_file = big, rows, train_file
        out = home / "scored.csv"
        cmd = [sys.executable, "-m", "leadready", "score", "--in", str(target), "--out", str(out)]
        cmd += ["--chunk-size", str(chunk_size)]
        scored = _measure(cmd, env, home / "score.log", timeout)
        scored.pop("_log")
        out_rows = 0
        if out.exists():
            with out.open("rb") as fh:
                out_rows = sum(1 for _ in fh) - 1
        scored.update(
            {
                "chunk_size": chunk_size,
                "rows_per_second": round(score_rows / scored["seconds"])
                if scored["seconds"]
                else None,
                "output_rows": out_rows,
                "complete": out_rows == score_rows,
            }
        )
        for path in (big, target, out):
            path.unlink(missing_ok=True)
        note = None
        if score_gb < gb:
            note = (
                f"scored a {score_file['gb']} GB file ({score_rows:,} rows) written the same "
                f"way, not the {train_file['gb']} GB one: at this rate the big file would take "
                f"about {rows / max(scored['rows_per_second'] or 1, 1) / 60:.0f} min"
            )
        return {
            "train_input": train_file,
            "train": trained,
            "score_input": score_file,
            "score": scored,
            "score_note": note,
        }


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, value, target) rows for bench/results/SUMMARY.md."""
    if "train" not in result:  # an older result: scoring only
        return [
            (
                f"score a {result['input_gb']} GB CSV ({result['input_rows']:,} rows)",
                f"{result['score_seconds']} s, peak RSS {result['peak_rss_mb']} MiB",
                "bounded memory",
            )
        ]
    t, s = result["train"], result["score"]
    tin, sin = result["train_input"], result["score_input"]
    ok_t = t["exit_code"] == 0 and not t["traceback"]
    return [
        (
            f"train on a {tin['gb']} GB CSV ({tin['rows']:,} leads), streamed and sampled",
            f"{t['seconds']:,} s, peak RSS {t['peak_rss_mb']:,} MiB, "
            + ("ok" if ok_t else f"exit {t['exit_code']}"),
            "works, no traceback; memory set by --max-rows, not by the file's size",
        ),
        (
            f"score a {sin['gb']} GB CSV ({sin['rows']:,} leads)",
            f"{s['seconds']:,} s ({s['rows_per_second']:,} rows/s), peak RSS "
            f"{s['peak_rss_mb']:,} MiB, every row written: {s['complete']}",
            "memory set by --chunk-size, every row written",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gb", type=float, default=2.0, help="size of the table trained on")
    parser.add_argument(
        "--score-gb",
        type=float,
        default=None,
        help="size of the table scored (default: the same file as training)",
    )
    parser.add_argument("--chunk-size", type=int, default=50_000, help="score --chunk-size")
    parser.add_argument("--max-rows", type=int, default=None, help="train --max-rows")
    parser.add_argument("--n-estimators", type=int, default=100, help="train --n-estimators")
    parser.add_argument("--threads", type=int, default=2, help="train --threads")
    parser.add_argument("--timeout", type=float, default=7200.0, help="per command, seconds")
    args = parser.parse_args(argv)
    result = run(
        args.gb,
        score_gb=args.score_gb,
        chunk_size=args.chunk_size,
        max_rows=args.max_rows,
        n_estimators=args.n_estimators,
        threads=args.threads,
        timeout=args.timeout,
    )
    path = write_result("bigfile", result)
    for row in summary_rows(result):
        print(" | ".join(row))
    if result["score_note"]:
        print(result["score_note"])
    print(f"wrote {path}")
    ok = all(r["exit_code"] == 0 and not r["traceback"] for r in (result["train"], result["score"]))
    return 0 if ok and result["score"]["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
