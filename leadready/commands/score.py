"""``leadready score``: score a lead table in chunks with a registered model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from leadready.commands import common
from leadready.commands.score_summary import print_score_summary
from leadready.config import Settings

__all__ = ["score"]


def _load(settings: Settings, uri: str, *, reasons: bool = True):
    """The model and its version: from the local copy while the registry is unchanged
    (no MLflow import), else resolved through MLflow and copied for the next command."""
    from model.model_cache import load_cached

    cached = load_cached(
        settings.model_cache_dir, settings.mlflow_tracking_uri, uri, explanations=reasons
    )
    if cached is not None:
        return cached
    from model.registry import configure, load_model

    configure(settings.mlflow_tracking_uri)  # the registry only: no experiment is looked up
    return load_model(uri, cache_dir=settings.model_cache_dir, explanations=reasons)


def busy(load: float, cores: int) -> bool:
    """Whether the machine is too busy for a second feature process: the 1-minute
    load average is twice the cores or more. (It counts the user's own commands
    of the last minute too: at load 3.1 on 2 cores two processes still scored
    100k leads 1.6x faster than one; at load 18 they were slower.)"""
    return load >= 2 * cores


def _feature_workers(in_path: Path, events_path: Path, chunk_size: int) -> int:
    """Processes that can build features: 2 or 1 (when and why: docs/design/serving.md)."""
    if (os.cpu_count() or 1) < 2:
        return 1
    if in_path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        try:
            several = pq.ParquetFile(in_path).metadata.num_rows > chunk_size
        except (OSError, ValueError):
            several = False
    else:  # by size: a lead row is rarely under 100 bytes
        several = in_path.stat().st_size > chunk_size * 100
    if not several:
        return 1
    # Events in memory: ~25x a Parquet file (compressed, dictionary-coded), ~4x CSV.
    factor = 25 if events_path.suffix.lower() in (".parquet", ".pq") else 4
    needed = 2 * factor * events_path.stat().st_size
    return 2 if needed < _available_memory() / 2 else 1


def _available_memory() -> int:
    """MemAvailable of /proc/meminfo in bytes (0 where there is none: one process)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


@click.command("score")
@click.option(
    "--in",
    "in_path",
    type=click.Path(exists=True, path_type=Path),
    required=True,
    help="Lead table to score (CSV, Parquet, JSON Lines; a Parquet folder with --engine spark).",
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(path_type=Path),
    required=True,
    help="Where to write the rows with predictions (.csv or .parquet; a Parquet folder, "
    "replaced whole, with --engine spark).",
)
@click.option(
    "--model",
    "model_uri",
    help="Model URI, e.g. models:/lead-readiness@challenger  [default: …@champion]",
)
@click.option(
    "--events",
    "events_path",
    type=click.Path(exists=True, path_type=Path),
    help="Events of the leads; engagement features are built from them as in training.",
)
@click.option("--id-col", default="lead_id", show_default=True, help="The lead id column.")
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=50_000,
    show_default=True,
    help="Rows scored at a time.",
)
@click.option(
    "--feature-processes",
    type=click.IntRange(min=1, max=2),
    help="Processes building features from a large events table, each holding the whole "
    "events table; 2 is used only with 2+ cores, several chunks and the memory for two "
    "copies of the events (else 1, said on the console)  [default: 2 when those hold and "
    "the load average is below twice the core count, else 1]",
)
@click.option("--reasons", is_flag=True, help="Add stage_reasons and persona_reasons (JSON).")
@click.option(
    "--engine",
    type=click.Choice(["local", "spark"]),
    default="local",
    show_default=True,
    help="local: chunks in this process; spark: Apache Spark through mlflow's spark_udf "
    "(Parquet in and out).",
)
@click.option("--spark-master", default="local[*]", show_default=True, help="Spark master URL.")
@click.option(
    "--record",
    is_flag=True,
    help="Also store the predictions with their feature snapshots (as the API does), "
    "so batch scoring feeds the review queue and retraining.",
)
@common.AS_OF
@click.option(
    "--strict",
    is_flag=True,
    help="Stop (exit status 1) at the first input line that cannot be read, instead of "
    "leaving it out of the output and listing it in the rejected-lines report.",
)
@common.report_option()
def score(
    in_path: Path,
    out_path: Path,
    model_uri: str | None,
    events_path: Path | None,
    id_col: str,
    chunk_size: int,
    feature_processes: int | None,
    reasons: bool,
    engine: str,
    spark_master: str,
    record: bool,
    as_of: str | None,
    strict: bool,
    report_path: Path | None,
) -> None:
    """Write every input row with predicted stage, persona, probabilities, readiness and route.

    Long only in its argument lists: each option is handed on by name to Spark or to
    :func:`training.score.score_table`, and each step is a helper of this module."""
    from training.input_report import rejected_report_path
    from training.score import EventsAhead, score_table

    reference = common.as_of(as_of)
    settings = common.settings()
    uri = model_uri or f"models:/{settings.model_name}@champion"
    console = Console(stderr=True)
    if engine == "spark":
        if record:
            raise click.BadParameter("--record scores locally only", param_hint="--record")
        from leadready.commands.spark import score_on_spark

        score_on_spark(
            settings,
            uri,
            in_path,
            out_path,
            events_path=events_path,
            id_col=id_col,
            reasons=reasons,
            as_of=reference,
            master=spark_master,
            console=console,
        )
        return
    events = _events_source(in_path, events_path, chunk_size, feature_processes, console)
    try:
        with console.status(f"loading {uri}…"):
            model, version = _load(settings, uri, reasons=reasons)
        columns = [
            SpinnerColumn(),
            TextColumn("scoring {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rows"),
            TimeElapsedColumn(),
        ]
        on_scored = _recorder(settings, model, version, id_col) if record else None
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task(in_path.name, total=None)

            def advance(done: int, total: int | None) -> None:
                progress.update(task, completed=done, total=total)

            summary = score_table(
                model,
                in_path,
                out_path,
                events_path=events,
                strict=strict,
                id_col=id_col,
                chunk_size=chunk_size,
                reasons=reasons,
                as_of=reference,
                on_chunk=advance,
                on_scored=on_scored,
            )
    except common.errors() as exc:
        raise common.fail(exc) from None
    finally:
        if isinstance(events, EventsAhead):
            events.close()
    _print_summaries(
        console,
        summary,
        model,
        in_path,
        report_path or rejected_report_path(settings.home, in_path),
        label=uri if version is None else f"{uri} (version {version})",
        events_given=events_path is not None,
    )


