"""Serving side by side: ``leadready serve`` vs ``mlflow models serve`` on the same champion.

``python -m bench.serving`` writes ``bench/results/serving.json``.

One demo champion (20,000 simulated leads, seed 1, ``leadready.commands.demo.
prepare_demo`` in a throwaway home that ``bench.scoring`` reuses) is served three
ways, each in its own subprocess on its own loopback port:

* **leadready** — ``leadready serve`` (gunicorn, 2 workers × 4 threads), with
  everything on: API-key auth, feature building from the lead's profile and 40
  events, both heads, reasons, metrics and the background prediction writer;
* **leadready sync** — the same with ``--threads 1`` (gunicorn's sync workers:
  one request at a time per process, so request threads never queue for one
  interpreter lock), measured for the single lead at 8 connections;
* **mlflow** — ``mlflow models serve -m models:/lead-readiness@champion
  --env-manager local -w 2`` (uvicorn, 2 workers), MLflow's own scoring server
  on the same registered version;
* **flask** (reference point) — a minimal Flask app under gunicorn (2 sync
  workers) calling ``booster.predict`` of the stage head on a numpy row.

Scenarios (requests/s, p50 and p99 latency):

* ``score_cN``: one lead per request at N connections. leadready gets
  ``POST /v1/score`` with the profile and 40 events; MLflow gets the equivalent
  feature row (built by the model's own feature code from the same profile and
  events) as ``dataframe_records`` with ``params: {"reasons": true}``, so both
  answer stage, persona, readiness, route and reasons;
* ``invocations_1``, ``invocations_100``: ``POST /invocations`` with 1 or 100
  feature rows (``dataframe_records``), the same body to both servers;
* ``score_c8_sync``: ``score_c8`` against the sync-worker server;
* ``flask_cN``: the reference app alone.

For the leadready servers the CPU time of the whole process group (master,
workers, their writer and poller threads) is read from ``/proc`` around each
run: ``cpu_ms_per_request``. With N requests in flight on C cores, a request
waits on average at least N × that ÷ C, which bounds the latency any
configuration can reach on the machine (``latency_floor_ms``).

Each pair is measured alternately (A B A B …, ``--rounds`` times, each run
``--seconds`` long and capped in requests) after a warm-up run per server, on a
machine that also runs the load generator (``bench.load``: wrk when installed,
else Python). Figures are min/median/max over the rounds; ratios are of medians
and, per round, of the paired runs.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import summary, write_result
from bench.load import LoadResult, RequestSpec, run_load, wrk_available

__all__ = [
    "BENCH_LEADS",
    "BENCH_SEED",
    "champion_home",
    "main",
    "reference_app",
    "group_cpu_seconds",
    "run",
    "summary_rows",
    "targets",
]

REPO = Path(__file__).resolve().parent.parent
#: The demo champion of every serving and scoring benchmark.
BENCH_LEADS = 20_000
BENCH_SEED = 1
#: A champion made this recently is reused even if the code changed since (seconds).
REUSE_SECONDS = 45 * 60
#: Events sent with the single lead.
N_EVENTS = 40
#: Targets (ratios to MLflow's server in the same run).
TARGET_RATIO = 20.0
TARGET_P99_MS = 10.0
#: The code whose changes make a new champion (training code edits alone reuse the last one).
_SOURCES = ("model", "data/simulate.py", "data/schema.py", "leadready/commands/demo.py")


# --------------------------------------------------------------------------- the champion


def _fingerprint() -> str:
    """Hash of the code that makes the champion, plus its size and seed."""
    digest = hashlib.sha256(f"{BENCH_LEADS}:{BENCH_SEED}".encode())
    for source in _SOURCES:
        path = REPO / source
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(REPO)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def champion_home(*, quiet: bool = True) -> tuple[Path, dict[str, Any]]:
    """The benchmark home with the demo champion, made once per version of the code.

    Kept under the system temp folder, keyed by a hash of the code that builds
    it, so ``bench.serving`` and ``bench.scoring`` of one ``make bench`` (and
    later runs of the same code) train once. Returns ``(home, facts)``; facts
    hold the API key and the champion version.
    """
    root = Path(tempfile.gettempdir()) / "leadready-bench"
    home = root / _fingerprint()
    facts_file = home / "bench-facts.json"
    if facts_file.exists():
        return home, json.loads(facts_file.read_text())
    # One `make bench` shares one champion even when the checkout changes under it
    # (several engineers share it): a champion made in the last REUSE_SECONDS is reused.
    recent = sorted(
        (
            f
            for f in root.glob("*/bench-facts.json")
            if time.time() - f.stat().st_mtime < REUSE_SECONDS
        ),
        key=lambda f: f.stat().st_mtime,
    )
    if recent:
        return recent[-1].parent, json.loads(recent[-1].read_text())
    if root.exists():  # homes of older code, unused for a week
        import shutil

        week_ago = time.time() - 7 * 86_400
        for old in root.iterdir():
            if old.is_dir() and old != home and old.stat().st_mtime < week_ago:
                shutil.rmtree(old, ignore_errors=True)
    from rich.console import Console

    from leadready.commands.demo import prepare_demo
    from leadready.config import Settings

    settings = Settings.for_home(home)
    start = time.perf_counter()
    facts = prepare_demo(
        settings, n_leads=BENCH_LEADS, seed=BENCH_SEED, console=Console(quiet=quiet)
    )
    kept = {
        "version": facts["version"],
        "api_key": facts["api_key"],
        "prepare_seconds": round(time.perf_counter() - start, 1),
    }
    facts_file.write_text(json.dumps(kept, indent=2))
    return home, kept


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def single_lead(home: Path) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """A simulated lead with ``N_EVENTS`` events: the /v1/score body, its feature row, 100 rows.

    The feature row is built by the champion's own feature code from the same
    profile and events (as the API does), restricted to the model's input columns.
    """
    import pandas as pd

    from data.schema import Event, LeadProfile
    from leadready.config import Settings
    from model import registry

    settings = Settings.for_home(home)
    registry.configure(settings.mlflow_tracking_uri, settings.artifact_root)
    model, _ = registry.load_model(f"models:/{settings.model_name}@champion")
    leads = pd.read_parquet(home / "data" / "leads.parquet")
    events = pd.read_parquet(home / "data" / "events.parquet")
    counts = events.groupby("lead_id").size()
    lead_id = str(counts[counts >= N_EVENTS].index.sort_values()[0])
    row = leads[leads["lead_id"] == lead_id].iloc[0]
    profile_fields = set(LeadProfile.model_fields) - {"extra"}
    lead = {k: _jsonable(row[k]) for k in row.index if k in profile_fields}
    lead = {k: v for k, v in lead.items() if v is not None}
    mine = events[events["lead_id"] == lead_id].sort_values("timestamp").tail(N_EVENTS)
    event_rows = [
        {k: _jsonable(v) for k, v in ev.items() if k != "lead_id" and _jsonable(v) is not None}
        for ev in mine.to_dict("records")
    ]
    as_of = _jsonable(mine["timestamp"].max())
    body = {"lead": lead, "events": event_rows, "as_of": as_of}
    profile = LeadProfile.model_validate(lead).model_dump()
    validated = [Event.model_validate({**e, "lead_id": lead_id}).model_dump() for e in event_rows]
    features = model.features_from_profile(profile, validated, mine["timestamp"].max())
    feature_row = {c: _jsonable(features.get(c)) for c in model.input_columns}
    # 100 distinct feature rows for the batch scenario: training rows of the demo.
    from leadready.commands.demo import DEMO_EXCLUDE
    from model.features import build_features

    sample = leads.head(100)
    table = build_features(
        sample.drop(columns=["stage", "persona"]),
        events[events["lead_id"].isin(set(sample["lead_id"]))],
        as_of=events["timestamp"].max().to_pydatetime(),
        config=model.feature_config,
        exclude=DEMO_EXCLUDE,
    )
    rows = [{c: _jsonable(r.get(c)) for c in model.input_columns} for r in table.to_dict("records")]
    return body, feature_row, rows


# --------------------------------------------------------------------------- servers


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (loopback)
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {timeout:.0f} s")


@contextlib.contextmanager
def _server(
    argv: list[str], env: dict[str, str], ready_url: str, log: Path, timeout: float = 240
) -> Iterator[subprocess.Popen]:
    """Start a server in its own process group; stop that group (and only it) afterwards."""
    with open(log, "w") as out:
        proc = subprocess.Popen(
            argv, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            _wait_ready(ready_url, proc, timeout)
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "LEADREADY_HOME": str(home),
            "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
            "PYTHONPATH": str(REPO),
            "OMP_NUM_THREADS": "1",
            # mlflow models serve runs `uvicorn` from the PATH: this interpreter's.
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            **extra,
        }
    )
    env.pop("DATABASE_URL", None)
    return env


def reference_app():
    """The reference point: Flask + ``booster.predict`` on one numpy row (gunicorn factory).

    Reads the booster file from ``LEADREADY_BENCH_BOOSTER`` (a benchmark-only
    variable). ``POST /predict`` with ``{"row": [numbers or null]}`` answers
    the raw scores.
    """
    import lightgbm as lgb
    import numpy as np
    from flask import Flask, jsonify, request

    booster = lgb.Booster(model_file=os.environ["LEADREADY_BENCH_BOOSTER"])
    app = Flask("leadready-bench-reference")

    @app.get("/ping")
    def ping():
        return "ok"

    @app.post("/predict")
    def predict():
        row = request.get_json()["row"]
        x = np.array([[np.nan if v is None else v for v in row]], dtype=np.float64)
        return jsonify(booster.predict(x, raw_score=True, num_threads=1).tolist())

    return app


# --------------------------------------------------------------------------- measuring


def group_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of every live process in ``pid``'s process group (Linux)."""
    group = os.getpgid(pid)
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # fields after the command name: state ppid pgrp … utime(12th) stime(13th)
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if int(fields[2]) == group:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _figures(runs: list[LoadResult], cpu: list[float] | None = None) -> dict[str, Any]:
    out = {
        "rps": summary([r.rps for r in runs]),
        "p50_ms": summary([r.p50_ms for r in runs]),
        "p99_ms": summary([r.p99_ms for r in runs]),
        "requests": sum(r.requests for r in runs),
        "errors": sum(r.errors for r in runs),
        "runs": [r.as_dict() for r in runs],
    }
    if cpu:
        per_request = [c / r.requests * 1e3 for c, r in zip(cpu, runs, strict=True) if r.requests]
        out["cpu_ms_per_request"] = summary(per_request)
    return out


