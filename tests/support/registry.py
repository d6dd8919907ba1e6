"""Session-scoped fixtures: a tiny trained champion in a throwaway MLflow registry,
a store with API keys, and the scoring app serving them.

Loaded as a pytest plugin (``pytest_plugins`` in ``tests/conftest.py``), so the API tests, the UI tests and any other test reuse one model
for the whole session: a few hundred simulated leads, a few trees per head,
two registered versions (``champion`` → version 1; version 2 is trained on
other leads and has no alias, for promotion tests).

Fixtures
--------
``tiny_registry``  the registry: tracking URI, artifact root, model name, versions, the
                   simulation the model was trained on and its feature table.
``api_store``      a migrated SQLite store with keys ``client``, ``admin``, ``revoked``.
``serve_config``   the ``create_app`` mapping for both (copy it to change a key).
``api_app``        one app for the session, model loaded, alias polling effectively off
                   (tests that need polling build their own app from ``serve_config``).
``api_client``     a Flask test client of ``api_app``.
``api_headers``    ``Authorization`` headers per key name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "ApiKeys",
    "fit_tiny_model",
    "TinyRegistry",
    "api_app",
    "api_client",
    "api_headers",
    "api_store",
    "serve_config",
    "tiny_registry",
]

MODEL_NAME = "lead-readiness"


@dataclass(frozen=True)
class TinyRegistry:
    """A throwaway MLflow registry holding two versions of a tiny leadready model."""

    tracking_uri: str
    artifact_root: str
    name: str
    champion: str
    other: str
    simulation: Any
    features: Any
    as_of: Any

    def configure(self) -> None:
        """Point MLflow (process-global) at this registry again."""
        from model import registry

        registry.configure(self.tracking_uri, self.artifact_root)

    def uri(self, version: str) -> str:
        """``models:/<name>/<version>``."""
        return f"models:/{self.name}/{version}"


@dataclass(frozen=True)
class ApiKeys:
    """API keys in ``api_store`` by role: a client key, an admin key, a revoked key."""

    client: str
    admin: str
    revoked: str


def fit_tiny_model(features: Any, leads: Any, *, seed: int, trees: int) -> Any:
    """A ``LeadReadinessModel`` of two small LightGBM heads (no compiled trees)."""
    from model.classifier import HeadClassifier, TwoHeadClassifier
    from model.features import FeatureConfig
    from model.package import LeadReadinessModel

    head = HeadClassifier(n_estimators=trees, num_leaves=7, min_child_samples=5, random_state=seed)
    clf = TwoHeadClassifier(stage_estimator=head, persona_estimator=head)
    clf.fit(features, leads["stage"].to_numpy(), leads["persona"].to_numpy())
    return LeadReadinessModel(
        clf,
        input_columns=list(features.columns),
        feature_config=FeatureConfig(),
        metadata={"metrics": {"stage_macro_f1": 0.5, "persona_macro_f1": 0.5}, "seed": seed},
    )


@pytest.fixture(scope="session")
def tiny_registry(tmp_path_factory: pytest.TempPathFactory) -> TinyRegistry:
    """Two versions of a tiny model registered in a SQLite MLflow store; v1 is champion."""
    import mlflow

    from data.simulate import SimulationConfig, simulate
    from model import registry
    from model.features import build_features
    from model.pyfunc import log_model

    root = tmp_path_factory.mktemp("mlflow")
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    artifact_root = str(root / "artifacts")
    registry.configure(tracking_uri, artifact_root)

    versions = []
    sims = []
    for seed, trees in ((1, 12), (2, 8)):
        sim = simulate(SimulationConfig(n_leads=300, seed=seed))
        leads = sim.leads
        features = build_features(
            leads.drop(columns=["stage", "persona"]), sim.events, as_of=sim.config.end
        )
        model = fit_tiny_model(features, leads, seed=seed, trees=trees)
        with mlflow.start_run(run_name=f"tiny-{seed}"):
            info = log_model(
                model, registered_model_name=MODEL_NAME, input_example=features.head(3)
            )
        versions.append(str(info.registered_model_version))
        sims.append((sim, features))
    registry.set_alias(MODEL_NAME, "champion", versions[0])
    sim, features = sims[0]
    return TinyRegistry(
        tracking_uri=tracking_uri,
        artifact_root=artifact_root,
        name=MODEL_NAME,
        champion=versions[0],
        other=versions[1],
        simulation=sim,
        features=features,
        as_of=sim.config.end,
    )


@pytest.fixture(scope="session")
def api_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, ApiKeys]:
    """A migrated SQLite store and its API keys (client, admin, revoked)."""
    from data.store import Store

    path = Path(tmp_path_factory.mktemp("store")) / "leadready.db"
    store = Store(f"sqlite:///{path}")
    store.upgrade()
    keys = ApiKeys(
        client=store.create_api_key("test-client", "client"),
        admin=store.create_api_key("test-admin", "admin"),
        revoked=store.create_api_key("test-revoked", "client"),
    )
    store.revoke_api_key("test-revoked")
    yield store, keys
    store.dispose()


@pytest.fixture(scope="session")
def serve_config(
    tiny_registry: TinyRegistry, api_store: tuple[Any, ApiKeys], tmp_path_factory
) -> dict[str, Any]:
    """The ``create_app`` mapping for the tiny registry and the test store."""
    store, _ = api_store
    home = tmp_path_factory.mktemp("home")
    return {
        "TESTING": True,
        "LEADREADY_HOME": str(home),
        "DATABASE_URL": str(store.engine.url.render_as_string(hide_password=False)),
        "MLFLOW_TRACKING_URI": tiny_registry.tracking_uri,
        "MLFLOW_ARTIFACT_ROOT": tiny_registry.artifact_root,
        "MODEL_NAME": tiny_registry.name,
        "MODEL_URI": f"models:/{tiny_registry.name}@champion",
        "MODEL_POLL_SECONDS": 3600,
        "API_KEY_CACHE_SECONDS": 0,
        "WRITER_FLUSH_SECONDS": 0.05,
        "BATCH_LIMIT": 50,
        "MAX_CONTENT_LENGTH": 1024 * 1024,
    }


@pytest.fixture(scope="session")
def api_app(serve_config: dict[str, Any], tiny_registry: TinyRegistry):
    """The scoring app for the session, with the champion loaded."""
    from leadready.app import create_app
    from serve.state import get_state

    tiny_registry.configure()
    app = create_app(serve_config)
    state = get_state(app)
    state.holder.start()
    assert state.holder.wait_ready(60), state.holder.last_error
    yield app
    state.close()
    state.store.dispose()


@pytest.fixture
def api_client(api_app, tiny_registry: TinyRegistry):
    """A test client of the session app (MLflow pointed at the tiny registry)."""
    tiny_registry.configure()
    return api_app.test_client()


@pytest.fixture(scope="session")
def api_headers(api_store: tuple[Any, ApiKeys]) -> dict[str, dict[str, str]]:
    """``{"client": {...}, "admin": {...}, "revoked": {...}}`` Authorization headers."""
    _, keys = api_store
    return {
        role: {"Authorization": f"Bearer {getattr(keys, role)}"}
        for role in ("client", "admin", "revoked")
    }
