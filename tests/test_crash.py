"""Crash durability: kill -9 the server mid-stream, and a training run mid-fit.

* ``leadready serve`` (gunicorn, 2 workers, loopback, its own home) answers a
  stream of ``POST /v1/score`` requests; the gunicorn master and its workers get
  SIGKILL (the whole process group) mid-stream. Predictions are recorded by a
  background writer that flushes every ``WRITER_FLUSH_SECONDS``, so an
  acknowledged prediction may be lost if the crash comes within that window
  (documented in docs/reliability.md). The test checks that bound: every 2xx
  older than the flush interval plus a margin is stored, the store is intact,
  and the restarted server serves again.
* ``leadready train`` killed with SIGKILL while it fits leaves the registry
  consistent: the ``champion`` alias still points at a READY version that
  loads, and the next training run succeeds.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
FLUSH_SECONDS = 0.2
#: Acknowledged predictions younger than this at the kill may be lost (flush + margin).
LOSS_WINDOW_SECONDS = FLUSH_SECONDS + 1.5


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(home: Path, port: int, db_url: str, tiny_registry, log_path: Path):
    env = {
        **os.environ,
        "LEADREADY_HOME": str(home),
        "DATABASE_URL": db_url,
        "MLFLOW_TRACKING_URI": tiny_registry.tracking_uri,
        "LEADREADY_MLFLOW_ARTIFACT_ROOT": tiny_registry.artifact_root,
        "LEADREADY_WRITER_FLUSH_SECONDS": str(FLUSH_SECONDS),
    }
    log = open(log_path, "a")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "leadready", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        start_new_session=True,  # its own process group: kill -9 reaches every worker
    )

    def ready() -> bool:
        assert proc.poll() is None, log_path.read_text()[-3000:]
        try:
            return _request(port, "GET", "/readyz")[0] == 200
        except OSError:
            return False

    wait_until(ready, 180, interval=0.2, message=lambda: log_path.read_text()[-3000:])
    return proc, log


def _request(port: int, method: str, path: str, body=None, key: str | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    try:
        conn.request(method, path, None if body is None else json.dumps(body), headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _kill_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


def test_kill_9_mid_stream_loses_no_prediction_older_than_the_flush_window(
    tmp_path, api_store, tiny_registry, serve_config
):
    store, keys = api_store
    db_url = serve_config["DATABASE_URL"]
    port = _free_port()
    home = tmp_path / "home"
    log_path = tmp_path / "serve.log"
    proc, log = _start(home, port, db_url, tiny_registry, log_path)
    run = uuid.uuid4().hex[:8]
    acked: list[tuple[str, float]] = []
    stop = threading.Event()

    def stream(k: int) -> None:
        for i in range(5000):  # bounded in count; the kill ends it sooner
            if stop.is_set():
                return
            lead_id = f"crash-{run}-{k}-{i}"
            try:
                status, _ = _request(
                    port, "POST", "/v1/score", {"lead_id": lead_id, "features": {}}, keys.client
                )
            except (OSError, http.client.HTTPException):
                # the kill can land mid-response (IncompleteRead): not acknowledged
                return
            if status == 200:
                acked.append((lead_id, time.monotonic()))

    threads = [threading.Thread(target=stream, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    try:
        # 100 acknowledged predictions older than twice the loss window, the streams still
        # running: the kill lands mid-stream with acknowledgements it must not lose
        def old_acks() -> bool:
            assert all(t.is_alive() for t in threads), log_path.read_text()[-2000:]
            horizon = time.monotonic() - 2 * LOSS_WINDOW_SECONDS
            return sum(1 for _, at in list(acked) if at < horizon) >= 100

        wait_until(old_acks, 60 + 2 * LOSS_WINDOW_SECONDS, interval=0.05)
        killed_at = time.monotonic()
        _kill_group(proc)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        if proc.poll() is None:
            _kill_group(proc)
        log.close()
    assert len(acked) >= 50, log_path.read_text()[-2000:]

    ids = [lead_id for lead_id, _ in acked]
    with store.engine.connect() as conn:
        stored = set(
            conn.execute(
                sa.text("select lead_id from predictions where lead_id like :p"),
                {"p": f"crash-{run}-%"},
            ).scalars()
        )
    old_enough = [lead_id for lead_id, t in acked if t < killed_at - LOSS_WINDOW_SECONDS]
    lost_old = [lead_id for lead_id in old_enough if lead_id not in stored]
    assert old_enough and not lost_old, (len(old_enough), lost_old[:5])
    assert stored <= set(ids)  # nothing invented, nothing stored twice per request

    # the store is intact and a restarted server serves and records again
    with store.engine.connect() as conn:
        if store.dialect == "sqlite":
            assert conn.exec_driver_sql("pragma integrity_check").scalar() == "ok"
    proc, log = _start(home, port, db_url, tiny_registry, log_path)
    try:
        # /readyz answered from one worker; the other may still be loading its model and
        # answer 503 with Retry-After, which a client honours
        answer: list = []

        def not_503() -> bool:
            answer[:] = _request(
                port,
                "POST",
                "/v1/score",
                {"lead_id": f"crash-{run}-after", "features": {}},
                keys.client,
            )
            return answer[0] != 503

        wait_until(not_503, 60, interval=1, message=lambda: answer)  # 1 s: its Retry-After
        status, body = answer
        assert status == 200, body
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
        log.close()
    assert store.latest_prediction(f"crash-{run}-after") is not None  # flushed on SIGTERM


# ------------------------------------------------------------------ training killed


def _registry_copy(tiny_registry, dest: Path) -> str:
    src = Path(tiny_registry.tracking_uri.removeprefix("sqlite:///"))
    dest.mkdir(parents=True)
    shutil.copyfile(src, dest / "mlflow.db")
    return f"sqlite:///{dest / 'mlflow.db'}"


def _champion_state(tracking_uri: str, name: str) -> tuple[str, str]:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    version = client.get_model_version_by_alias(name, "champion")
    return str(version.version), str(version.status)


def _train(
    home: Path,
    tracking_uri: str,
    leads: Path,
    events: Path,
    trees: int,
    log_path: Path,
    *extra: str,
):
    env = {
        **os.environ,
        "LEADREADY_HOME": str(home),
        "MLFLOW_TRACKING_URI": tracking_uri,
    }
    log = open(log_path, "a")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "leadready",
            "train",
            "--leads",
            str(leads),
            "--events",
            str(events),
            "--stage-col",
            "stage",
            "--persona-col",
            "persona",
            "--n-estimators",
            str(trees),
            *extra,
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        start_new_session=True,
    )
    return proc, log


def test_a_training_run_killed_midway_leaves_the_champion_serving(tmp_path, tiny_registry):
    tracking_uri = _registry_copy(tiny_registry, tmp_path / "mlflow")
    name = tiny_registry.name
    before = _champion_state(tracking_uri, name)
    assert before == (tiny_registry.champion, "READY")

    sim = tiny_registry.simulation
    leads, events = tmp_path / "leads.csv", tmp_path / "events.csv"
    sim.leads.to_csv(leads, index=False)
    sim.events.to_csv(events, index=False)
    home = tmp_path / "home"
    log_path = tmp_path / "train.log"

    # This run compiles on purpose: the kill lands in its logging step, which waits for the
    # compiled trees (see logging_midway); the run after it does not need them.
    proc, log = _train(home, tracking_uri, leads, events, 20000, log_path)
    engine = sa.create_engine(tracking_uri)
    try:

        def logging_midway() -> bool:
            """A RUNNING MLflow run whose parameters are written: the model is fitted and
            the run is mid-way through logging and registering (the compiled trees of 20,000
            rounds, the model, the version are still to come)."""
            assert proc.poll() is None, log_path.read_text()[-3000:]
            with engine.connect() as conn:
                return conn.execute(
                    sa.text(
                        "select count(*) from runs join params on params.run_uuid = runs.run_uuid"
                        " where runs.status = 'RUNNING'"
                    )
                ).scalar_one()

        wait_until(logging_midway, 240, interval=0.1, message=lambda: log_path.read_text()[-3000:])
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        log.close()
        engine.dispose()
    assert proc.returncode == -signal.SIGKILL

    # the champion is untouched, READY and loadable
    assert _champion_state(tracking_uri, name) == before
    from model import registry

    registry.configure(tracking_uri, tiny_registry.artifact_root)
    try:
        model, version = registry.load_model(f"models:/{name}@champion")
        assert version == before[0] and model is not None
    finally:
        tiny_registry.configure()

    # the next run succeeds; whatever it registers, the champion is a READY version
    proc, log = _train(home, tracking_uri, leads, events, 5, log_path, "--no-compile")
    try:
        assert proc.wait(600) == 0, log_path.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    version, status = _champion_state(tracking_uri, name)
    assert status == "READY"
