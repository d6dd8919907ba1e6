"""``leadready retrain``, ``corrections import|export`` and ``queue``: the review loop from a shell.

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from data.locks import file_lock
from data.values import percent
from leadready.commands import common
from leadready.commands.db import open_store
from leadready.commands.train import stop_on_sigterm
from leadready.config import Settings

if TYPE_CHECKING:
    from data.review_queue import QueueItem
    from data.store import Store
    from training.corrections import ImportResult
    from training.retrain import RetrainResult

__all__ = ["corrections", "queue", "retrain"]

_FILE = common.FILE
#: Rows asked of the queue at a time (its page limit).
_PAGE = 1000
#: Columns of ``leadready queue --format csv``.
QUEUE_CSV_COLUMNS: tuple[str, ...] = (
    "rank",
    "lead_id",
    "priority",
    "priority_method",
    "p_wrong",
    "reason_codes",
    "reasons",
    "stage",
    "stage_confidence",
    "stage_margin",
    "persona",
    "persona_confidence",
    "persona_margin",
    "readiness",
    "route",
    "marketing_stage",
    "marketing_persona",
    "company",
    "job_title",
    "reviewed",
    "model_version",
    "scored_at",
)


# ------------------------------------------------------------------------ retrain


def _retrain_table(result: RetrainResult) -> Table:
    """Corrections used, gate-set macro-F1 of champion and challenger, decision."""
    s = result.corrections
    table = Table(title=f"retrain → version {result.version}", title_justify="left")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("reps' labels in the store", f"{s.n_labels:,} on {s.n_leads:,} leads")
    table.add_row(
        "corrected leads in training",
        f"{s.n_training:,} (weight {result.config.correction_weight:g})",
    )
    table.add_row("corrected leads in the gate set", f"{s.n_gate:,}")
    if s.n_new_leads:
        table.add_row("  of which not in the base data", f"{s.n_new_leads:,}")
    for head, n in s.n_changed.items():
        table.add_row(f"{head} labels changed from the base data", f"{n:,}")
    for why, n in s.skipped.items():
        table.add_row(f"skipped: {why}", f"{n:,}")
    if result.gate_set != "none":
        kind = "reps' labels" if result.gate_set == "rep-verified" else "marketing's + reps' labels"
        table.add_row("gate set", f"{result.gate_set} ({kind})")
    for head in ("stage", "persona"):
        n = result.gate_n(head)
        if not n:
            continue
        table.add_row(
            f"{head} macro-F1 on {n:,} gate leads",
            f"champion {common.f1(result.gate_macro_f1(head, 'champion'))} · "
            f"challenger {common.f1(result.gate_macro_f1(head, 'challenger'))}",
        )
    if result.gate is None:
        decision = "not gated (--no-gate): promote by hand with `leadready promote`"
    elif result.gate.promote:
        decision = f"[green]promoted: version {result.version} is the champion[/green]"
    else:
        decision = f"[red]refused: version {result.gate.champion_version} stays champion[/red]"
    table.add_row("decision", decision)
    return table


@click.command("retrain")
@click.option(
    "--leads", "leads_path", type=_FILE, help="Base lead table [default: the champion's]."
)
@click.option(
    "--events", "events_path", type=_FILE, help="Base events table [default: the champion's]."
)
@click.option("--id-col", help="Id column of the base table [default: the champion's].")
@click.option("--stage-col", help="Stage label column [default: the champion's].")
@click.option("--persona-col", help="Persona label column [default: the champion's].")
@click.option(
    "--base-version", help="Take the base data from this version's run [default: champion]."
)
@click.option(
    "--weight",
    "correction_weight",
    type=click.FloatRange(0, min_open=True),
    default=2.0,
    show_default=True,
    help="Sample weight of a corrected lead (base leads weigh 1).",
)
@click.option(
    "--gate-share",
    type=click.FloatRange(0, 1, max_open=True),
    help="Share of rep-verified leads kept as the gate set [default: the training holdout share].",
)
@click.option(
    "--min-gate-leads",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Fewer gate leads than this: gate on the training holdout instead.",
)
@click.option("--seed", type=int, help="Classifier seed [default: the champion's].")
@click.option("--gate/--no-gate", default=True, show_default=True, help="Run the promotion gate.")
@click.option(
    "--min-refuse-leads",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Fewest rep-verified gate leads of a head before they alone can refuse a challenger.",
)
@common.FORCE
@click.option(
    "--soft-relabel",
    type=click.FloatRange(0, 1),
    default=0.8,
    show_default=True,
    help="Soft-relabel marketing labels the model of corrections says are wrong with at least "
    "this probability (predicted rep label as an extra row at weight p); 0: down-weight "
    "them instead.",
)
def retrain(soft_relabel: float, **options: Any) -> None:
    """Retrain with reps' corrections and run the promotion gate.

    The training set is the champion's training data (read from its MLflow run,
    or --leads/--events) plus every lead's current rep label on the feature
    snapshot the rep reviewed; a hash share of rep-verified leads is the gate
    set. Serving processes pick a promoted model up by themselves.
    \f
    ``options``: the other options, named as ``RetrainConfig``'s fields; the work is
    ``training.retrain``'s.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from training.retrain import RetrainConfig
    from training.retrain import retrain as run_retrain

    settings = common.settings()
    try:
        config = RetrainConfig(
            tracking_uri=settings.mlflow_tracking_uri,
            artifact_root=settings.artifact_root,
            model_name=settings.model_name,
            actor=f"{common.actor()} (leadready retrain)",
            soft_relabel=soft_relabel or None,
            **options,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    console = Console()
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
    ]
    stop_on_sigterm()
    with (
        open_store(settings) as store,
        common.failing(),
        Progress(*columns, console=console, transient=True) as progress,
    ):
        task = progress.add_task("retraining", total=1.0)

        def step(text: str, fraction: float) -> None:
            progress.update(task, description=text, completed=fraction)

        result = run_retrain(config, store, progress=step)
    for note in result.notes:
        console.print(f"[yellow]note:[/yellow] {escape(note)}")
    console.print(_retrain_table(result))
    if result.gate is not None:
        from leadready.commands.gate_text import print_decision

        print_decision(console, result.gate)
    console.print(
        f"run [bold]{result.run_id}[/bold], model [bold]{result.model_uri}[/bold] "
        "(alias challenger); corrections logged under corrections/ in the run"
    )


