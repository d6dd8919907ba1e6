"""Reading cost of issue #14's reader: the 100k-lead table, before and after, in CPU time.

Writes the simulator's 100,000-lead table (``data.simulate``, seed 0) as CSV and
measures the CPU time (user + system of this process, ``time.process_time``; the
machine is shared, so wall time would measure the neighbours) of:

* ``pandas``: ``pandas.read_csv`` alone — the floor;
* ``before``: ``read_leads`` as it was before issue #14 (the module from git commit
  ``a915251``, loaded from ``git show``; skipped when git or the commit is absent);
* ``after``: ``read_leads`` now (the record scanner, then pandas), and
  ``after+typing``: that plus column typing of *every* column
  (``data.coltypes.infer_types``, as a CRM export whose columns are not the
  schema's would be typed) and column screening (``data.personal``);
  ``after+train_typing``: the same as ``train`` runs it on this table (the
  ``data.schema`` columns are typed by the reader, not again by ``data.coltypes``);
* ``train_step``: the whole step ``train`` reports as "reading … and building
  features" (no events): before = the old ``read_leads`` + ``build_features``; after =
  ``load_training_table`` (reader, label merging, screening, typing, the one-column
  leak check, ``build_features``);
* ``bounded``: ``read_leads(max_rows=20_000)`` (streamed in chunks, a sample kept),
  with its peak traced memory (``tracemalloc``) next to the whole read's.

Target (issue #14): reading and typing ≤ 1.5 × today's train reading time; reported as
the reader alone (``after`` / ``before``), the reader plus typing (``after+typing`` /
``before``) and the whole train reading step (``train_step``). Writes
``bench/results/reading.json``.

    python -m bench.reading --leads 100000 --runs 3
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import write_result

ROOT = Path(__file__).resolve().parents[1]
BEFORE_COMMIT = "a915251"


def _old_reader() -> Any | None:
    try:
        text = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{BEFORE_COMMIT}:data/readers.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    tmp = Path(tempfile.mkdtemp(prefix="leadready-old-reader-")) / "old_readers.py"
    tmp.write_text(text)
    spec = importlib.util.spec_from_file_location("old_readers", tmp)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_readers"] = module  # dataclasses look their module up
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _cpu(fn: Callable[[], Any], runs: int) -> dict[str, float]:
    times = []
    for _ in range(runs):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return {"median_cpu_s": statistics.median(times), "min_cpu_s": min(times), "runs": runs}


def _peak(fn: Callable[[], Any]) -> float:
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def run(leads: int, runs: int) -> dict[str, Any]:
    import pandas as pd

    from data.coltypes import infer_types
    from data.personal import screen_columns
    from data.readers import read_leads
    from data.simulate import SimulationConfig, simulate
    from training.dataset import _crm_text_columns, _type_columns

    sim = simulate(SimulationConfig(n_leads=leads, seed=0))
    with tempfile.TemporaryDirectory(prefix="leadready-reading-") as tmp:
        path = Path(tmp) / "leads.csv"
        sim.leads.to_csv(path, index=False)
        labels = {"lead_id", "stage", "persona"}

        def after_typing() -> None:
            frame = read_leads(path).frame
            screen_columns(frame, skip=labels)
            infer_types(frame, skip=labels)

        def after_train_typing() -> None:
            # What train runs: the columns data.schema names are typed by the reader
            # itself, the others (none here but the labels) by data.coltypes.
            result = read_leads(path, text_columns=_crm_text_columns(path, set(labels)))
            frame = result.frame
            screen_columns(frame, skip=labels)
            _type_columns(frame, result, skip=set(labels), types={})

        out: dict[str, Any] = {
            "leads": leads,
            "file_mb": round(path.stat().st_size / 2**20, 1),
            "pandas": _cpu(lambda: pd.read_csv(path), runs),
            "after": _cpu(lambda: read_leads(path), runs),
            "after+typing": _cpu(after_typing, runs),
            "after+train_typing": _cpu(after_train_typing, runs),
        }
        from model.features import build_features
        from training.dataset import load_training_table

        out["train_step_after"] = _cpu(
            lambda: load_training_table(path, stage_col="stage", persona_col="persona"), runs
        )
        old = _old_reader()
        if old is not None:
            out["before"] = _cpu(lambda: old.read_leads(path), runs)

            def old_step() -> None:
                frame = old.read_leads(path).frame
                build_features(frame.drop(columns=["stage", "persona"]), None)

            out["train_step_before"] = _cpu(old_step, runs)
            step = (
                out["train_step_after"]["median_cpu_s"] / out["train_step_before"]["median_cpu_s"]
            )
            out["ratio_train_step_after_to_before"] = round(step, 2)
            out["ratio_reader_after_to_before"] = round(
                out["after"]["median_cpu_s"] / out["before"]["median_cpu_s"], 2
            )
            ratio = out["after+typing"]["median_cpu_s"] / out["before"]["median_cpu_s"]
            out["ratio_after_typing_to_before"] = round(ratio, 2)
            train_ratio = out["after+train_typing"]["median_cpu_s"] / out["before"]["median_cpu_s"]
            out["ratio_after_train_typing_to_before"] = round(train_ratio, 2)
            out["target"] = "after+typing <= 1.5 x before"
            out["met"] = ratio <= 1.5
            out["met_as_train_types"] = train_ratio <= 1.5
        bound = max(leads // 5, 1)
        out["peak_mb_whole"] = round(_peak(lambda: read_leads(path)), 1)
        out["peak_mb_bounded"] = round(
            _peak(lambda: read_leads(path, max_rows=bound, chunk_rows=bound // 2)), 1
        )
        out["bounded_rows"] = bound
    return out


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = [
        (
            f"read {result['leads']:,} leads (CPU s): pandas / before / after / after+typing",
            " / ".join(
                f"{result[k]['median_cpu_s']:.2f}" if k in result else "—"
                for k in ("pandas", "before", "after", "after+typing")
            ),
            "after+typing ≤ 1.5 × before",
        )
    ]
    if "ratio_train_step_after_to_before" in result:
        rows.append(
            (
                "train reading step after / before (read + type + features)",
                str(result["ratio_train_step_after_to_before"]),
                "≤ 1.5",
            )
        )
    if "ratio_after_typing_to_before" in result:
        rows.append(
            (
                "reading ratio after+typing (every column) / before",
                str(result["ratio_after_typing_to_before"]),
                "≤ 1.5",
            )
        )
    if "ratio_after_train_typing_to_before" in result:
        rows.append(
            (
                "reading ratio after+typing as train types / before",
                str(result["ratio_after_train_typing_to_before"]),
                "≤ 1.5",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    before = [round(x, 2) for x in os.getloadavg()]
    result = run(args.leads, args.runs)
    # CPU time is less sensitive to neighbours than wall time, not immune: say the load.
    result["load_avg_1_5_15"] = {"start": before, "end": [round(x, 2) for x in os.getloadavg()]}
    print(result)
    print(write_result("reading", result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