def _events_source(
    in_path: Path,
    events_path: Path | None,
    chunk_size: int,
    processes: int | None,
    console: Console,
) -> Any:
    """The events for ``score_table``: a large table is read ahead in other processes."""
    from training.score import READ_AHEAD_BYTES, EventsAhead

    if events_path is None or events_path.stat().st_size < READ_AHEAD_BYTES:
        return events_path
    workers = 1 if processes == 1 else _feature_workers(in_path, events_path, chunk_size)
    if processes == 2 and workers == 1:
        console.print(
            "features built in one process: --feature-processes 2 needs 2 cores, "
            "more than one chunk and the memory for two copies of the events"
        )
    elif processes is None and workers == 2:
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
        if busy(load, cores):
            workers = 1
            console.print(
                f"features built in one process: the machine is busy (load average "
                f"{load:.1f} on {cores} cores); --feature-processes 2 asks for two"
            )
        else:
            console.print("features built in two processes (--feature-processes 1 for one)")
    return EventsAhead(events_path, workers=workers)


def _recorder(settings: Settings, model: Any, version: Any, id_col: str) -> Any:
    """``on_scored`` of ``--record``: each scored chunk's leads and predictions into the store."""
    from data.store import Store
    from training.record import record_scored_frame

    store = Store(settings.database_url)
    store.upgrade()

    def on_scored(leads: Any, features: Any, scored: Any) -> None:
        record_scored_frame(
            store,
            features,
            scored,
            settings.model_name,
            str(version),
            source="batch",
            leads=leads,
            id_col=id_col,
            input_columns=model.input_columns,
        )

    return on_scored


def _print_summaries(
    console: Console,
    summary: Any,
    model: Any,
    in_path: Path,
    report_path: Path,
    *,
    label: str,
    events_given: bool,
) -> None:
    """What was read, what was scored, and the thresholds behind the route column."""
    from training.input_report import print_read_summary

    print_read_summary(
        console,
        in_path.name,
        n_kept=summary.rows,
        errors=summary.rejected,
        notes=summary.notes,
        report_path=report_path,
    )
    print_score_summary(
        console,
        summary,
        how=f"in {summary.chunks} chunk(s)",
        label=label,
        events_given=events_given,
    )
    if "route" in model.output_columns():
        from dataclasses import replace

        from model.routing import thresholds_note

        # the thresholds behind the route column, once per run (the rows stay compact)
        console.print(
            thresholds_note(
                replace(model.routing, sales_ready_stages=tuple(model.sales_ready_stages))
            )
        )
