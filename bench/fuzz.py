"""`make fuzz`: the schema fuzz tests with many random examples per operation.

Runs ``tests/test_fuzz.py`` in a subprocess with ``LEADREADY_FUZZ_EXAMPLES``
(default 300) and ``LEADREADY_FUZZ_RANDOM=1`` (new random inputs each run, not
the suite's derandomized ones), bounded by ``--timeout`` seconds, and writes
``bench/results/fuzz.json``: examples per operation, wall time, passed/failed,
and the failing requests (as curl) when there are any.

    python -m bench.fuzz --examples 300 --timeout 3600
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import write_result

ROOT = Path(__file__).resolve().parents[1]


def run(examples: int, timeout: float) -> dict[str, Any]:
    """Run the fuzz tests once; the summary of what they found."""
    env = {**os.environ, "LEADREADY_FUZZ_EXAMPLES": str(examples), "LEADREADY_FUZZ_RANDOM": "1"}
    cmd = [sys.executable, "-m", "pytest", "tests/test_fuzz.py", "-q", "-p", "no:cacheprovider"]
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        output, code, timed_out = proc.stdout + proc.stderr, proc.returncode, False
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        code, timed_out = -1, True
    seconds = time.perf_counter() - start
    tail = re.findall(r"(\d+) (passed|failed|xfailed|error)", output)
    counts = {kind: int(n) for n, kind in tail}
    failures = re.findall(
        r"^(?:POST|GET|PUT|DELETE) \S+ \((?:positive|negative)\):.*$", output, re.M
    )
    curls = re.findall(r"^\s*(curl -X .*)$", output, re.M)
    return {
        "examples_per_operation_and_mode": examples,
        "seconds": round(seconds, 1),
        "exit_code": code,
        "timed_out": timed_out,
        "tests": counts,
        "server_errors_or_schema_violations": failures,
        "reproduce": curls,
        "command": f"LEADREADY_FUZZ_EXAMPLES={examples} LEADREADY_FUZZ_RANDOM=1 "
        + " ".join(cmd[1:]),
        "output_tail": output[-4000:] if code else "",
    }


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, value, target) rows for bench/results/SUMMARY.md."""
    tests = result.get("tests", {})
    return [
        (
            "schema fuzz (examples per operation and mode)",
            str(result["examples_per_operation_and_mode"]),
            "",
        ),
        (
            "schema fuzz: 5xx or schema violations",
            str(len(result["server_errors_or_schema_violations"]) + tests.get("failed", 0)),
            "0",
        ),
        ("schema fuzz wall time", f"{result['seconds']} s", ""),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--timeout", type=float, default=3600.0)
    args = parser.parse_args(argv)
    result = run(args.examples, args.timeout)
    path = write_result("fuzz", result)
    for row in summary_rows(result):
        print(" | ".join(row))
    print(f"wrote {path}")
    return 0 if result["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