# -------------------------------------------------------------------- corrections


@click.group("corrections")
def corrections() -> None:
    """Import reps' corrections from a CRM export, or export the correction history."""


def _model_labels(settings: Settings) -> dict[str, list[str]]:
    """The champion's labels per head, from its run's parameters (else the model itself)."""
    from model.model_cache import keep, recall, registry_stamp

    uri = settings.mlflow_tracking_uri
    key = f"champion labels of {settings.model_name}"
    cached = recall(settings.model_cache_dir, uri, key)
    if isinstance(cached, dict):
        return {str(h): [str(v) for v in values] for h, values in cached.items()}
    stamp = registry_stamp(uri)  # before the champion is read
    taken_ns = time.time_ns()
    labels = _model_labels_from_mlflow(settings)
    if stamp is not None:
        keep(settings.model_cache_dir, uri, key, stamp, labels, taken_ns)
    return labels


def _model_labels_from_mlflow(settings: Settings) -> dict[str, list[str]]:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from model.registry import configure, load_model
    from training.promote import CHAMPION, current_version

    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return {}  # no tracking store yet, so no champion: do not create one here
    configure(uri, settings.artifact_root)
    client = MlflowClient()
    version = current_version(settings.model_name, CHAMPION, client=client)
    if version is None:
        return {}
    try:
        run_id = client.get_model_version(settings.model_name, version).run_id
        params = client.get_run(run_id).data.params if run_id else {}
    except MlflowException:
        params = {}
    labels = {
        head: [v for v in params[f"{head}_labels"].split(",") if v]
        for head in ("stage", "persona")
        if params.get(f"{head}_labels")
    }
    if labels:
        return labels
    model, _ = load_model(f"models:/{settings.model_name}/{version}")
    return {head: list(values) for head, values in model.labels.items()}


