"""Load with model swaps: `leadready serve` (gunicorn, 2 workers) under steady load while
the champion is promoted and rolled back, twice.

Sets up a throwaway home (simulated leads, two tiny registered versions, a store
with an API key), starts ``leadready serve --workers 2`` on loopback, and runs
``--threads`` load threads (``http.client`` keep-alive connections, ``POST
/v1/score`` feature rows) for ``--seconds`` (at least 60). At fixed points the
champion alias moves: promote v2, roll back to v1, promote v2, roll back to v1
(``training.promote.promote`` / ``rollback``, as the CLI does). Every response
carries ``X-Model-Version``, so the harness sees when the last answer with the
old version came: the time until every worker serves the new one.

Reports requests, errors (target 0), p50/p99 latency before / during / after each
swap and the switch time of each; writes ``bench/results/load_swap.json``.

    python -m bench.load_swap --seconds 80 --threads 4
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import write_result

ROOT = Path(__file__).resolve().parents[1]
MODEL = "lead-readiness"
PHASE_SECONDS = 5.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def setup(home: Path) -> dict[str, Any]:
    """Two tiny registered versions (v1 champion) and a store with a client key."""
    import mlflow

    from data.simulate import SimulationConfig, simulate
    from data.store import Store
    from model import registry
    from model.classifier import HeadClassifier, TwoHeadClassifier
    from model.features import FeatureConfig, build_features
    from model.package import LeadReadinessModel
    from model.pyfunc import log_model

    tracking = f"sqlite:///{home / 'mlflow.db'}"
    artifacts = home / "mlartifacts"
    registry.configure(tracking, artifacts)
    versions = []
    features = None
    for seed, trees in ((1, 20), (2, 12)):
        sim = simulate(SimulationConfig(n_leads=400, seed=seed))
        feats = build_features(
            sim.leads.drop(columns=["stage", "persona"]), sim.events, as_of=sim.config.end
        )
        head = HeadClassifier(n_estimators=trees, num_leaves=7, random_state=seed)
        clf = TwoHeadClassifier(stage_estimator=head, persona_estimator=head)
        clf.fit(feats, sim.leads["stage"].to_numpy(), sim.leads["persona"].to_numpy())
        model = LeadReadinessModel(
            clf, input_columns=list(feats.columns), feature_config=FeatureConfig()
        )
        with mlflow.start_run(run_name=f"load-swap-{seed}"):
            info = log_model(model, registered_model_name=MODEL, input_example=feats.head(3))
        versions.append(str(info.registered_model_version))
        features = features if features is not None else feats
    registry.set_alias(MODEL, "champion", versions[0])
    store = Store(f"sqlite:///{home / 'leadready.db'}")
    store.upgrade()
    key = store.create_api_key("load-swap", "client")
    store.dispose()
    rows = json.loads(features.head(200).to_json(orient="records", date_format="iso"))
    bodies = [
        json.dumps({"lead_id": f"ls-{i}", "features": row}).encode() for i, row in enumerate(rows)
    ]
    return {
        "tracking": tracking,
        "artifacts": str(artifacts),
        "versions": versions,
        "key": key,
        "bodies": bodies,
    }


def start_server(home: Path, port: int, ctx: dict[str, Any], poll: float) -> subprocess.Popen:
    env = {
        **os.environ,
        "LEADREADY_HOME": str(home),
        "DATABASE_URL": f"sqlite:///{home / 'leadready.db'}",
        "MLFLOW_TRACKING_URI": ctx["tracking"],
        "LEADREADY_MLFLOW_ARTIFACT_ROOT": ctx["artifacts"],
    }
    log = open(home / "serve.log", "w")  # noqa: SIM115
    cmd = [sys.executable, "-m", "leadready", "serve", "--port", str(port), "--workers", "2"]
    cmd += ["--poll-seconds", str(poll)]
    proc = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
    )
    deadline = time.monotonic() + 180
    while (home / "serve.log").read_text().count(" loaded from models:/") < 2:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((home / "serve.log").read_text()[-3000:])
        time.sleep(0.2)
    return proc


class Recorder:
    """(time, latency_ms, status, version) per request, from every load thread."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, float, int, str]] = []
        self.lock = threading.Lock()

    def add(self, row: tuple[float, float, int, str]) -> None:
        with self.lock:
            self.rows.append(row)


def load_thread(port: int, key: str, bodies: list[bytes], stop: threading.Event, rec: Recorder):
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    i = 0
    while not stop.is_set() and i < 1_000_000:  # bounded in count as well as time
        body = bodies[i % len(bodies)]
        i += 1
        start = time.monotonic()
        try:
            conn.request("POST", "/v1/score", body, headers)
            response = conn.getresponse()
            response.read()
            status, version = response.status, response.getheader("X-Model-Version", "")
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            status, version = 0, ""
        end = time.monotonic()
        rec.add((end, (end - start) * 1000, status, version.rsplit("/", 1)[-1]))
    conn.close()


