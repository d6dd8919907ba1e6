"""A 2 GB CSV streamed through `leadready score` with bounded memory.

Registers a tiny model in a throwaway home, writes a CSV of ``--gb`` gigabytes
by repeating a block of simulated lead profiles with fresh lead ids (no events
table: engagement features are then those of a lead without events), runs ``leadready score --in big.csv --out
scored.csv --chunk-size N`` in a subprocess, measures its wall time and peak
resident memory (``os.wait4``), checks the output has one row per input row,
and deletes both files. Writes ``bench/results/bigfile.json``.

    python -m bench.bigfile --gb 2 --chunk-size 50000
"""

from __future__ import annotations

import argparse
import os
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
    """A tiny champion; returns the tracking URI and the lead profiles (no labels)."""
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
    return tracking, sim.leads.drop(columns=["stage", "persona"])


def write_csv(path: Path, leads: Any, target_bytes: int) -> int:
    """Repeat the lead profiles with fresh ids until the file reaches ``target_bytes``."""
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


def run(gb: float, chunk_size: int, timeout: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bigfile-") as tmp:
        home = Path(tmp)
        tracking, leads = _register(home)
        big, out = home / "big.csv", home / "scored.csv"
        start = time.perf_counter()
        rows = write_csv(big, leads, int(gb * 2**30))
        gen_seconds = time.perf_counter() - start
        size = big.stat().st_size
        env = {**os.environ, "LEADREADY_HOME": str(home), "MLFLOW_TRACKING_URI": tracking}
        cmd = [sys.executable, "-m", "leadready", "score", "--in", str(big), "--out", str(out)]
        cmd += ["--chunk-size", str(chunk_size)]
        log = home / "score.log"
        start = time.perf_counter()
        with log.open("w") as fh:
            proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + timeout
            status, rusage = 0, None
            while True:
                pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    proc.kill()
                    pid, status, rusage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.5)
            proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        out_rows = 0
        if out.exists():
            with out.open("rb") as fh:
                out_rows = sum(1 for _ in fh) - 1
        result = {
            "input_bytes": size,
            "input_gb": round(size / 2**30, 2),
            "input_rows": rows,
            "chunk_size": chunk_size,
            "generate_seconds": round(gen_seconds, 1),
            "score_seconds": round(seconds, 1),
            "rows_per_second": round(rows / seconds) if seconds else None,
            "peak_rss_mb": round(rusage.ru_maxrss / 1024, 1) if rusage else None,
            "exit_code": proc.returncode,
            "output_rows": out_rows,
            "complete": out_rows == rows,
            "log_tail": log.read_text()[-2000:],
        }
        big.unlink(missing_ok=True)
        out.unlink(missing_ok=True)
        return result


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, value, target) rows for bench/results/SUMMARY.md."""
    return [
        (
            f"score a {result['input_gb']} GB CSV ({result['input_rows']} rows)",
            f"{result['score_seconds']} s, {result['rows_per_second']} rows/s",
            "",
        ),
        ("score a big CSV: peak RSS", f"{result['peak_rss_mb']} MiB", "bounded (≪ file size)"),
        ("score a big CSV: every row written", str(result["complete"]), "True"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.0)
    parser.add_argument("--chunk-size", type=int, default=50_000)
    parser.add_argument("--timeout", type=float, default=7200.0)
    args = parser.parse_args(argv)
    result = run(args.gb, args.chunk_size, args.timeout)
    path = write_result("bigfile", result)
    for row in summary_rows(result):
        print(" | ".join(row))
    print(f"wrote {path}")
    return 0 if result["exit_code"] == 0 and result["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