def _print_import(console: Console, result: ImportResult) -> None:
    for line in result.report().splitlines():
        console.print(escape(line), highlight=False, soft_wrap=True)
    if result.ignored_columns:
        console.print(f"ignored columns: {escape(', '.join(result.ignored_columns))}")
    if result.conflicts:
        console.print(
            f"[yellow]{result.conflicts} correction(s) landed on a lead whose label had "
            "just changed; both rows are kept, the imported one is current"
        )


@contextlib.contextmanager
def _refit_lock(settings: Settings) -> Iterator[None]:
    """One queue refit at a time per home folder: a later one waits, then reads every
    correction so far, so the last order written is the one that knows the most."""
    with file_lock(settings.ensure_home() / "queue-refit.lock"):
        yield


def _refit_in_background(settings: Settings) -> tuple[int, Path]:
    """``leadready queue --refit`` in its own session; its summary goes to a log file."""
    log = settings.ensure_home() / "logs" / "queue-refit.log"
    log.parent.mkdir(exist_ok=True)
    argv = [sys.executable, "-m", "leadready", "queue", "--refit", "--top", "1", "--format", "csv"]
    with open(log, "ab") as out:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=out,
            start_new_session=True,
        )
    return process.pid, log


@corrections.command("import")
@click.argument("file", type=_FILE)
@click.option("--reviewer-default", help="Reviewer of rows whose reviewer column is empty.")
@common.report_option("rows")
@click.option("--dry-run", is_flag=True, help="Validate and report; write nothing.")
@click.option(
    "--refit-now",
    is_flag=True,
    help="Re-rank the review queue before returning  [default: in the background].",
)
def import_(
    file: Path,
    reviewer_default: str | None,
    report_path: Path | None,
    dry_run: bool,
    refit_now: bool,
) -> None:
    """Load a CRM export of corrections (lead_id, stage, persona, reviewer, reason, note).

    Every row is checked (known lead, known label, known reason, a reviewer);
    good rows become corrections (source "import"), rejected rows are printed and
    written to a report CSV. Exits with status 1 when any row was rejected.
    """
    from data.readers import InputError
    from training.corrections import ImportResult, import_corrections, known_labels
    from training.input_report import rejected_report_path

    settings = common.settings()
    console = Console()
    with common.failing():
        model_labels = _model_labels(settings)
    with open_store(settings) as store:
        try:
            result = import_corrections(
                file,
                store,
                labels=known_labels(store, model_labels),
                reviewer_default=reviewer_default,
                dry_run=dry_run,
            )
        except InputError as exc:
            result = ImportResult(path=file, rejected=list(exc.errors))
            if not exc.errors:
                raise common.fail(exc) from None
            console.print(f"[red]{escape(str(exc))}[/red]")
            console.print("nothing was imported")
        _print_import(console, result)
        if not dry_run and result.written:
            # The queue learns from what was just imported (issue 19): a refit takes
            # seconds to minutes with many leads, so by default it runs on its own.
            if refit_now:
                from training.learned_queue import refit_queue

                with _refit_lock(settings):
                    console.print(refit_queue(store).summary(), soft_wrap=True, highlight=False)
            else:
                pid, log = _refit_in_background(settings)
                console.print(
                    f"the review queue re-ranks with these corrections in the background "
                    f"(process {pid}, log {log}); `leadready queue` shows the new order "
                    "when it is done",
                    soft_wrap=True,
                    highlight=False,
                )
    if result.rejected:
        path = result.write_report(report_path or rejected_report_path(settings.home, file))
        console.print(f"rejected rows written to {path}", soft_wrap=True, highlight=False)
        raise click.exceptions.Exit(1)


@corrections.command("export")
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write (.csv or .parquet).",
)
def export(out_path: Path) -> None:
    """Write every correction (the append-only history, oldest first)."""
    from training.corrections import export_corrections

    guarded: list[int] = []
    with open_store() as store:
        try:
            path, n = export_corrections(store, out_path, on_neutralised=guarded.append)
        except (ValueError, OSError) as exc:
            raise common.fail(exc) from None
    Console(stderr=True).print(f"wrote {n:,} correction(s) to {path}", highlight=False)
    if guarded and guarded[0]:
        Console(stderr=True).print(
            f"{guarded[0]:,} cell(s) starting with = + - @, a tab or CR were prefixed with ' "
            "so spreadsheets show them as text instead of running them",
            highlight=False,
        )