def _pcts(rows: list[tuple[float, float, int, str]]) -> dict[str, Any]:
    lat = np.array([r[1] for r in rows]) if rows else np.array([np.nan])
    return {
        "requests": len(rows),
        "p50_ms": round(float(np.nanpercentile(lat, 50)), 2),
        "p99_ms": round(float(np.nanpercentile(lat, 99)), 2),
    }


def analyse(rows, swaps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per swap: switch time and latency before / during / after."""
    rows = sorted(rows)
    out = []
    for n, swap in enumerate(swaps):
        at, new = swap["at"], swap["to"]
        until = swaps[n + 1]["at"] if n + 1 < len(swaps) else float("inf")
        later = [r for r in rows if at <= r[0] < until]
        old_after = [r for r in later if r[3] and r[3] != new]
        last_old = old_after[-1][0] if old_after else at
        first_new = next((r[0] for r in later if r[3] == new), None)
        done = max(last_old, first_new or at)
        out.append(
            {
                "action": swap["action"],
                "to_version": new,
                "switch_seconds": round(done - at, 3) if first_new is not None else None,
                "before": _pcts([r for r in rows if at - PHASE_SECONDS <= r[0] < at]),
                "during": _pcts([r for r in rows if at <= r[0] <= done]),
                "after": _pcts(
                    [r for r in rows if done < r[0] <= min(done + PHASE_SECONDS, until)]
                ),
            }
        )
    return out


def run(seconds: float, threads: int, poll: float) -> dict[str, Any]:
    from model import registry
    from training.promote import promote, rollback

    seconds = max(60.0, seconds)
    with tempfile.TemporaryDirectory(prefix="load-swap-") as tmp:
        home = Path(tmp)
        ctx = setup(home)
        v1, v2 = ctx["versions"]
        port = _free_port()
        proc = start_server(home, port, ctx, poll)
        rec, stop = Recorder(), threading.Event()
        workers = [
            threading.Thread(target=load_thread, args=(port, ctx["key"], ctx["bodies"], stop, rec))
            for _ in range(threads)
        ]
        swaps: list[dict[str, Any]] = []
        plan = [
            (0.2, "promote", v2),
            (0.4, "rollback", v1),
            (0.6, "promote", v2),
            (0.8, "rollback", v1),
        ]
        try:
            began = time.monotonic()
            for t in workers:
                t.start()
            registry.configure(ctx["tracking"], ctx["artifacts"])
            for share, action, version in plan:
                time.sleep(max(0.0, began + share * seconds - time.monotonic()))
                at = time.monotonic()
                if action == "promote":
                    promote(version, model_name=MODEL, by="bench.load_swap", why="load test")
                else:
                    rollback(model_name=MODEL, by="bench.load_swap", why="load test")
                swaps.append({"action": action, "to": version, "at": at})
            time.sleep(max(0.0, began + seconds - time.monotonic()))
        finally:
            stop.set()
            for t in workers:
                t.join(60)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        rows = rec.rows
        errors = [r for r in rows if r[2] != 200]
        statuses: dict[str, int] = {}
        for r in errors:
            statuses[str(r[2])] = statuses.get(str(r[2]), 0) + 1
        return {
            "seconds": round(rows[-1][0] - rows[0][0], 1) if rows else 0,
            "threads": threads,
            "workers": 2,
            "poll_seconds": poll,
            "requests": len(rows),
            "errors": len(errors),
            "error_statuses": statuses,
            "throughput_rps": round(len(rows) / seconds, 1),
            "overall": _pcts(rows),
            "swaps": analyse(rows, swaps),
        }


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, value, target) rows for bench/results/SUMMARY.md."""
    rows = [
        ("load with swaps: requests", str(result["requests"]), ""),
        ("load with swaps: errors", str(result["errors"]), "0"),
        (
            "load with swaps: p50 / p99 overall",
            f"{result['overall']['p50_ms']} / {result['overall']['p99_ms']} ms",
            "",
        ),
    ]
    for i, swap in enumerate(result["swaps"], start=1):
        rows.append(
            (
                f"swap {i} ({swap['action']} → v{swap['to_version']}): all workers switched",
                f"{swap['switch_seconds']} s",
                f"≤ poll {result['poll_seconds']} s + load",
            )
        )
        rows.append(
            (
                f"swap {i} p99 before / during / after",
                f"{swap['before']['p99_ms']} / {swap['during']['p99_ms']} / "
                f"{swap['after']['p99_ms']} ms",
                "",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=80.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--poll-seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    result = run(args.seconds, args.threads, args.poll_seconds)
    path = write_result("load_swap", result)
    for row in summary_rows(result):
        print(" | ".join(row))
    print(f"wrote {path}")
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
