"""A promotion end to end in one serving app: the Models page, the audit, re-scored leads.

Its own throwaway registry (the session's tiny registry keeps its champion for
the other tests): two versions of a tiny model, v1 champion; stored leads
scored by v1; then v2 is promoted by hand.
"""

from __future__ import annotations

import re

import pytest

from data.rescore import version_counts

MODEL = "lead-readiness"


@pytest.fixture(scope="module")
def registry(tmp_path_factory, tiny_registry):
    import mlflow

    from model import registry as reg
    from model.pyfunc import log_model
    from tests.support.registry import fit_tiny_model

    root = tmp_path_factory.mktemp("flow-mlflow")
    uri, artifacts = f"sqlite:///{root / 'mlflow.db'}", str(root / "artifacts")
    reg.configure(uri, artifacts)
    features = tiny_registry.features
    leads = tiny_registry.simulation.leads
    for seed, trees in ((1, 6), (2, 4)):
        model = fit_tiny_model(features, leads, seed=seed, trees=trees)
        with mlflow.start_run(run_name=f"flow-{seed}"):
            info = log_model(model, registered_model_name=MODEL, input_example=features.head(3))
        reg.tag_task(MODEL, info.registered_model_version, model.task)
    reg.set_alias(MODEL, "champion", "1")
    yield uri, artifacts
    tiny_registry.configure()


@pytest.fixture
def app(registry, tmp_path, tiny_registry):
    from leadready.app import create_app
    from serve.state import get_state

    uri, artifacts = registry
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "test",
            "LEADREADY_HOME": str(tmp_path / "home"),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'leadready.db'}",
            "MLFLOW_TRACKING_URI": uri,
            "MLFLOW_ARTIFACT_ROOT": artifacts,
            "MODEL_NAME": MODEL,
            "MODEL_POLL_SECONDS": 3600,
            "RESCORE_SETTLE_SECONDS": 0,
            "RESCORE_BATCH_SIZE": 50,
            "WRITER_FLUSH_SECONDS": 0.05,
        }
    )
    state = get_state(app)
    state.store.upgrade()
    state.store.create_user("ana", "analyst", "analyst-password-1")
    state.holder.start()
    assert state.holder.wait_ready(60), state.holder.last_error
    yield app
    app.extensions["leadready_rescore"].stop()
    state.close()
    state.store.dispose()


def _login(app, client):
    from flask import session

    from review_ui import auth

    user = app.extensions["review_ui"].store().get_user_by_name("ana")
    with app.test_request_context(environ_base=client.environ_base):
        assert auth.log_in(auth.ReviewUser.from_store(user))
        data = dict(session)
    with client.session_transaction() as sess:
        sess.update(data)


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.mark.slow
def test_after_a_promotion_every_stored_lead_moves_to_the_new_version(app, tiny_registry):
    from serve.state import get_state
    from training.promote import promote

    state = get_state(app)
    client = app.test_client()
    key = state.store.create_api_key("crm", "client")
    headers = {"Authorization": f"Bearer {key}"}
    features = tiny_registry.features.head(120)
    for lead_id, row in zip(features.index, features.to_dict("records"), strict=True):
        clean = {k: v for k, v in row.items() if v == v}  # JSON has no NaN
        response = client.post(
            "/v1/score", json={"lead_id": str(lead_id), "features": clean}, headers=headers
        )
        assert response.status_code == 200, response.get_json()
    assert state.writer.flush(30)
    assert version_counts(state.store).by_version == {"1": 120}

    moves = promote("2", model_name=MODEL, by="ana", why="v2 is better on the new leads")
    assert [m.to_version for m in moves] == ["1", "2"]
    _login(app, client)
    page = _text(client.get("/review/models").get_data(as_text=True))
    # This process has not polled yet: the page says so instead of claiming v2 (or v1 as champion).
    assert "The champion moved to v2; this process still answers with v1" in page
    assert "v2 is better on the new leads" in page and "no gate for this move (by hand)" in page

    rescorer = app.extensions["leadready_rescore"]
    assert state.holder.check() and state.holder.current.version == "2"
    # Requests keep being answered while the stored leads are re-scored.
    lead_id, row = str(features.index[0]), features.iloc[0].dropna().to_dict()
    for _ in range(5):
        response = client.post(
            "/v1/score", json={"lead_id": lead_id, "features": row}, headers=headers
        )
        assert response.status_code == 200 and response.get_json()["model"]["version"] == "2"
    assert rescorer.finished.wait(120), rescorer.status()
    assert state.writer.flush(30)
    assert version_counts(state.store).by_version == {"2": 120}
    queue = client.get("/v1/review/queue?limit=200", headers=headers).get_json()
    assert {item["model_version"] for item in queue["items"]} == {"2"}
    page = _text(client.get("/review/models").get_data(as_text=True))
    assert "120 of 120 stored leads show the champion v2 (100%)" in page
    assert "this process still answers" not in page


def test_models_history_and_list_read_the_audit(registry, tmp_path):
    from click.testing import CliRunner

    from leadready.cli import main
    from training.promote import promote, rollback

    uri, _ = registry
    from model.registry import configure, set_alias

    configure(uri, registry[1])
    # The module's registry is shared: another test may have left v2 as champion.
    set_alias(MODEL, "champion", "1")
    promote("2", model_name=MODEL, by="ana", why="trying v2")
    rollback(model_name=MODEL, by="bo", why="v2 routes too few leads to sales")
    env = {"LEADREADY_HOME": str(tmp_path), "MLFLOW_TRACKING_URI": uri, "COLUMNS": "400"}
    runner = CliRunner()
    out = runner.invoke(main, ["models", "history"], env=env, terminal_width=250)
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert "v2 routes too few leads to sales" in text and "bo" in text
    from model.registry import alias_history

    champion_moves = [m for m in alias_history(MODEL) if m["alias"] == "champion"]
    assert champion_moves[-2]["why"] == "trying v2" and champion_moves[-2]["by"] == "ana"
    assert champion_moves[-2]["gate"].startswith("no gate for this move (by hand)")
    listed = runner.invoke(main, ["models", "list"], env=env, terminal_width=250)
    assert listed.exit_code == 0, listed.output
    assert "champion" in listed.output and "stage:" in listed.output


@pytest.mark.slow
def test_a_hand_promotion_of_another_task_needs_force(registry, tiny_registry):
    import mlflow

    from model import registry as reg
    from model.pyfunc import log_model
    from tests.support.registry import fit_tiny_model
    from training.promote import alias_moves, promote

    uri, artifacts = registry
    reg.configure(uri, artifacts)
    leads = tiny_registry.simulation.leads.copy()
    leads["stage"] = leads["stage"].map(
        lambda s: "hot" if s in ("decision", "purchase") else "cold"
    )
    model = fit_tiny_model(tiny_registry.features, leads, seed=3, trees=3)
    with mlflow.start_run(run_name="other-task"):
        info = log_model(
            model, registered_model_name=MODEL, input_example=tiny_registry.features.head(2)
        )
    version = str(info.registered_model_version)
    reg.tag_task(MODEL, version, model.task)
    champion = reg.alias_version(MODEL, "champion")
    with pytest.raises(ValueError, match="does another task.*--model-name.*--force"):
        promote(version, model_name=MODEL, by="ana")
    assert reg.alias_version(MODEL, "champion") == champion
    moves = promote(version, model_name=MODEL, by="ana", why="new stages on purpose", forced=True)
    assert moves[-1].forced and "forced over a task change" in moves[-1].gate
    assert alias_moves(MODEL)[-1].forced
    promote(champion, model_name=MODEL, by="ana", why="back", forced=True)
