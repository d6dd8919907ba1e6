"""HTTP load on loopback: wrk when installed, else a Python (asyncio) generator.

``run_load(target, spec)`` sends one request over and over on ``connections``
keep-alive connections until ``seconds`` have passed or ``max_requests`` were
answered, whichever comes first, and returns requests/s, latency percentiles
and errors. Both generators are bounded in time and in count, and refuse any
host outside the loopback range (127.0.0.0/8, ::1, localhost).

* wrk (``apt-get install wrk``): one process in C, ``min(connections, 2)``
  threads, a Lua script for the body, headers and the per-thread request cap; its
  ``done`` hook prints the summary as JSON.
* Python: one asyncio loop, one coroutine per connection, hand-written
  HTTP/1.1 (keep-alive, Content-Length or chunked bodies; reconnects when the
  server closes). It costs more CPU per request than wrk, which on a small
  machine is taken from the server: figures from the two generators are not
  comparable with each other, only servers measured by the same one are.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "LoadResult",
    "RequestSpec",
    "check_loopback",
    "python_load",
    "run_load",
    "wrk_available",
    "wrk_load",
]

#: A request slower than this counts as a timeout error.
REQUEST_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RequestSpec:
    """One HTTP request, sent again and again."""

    method: str = "GET"
    path: str = "/"
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class LoadResult:
    """What one bounded load run measured."""

    tool: str
    connections: int
    seconds: float
    requests: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    statuses: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return asdict(self)


def check_loopback(url: str) -> tuple[str, int]:
    """``(host, port)`` of ``url``; ValueError unless the host is a loopback address."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme != "http":
        raise ValueError(f"only plain http on loopback is load-tested, not {url!r}")
    if host != "localhost":
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"load is only sent to loopback addresses, not {host!r}") from None
        if not address.is_loopback:
            raise ValueError(f"load is only sent to loopback addresses, not {host!r}")
    return host, parts.port or 80


def wrk_available() -> bool:
    """Whether a ``wrk`` binary is on the PATH."""
    return shutil.which("wrk") is not None


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * (len(sorted_values) - 1))))
    return sorted_values[index]


# --------------------------------------------------------------------------- wrk

_LUA = """
local cap = {cap}
local count = 0
wrk.method = {method}
wrk.body = {body}
{headers}
function response(status, headers, body)
  count = count + 1
  if count >= cap then wrk.thread:stop() end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write("WRKJSON" .. string.format(
    '{{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,'
    .. '"timeout":%d,"p50_us":%d,"p99_us":%d,"mean_us":%f}}',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean) .. "\\n")
end
"""


def _lua_string(data: bytes | str) -> str:
    text = data.decode("latin-1") if isinstance(data, bytes) else data
    out = []
    for ch in text:
        code = ord(ch)
        if ch in '\\"' or code < 32 or code > 126:
            out.append(f"\\{code:03d}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def wrk_load(
    base_url: str,
    spec: RequestSpec,
    *,
    connections: int,
    seconds: float,
    max_requests: int,
) -> LoadResult:
    """Run wrk against ``base_url + spec.path`` (see the module docstring)."""
    check_loopback(base_url)
    threads = max(1, min(connections, 2))
    cap = max(1, max_requests // threads)
    headers = "\n".join(
        f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in spec.headers.items()
    )
    script = _LUA.format(
        cap=cap,
        method=_lua_string(spec.method),
        body=_lua_string(spec.body) if spec.body else "nil",
        headers=headers,
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(script)
        path = Path(fh.name)
    try:
        duration = max(1, round(seconds))
        proc = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{duration}s",
                f"--timeout={int(REQUEST_TIMEOUT_S)}s",
                "-s",
                str(path),
                base_url.rstrip("/") + spec.path,
            ],
            capture_output=True,
            text=True,
            timeout=duration + REQUEST_TIMEOUT_S + 30,
            check=False,
        )
    finally:
        path.unlink(missing_ok=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRKJSON")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout}")
    data = json.loads(line.removeprefix("WRKJSON"))
    secs = data["duration_us"] / 1e6
    errors = sum(data[k] for k in ("connect", "read", "write", "status", "timeout"))
    return LoadResult(
        tool="wrk",
        connections=connections,
        seconds=secs,
        requests=data["requests"],
        errors=errors,
        rps=data["requests"] / secs if secs > 0 else 0.0,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        mean_ms=data["mean_us"] / 1000,
        statuses={"non_2xx_3xx": data["status"]},
    )


