"""The ``leadready`` command line.

Each subcommand lives in its own module under ``leadready.commands`` and is
imported only when it is called, so ``leadready --help`` stays fast and one
command's heavy imports (MLflow, LightGBM, Flask) never slow another.
"""

from __future__ import annotations

import importlib

import click

__all__ = ["main"]

#: command name -> (module under leadready.commands, attribute, short help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "simulate": ("simulate", "simulate", "Simulate leads, events and the hidden truth."),
    "features": ("features", "features", "Build one feature row per lead from leads + events."),
    "db": ("db", "db", "Database migrations (upgrade, current)."),
    "user": ("users", "user", "Manage review UI users and roles."),
    "apikey": ("users", "apikey", "Manage API keys."),
    "train": ("train", "train", "Train on a lead table, log to MLflow, register, gate."),
    "evaluate": ("train", "evaluate", "Evaluate a registered model on a labelled table."),
    "promote": ("train", "promote", "Point the champion alias at a model version."),
    "rollback": ("train", "rollback", "Move the champion alias back to the previous champion."),
    "score": ("score", "score", "Score a lead table (CSV or Parquet) in chunks."),
    "serve": ("serve", "serve", "Serve the API and the review UI under gunicorn."),
    "demo": ("demo", "demo", "Simulate, train, create demo users and a key, serve."),
    "retrain": ("review", "retrain", "Retrain with reps' corrections and run the promotion gate."),
    "corrections": ("review", "corrections", "Import or export reps' corrections."),
    "queue": ("review", "queue", "Print the review queue in its order."),
    "models": ("models", "models", "Versions, who moved the champion and why, re-scoring."),
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when it runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module_name, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(f"leadready.commands.{module_name}"), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup)
@click.version_option(package_name="leadready")
def main() -> None:
    """leadready: buying stage and persona for every lead, correctable by sales.

    State lives under LEADREADY_HOME (default ./var); DATABASE_URL and
    MLFLOW_TRACKING_URI point the store and MLflow elsewhere.
    """


if __name__ == "__main__":
    main()
