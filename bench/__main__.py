"""`make bench`: run every benchmark, each in its own process, then summarize.

Each benchmark module is runnable alone (``python -m bench.NAME``) and writes
``bench/results/NAME.json``. Running them in separate processes keeps one
benchmark's memory and threads from skewing the next. A module may define
``summary_rows(result) -> list[tuple[str, str, str]]`` (figure, value, target)
for the Markdown summary in ``bench/results/SUMMARY.md``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import time

from bench.common import RESULTS, machine_facts

#: Benchmarks in the order they run (cheap first).
BENCHMARKS: list[str] = [
    "simulator",
    "features",
    "training",
    "serving",
    "scoring",
    "review_loop",
]


def _available(name: str) -> bool:
    return importlib.util.find_spec(f"bench.{name}") is not None


def _rows(name: str, result: dict) -> list[tuple[str, str, str]]:
    module = importlib.import_module(f"bench.{name}")
    fn = getattr(module, "summary_rows", None)
    if fn is None:
        return [(name, "see JSON", "")]
    return list(fn(result))


def write_summary(names: list[str]) -> str:
    """Build the Markdown summary from the result files of ``names``."""
    facts = machine_facts()
    lines = [
        "# leadready benchmarks",
        "",
        f"Measured {facts['when']} on {facts['cores']} cores ({facts['cpu']}), "
        f"{facts['memory_gb']} GiB, Python {facts['python']}.",
        "Figures are medians over repeated runs unless the row says otherwise.",
        "",
        "| benchmark | figure | value | target |",
        "| --- | --- | --- | --- |",
    ]
    for name in names:
        path = RESULTS / f"{name}.json"
        if not path.exists():
            continue
        result = json.loads(path.read_text())
        for figure, value, target in _rows(name, result):
            lines.append(f"| {name} | {figure} | {value} | {target} |")
    text = "\n".join(lines) + "\n"
    (RESULTS / "SUMMARY.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    args = parser.parse_args(argv)
    names = args.names or [n for n in BENCHMARKS if _available(n)]
    failed = []
    for name in names:
        print(f"== bench.{name}", flush=True)
        start = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", f"bench.{name}"])
        print(f"   {name}: exit {code} in {time.perf_counter() - start:.1f} s", flush=True)
        if code != 0:
            failed.append(name)
    print(write_summary(names))
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