# -------------------------------------------------------------------------- queue


def _queue_items(store: Store, top: int, filters: dict[str, Any]) -> tuple[list[QueueItem], int]:
    """The first ``top`` queue items (paging through the queue's page limit) and the total."""
    from data.review_queue import review_queue

    items: list[QueueItem] = []
    total = 0
    while len(items) < top:
        page = review_queue(store, limit=min(_PAGE, top - len(items)), offset=len(items), **filters)
        total = page.total
        items.extend(page.items)
        if not page.has_next or not page.items:
            break
    return items, total


def _csv_row(rank: int, item: QueueItem) -> dict[str, Any]:
    row = {name: getattr(item, name, None) for name in QUEUE_CSV_COLUMNS if hasattr(item, name)}
    row["rank"] = rank
    row["reason_codes"] = ";".join(item.reason_codes)
    row["reasons"] = " | ".join(r.text for r in item.reasons)
    row["scored_at"] = item.scored_at.isoformat()
    return row


def _queue_table(items: list[QueueItem], total: int) -> Table:
    table = Table(
        title=f"review queue: top {len(items):,} of {total:,} scored leads",
        title_justify="left",
        show_lines=True,
    )
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("lead", no_wrap=True)
    table.add_column("priority", justify="right", no_wrap=True)
    table.add_column("model says", no_wrap=True)
    table.add_column("why it is in the queue", ratio=1)
    for rank, item in enumerate(items, start=1):
        says = (
            f"{item.stage or '—'} {percent(item.stage_confidence, missing='')}\n"
            f"{item.persona or '—'} {percent(item.persona_confidence, missing='')}\n"
            f"→ {item.route or '—'}"
        )
        why = "\n".join(f"• {escape(r.text)}" for r in item.reasons) or "—"
        if item.reviewed:
            why = f"[dim](reviewed)[/dim]\n{why}"
        table.add_row(str(rank), escape(item.lead_id), f"{item.priority:.3f}", escape(says), why)
    return table


@click.command("queue")
@click.option(
    "--top", type=click.IntRange(min=1), default=20, show_default=True, help="How many leads."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="table for people; csv and json (on standard output) for scripts.",
)
@click.option("--stage", help="Only leads predicted in this stage.")
@click.option("--persona", help="Only leads predicted as this persona.")
@click.option("--route", help="Only leads with this route (sales, nurture, review).")
@click.option(
    "--reviewed/--unreviewed",
    default=None,
    help="Only leads a rep has (or has not) labelled  [default: both, reviewed last].",
)
@click.option("--search", default=None, help="Text in the lead id or the company.")
@click.option(
    "--refit",
    is_flag=True,
    help="First refit the model of corrections and re-rank the queue (message on stderr).",
)
def queue(top: int, fmt: str, refit: bool, **filters: Any) -> None:
    """Print the review queue in its order, with the reasons each lead is in it.

    The same queue, in the same order, as the review UI and GET /v1/review/queue.
    \f
    ``filters``: stage, persona, route, reviewed and search, as ``review_queue`` takes them.
    """
    if refit:
        from training.learned_queue import refit_queue

        with _refit_lock(common.settings()), open_store() as store:
            click.echo(refit_queue(store).summary(), err=True)
    with open_store() as store:
        items, total = _queue_items(store, top, filters)
    if fmt == "json":
        payload = {
            "total": total,
            "items": [{"rank": i, **item.to_dict()} for i, item in enumerate(items, start=1)],
        }
        click.echo(json.dumps(payload, indent=2, default=str))
    elif fmt == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=list(QUEUE_CSV_COLUMNS), lineterminator="\n")
        writer.writeheader()
        for rank, item in enumerate(items, start=1):
            writer.writerow(_csv_row(rank, item))
    else:
        console = Console()
        if not items:
            console.print("the queue is empty: no scored leads match")
            return
        console.print(_queue_table(items, total))
