"""Simulator speed: ``simulate()`` for 100,000 leads with their events.

``python -m bench.simulator`` writes ``bench/results/simulator.json``: seconds
(min/median/max over 3 runs), the number of events, events per second (on the
median) and peak memory. ``--leads`` and ``--runs`` change the size and the number
of runs; ``--write`` also times writing the tables as CSV and as Parquet.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from bench.common import peak_rss_mb, repeat, write_result
from data.simulate import SimulationConfig, simulate, write

__all__ = ["main", "run"]


def run(n_leads: int = 100_000, runs: int = 3, *, write_files: bool = False) -> dict[str, Any]:
    """Time the simulator.

    Parameters
    ----------
    n_leads : int
        Leads per run.
    runs : int
        Repetitions.
    write_files : bool
        Also time ``write`` to CSV and Parquet (one run each).

    Returns
    -------
    dict
        The result written to ``bench/results/simulator.json``.
    """
    config = SimulationConfig(n_leads=n_leads, seed=0)
    seconds, sim = repeat(lambda: simulate(config), runs)
    n_events = len(sim.events)
    result: dict[str, Any] = {
        "n_leads": n_leads,
        "n_events": n_events,
        "events_per_lead": round(n_events / n_leads, 2),
        "seconds": seconds,
        "events_per_second": round(n_events / seconds["median"]),
        "target_seconds": 60.0,
    }
    if write_files:
        with tempfile.TemporaryDirectory() as tmp:
            for fmt in ("csv", "parquet"):
                timing, _ = repeat(lambda fmt=fmt: write(sim, Path(tmp) / fmt, fmt=fmt), 1)
                result[f"write_{fmt}_seconds"] = timing["median"]
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return result


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and write ``bench/results/simulator.json``."""
    parser = argparse.ArgumentParser(prog="python -m bench.simulator", description=__doc__)
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="also time writing the files")
    args = parser.parse_args(argv)
    result = run(args.leads, args.runs, write_files=args.write)
    path = write_result("simulator", result)
    s = result["seconds"]
    print(
        f"simulate({args.leads:,} leads): {result['n_events']:,} events, "
        f"median {s['median']:.2f} s (min {s['min']:.2f}, max {s['max']:.2f}), "
        f"{result['events_per_second']:,} events/s -> {path}"
    )


if __name__ == "__main__":
    main()
