"""`make bench`: leadready side by side with MLflow's server and the raw model, in ~25 minutes.

``python -m bench`` (what ``make bench`` runs) runs issue #8's set — simulator,
features, training at 20k / 100k / 400k leads, serving (``leadready serve`` vs
``mlflow models serve`` vs a minimal Flask app, alternating A B A B) and bulk
scoring of 1M rows, and issue #20's commands as users run them (``bench.commands``:
whole-process wall and CPU of ``score``, ``promote``, ``rollback``, ``queue``,
``corrections import`` next to ``mlflow models predict``) — each in its own process (so one benchmark's memory and
threads never skew the next) under a time cap, prints each one's elapsed time,
writes ``bench/results/NAME.json`` (the README's figures) and the summary
``bench/results/SUMMARY.md``: every figure with its target, the options used and
the elapsed time of each. The caps add up to 27.5 minutes; a benchmark that
outruns its cap is stopped and reported, and the command fails.

``python -m bench --all`` adds the other harnesses (review loop, queue, quality,
Spark, load with model swaps) with bounded options, written to
``bench/results/make-bench/`` so they never overwrite their full runs.

The full runs, each one command (module defaults; minutes to an hour each on
2 cores), write ``bench/results/NAME.json``::

    python -m bench.simulator            python -m bench.review_loop
    python -m bench.features             python -m bench.queue
    python -m bench.training             python -m bench.quality
    python -m bench.quality_real         # real tables in ../shared (skips without)
    python -m bench.serving              python -m bench.spark     # 100k and 1M rows
    python -m bench.scoring              python -m bench.load_swap
    python -m bench.commands             # commands as users run them
    python -m bench.bigfile --gb 2 --score-gb 0.1                 # not in make bench
    python -m bench.fuzz                                          # make fuzz

Other uses::

    python -m bench spark queue          # some benchmarks, bounded
    python -m bench --full spark         # module defaults, into bench/results/
    python -m bench --summary            # SUMMARY.md from the full runs' files
    python -m bench --list               # the benchmarks and their bounded options

A module may define ``summary_rows(result) -> list[tuple[str, str, str]]``
(figure, value, target); those that do not are summarized here.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import machine_facts

#: The full runs' result files (the README's figures).
FULL_RESULTS = Path(__file__).resolve().parent / "results"
#: Where ``make bench`` writes its bounded runs.
BOUNDED_RESULTS = FULL_RESULTS / "make-bench"
#: ``make bench`` must finish within this on 2 cores (issue #8's set, 15 min, issue
#: #16's re-scoring of 100,000 stored leads, 2.5 min, and issue #20's commands, up to
#: 10 min with the first simulation of a million leads).
BUDGET_SECONDS = 27 * 60 + 30


@dataclass(frozen=True)
class Bench:
    """One benchmark: its bounded ``make bench`` options and time cap."""

    name: str
    args: tuple[str, ...]
    cap_seconds: float
    what: str
    #: In ``make bench`` (issue #8's side-by-side set, at its sizes, into
    #: ``bench/results/``); the others run bounded with ``--all``.
    core: bool = False


#: Every benchmark ``make bench`` runs, in order (cheap first), with its bounded options.
BENCHMARKS: tuple[Bench, ...] = (
    Bench(
        "simulator",
        ("--leads", "100000", "--runs", "1"),
        20,
        "100,000 leads once (full: 3 runs)",
        core=True,
    ),
    Bench(
        "features",
        ("--runs", "3", "--calls", "1000"),
        30,
        "1M events → 50,000 rows, 3 runs; 1,000 one-lead calls (full: 5,000 calls)",
        core=True,
    ),
    Bench(
        "training",
        ("--sizes", "20000,100000,400000", "--runs", "1", "--threads", "2"),
        500,
        "20k / 100k / 400k leads once each, 2 threads, seconds and peak memory (full: 2 runs)",
        core=True,
    ),
    Bench(
        "serving",
        ("--rounds", "2", "--seconds", "4"),
        270,
        "leadready serve vs mlflow models serve vs Flask, A B A B, 2 rounds of 4 s (full: 3)",
        core=True,
    ),
    Bench(
        "reading",
        ("--leads", "100000", "--runs", "2"),
        120,
        "read the 100k-lead table: before / after issue #14 and with typing, CPU s (full: 3 runs)",
        core=True,
    ),
    Bench(
        "scoring",
        ("--rows", "1000000", "--lgbm-rows", "50000", "--rounds", "1", "--calls", "500"),
        80,
        "bulk scoring of 1M feature rows, compiled vs LightGBM, 1 round (full: 3 rounds)",
        core=True,
    ),
    Bench(
        "rescore",
        ("--leads", "100000", "--no-pg"),
        150,
        "100,000 stored leads moved to a new champion on SQLite (full: SQLite and PostgreSQL)",
        core=True,
    ),
    Bench(
        "commands",
        ("--sizes", "1,100000,1000000", "--runs", "3", "--bulk-runs", "1"),
        600,
        "commands as users run them (whole process): score of 1 lead, 100k and 1M leads with "
        "events next to mlflow models predict (≤100k rows), promote, rollback, queue, "
        "corrections import; 3 runs of the short ones; start-up import table",
        core=True,
    ),
    Bench(
        "review_loop",
        (
            "--seeds",
            "1",
            "--ks",
            "500",
            "--draws",
            "1",
            "--leads",
            "5000",
            "--trees",
            "100",
        ),  # fmt: skip
        90,
        "one seed, K=500, one draw, 5,000 leads, 100 trees (full: 3 seeds × 3 K × 3 draws)",
    ),
    Bench(
        "queue",
        ("--leads", "20000", "--runs", "3"),
        50,
        "20,000 leads, 3 runs (full: 100,000 leads, 7 runs)",
    ),
    Bench(
        "quality",
        ("--seeds", "1", "--leads", "5000", "--trees", "100"),
        60,
        "one seed, 5,000 leads, 100 trees (full: 3 seeds, 20,000 leads, 200 trees)",
    ),
    Bench(
        "quality_real",
        (
            "--seeds",
            "11",
            "--tables",
            "online_shoppers",
            "--arms",
            "leadready",
            "lightgbm",
            "logreg",
        ),
        300,
        "Online Shoppers, seed 11, no FLAML (full: both real tables and the simulator, "
        "seeds 11-13, with FLAML); skips without ../shared",
    ),
    Bench(
        "spark",
        ("--sizes", "50000", "--runs", "1"),
        170,
        "50,000 rows, one warm run (full: 100k and 1M rows)",
    ),
    Bench(
        "load_swap",
        ("--seconds", "60", "--threads", "2"),
        90,
        "60 s of load across a promotion and two rollbacks (full: 80 s, 4 threads)",
    ),
)
_BY_NAME = {b.name: b for b in BENCHMARKS}
#: Harnesses outside ``make bench`` (their own commands) whose full results the summary lists.
SUMMARY_ONLY: tuple[str, ...] = ("bigfile", "fuzz")


def _available(name: str) -> bool:
    return importlib.util.find_spec(f"bench.{name}") is not None


# --------------------------------------------------------------------------- summary rows


def _median(entry: dict[str, Any]) -> float:
    return float(entry["median"]) if isinstance(entry, dict) else float(entry)


def _simulator_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (
            f"simulate {r['n_leads']:,} leads + {r['n_events']:,} events",
            f"{_median(r['seconds']):.1f} s ({r['events_per_second']:,} events/s), "
            f"peak RSS {r.get('peak_rss_mb', '?')} MiB",
            f"< {r.get('target_seconds', 60):g} s",
        )
    ]


def _features_rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    batch, one = r["batch"], r["single_lead"]
    return [
        (
            f"features, {batch['n_events']:,} events → {batch['n_leads']:,} rows",
            f"{_median(batch['seconds']):.1f} s ({batch['events_per_second']:,} events/s)",
            f"< {batch.get('target_seconds', 10):g} s",
        ),
        (
            f"features, one lead with {one['n_events']} events",
            f"{_median(one['microseconds']) / 1000:.2f} ms",
            "",
        ),
    ]


_BUILTIN_ROWS = {"simulator": _simulator_rows, "features": _features_rows}


def _rows(name: str, result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The module's ``summary_rows``, else the rows written here, else a pointer."""
    module = importlib.import_module(f"bench.{name}")
    fn = getattr(module, "summary_rows", None) or _BUILTIN_ROWS.get(name)
    if fn is None:
        return [(name, f"see {name}.json", "")]
    return list(fn(result))


