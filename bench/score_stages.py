"""CPU seconds per stage of bulk scoring, in one process: where ``leadready score``'s time goes.

``python -m bench.score_stages --leads 100000`` writes ``bench/results/score_stages.json``.

CPU time (``time.process_time``: user + system of every thread of this process),
not wall: on a shared machine the wall of each stage is inflated by the other
processes, its CPU much less. The stages are those of ``training.score``, run
one after the other in this process (``leadready score`` overlaps them across
two processes; the sum here is the CPU a run needs, the longest chain of them is
its wall on two quiet cores):

* start-up: importing the scoring code and loading the champion (through MLflow
  here; ``leadready score`` loads its kept copy, ``model.model_cache``, without MLflow);
* events read: ``data.readers.read_events`` of the Parquet events table;
* events coded once: ``model.features.EventCodes`` (text to codes, grouped by lead);
* leads read + typing: the lead chunks as ``score_table`` reads and types them;
* features, scoring (``predict_frame``, one thread) and writing (Parquet) per chunk.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import write_result

__all__ = ["main", "stages"]


def stages(home: Path, data: Path, chunk_size: int = 50_000) -> dict[str, float]:
    """CPU seconds of each stage of scoring ``data``'s leads with ``home``'s champion."""
    cpu: dict[str, float] = {}
    mark = time.process_time()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.process_time()
        cpu[name] = cpu.get(name, 0.0) + now - mark
        mark = now

    import pandas as pd

    from data.coltypes import apply_types
    from data.readers import read_events
    from model.features import EventCodes, build_features
    from model.registry import configure, load_model
    from training import score

    configure(f"sqlite:///{home / 'mlflow.db'}")
    model, _ = load_model("models:/lead-readiness@champion")
    lap("start-up (imports, model load through MLflow)")
    frame = read_events(data / "events.parquet").frame
    lap("events read (read_events)")
    frame["lead_id"] = frame["lead_id"].astype(str)
    as_of = frame["timestamp"].max().to_pydatetime()
    coded = EventCodes(frame)
    coded.for_ids(pd.Index([], dtype="str"))  # groups the events by lead
    del frame
    lap("events coded once (EventCodes)")
    column_types = (model.metadata or {}).get("column_types") or {}
    columns = model.output_columns()
    out = Path(tempfile.mkdtemp(prefix="leadready-stages-")) / "out.parquet"
    writer = score._Writer(out, "parquet")
    chunks = score._chunks(
        data / "leads.parquet", chunk_size, "lead_id", [], [], False, column_types
    )
    first = 1
    for chunk in chunks:
        chunk = chunk.reset_index(drop=True)
        ids = score._chunk_ids(chunk["lead_id"], "lead_id", first, "leads.parquet")
        first += len(chunk)
        leads = chunk.copy()
        leads["lead_id"] = ids.to_numpy()
        if column_types:
            leads = apply_types(leads, column_types)
        lap("leads read + typing")
        features = build_features(leads, coded, as_of=as_of, config=model.feature_config)
        lap("features")
        scored = model.predict_frame(features, num_threads=1)
        lap("scoring (predict_frame, one thread)")
        renamed = {n: f"{n}_input" for n in columns if n in chunk.columns}
        writer.write(
            pd.concat(
                [chunk.rename(columns=renamed), scored[columns].reset_index(drop=True)], axis=1
            )
        )
        lap("write (Parquet)")
    writer.close()
    out.unlink(missing_ok=True)
    out.parent.rmdir()
    cpu["total"] = sum(cpu.values())
    return {name: round(value, 3) for name, value in cpu.items()}


def main(argv: list[str] | None = None) -> int:
    from bench.commands import simulated
    from bench.serving import champion_home

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--home", type=Path, default=None, help="[default: the bench champion]")
    parser.add_argument("--cache", type=Path, default=None, help="simulated tables' folder")
    args = parser.parse_args(argv)
    home = args.home or champion_home()[0]
    cache = args.cache or Path(tempfile.gettempdir()) / "leadready-bench" / "commands-data"
    data = simulated(args.leads, cache)
    result: dict[str, Any] = {
        "leads": args.leads,
        "load_average": os.getloadavg()[0],
        "cpu_seconds": stages(home, data),
    }
    for name, value in result["cpu_seconds"].items():
        print(f"{value:7.2f}  {name}")
    write_result("score_stages", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