# --------------------------------------------------------------------------- python


def _request_bytes(host: str, port: int, spec: RequestSpec) -> bytes:
    lines = [f"{spec.method} {spec.path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{k}: {v}" for k, v in spec.headers.items()]
    if spec.body or spec.method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(spec.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + spec.body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; returns (status, server keeps the connection open)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    fields = {}
    for line in lines[1:]:
        if ":" in line:
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
    if "content-length" in fields:
        await reader.readexactly(int(fields["content-length"]))
    elif fields.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.read()  # body until close
        return status, False
    keep = fields.get("connection", "").lower() != "close" and lines[0].startswith("HTTP/1.1")
    return status, keep


async def _python_load(
    host: str, port: int, spec: RequestSpec, connections: int, seconds: float, max_requests: int
) -> tuple[list[float], Counter, int, float]:
    payload = _request_bytes(host, port, spec)
    latencies: list[float] = []
    statuses: Counter = Counter()
    errors = 0
    sent = 0
    start = time.perf_counter()
    deadline = start + seconds

    async def worker() -> None:
        nonlocal errors, sent
        reader = writer = None
        while time.perf_counter() < deadline and sent < max_requests:
            sent += 1
            try:
                if writer is None:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(host, port), REQUEST_TIMEOUT_S
                    )
                t0 = time.perf_counter()
                writer.write(payload)
                status, keep = await asyncio.wait_for(_read_response(reader), REQUEST_TIMEOUT_S)
                latencies.append(time.perf_counter() - t0)
                statuses[str(status)] += 1
                if status >= 400:
                    errors += 1
                if not keep:
                    writer.close()
                    reader = writer = None
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                errors += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return latencies, statuses, errors, time.perf_counter() - start


def python_load(
    base_url: str,
    spec: RequestSpec,
    *,
    connections: int,
    seconds: float,
    max_requests: int,
) -> LoadResult:
    """Run the asyncio generator against ``base_url + spec.path``."""
    host, port = check_loopback(base_url)
    latencies, statuses, errors, elapsed = asyncio.run(
        _python_load(host, port, spec, connections, seconds, max_requests)
    )
    ordered = sorted(latencies)
    ok = len(latencies)
    return LoadResult(
        tool="python",
        connections=connections,
        seconds=elapsed,
        requests=ok,
        errors=errors,
        rps=ok / elapsed if elapsed > 0 else 0.0,
        p50_ms=_percentile(ordered, 50) * 1000,
        p99_ms=_percentile(ordered, 99) * 1000,
        mean_ms=(statistics.fmean(ordered) * 1000) if ordered else float("nan"),
        statuses=dict(statuses),
    )


def run_load(
    base_url: str,
    spec: RequestSpec,
    *,
    connections: int,
    seconds: float,
    max_requests: int = 200_000,
    tool: str = "auto",
) -> LoadResult:
    """Bounded load with wrk (``tool="wrk"``, or ``"auto"`` when installed) or Python.

    Parameters
    ----------
    base_url : str
        ``http://127.0.0.1:PORT`` (loopback only).
    spec : RequestSpec
    connections : int
        Concurrent keep-alive connections.
    seconds : float
        Longest run time.
    max_requests : int
        Most requests answered in the run.
    tool : {"auto", "wrk", "python"}
    """
    if connections < 1 or seconds <= 0 or max_requests < 1:
        raise ValueError("connections, seconds and max_requests must be positive")
    use = tool if tool != "auto" else ("wrk" if wrk_available() else "python")
    if use == "wrk":
        return wrk_load(
            base_url, spec, connections=connections, seconds=seconds, max_requests=max_requests
        )
    if use == "python":
        return python_load(
            base_url, spec, connections=connections, seconds=seconds, max_requests=max_requests
        )
    raise ValueError(f"tool must be auto, wrk or python, got {tool!r}")
