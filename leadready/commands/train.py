"""``leadready train``, ``evaluate``, ``promote`` and ``rollback``: thin commands over training/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from leadready.commands import common

__all__ = ["evaluate", "promote", "rollback", "stop_on_sigterm", "train"]

_FILE = common.FILE

#: ``leadready train --max-rows`` by default: a million leads train in minutes in a few
#: GB of memory; a bigger table (a 2 GB CSV holds about 20 million) is sampled.
DEFAULT_MAX_ROWS = 1_000_000


def stop_on_sigterm() -> None:
    """Turn SIGTERM (a job scheduler, ``kill``, a container stop) into ``SystemExit(143)``."""
    import signal

    from training.train import request_stop

    def _stop(signum: int, frame: Any) -> None:
        request_stop(128 + signum)  # in case this exception lands where Python drops it
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _stop)


def _comparison_table(title: str, evaluation: dict[str, Any], base: dict[str, Any]) -> Table:
    """macro-F1, accuracy, log loss and ECE per head for the model and the baselines."""
    table = Table(title=title)
    for column in ("head", "rows", "model", "logreg", "majority", "accuracy", "log loss", "ECE"):
        table.add_column(column, justify="left" if column == "head" else "right")
    for head, m in evaluation.items():
        if m.get("missing_head"):
            table.add_row(head, str(m["n"]), "no head", "", "", "", "", "")
            continue
        table.add_row(
            head,
            f"{m['n']:,}",
            common.f1(m.get("macro_f1")),
            common.f1(base.get("logreg", {}).get(head, {}).get("macro_f1")),
            common.f1(base.get("majority", {}).get(head, {}).get("macro_f1")),
            common.f1(m.get("accuracy")),
            common.f1(m.get("log_loss")),
            common.f1(m.get("ece")),
        )
    table.caption = "model / logreg / majority: macro-F1 on the same held-out rows"
    return table


@click.command("train")
@click.option(
    "--leads",
    "leads_path",
    type=_FILE,
    required=True,
    help="Lead table (CSV, Parquet, JSON Lines).",
)
@click.option("--events", "events_path", type=_FILE, help="Events table of the leads.")
@click.option(
    "--id-col",
    default="lead_id",
    show_default=True,
    help="The lead id column ('row_id' numbers the rows of a table without ids).",
)
@click.option("--stage-col", help="The buying-stage label column.")
@click.option("--persona-col", help="The persona label column.")
@click.option("--exclude", help="Columns that must not become features: A,B,…")
@click.option("--sales-ready", help="Stage labels that count as sales-ready: A,B,…")
@click.option(
    "--slice-cols",
    default="lead_source",
    show_default=True,
    help="Columns to also report metrics by (when present): A,B,…",
)
@click.option(
    "--n-estimators",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="Most boosting rounds per head (each head stops early on its calibration rows).",
)
@click.option(
    "--learning-rate", type=click.FloatRange(0, 1, min_open=True), default=0.1, show_default=True
)
@click.option(
    "--holdout-share",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.2,
    show_default=True,
    help="Share of leads held out (by id hash) for evaluation and the gate.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--max-rows",
    type=click.IntRange(min=0),
    default=DEFAULT_MAX_ROWS,
    show_default=True,
    help="Most leads held in memory: a bigger CSV or Parquet table is streamed in chunks "
    "and a uniform random sample of this many rows (by --seed) is trained on, as stderr "
    "says and the MLflow run records. 0 reads the whole table.",
)
@click.option(
    "--threads",
    "num_threads",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="LightGBM threads (raise on a dedicated machine; a busy one makes them spin).",
)
@common.AS_OF
@click.option(
    "--label-noise",
    type=click.Choice(["none", "prune", "reweight"]),
    help="Training labels confident learning flags as wrong: keep them, drop them, or "
    "down-weight them [default: TrainConfig.label_noise].",
)
@click.option("--gate/--no-gate", default=True, show_default=True, help="Run the promotion gate.")
@click.option(
    "--compile/--no-compile",
    "compile",
    default=True,
    show_default=True,
    help="Compile the trees to native code (LLVM) for fast single-row scoring; "
    "--no-compile trains faster and the served model scores with LightGBM itself.",
)
@click.option(
    "--model-name",
    help="Registered model name [default: LEADREADY_MODEL_NAME or lead-readiness]; "
    "a model of another task (other labels) needs its own name.",
)
@common.FORCE
@click.option(
    "--strict",
    is_flag=True,
    help="Stop (exit status 1) at the first input line that cannot be read or validated.",
)
@click.option(
    "--types",
    help="Force column kinds instead of the inferred ones: 'Annual Revenue=number,Close "
    "Date=date' (number, date, date-dmy, date-mdy, boolean, text).",
)
@click.option(
    "--allow-column",
    "allow_columns",
    multiple=True,
    help="Keep a column as a feature although it looks personal or leaks the label (a vendor "
    "score, a date after the outcome, a column that alone predicts the label) (repeatable).",
)
@common.report_option()
def train(
    leads_path: Path,
    exclude: str | None,
    sales_ready: str | None,
    slice_cols: str,
    max_rows: int,
    as_of: str | None,
    label_noise: str | None,
    model_name: str | None,
    report_path: Path | None,
    **options: Any,
) -> None:
    """Train on a lead table, log to MLflow, register a challenger and run the gate.

    Each head trains on the rows that have its label; other columns become
    features (numbers and categories detected), plus engagement features when
    --events is given. A table of more than --max-rows leads is streamed and
    sampled uniformly, so memory stays bounded whatever the file's size.
    \f
    ``options``: the other options, named as ``TrainConfig``'s fields; the work is
    ``training.train``'s.
    """
    from training.input_report import rejected_report_path
    from training.train import TrainConfig
    from training.train import train as run_training

    if options["stage_col"] is None and options["persona_col"] is None:
        raise click.UsageError("name at least one label column: --stage-col and/or --persona-col")
    settings = common.settings(model_name)
    config = TrainConfig(
        leads_path=leads_path,
        tracking_uri=settings.mlflow_tracking_uri,
        artifact_root=settings.artifact_root,
        exclude=common.split(exclude),
        as_of=common.as_of(as_of),
        slice_cols=common.split(slice_cols),
        max_rows=max_rows or None,
        sales_ready=common.split(sales_ready) or None,
        model_name=settings.model_name,
        rejected_report=report_path or rejected_report_path(settings.home, leads_path),
        actor=f"{common.actor()} (leadready train)",
        **({} if label_noise is None else {"label_noise": label_noise}),
        **options,
    )
    console = Console()
    stop_on_sigterm()
    with common.failing():
        result = run_training(config, console=console, notices=Console(stderr=True))
    console.print(
        _comparison_table(
            f"{settings.model_name} version {result.version} — "
            f"{result.n_train:,} training, {result.n_holdout:,} held-out leads",
            result.evaluation,
            result.baselines,
        )
    )
    console.print(
        f"run [bold]{result.run_id}[/bold], model [bold]{result.model_uri}[/bold] (alias challenger)"
    )
    if result.gate is None:
        console.print("gate: not run (--no-gate); promote by hand with `leadready promote VERSION`")
    else:
        from leadready.commands.gate_text import print_decision

        print_decision(console, result.gate)


@click.command("evaluate")
@click.option("--model", "model_uri", help="Model URI  [default: models:/<model name>@champion]")
@click.option("--leads", "leads_path", type=_FILE, required=True, help="Labelled lead table.")
@click.option("--events", "events_path", type=_FILE, help="Events table of the leads.")
@click.option("--id-col", default="lead_id", show_default=True)
@click.option("--stage-col", help="The buying-stage label column.")
@click.option("--persona-col", help="The persona label column.")
@click.option("--exclude", help="Columns to leave out: A,B,…")
@click.option(
    "--holdout-share",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.2,
    show_default=True,
    help="Evaluate on the held-out leads (by id hash); baselines train on the rest.",
)
@click.option("--as-of", help="Reference time of engagement features.")
def evaluate(
    model_uri: str | None, leads_path: Path, exclude: str | None, as_of: str | None, **options: Any
) -> None:
    """Evaluate a registered model on a labelled table, next to baselines.
    \f
    ``options``: the other options, named as ``evaluate_on_table``'s keywords.
    """
    from model.registry import configure, load_model
    from training.evaluate import evaluate_on_table

    if options["stage_col"] is None and options["persona_col"] is None:
        raise click.UsageError("name at least one label column: --stage-col and/or --persona-col")
    settings = common.settings()
    uri = model_uri or f"models:/{settings.model_name}@champion"
    console = Console()
    with common.failing():
        configure(settings.mlflow_tracking_uri, settings.artifact_root)
        with console.status(f"loading {uri}…"):
            model, version = load_model(uri)
        with console.status("building features and evaluating…"):
            report = evaluate_on_table(
                model,
                leads_path,
                exclude=common.split(exclude),
                as_of=common.as_of(as_of),
                **options,
            )
    label = uri if version is None else f"{uri} (version {version})"
    console.print(
        _comparison_table(
            f"{label} on {leads_path.name}: {report['n_holdout']:,} held-out leads",
            report["model"],
            report["baselines"],
        )
    )


@click.command("promote")
@click.argument("version")
@click.option(
    "--reason", default="promoted by hand", show_default=True, help="Recorded with the move."
)
@click.option(
    "--force",
    is_flag=True,
    help="Promote a version of another task (other labels) over the champion (recorded).",
)
def promote(version: str, reason: str, force: bool) -> None:
    """Point the champion alias at VERSION (the old champion becomes previous_champion)."""
    from model.registry import configure
    from training.promote import promote as promote_version

    settings = common.settings()
    with common.failing():
        configure(settings.mlflow_tracking_uri)  # the registry only: no experiment is needed
        moves = promote_version(
            version, model_name=settings.model_name, by=common.actor(), why=reason, forced=force
        )
    console = Console()
    if not moves:
        console.print(f"version {version} already is the champion of {settings.model_name}")
        return
    _print_moves(console, settings.model_name, moves)


@click.command("rollback")
@click.option(
    "--reason", default="rolled back by hand", show_default=True, help="Recorded with the move."
)
def rollback(reason: str) -> None:
    """Move the champion alias back to the previous champion."""
    from model.registry import configure
    from training.promote import rollback as rollback_champion

    settings = common.settings()
    with common.failing():
        configure(settings.mlflow_tracking_uri)  # the registry only: no experiment is needed
        moves = rollback_champion(model_name=settings.model_name, by=common.actor(), why=reason)
    console = Console()
    _print_moves(console, settings.model_name, moves)


def _print_moves(console: Console, model_name: str, moves: Any) -> None:
    """The alias moves of a promote or rollback, and what serving does next."""
    for move in moves:
        console.print(
            f"{model_name}@{move.alias}: {move.from_version or '—'} → {move.to_version or '—'}"
        )
    console.print(
        "serving processes move the stored leads' predictions to the new champion in the "
        "background (`leadready models rescore` does it now when no server runs)"
    )
