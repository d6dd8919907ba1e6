"""What every reading command says about its input: lines read, kept, rejected, and where the
rejected lines were written. ``train``, ``score`` and ``features`` print the same summary, and
``train`` adds what it inferred about the table (column kinds, excluded columns, labels)."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from data.personal import open_private
from data.values import utc_now

__all__ = ["print_read_summary", "print_training_input", "rejected_report_path", "write_rejected"]

#: Rejected lines printed before "and N more".
_SHOWN = 10


def rejected_report_path(home: Path, source: Path) -> Path:
    """``$LEADREADY_HOME/reports/<file>-rejected-<UTC time>.csv``."""
    stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
    return Path(home) / "reports" / f"{Path(source).stem}-rejected-{stamp}.csv"


def write_rejected(path: Path, errors: Iterable[Any]) -> Path:
    """Write rejected lines as CSV: ``file, line, row, column, value, message``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open_private(path) as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "line", "row", "column", "value", "message"])
        for e in errors:
            cells = (e.file, e.line, e.row, e.column, e.value, e.message)
            writer.writerow(["" if cell is None else cell for cell in cells])
    return path


def print_read_summary(
    console: Console,
    name: str,
    *,
    n_kept: int,
    errors: Sequence[Any],
    notes: Sequence[str] = (),
    report_path: Path | None = None,
) -> Path | None:
    """Print ``leads.csv: 2,005 lines read, 2,000 kept, 5 rejected`` and the first errors."""
    for note in notes:
        console.print(f"[yellow]{escape(note)}", highlight=False, soft_wrap=True)
    bad = len({(e.file, e.row) for e in errors})
    console.print(
        f"{escape(name)}: {n_kept + bad:,} lines read, {n_kept:,} kept, {bad:,} rejected",
        highlight=False,
    )
    _print_first(console, errors)
    if errors and report_path is not None:
        return _write_and_say(console, report_path, errors)
    return None


def _print_first(console: Console, errors: Sequence[Any]) -> None:
    for e in list(errors)[:_SHOWN]:
        console.print(f"  {escape(str(e))}", highlight=False, soft_wrap=True)
    if len(errors) > _SHOWN:
        console.print(f"  … and {len(errors) - _SHOWN:,} more", highlight=False)


def _write_and_say(console: Console, path: Path, errors: Sequence[Any]) -> Path:
    written = write_rejected(path, errors)
    console.print(
        f"rejected lines written to {written} (readable by you only; personal values masked)",
        highlight=False,
        soft_wrap=True,
    )
    return written


def print_training_input(console: Console, training_set: Any, report_path: Path | None) -> None:
    """The read summary of a training set's leads (and events) and what was inferred."""
    errors = list(training_set.rejected)
    # The report is written below, with the events' rejected lines in it too.
    n_kept, notes = len(training_set), training_set.notes
    print_read_summary(console, training_set.name, n_kept=n_kept, errors=errors, notes=notes)
    events = list(training_set.rejected_events)
    if events:
        console.print(f"events: {len({e.row for e in events}):,} lines rejected", highlight=False)
        _print_first(console, events)
    if (errors or events) and report_path is not None:
        _write_and_say(console, report_path, [*errors, *events])
    for line in getattr(training_set, "inferred", ()):
        console.print(escape(line), highlight=False, soft_wrap=True)
