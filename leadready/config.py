"""Settings read once at the top (command line, app factory) and passed down.

Lower layers never read the environment; they take these values as arguments.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MODEL_NAME", "Settings"]

#: The registered model name in the MLflow registry.
MODEL_NAME = "lead-readiness"


@dataclass(frozen=True)
class Settings:
    """Where leadready keeps its state. Defaults are embedded: SQLite files under ``home``."""

    home: Path
    database_url: str
    mlflow_tracking_uri: str
    model_name: str = MODEL_NAME

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read ``LEADREADY_HOME``, ``DATABASE_URL`` and ``MLFLOW_TRACKING_URI``."""
        env = os.environ if env is None else env
        home = Path(env.get("LEADREADY_HOME") or "./var").resolve()
        return cls.for_home(
            home,
            database_url=env.get("DATABASE_URL") or None,
            mlflow_tracking_uri=env.get("MLFLOW_TRACKING_URI") or None,
            model_name=env.get("LEADREADY_MODEL_NAME") or MODEL_NAME,
        )

    @classmethod
    def for_home(
        cls,
        home: Path | str,
        *,
        database_url: str | None = None,
        mlflow_tracking_uri: str | None = None,
        model_name: str = MODEL_NAME,
    ) -> Settings:
        """Settings for a home folder, with the embedded SQLite defaults under it."""
        home = Path(home).resolve()
        return cls(
            home=home,
            database_url=database_url or f"sqlite:///{home / 'leadready.db'}",
            mlflow_tracking_uri=mlflow_tracking_uri or f"sqlite:///{home / 'mlflow.db'}",
            model_name=model_name,
        )

    @property
    def artifact_root(self) -> Path:
        """Where MLflow artifacts go when tracking is the local default."""
        return self.home / "mlartifacts"

    @property
    def model_cache_dir(self) -> Path:
        """Where commands keep the resolved registry model (``model.model_cache``)."""
        return self.home / "cache" / "models"

    def ensure_home(self) -> Path:
        """Create the home folder (called by commands, never at import time)."""
        self.home.mkdir(parents=True, exist_ok=True)
        return self.home
