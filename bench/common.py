"""Shared benchmark plumbing: repeated timings, machine facts, result files.

Every benchmark reports min/median/max over repeated runs (this machine is
shared and noisy), the machine's facts and the versions of what it measured,
and writes ``bench/results/<name>.json`` (or ``$LEADREADY_BENCH_RESULTS/<name>.json``).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

#: Where result files go: ``bench/results`` (the figures the README quotes), or the
#: folder in ``LEADREADY_BENCH_RESULTS`` (``make bench`` writes its bounded runs to
#: ``bench/results/make-bench`` so they never overwrite the full runs).
RESULTS = Path(
    os.environ.get("LEADREADY_BENCH_RESULTS") or Path(__file__).resolve().parent / "results"
)

__all__ = ["RESULTS", "machine_facts", "peak_rss_mb", "repeat", "summary", "write_result"]


def summary(values: list[float]) -> dict[str, float]:
    """min / median / max of repeated measurements."""
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "runs": len(values),
    }


def repeat(fn: Callable[[], Any], runs: int = 3) -> tuple[dict[str, float], Any]:
    """Time ``fn`` ``runs`` times (seconds); returns the summary and the last result."""
    times: list[float] = []
    result: Any = None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return summary(times), result


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _version(pkg: str) -> str | None:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def machine_facts() -> dict[str, Any]:
    """Cores, memory, CPU model, Python and library versions."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    with contextlib.suppress(ValueError, OSError):
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": mem_gb,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": {
            p: _version(p)
            for p in ("leadready", "lightgbm", "scikit-learn", "mlflow", "pandas", "numpy", "flask")
        },
    }


def write_result(name: str, result: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` with the machine facts attached."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"name": name, "machine": machine_facts(), **result}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path