def write_summary(
    names: list[str],
    source: Path | dict[str, Path],
    *,
    runs: dict[str, dict[str, Any]] | None = None,
    out: Path = FULL_RESULTS / "SUMMARY.md",
) -> str:
    """Write the Markdown summary of the result files of ``names`` in ``source``.

    Parameters
    ----------
    names : list of str
        Benchmarks, in order.
    source : Path or dict of Path
        The folder of their ``NAME.json`` (or one folder per name).
    runs : dict, optional
        Per benchmark: ``seconds``, ``exit`` and ``args`` of the run just made.
    out : Path
        The Markdown file to write.

    Returns
    -------
    str
        The Markdown.
    """
    facts = machine_facts()
    folders = source if isinstance(source, dict) else dict.fromkeys(names, source)
    wheres = []
    for folder in dict.fromkeys(folders.values()):
        try:
            wheres.append(f"`{folder.resolve().relative_to(FULL_RESULTS.parents[1])}/`")
        except ValueError:
            wheres.append(f"`{folder}/`")
    lines = [
        "# leadready benchmarks",
        "",
        f"Written {facts['when']} on {facts['cores']} cores ({facts['cpu']}), "
        f"{facts['memory_gb']} GiB, Python {facts['python']}, from the results in "
        f"{' and '.join(wheres)} "
        "(each file has the date and machine it was measured on).",
        "Figures are medians over repeated runs unless the row says otherwise; this machine "
        "is shared, so absolute times vary with its load.",
        "",
        "| benchmark | figure | value | target |",
        "| --- | --- | --- | --- |",
    ]
    for name in names:
        path = folders[name] / f"{name}.json"
        if not path.exists():
            lines.append(f"| {name} | — | not run (no {name}.json) | |")
            continue
        try:
            result = json.loads(path.read_text())
            rows = _rows(name, result)
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            rows = [(name, f"unreadable result ({type(exc).__name__}: {exc})", "")]
        when = result.get("machine", {}).get("when", "?")
        for figure, value, target in rows:
            lines.append(f"| {name} | {figure} | {value} | {target} |")
        if runs is None:
            lines.append(f"| {name} | measured | {when} | |")
    if runs is not None:
        total = sum(r["seconds"] for r in runs.values())
        lines += [
            "",
            f"## Elapsed: {total / 60:.1f} min in total (budget {BUDGET_SECONDS // 60} min)",
            "",
            "| benchmark | elapsed | cap | result | options |",
            "| --- | --- | --- | --- | --- |",
        ]
        for name, run in runs.items():
            cap = run.get("cap")
            status = {0: "ok", None: "stopped at its cap"}.get(run["exit"], f"exit {run['exit']}")
            lines.append(
                f"| {name} | {run['seconds']:.0f} s | {'' if cap is None else f'{cap:g} s'} | "
                f"{status} | `{' '.join(run['args']) or '(defaults)'}` |"
            )
    text = "\n".join(lines) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


