"""``leadready simulate``: write simulated leads, events and the hidden truth."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from itertools import zip_longest
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from data.schema import DEFAULT_PERSONAS, DEFAULT_STAGES
from data.simulate import Simulation, SimulationConfig, write
from data.simulate import simulate as run_simulation
from leadready.config import Settings

__all__ = ["simulate"]

_DEFAULTS = SimulationConfig()
_SIM_STEPS = ("profiles", "events", "labels", "tables")
_TABLES = ("leads", "events", "truth")


@click.command("simulate")
@click.option(
    "--leads",
    "n_leads",
    type=click.IntRange(min=1),
    default=_DEFAULTS.n_leads,
    show_default=True,
    help="Number of leads.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for leads, events and truth  [default: $LEADREADY_HOME/data]",
)
@click.option(
    "--noise",
    "label_noise",
    type=click.FloatRange(0.0, 1.0),
    default=_DEFAULTS.label_noise,
    show_default=True,
    help="Share of marketing's stage and persona labels that are wrong.",
)
@click.option(
    "--window-days",
    type=click.IntRange(min=1),
    default=_DEFAULTS.window_days,
    show_default=True,
    help="Days of activity simulated, ending at --end.",
)
@click.option(
    "--end",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    help=f"End of the window, UTC  [default: {_DEFAULTS.end:%Y-%m-%d}]",
)
@click.option(
    "--late-share",
    "late_stage_share",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=_DEFAULTS.late_stage_share,
    show_default=True,
    help="Share of leads truly in a late stage (decision or purchase).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "parquet"]),
    default="csv",
    show_default=True,
    help="File format.",
)
def simulate(out_dir: Path | None, end: datetime | None, fmt: str, **options: Any) -> None:
    """Simulate leads, their engagement events and the hidden truth.

    Writes leads (profile + marketing's stage/persona labels, noisy), events and
    truth (the real stage and persona) to --out, and prints the class balance and
    the measured label noise.
    \f
    ``options``: n_leads, seed, window_days, label_noise and late_stage_share, as
    ``SimulationConfig`` takes them.
    """
    console = Console()
    if out_dir is None:
        out_dir = Settings.from_env().home / "data"
    try:
        config = SimulationConfig(
            end=(end.replace(tzinfo=UTC) if end is not None else _DEFAULTS.end), **options
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc

    started = time.perf_counter()
    with Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("simulating", total=len(_SIM_STEPS) + 1)

        def step(name: str) -> None:
            progress.update(task, description=f"simulating {name}", advance=1)

        sim = run_simulation(config, on_step=step)
        progress.update(task, description=f"writing {fmt} files")
        paths = write(sim, out_dir, fmt=fmt)  # type: ignore[arg-type]
        progress.update(task, advance=1)
    _summary(console, sim, paths, time.perf_counter() - started)


def _summary(console: Console, sim: Simulation, paths: dict[str, Path], seconds: float) -> None:
    n_leads, n_events = len(sim.leads), len(sim.events)
    console.print(
        f"Simulated {n_leads:,} leads and {n_events:,} events "
        f"({n_events / n_leads:.1f} per lead) in {seconds:.1f} s "
        f"(seed {sim.config.seed}, window {sim.config.window_days} days to "
        f"{sim.config.end:%Y-%m-%d})."
    )
    balance = sim.class_balance()
    late = balance["stage"]["decision"] + balance["stage"]["purchase"]
    table = Table(title="Hidden truth: class balance", title_justify="left")
    table.add_column("stage")
    table.add_column("share", justify="right")
    table.add_column("persona")
    table.add_column("share", justify="right")
    for stage, persona in zip_longest(DEFAULT_STAGES, DEFAULT_PERSONAS, fillvalue=""):
        table.add_row(
            stage,
            f"{balance['stage'][stage]:.1%}" if stage else "",
            persona,
            f"{balance['persona'][persona]:.1%}" if persona else "",
        )
    console.print(table)
    console.print(f"Late-stage share: {late:.1%} (configured {sim.config.late_stage_share:.1%})")
    noise = sim.noise_rates()
    console.print(
        f"Label noise measured: stage {noise['stage']:.1%}, persona {noise['persona']:.1%} "
        f"(configured {sim.config.label_noise:.1%})"
    )
    for name in _TABLES:
        console.print(f"{name:>6}: {paths[name]}", soft_wrap=True, highlight=False)
