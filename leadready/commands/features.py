"""``leadready features``: one feature row per lead from a leads table and its events."""

from __future__ import annotations

import time
from pathlib import Path

import click
import pandas as pd

from data.readers import ReadResult, read_events, read_leads
from data.values import as_utc
from leadready.commands import common
from model.features import FeatureConfig, build_features, feature_names

__all__ = ["features"]

_OUT_SUFFIXES = (".csv", ".parquet")


def _report(result: ReadResult, what: str) -> None:
    """Say on stderr which rows of an input were rejected (they are never dropped silently)."""
    for note in result.notes:  # the encoding or delimiter the reader chose
        click.echo(note, err=True)
    if not result.ok:
        click.echo(result.report(), err=True)
        click.echo(f"{what}: rejected rows are left out of the features", err=True)


def _write(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = frame.reset_index()
    if path.suffix.lower() == ".parquet":
        table.to_parquet(path, index=False)
    else:
        table.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%SZ", lineterminator="\n")


@click.command("features")
@click.option(
    "--leads",
    "leads_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Leads table (CSV, Parquet or JSON Lines), one row a lead.",
)
@click.option(
    "--events",
    "events_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Events table; without it only profile features are built.",
)
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the features (.csv or .parquet).",
)
@click.option(
    "--as-of",
    "as_of",
    help="Reference time, ISO 8601 (naive = UTC). Events after it never count. "
    "[default: the latest event]",
)
@click.option("--id-col", default="lead_id", show_default=True, help="The leads' id column.")
@click.option(
    "--exclude",
    multiple=True,
    help="A leads column to leave out (labels, for instance); repeat for more.",
)
@click.option(
    "--half-life",
    "half_life_days",
    type=click.FloatRange(min=0, min_open=True),
    default=FeatureConfig().half_life_days,
    show_default=True,
    help="Half-life of the engagement decay, in days.",
)
@click.option(
    "--strict", is_flag=True, help="Fail on the first bad input row instead of reporting."
)
def features(
    leads_path: Path,
    events_path: Path | None,
    out_path: Path,
    as_of: str | None,
    id_col: str,
    exclude: tuple[str, ...],
    half_life_days: float,
    strict: bool,
) -> None:
    """Build one feature row per lead: profile features, and engagement from events.

    The output has the lead id first, then the lead's own columns, date columns
    turned into days before --as-of, title-derived seniority and function, and
    (with --events) counts per window, decayed engagement, recency, velocity,
    breadth and bot-likeness.
    """
    if out_path.suffix.lower() not in _OUT_SUFFIXES:
        raise click.BadParameter(
            f"{out_path.name}: the output must end in .csv or .parquet", param_hint="--out"
        )
    parsed = common.as_of(as_of)
    reference = None if parsed is None else as_utc(parsed)
    config = FeatureConfig(half_life_days=half_life_days)
    started = time.perf_counter()
    try:
        leads = read_leads(leads_path, id_col=id_col, strict=strict)
        events = read_events(events_path, strict=strict) if events_path is not None else None
        _report(leads, "leads")
        if events is not None:
            _report(events, "events")
        frame = build_features(
            leads.frame,
            events.frame if events is not None else None,
            as_of=reference,
            config=config,
            id_col=id_col,
            exclude=exclude,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    _write(frame, out_path)
    n_engagement = len(feature_names(config)) if events is not None else 0
    click.echo(
        f"{len(frame):,} leads x {frame.shape[1]} columns ({n_engagement} from events) "
        f"-> {out_path} in {time.perf_counter() - started:.1f} s"
    )
