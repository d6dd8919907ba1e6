"""``leadready score --engine spark``: bulk scoring on Apache Spark.

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from leadready.commands.score_summary import print_score_summary
from leadready.config import Settings

__all__ = ["DEFAULT_MASTER", "score_on_spark"]

#: Spark master of ``--engine spark`` when none is given: every core of this machine.
DEFAULT_MASTER = "local[*]"


def score_on_spark(
    settings: Settings,
    model_uri: str,
    in_path: Path | str,
    out_path: Path | str,
    *,
    events_path: Path | str | None = None,
    id_col: str = "lead_id",
    reasons: bool = False,
    as_of: datetime | None = None,
    master: str = DEFAULT_MASTER,
    driver_memory: str = "4g",
    console: Console | None = None,
) -> None:
    """Score a Parquet lead table (file or folder) on Spark into a Parquet folder, print a summary.

    A Spark session this process already has is used and not stopped, else one is started on
    ``master``; bad input, an unknown model or alias, or a failed job is a ClickException.
    """
    from mlflow.exceptions import MlflowException
    from pyspark.errors import PySparkException

    from model.registry import configure
    from training.spark import score_spark

    console = console or Console(stderr=True)
    settings.ensure_home()
    configure(settings.mlflow_tracking_uri, settings.artifact_root)
    spark, started = _session(settings, master, driver_memory, console)
    if not started:
        master = spark.sparkContext.master
    try:
        with console.status(f"scoring {Path(in_path).name} on Spark with {model_uri}…"):
            summary = score_spark(
                spark,
                in_path,
                out_path,
                model_uri=model_uri,
                events_path=events_path,
                id_col=id_col,
                reasons=reasons,
                as_of=as_of,
            )
    except (ValueError, LookupError, MlflowException, OSError) as exc:
        raise click.ClickException(str(exc).strip() or type(exc).__name__) from None
    except PySparkException as exc:
        raise click.ClickException(_first_lines(str(exc))) from None
    finally:
        if started:
            spark.stop()
    label = (
        summary.model_uri if summary.version is None else f"{model_uri} (version {summary.version})"
    )
    print_score_summary(
        console,
        summary,
        how=f"on Spark ({master})",
        label=label,
        events_given=events_path is not None,
    )


def _session(
    settings: Settings, master: str, driver_memory: str, console: Console
) -> tuple[Any, bool]:
    """``(session, started)``: the session this process already runs (used as it is and left
    running), else a new one on ``master``."""
    from pyspark.sql import SparkSession

    from training.spark import local_session

    existing = SparkSession.getActiveSession()
    if existing is not None:
        return existing, False
    with console.status(f"starting Spark ({master})…"):
        spark = local_session(
            master,
            app_name="leadready-score",
            driver_memory=driver_memory,
            local_dir=settings.home / "spark",
        )
    return spark, True


def _first_lines(text: str, limit: int = 12) -> str:
    """The head of a Spark error (the Python traceback of a failed task is long)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    shown = "\n".join(lines[:limit])
    return shown + ("\n…" if len(lines) > limit else "")
