"""``leadready models``: registered versions, the alias history, re-scoring stored leads.

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

from datetime import UTC, datetime

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from leadready.commands import common
from leadready.commands.db import open_store

__all__ = ["models"]


def _when(at: str | int | None) -> str:
    if at is None or at == "":
        return "—"
    if isinstance(at, int):
        stamp = datetime.fromtimestamp(at / 1000, UTC)
    else:
        try:
            stamp = datetime.fromisoformat(str(at))
        except ValueError:
            return str(at)
    return stamp.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


_NAME = click.option(
    "--model-name", help="Registered model name [default: LEADREADY_MODEL_NAME or lead-readiness]."
)


@click.group("models")
def models() -> None:
    """Registered versions, who moved the champion alias and why, re-scoring."""


@models.command("history")
@_NAME
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
def history(model_name: str | None, limit: int) -> None:
    """Every move of an alias (champion, previous_champion, challenger), newest first."""
    from model.registry import alias_history

    settings = common.settings(model_name)
    with common.failing(first_line=True):
        moves = alias_history(settings.model_name, tracking_uri=settings.mlflow_tracking_uri)
    console = Console()
    if not moves:
        console.print(f"no alias of {settings.model_name} has moved yet")
        return
    table = Table(title=f"{settings.model_name}: alias moves", title_justify="left")
    for column in ("when", "alias", "move", "by", "why", "gate"):
        table.add_column(column, overflow="fold")
    for move in list(reversed(moves))[:limit]:
        gate = escape(move.get("gate") or "—")
        if move.get("forced"):
            gate = f"[yellow]forced[/yellow] {gate}"
        table.add_row(
            _when(move.get("at")),
            str(move.get("alias")),
            f"v{move.get('from_version') or '—'} → v{move.get('to_version') or '—'}",
            escape(str(move.get("by"))),
            escape(str(move.get("why"))),
            gate,
        )
    console.print(table)


@models.command("list")
@_NAME
def list_versions(model_name: str | None) -> None:
    """Registered versions, newest first: aliases, task and the gate's decision."""
    from model.registry import versions_overview

    settings = common.settings(model_name)
    with common.failing(first_line=True):
        versions = versions_overview(settings.model_name, tracking_uri=settings.mlflow_tracking_uri)
    console = Console()
    if not versions:
        console.print(f"no versions of {settings.model_name} are registered")
        return
    table = Table(title=f"{settings.model_name}: versions", title_justify="left")
    for column in ("version", "aliases", "registered", "task", "gate"):
        table.add_column(column, overflow="fold")
    for v in versions:
        task = v["task"].describe() if v["task"] is not None else "— (registered without a task)"
        table.add_row(
            f"v{v['version']}",
            ", ".join(v["aliases"]) or "—",
            _when(v["registered_at"]),
            escape(task),
            escape(v["gate"] or "not gated"),
        )
    console.print(table)


@models.command("rescore")
@_NAME
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Leads per batch (one read, one scoring call, one write transaction).",
)
def rescore(model_name: str | None, batch_size: int) -> None:
    """Re-score every stored lead whose newest prediction is not from the champion.

    Serving processes do this by themselves after a promotion or a rollback;
    run it when no server runs, or to finish a run by hand. It resumes where
    an interrupted run stopped, and waits while another process re-scores.
    """
    from data.rescore import RescoreLock, version_counts
    from model.registry import configure, load_model
    from serve.rescore import rescore_to

    settings = common.settings(model_name)
    console = Console()
    with common.failing(first_line=True):
        configure(settings.mlflow_tracking_uri, settings.artifact_root)
        model, version = load_model(f"models:/{settings.model_name}@champion")
    with open_store(settings) as store:
        before = version_counts(store)
        console.print(
            f"{before.total:,} stored leads; {before.on(str(version)):,} already on "
            f"{settings.model_name} v{version} (the champion)"
        )
        lock = RescoreLock(store, settings.home / "jobs")
        if not lock.acquire():
            console.print("another process is re-scoring; waiting for it…")
            lock.acquire(blocking=True)
        try:
            result = rescore_to(
                store,
                model,
                model_name=settings.model_name,
                version=str(version),
                batch_size=batch_size,
            )
        finally:
            lock.release()
        after = version_counts(store)
    console.print(
        f"re-scored {result.rescored:,} leads in {result.seconds:.1f} s "
        f"({result.cpu_seconds:.1f} s CPU); {after.on(str(version)):,} of {after.total:,} "
        f"stored leads are on v{version}"
    )
    if result.without_snapshot:
        console.print(
            f"[yellow]{result.without_snapshot:,} leads have no feature snapshot and kept "
            "their prediction"
        )
    for column, n in sorted(result.missing_inputs.items()):
        console.print(f"[yellow]{n:,} leads lack input {column!r}: scored as a missing value")