def _pair(
    a: tuple[str, str, RequestSpec],
    b: tuple[str, str, RequestSpec],
    *,
    connections: int,
    rounds: int,
    seconds: float,
    max_requests: int,
    tool: str,
    cpu_of: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Warm both, then alternate A B A B …; figures per side and the ratios A/B.

    ``cpu_of`` maps a side's name to its server's pid: that side's figures get
    the CPU time its process group spent per request.
    """
    cpu_of = cpu_of or {}
    for _, url, spec in (a, b):
        run_load(url, spec, connections=connections, seconds=1.5, max_requests=2_000, tool=tool)
    runs: dict[str, list[LoadResult]] = {a[0]: [], b[0]: []}
    cpu: dict[str, list[float]] = {a[0]: [], b[0]: []}
    for _ in range(rounds):
        for name, url, spec in (a, b):
            pid = cpu_of.get(name)
            before = group_cpu_seconds(pid) if pid else 0.0
            runs[name].append(
                run_load(
                    url,
                    spec,
                    connections=connections,
                    seconds=seconds,
                    max_requests=max_requests,
                    tool=tool,
                )
            )
            if pid:
                cpu[name].append(group_cpu_seconds(pid) - before)
    out: dict[str, Any] = {"connections": connections}
    for name, results in runs.items():
        out[name] = _figures(results, cpu[name] or None)
        if "cpu_ms_per_request" in out[name]:
            per_request = out[name]["cpu_ms_per_request"]["median"]
            out[name]["latency_floor_ms"] = connections * per_request / (os.cpu_count() or 1)
    med_a = out[a[0]]["rps"]["median"]
    med_b = out[b[0]]["rps"]["median"]
    out["ratio_rps"] = med_a / med_b if med_b > 0 else math.inf
    paired = [
        ra.rps / rb.rps if rb.rps > 0 else math.inf
        for ra, rb in zip(runs[a[0]], runs[b[0]], strict=True)
    ]
    out["ratio_rps_paired"] = summary(paired)
    return out


def _alone(
    name: str,
    url: str,
    spec: RequestSpec,
    *,
    connections: int,
    rounds: int,
    seconds: float,
    max_requests: int,
    tool: str,
) -> dict[str, Any]:
    run_load(url, spec, connections=connections, seconds=1.5, max_requests=2_000, tool=tool)
    results = [
        run_load(
            url,
            spec,
            connections=connections,
            seconds=seconds,
            max_requests=max_requests,
            tool=tool,
        )
        for _ in range(rounds)
    ]
    return {"connections": connections, name: _figures(results)}


def run(*, rounds: int = 3, seconds: float = 4.0, tool: str = "auto") -> dict[str, Any]:
    """Prepare the champion, start the three servers and measure every scenario."""
    started = time.perf_counter()
    home, facts = champion_home()
    body, feature_row, rows = single_lead(home)
    tool_used = tool if tool != "auto" else ("wrk" if wrk_available() else "python")
    logs = home / "bench-logs"
    logs.mkdir(exist_ok=True)
    json_headers = {"Content-Type": "application/json"}
    auth = {**json_headers, "Authorization": f"Bearer {facts['api_key']}"}
    score = RequestSpec("POST", "/v1/score", json.dumps(body).encode(), auth)
    score_mlflow = RequestSpec(
        "POST",
        "/invocations",
        json.dumps({"dataframe_records": [feature_row], "params": {"reasons": True}}).encode(),
        json_headers,
    )
    inv1 = json.dumps({"dataframe_records": [feature_row]}).encode()
    inv100 = json.dumps({"dataframe_records": rows}).encode()

    # The reference app's booster and row: the stage head, the lead's encoded row.
    from leadready.config import Settings
    from model import registry

    settings = Settings.for_home(home)
    registry.configure(settings.mlflow_tracking_uri, settings.artifact_root)
    model, _ = registry.load_model(f"models:/{settings.model_name}@champion")
    stage = model.heads["stage"]
    booster_file = home / "bench-stage-booster.txt"
    stage.booster_.save_model(str(booster_file))
    encoded = stage.encode_records([feature_row])[0]
    flask_body = json.dumps(
        {"row": [None if math.isnan(v) else float(v) for v in encoded]}
    ).encode()
    flask_spec = RequestSpec("POST", "/predict", flask_body, json_headers)

    lr_port, ml_port, fl_port = _free_port(), _free_port(), _free_port()
    lr_url, ml_url, fl_url = (f"http://127.0.0.1:{p}" for p in (lr_port, ml_port, fl_port))
    bindir = Path(sys.executable).parent
    results: dict[str, Any] = {
        "config": {
            "leads": BENCH_LEADS,
            "seed": BENCH_SEED,
            "events_per_lead": N_EVENTS,
            "rounds": rounds,
            "seconds_per_run": seconds,
            "tool": tool_used,
            "champion_version": facts["version"],
            "load_average_at_start": os.getloadavg(),
            "leadready": "leadready serve --workers 2 --threads 4 (gunicorn gthread)",
            "leadready_sync": "leadready serve --workers 2 --threads 1 (gunicorn sync)",
            "mlflow": "mlflow models serve --env-manager local -w 2 (uvicorn)",
            "flask": "gunicorn -w 2 (sync) Flask + booster.predict(numpy row)",
        },
        "scenarios": {},
    }
    lr_argv = [str(bindir / "leadready"), "serve", "--port", str(lr_port), "--workers", "2"]
    sync_port = _free_port()
    sync_url = f"http://127.0.0.1:{sync_port}"
    sync_argv = [*lr_argv[:3], str(sync_port), "--workers", "2", "--threads", "1"]
    ml_argv = [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        f"models:/{settings.model_name}@champion",
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(ml_port),
        "-w",
        "2",
    ]
    fl_argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "-w",
        "2",
        "-b",
        f"127.0.0.1:{fl_port}",
        "bench.serving:reference_app()",
    ]
    scenarios = results["scenarios"]
    common = {"rounds": rounds, "seconds": seconds, "max_requests": 100_000, "tool": tool_used}
    with (
        _server(lr_argv, _env(home), f"{lr_url}/readyz", logs / "leadready.log") as lr_proc,
        _server(ml_argv, _env(home), f"{ml_url}/ping", logs / "mlflow.log"),
    ):
        for conns in (1, 8):
            scenarios[f"score_c{conns}"] = _pair(
                ("leadready", lr_url, score),
                ("mlflow", ml_url, score_mlflow),
                connections=conns,
                cpu_of={"leadready": lr_proc.pid},
                **common,
            )
        with _server(
            sync_argv, _env(home), f"{sync_url}/readyz", logs / "leadready-sync.log"
        ) as sync_proc:
            scenarios["score_c8_sync"] = _pair(
                ("leadready", sync_url, score),
                ("mlflow", ml_url, score_mlflow),
                connections=8,
                cpu_of={"leadready": sync_proc.pid},
                **common,
            )
        for name, payload in (("invocations_1", inv1), ("invocations_100", inv100)):
            spec_lr = RequestSpec("POST", "/invocations", payload, auth)
            spec_ml = RequestSpec("POST", "/invocations", payload, json_headers)
            scenarios[name] = _pair(
                ("leadready", lr_url, spec_lr), ("mlflow", ml_url, spec_ml), connections=8, **common
            )
    env = _env(home, LEADREADY_BENCH_BOOSTER=str(booster_file))
    with _server(fl_argv, env, f"{fl_url}/ping", logs / "flask.log"):
        for conns in (1, 8):
            scenarios[f"flask_c{conns}"] = _alone(
                "flask", fl_url, flask_spec, connections=conns, **common
            )
    results["targets"] = targets(scenarios)
    results["seconds_total"] = round(time.perf_counter() - started, 1)
    results["load_average_at_end"] = os.getloadavg()
    return results


def targets(scenarios: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, judged on the default server and on the sync-worker one."""
    out: dict[str, Any] = {}
    met: dict[str, bool] = {}
    for suffix, key in (("", "score_c8"), ("_sync", "score_c8_sync")):
        if key not in scenarios:
            continue
        c8 = scenarios[key]
        p99 = c8["leadready"]["p99_ms"]["median"]
        out[f"score_ratio_c8{suffix}"] = {"value": c8["ratio_rps"], "target": TARGET_RATIO}
        out[f"score_p99_ms_c8{suffix}"] = {"value": p99, "target": TARGET_P99_MS}
        met[f"score_ratio_c8{suffix}"] = c8["ratio_rps"] >= TARGET_RATIO
        met[f"score_p99_ms_c8{suffix}"] = p99 <= TARGET_P99_MS
    inv = [
        scenarios[k]["ratio_rps"] for k in ("invocations_1", "invocations_100") if k in scenarios
    ]
    if inv:
        out["invocations_ratio_min"] = {"value": min(inv), "target": TARGET_RATIO}
        met["invocations_ratio"] = min(inv) >= TARGET_RATIO
    out["met"] = met
    return out


def _fmt(fig: dict[str, Any]) -> str:
    return (
        f"{fig['rps']['median']:,.0f} req/s (min {fig['rps']['min']:,.0f}, "
        f"max {fig['rps']['max']:,.0f}); p50 {fig['p50_ms']['median']:.2f} ms, "
        f"p99 {fig['p99_ms']['median']:.2f} ms"
    )


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Rows for ``bench/results/SUMMARY.md``."""
    rows: list[tuple[str, str, str]] = []
    sc = result.get("scenarios", {})
    labels = {
        "score_c1": "single lead, 1 connection",
        "score_c8": "single lead, 8 connections",
        "score_c8_sync": "single lead, 8 connections, sync workers (--threads 1)",
        "invocations_1": "/invocations 1 row, 8 connections",
        "invocations_100": "/invocations 100 rows, 8 connections",
    }
    for key, label in labels.items():
        if key not in sc:
            continue
        s = sc[key]
        target = ""
        if key.startswith("score_c8"):
            target = f"≥ {TARGET_RATIO:.0f}× MLflow, p99 ≤ {TARGET_P99_MS:.0f} ms"
        elif key.startswith("invocations"):
            target = f"≥ {TARGET_RATIO:.0f}× MLflow"
        rows.append((f"{label}: leadready", _fmt(s["leadready"]), ""))
        rows.append((f"{label}: MLflow serve", _fmt(s["mlflow"]), ""))
        rows.append((f"{label}: ratio", f"{s['ratio_rps']:.1f}×", target))
        ours = s["leadready"]
        if "cpu_ms_per_request" in ours:
            rows.append(
                (
                    f"{label}: leadready CPU per request (all processes)",
                    f"{ours['cpu_ms_per_request']['median']:.2f} ms; with "
                    f"{s['connections']} in flight the mean latency cannot go below "
                    f"{ours['latency_floor_ms']:.1f} ms on this machine",
                    "",
                )
            )
    goals = result.get("targets")
    if goals:
        met = goals["met"]
        checks = []
        for suffix, config in (("", ""), ("_sync", ", sync workers")):
            if f"score_ratio_c8{suffix}" not in goals:
                continue
            checks += [
                (
                    f"target: single lead ratio to MLflow, 8 connections{config}",
                    f"{goals[f'score_ratio_c8{suffix}']['value']:.1f}×",
                    f"≥ {TARGET_RATIO:.0f}×",
                    met[f"score_ratio_c8{suffix}"],
                ),
                (
                    f"target: single lead p99, 8 connections{config}",
                    f"{goals[f'score_p99_ms_c8{suffix}']['value']:.2f} ms",
                    f"≤ {TARGET_P99_MS:.0f} ms",
                    met[f"score_p99_ms_c8{suffix}"],
                ),
            ]
        if "invocations_ratio_min" in goals:
            checks.append(
                (
                    "target: /invocations ratio to MLflow (lower of 1 and 100 rows)",
                    f"{goals['invocations_ratio_min']['value']:.1f}×",
                    f"≥ {TARGET_RATIO:.0f}×",
                    met["invocations_ratio"],
                )
            )
        for label, value, target, ok in checks:
            rows.append((label, value, f"{target}: {'met' if ok else 'NOT met'}"))
    for key in ("flask_c1", "flask_c8"):
        if key in sc:
            rows.append(
                (f"reference Flask + booster.predict, {key[-2:]}", _fmt(sc[key]["flask"]), "")
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serving", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--tool", choices=("auto", "wrk", "python"), default="auto")
    args = parser.parse_args(argv)
    result = run(rounds=args.rounds, seconds=args.seconds, tool=args.tool)
    path = write_result("serving", result)
    for figure, value, target in summary_rows(result):
        print(f"{figure}: {value}" + (f"  [target {target}]" if target else ""))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
