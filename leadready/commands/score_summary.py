"""The run summary ``leadready score`` prints, whichever engine scored (local or Spark)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

__all__ = ["print_score_summary"]

#: Missing input columns a summary names before "and N more".
_SHOWN = 8


def print_score_summary(
    console: Console, summary: Any, *, how: str, label: str, events_given: bool
) -> None:
    """Print what a scoring run did: rows, time and rate, routes, renamed and missing columns.

    ``how`` follows the row count ("in 3 chunk(s)"), ``label`` names the model; without
    ``events_given`` a missing-columns warning suggests ``--events``.
    """
    rate = summary.rows / summary.seconds if summary.seconds else 0.0
    console.print(
        f"scored {summary.rows:,} rows {how} with {label} "
        f"({summary.seconds:.1f} s, {rate:,.0f} rows/s) → {summary.out_path}"
    )
    if summary.routes:
        console.print(
            "routes: " + ", ".join(f"{k} {v:,}" for k, v in sorted(summary.routes.items()))
        )
    if summary.renamed_columns:
        renamed = ", ".join(f"{a} → {b}" for a, b in summary.renamed_columns.items())
        console.print(f"[yellow]input columns renamed to keep the predictions apart: {renamed}")
    missing = list(summary.missing_columns)
    if missing:
        shown = ", ".join(missing[:_SHOWN])
        more = len(missing) - _SHOWN
        console.print(
            f"[yellow]{len(missing)} of the model's input columns are missing "
            f"and scored as missing values: {shown}{f' and {more} more' if more > 0 else ''}"
            + ("" if events_given else " (pass --events if the model was trained with events)")
        )
