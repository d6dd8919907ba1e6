"""What the commands share: settings, who runs them, ``--as-of``, errors as one line."""

from __future__ import annotations

import contextlib
import getpass
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from leadready.config import Settings

__all__ = [
    "AS_OF",
    "FILE",
    "FORCE",
    "actor",
    "as_of",
    "errors",
    "f1",
    "fail",
    "failing",
    "report_option",
    "settings",
    "split",
]


def settings(model_name: str | None = None) -> Settings:
    """The settings of the environment, the home created, ``--model-name`` applied."""
    found = Settings.from_env()
    found.ensure_home()
    return replace(found, model_name=model_name) if model_name else found


def actor() -> str:
    """Who runs the command (recorded with alias moves and runs)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def split(value: str | None) -> tuple[str, ...]:
    """``"a, b,c"`` → ``("a", "b", "c")``; None or blank → ``()``."""
    if not value:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())


def as_of(value: str | None) -> datetime | None:
    """``--as-of`` as a time, or a usage error naming the option."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time (e.g. 2026-06-30T00:00:00Z)", param_hint="--as-of"
        ) from None


def errors() -> tuple[type[BaseException], ...]:
    """The errors shown as a one-line message (MLflow's only once it was imported)."""
    found: tuple[type[BaseException], ...] = (ValueError, LookupError, OSError)
    exceptions = sys.modules.get("mlflow.exceptions")
    return found + (exceptions.MlflowException,) if exceptions is not None else found


def fail(exc: BaseException, *, first_line: bool = False) -> click.ClickException:
    """``exc`` as a one-line command error (only its first line with ``first_line``)."""
    text = str(exc).strip()
    return click.ClickException(
        (text.splitlines()[0] if first_line and text else text) or type(exc).__name__
    )


@contextlib.contextmanager
def failing(*, first_line: bool = False) -> Iterator[None]:
    """Turn the :func:`errors` raised inside into a one-line command error (:func:`fail`)."""
    try:
        yield
    except errors() as exc:
        raise fail(exc, first_line=first_line) from None


def f1(value: float | None) -> str:
    """A macro-F1 for a table cell."""
    return "—" if value is None else f"{value:.3f}"


# Options more than one command takes, with the same words.
FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
AS_OF = click.option("--as-of", help="Reference time of engagement features [default: last event].")
FORCE = click.option(
    "--force",
    is_flag=True,
    help="Let the gate promote over a champion of another task (recorded in the alias history).",
)


def report_option(what: str = "lines") -> Callable[[Any], Any]:
    """``--report``: where to write the rejected ``what``."""
    return click.option(
        "--report",
        "report_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help=f"Where to write the rejected {what}  [default: $LEADREADY_HOME/reports/…]",
    )
