"""Servers the tests start as subprocesses: a free port, a PostgreSQL database, ``mlflow server``.

Shared by ``tests/test_tracking_server.py`` and ``tests/test_multi_serve.py``.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.waiting import wait_until

__all__ = ["START_TIMEOUT", "MlflowServer", "free_port", "pg_database"]

#: Longest wait for the server to answer /health (migrations + imports on a busy machine).
START_TIMEOUT = 240.0


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def pg_database(base_url: str, prefix: str = "leadready_mlflow") -> Iterator[str]:
    """A fresh PostgreSQL database on the server of ``base_url``, dropped afterwards.

    Yields its SQLAlchemy URL (same driver, user and host; no query options).
    """
    import sqlalchemy as sa

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'create database "{name}"'))
    url = sa.make_url(base_url).set(database=name, query={})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'drop database if exists "{name}" with (force)'))
        admin.dispose()


@dataclass
class MlflowServer:
    """An ``mlflow server`` subprocess on 127.0.0.1."""

    url: str
    port: int
    process: subprocess.Popen
    log_path: Path
    artifacts: Path

    @classmethod
    def start(
        cls, backend_uri: str, folder: Path, *, timeout: float = START_TIMEOUT
    ) -> MlflowServer:
        """Start the server and wait until ``/health`` answers (or fail with its log)."""
        port = free_port()
        artifacts = folder / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        log_path = folder / "mlflow-server.log"
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("MLFLOW_", "LEADREADY_")) and k != "DATABASE_URL"
        }
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("mlflow")),
                    "server",
                    "--backend-store-uri",
                    backend_uri,
                    "--serve-artifacts",
                    "--artifacts-destination",
                    str(artifacts),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--workers",
                    "1",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=folder,
                start_new_session=True,
            )
        server = cls(f"http://127.0.0.1:{port}", port, process, log_path, artifacts)

        def up() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"mlflow server exited:\n{server.log_tail()}")
            return server.healthy()

        try:
            wait_until(up, timeout, interval=0.5, message=server.log_tail)
        except AssertionError as exc:
            server.stop()
            raise RuntimeError(f"mlflow server not up in {timeout:.0f} s:\n{exc}") from None
        return server

    def healthy(self) -> bool:
        """Whether ``GET /health`` answers 200."""
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            conn.request("GET", "/health")
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's output."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM the server's process group; SIGKILL it if it lingers."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
