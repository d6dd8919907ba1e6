"""Shared fixtures: a throwaway home, store URLs for SQLite and PostgreSQL, a CRM export to
train on.

Where things live: fixtures every test may use are here or in plugins of
``tests/support`` (loaded below); plain helpers are imported from ``tests/support``
(``wait_until``, the MLflow server, lead builders); generated data from
``tests/fixtures``. No test module imports another test module.

Trainings in the tests do not compile the trees to native code (``compile=False``):
LLVM compilation belongs to the tests about the compiled model, which ask for it.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from leadready.config import Settings

# Session-scoped fixtures with a tiny trained champion, shared by API and UI tests.
pytest_plugins = ["tests.support.registry"]

PG_URL = os.environ.get(
    "LEADREADY_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _pg_available(url: str) -> bool:
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return True
    except Exception:
        return False


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Settings for an empty home under pytest's tmp_path (SQLite store, SQLite MLflow)."""
    return Settings.for_home(tmp_path / "home")


@pytest.fixture(scope="session")
def pg_base_url() -> str:
    """The PostgreSQL server's URL. CI sets LEADREADY_REQUIRE_PG=1: absent is then a failure."""
    if not _pg_available(PG_URL):
        if os.environ.get("LEADREADY_REQUIRE_PG") == "1":
            pytest.fail(f"PostgreSQL is required but does not answer at {PG_URL}")
        pytest.skip(f"PostgreSQL does not answer at {PG_URL}")
    return PG_URL


@pytest.fixture
def pg_url(pg_base_url):
    """A fresh PostgreSQL schema for one test, dropped afterwards."""
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(pg_base_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'create schema "{schema}"'))
    sep = "&" if "?" in pg_base_url else "?"
    yield f"{pg_base_url}{sep}options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(sa.text(f'drop schema "{schema}" cascade'))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """Each store test runs on SQLite and on PostgreSQL (that one marked ``postgres``)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_url")


@dataclass(frozen=True)
class CrmExport:
    """A CRM export written to ``root``: ``contacts.csv`` (``table``) and ``events.csv``."""

    root: Path
    table: Any

    def config(self, **overrides: Any) -> Any:
        """The ``TrainConfig`` for this export; ``overrides`` replace the defaults.

        Defaults: the export's columns (``Contact ID``, ``Lifecycle Stage``, ``Segment``;
        ``Email`` and ``Converted`` excluded), an MLflow store in ``root``, one thread,
        and ``compile=False`` (only the tests about the compiled model pass ``True``).
        """
        from training.train import TrainConfig

        values: dict[str, Any] = {
            "leads_path": self.root / "contacts.csv",
            "events_path": self.root / "events.csv",
            "tracking_uri": f"sqlite:///{self.root / 'mlflow.db'}",
            "artifact_root": self.root / "artifacts",
            "id_col": "Contact ID",
            "stage_col": "Lifecycle Stage",
            "persona_col": "Segment",
            "exclude": ("Email", "Converted"),
            "num_threads": 1,
            "compile": False,
        }
        values.update(overrides)
        return TrainConfig(**values)


@pytest.fixture(scope="session")
def crm_export(tmp_path_factory):
    """``crm_export(name, n, seed=7)``: a fresh folder with a CRM export of ``n`` contacts."""
    from tests.fixtures.crm.crm import crm_events, crm_table

    def write(name: str, n: int, *, seed: int = 7) -> CrmExport:
        root = tmp_path_factory.mktemp(name)
        table = crm_table(n, seed=seed)
        table.to_csv(root / "contacts.csv", index=False)
        crm_events(table, seed=seed).to_csv(root / "events.csv", index=False)
        return CrmExport(root, table)

    return write


@dataclass(frozen=True)
class SimulatedChampion:
    """A champion ``training.train.train`` registered on simulated leads (``paths``)."""

    paths: dict[str, Path]
    config: Any
    result: Any
    model: Any
    version: str
    base: Any

    def record_scores(self, store: Any, leads: Any) -> None:
        """Record the champion's scores of its training table in ``store``, as a batch
        scoring would (``leads``: the lead rows the store keeps with them)."""
        from training.record import record_scored_frame

        record_scored_frame(
            store,
            self.base.X,
            self.model.predict_frame(self.base.X),
            self.config.model_name,
            self.version,
            leads=leads,
            input_columns=self.model.input_columns,
        )


@pytest.fixture(scope="session")
def simulated_champion():
    """``simulated_champion(sim, root, n_estimators, fmt="csv")``: ``sim`` written to
    ``root / "data"``,
    a champion trained on it by ``train`` (both heads, one thread, no compiled trees) into an
    MLflow store in ``root``, loaded back, with its training table as ``load_training_table``
    reads it."""

    def train_champion(
        sim: Any, root: Path, n_estimators: int, fmt: str = "csv"
    ) -> SimulatedChampion:
        from data.simulate import write
        from model.registry import load_model
        from training.dataset import load_training_table
        from training.train import TrainConfig, train

        paths = write(sim, root / "data", fmt=fmt)
        config = TrainConfig(
            leads_path=paths["leads"],
            events_path=paths["events"],
            tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
            artifact_root=root / "artifacts",
            stage_col="stage",
            persona_col="persona",
            n_estimators=n_estimators,
            num_threads=1,
            compile=False,
        )
        result = train(config)
        model, version = load_model(f"models:/{config.model_name}/{result.version}")
        base = load_training_table(
            paths["leads"], events_path=paths["events"], stage_col="stage", persona_col="persona"
        )
        return SimulatedChampion(paths, config, result, model, version, base)

    return train_champion
