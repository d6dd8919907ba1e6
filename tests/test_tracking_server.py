"""A shared MLflow tracking server on PostgreSQL: train → register → promote → serve.

``mlflow server`` runs as a subprocess on 127.0.0.1 (a free port) with a fresh
PostgreSQL database as its backend store (``postgresql+psycopg://``: MLflow
takes any SQLAlchemy URL, and psycopg 3 is our driver) and a local folder as
its artifact destination (``--serve-artifacts``: clients upload and download
artifacts through the server, they never see the folder). The database is
created for the module and dropped at its end.

Against it: ``training.train`` trains and registers version 1, ``promote``
moves ``champion`` to it, ``create_app`` with ``MLFLOW_TRACKING_URI`` set to
the server answers ``/v1/score`` with version 1; a second version registered
and promoted through the server reaches the app within its poll interval.

The helpers (:func:`pg_database`, :class:`MlflowServer`) live in
``tests/support/servers.py``, shared with ``tests/test_multi_serve.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.servers import MlflowServer, pg_database
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

MODEL_NAME = "lead-readiness"


@pytest.fixture(scope="module")
def tracking(pg_base_url, tmp_path_factory):
    """An MLflow server with a fresh PostgreSQL backend; yields (server, backend URL)."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    with pg_database(pg_base_url) as backend:
        server = MlflowServer.start(backend, folder)
        try:
            yield server, backend
        finally:
            server.stop()


@pytest.fixture(scope="module")
def training_data(tmp_path_factory):
    """400 simulated leads and their events as Parquet."""
    from data.simulate import SimulationConfig, simulate, write

    sim = simulate(SimulationConfig(n_leads=400, seed=21))
    paths = write(sim, tmp_path_factory.mktemp("train-data"), "parquet")
    return sim, paths


def _score(client, key: str, sim, lead_index: int = 0):
    lead = sim.leads.iloc[lead_index]
    events = sim.events[sim.events["lead_id"] == lead["lead_id"]].head(20)
    body = {
        "lead": {"lead_id": str(lead["lead_id"]), "job_title": lead["job_title"]},
        "events": [
            {"timestamp": t.isoformat(), "type": kind}
            for t, kind in zip(events["timestamp"], events["type"], strict=True)
        ],
        "as_of": sim.config.end.isoformat(),
    }
    return client.post("/v1/score", json=body, headers={"Authorization": f"Bearer {key}"})


def _wait_for_version(client, key: str, sim, version: str, timeout: float) -> None:
    """Until the app's alias poller (a thread with its own interval) serves ``version``."""
    last: list = []

    def serves_it() -> bool:
        response = _score(client, key, sim)
        last[:] = [response.status_code, dict(response.headers)]
        return response.status_code == 200 and response.headers["X-Model-Version"].endswith(
            f"/{version}"
        )

    wait_until(serves_it, timeout, interval=0.1, message=lambda: last)


def test_train_register_promote_serve_through_the_tracking_server(
    tracking, training_data, tmp_path
):
    import mlflow
    import sqlalchemy as sa
    from mlflow.tracking import MlflowClient

    from data.store import Store
    from leadready.app import create_app
    from model.pyfunc import log_model
    from model.registry import configure, load_model
    from serve.state import get_state
    from training.promote import promote
    from training.train import TrainConfig, train

    server, backend = tracking
    sim, paths = training_data

    # train and register through the server (no local tracking store, no local artifacts)
    result = train(
        TrainConfig(
            leads_path=paths["leads"],
            events_path=paths["events"],
            tracking_uri=server.url,
            stage_col="stage",
            persona_col="persona",
            n_estimators=8,
            num_leaves=7,
            num_threads=1,
            gate=False,
            model_name=MODEL_NAME,
            run_name="tracking-server-test",
            compile=False,
        )
    )
    assert result.version == "1"
    assert promote("1", model_name=MODEL_NAME, by="test", why="first model")
    client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    assert client.get_model_version_by_alias(MODEL_NAME, "champion").version == "1"

    # the registry lives in the PostgreSQL database, the artifacts in the server's folder
    engine = sa.create_engine(backend)
    with engine.connect() as conn:
        names = conn.execute(sa.text("select name from registered_models")).scalars().all()
        aliases = conn.execute(sa.text("select alias, version from registered_model_aliases"))
        alias_rows = {a: str(v) for a, v in aliases}
    engine.dispose()
    assert names == [MODEL_NAME]
    assert alias_rows["champion"] == "1"
    assert any(server.artifacts.rglob("lead_model.pkl"))
    assert not (Path.cwd() / "mlruns").exists() or not any((Path.cwd() / "mlruns").iterdir())

    # serve from the server: the app loads the champion over HTTP
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(store_url)
    store.upgrade()
    key = store.create_api_key("tracking-test", "client")
    app = create_app(
        {
            "TESTING": True,
            "LEADREADY_HOME": str(tmp_path / "home"),
            "DATABASE_URL": store_url,
            "MLFLOW_TRACKING_URI": server.url,
            "MODEL_NAME": MODEL_NAME,
            "MODEL_POLL_SECONDS": 0.3,
            "API_KEY_CACHE_SECONDS": 0,
            "WRITER_FLUSH_SECONDS": 0.05,
        }
    )
    state = get_state(app)
    try:
        state.holder.start()
        assert state.holder.wait_ready(120), state.holder.last_error
        http_client = app.test_client()
        response = _score(http_client, key, sim)
        assert response.status_code == 200, response.get_json()
        assert response.headers["X-Model-Version"] == f"{MODEL_NAME}/1"
        assert response.get_json()["stage"]["label"] in set(sim.leads["stage"].dropna())

        # register a second version through the server and promote it: the app follows
        configure(server.url)
        model, _ = load_model(f"models:/{MODEL_NAME}/1")
        mlflow.set_experiment("leadready")
        with mlflow.start_run(run_name="second"):
            info = log_model(model, registered_model_name=MODEL_NAME)
        assert str(info.registered_model_version) == "2"
        promote("2", model_name=MODEL_NAME, by="test", why="second model")
        _wait_for_version(http_client, key, sim, "2", timeout=30)
        assert (
            http_client.get("/v1/model", headers={"Authorization": f"Bearer {key}"}).get_json()[
                "version"
            ]
            == "2"
        )
    finally:
        state.close()
        state.store.dispose()
        store.dispose()