# --------------------------------------------------------------------------- running


def _run_one(name: str, args: tuple[str, ...], results: Path, cap: float | None) -> dict[str, Any]:
    """Run ``python -m bench.NAME ARGS`` with its results in ``results``; elapsed and exit."""
    env = {**os.environ, "LEADREADY_BENCH_RESULTS": str(results)}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", f"bench.{name}", *args], env=env)
    try:
        code: int | None = proc.wait(timeout=cap)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        code = None
    return {"seconds": time.perf_counter() - start, "exit": code, "args": list(args), "cap": cap}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.splitlines()[0],
        epilog="See the module docstring (python -m pydoc bench.__main__) for the full runs.",
    )
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: the make bench set)")
    parser.add_argument(
        "--all",
        action="store_true",
        help="also the benchmarks outside make bench, bounded, into bench/results/make-bench/",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="run with each module's defaults into bench/results/ (no caps; long)",
    )
    parser.add_argument(
        "--summary",
        action="store_true",
        help="only write bench/results/SUMMARY.md from the full runs' files",
    )
    parser.add_argument(
        "--cap-scale",
        type=float,
        default=1.0,
        help="multiply every time cap (a loaded machine); 0 removes the caps",
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)

    unknown = [n for n in args.names if n not in _BY_NAME]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(_BY_NAME)}")
    names = args.names or [
        b.name for b in BENCHMARKS if _available(b.name) and (b.core or args.all)
    ]
    if args.list:
        for b in BENCHMARKS:
            where = "make bench" if b.core else "--all"
            print(
                f"{b.name:12} cap {b.cap_seconds:>4g} s  [{where}]  {' '.join(b.args)}\n"
                f"{'':12} {b.what}"
            )
        core = sum(b.cap_seconds for b in BENCHMARKS if b.core)
        print(
            f"caps total: make bench {core / 60:.1f} min, --all {sum(b.cap_seconds for b in BENCHMARKS) / 60:.1f} min"
        )
        return 0
    if args.summary:
        extra = [] if args.names else [n for n in SUMMARY_ONLY if _available(n)]
        print(write_summary(names + extra, FULL_RESULTS))
        return 0

    sources = {n: FULL_RESULTS if args.full or _BY_NAME[n].core else BOUNDED_RESULTS for n in names}
    runs: dict[str, dict[str, Any]] = {}
    began = time.perf_counter()
    for name in names:
        bench = _BY_NAME[name]
        bench_args = () if args.full else bench.args
        cap = None if args.full or args.cap_scale == 0 else bench.cap_seconds * args.cap_scale
        print(f"== bench.{name} {' '.join(bench_args)}", flush=True)
        sources[name].mkdir(parents=True, exist_ok=True)
        runs[name] = run = _run_one(name, bench_args, sources[name], cap)
        status = "stopped at its cap" if run["exit"] is None else f"exit {run['exit']}"
        print(
            f"   {name}: {status} in {run['seconds']:.1f} s "
            f"(total {time.perf_counter() - began:.0f} s)",
            flush=True,
        )
    print(write_summary(names, sources, runs=runs))
    failed = [n for n, r in runs.items() if r["exit"] != 0]
    total = time.perf_counter() - began
    print(f"{len(names)} benchmark(s) in {total / 60:.1f} min", file=sys.stderr)
    if failed:
        print(f"failed or stopped: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
