"""Re-scoring stored leads after a promotion: batches, resumption, one runner, the queue."""

from __future__ import annotations

import pytest

from data.rescore import RescoreLock, stale_leads, version_counts
from data.store import Store
from serve.rescore import Rescorer, rescore_to
from serve.scoring import Prepared, prediction_rows, score


@pytest.fixture(scope="module")
def models(tiny_registry):
    from model.registry import load_model

    tiny_registry.configure()
    old, _ = load_model(tiny_registry.uri(tiny_registry.champion))
    new, _ = load_model(tiny_registry.uri(tiny_registry.other))
    return old, new


@pytest.fixture
def scored_store(db_url, tiny_registry, models):
    """Every simulated lead scored once by the champion (version 1) and stored."""
    old, _ = models
    store = Store(db_url)
    store.upgrade()
    features = tiny_registry.features.head(240)
    prepared = [
        Prepared(index=i, lead_id=str(lead_id), features=row)
        for i, (lead_id, row) in enumerate(
            zip(features.index, features.to_dict("records"), strict=True)
        )
    ]
    store.record_predictions(
        prediction_rows(
            prepared,
            score(prepared, old),
            model_name="lead-readiness",
            model_version=tiny_registry.champion,
            source="api",
        )
    )
    yield store, prepared
    store.dispose()


def test_every_stored_lead_moves_to_the_new_version_with_its_scores(
    scored_store, models, tiny_registry
):
    store, prepared = scored_store
    _, new = models
    version = tiny_registry.other
    assert version_counts(store).by_version == {tiny_registry.champion: 240}
    result = rescore_to(store, new, model_name="lead-readiness", version=version, batch_size=50)
    assert result.rescored == 240 and result.without_snapshot == 0
    assert version_counts(store).by_version == {version: 240}
    latest = store.latest_predictions()
    expected = {p.lead_id: r for p, r in zip(prepared, score(prepared, new), strict=True)}
    for lead_id, row in latest.items():
        assert row["model_version"] == version and row["source"] == "rescore"
        assert row["stage"] == expected[lead_id]["stage"]["label"]
        assert row["persona"] == expected[lead_id]["persona"]["label"]
        assert row["reasons"]["stage"] == expected[lead_id]["stage"]["reasons"]
    # Old predictions are kept; nothing is left to do.
    assert len(store.predictions_for(prepared[0].lead_id)) == 2
    assert stale_leads(store, version, after=None, limit=10) == []
    again = rescore_to(store, new, model_name="lead-readiness", version=version)
    assert again.rescored == 0


def test_an_interrupted_pass_resumes_where_it_stopped(scored_store, models, tiny_registry):
    store, _ = scored_store
    _, new = models
    version = tiny_registry.other
    batches = []
    first = rescore_to(
        store,
        new,
        model_name="lead-readiness",
        version=version,
        batch_size=40,
        progress=lambda r: batches.append(r.rescored),
        should_stop=lambda: len(batches) >= 2,
    )
    assert first.stopped and first.rescored == 80
    counts = version_counts(store)
    assert counts.on(version) == 80 and counts.total == 240
    rest = rescore_to(store, new, model_name="lead-readiness", version=version, batch_size=40)
    assert rest.rescored == 160
    assert version_counts(store).by_version == {version: 240}
    # No lead was scored twice by the new version.
    assert all(len(store.predictions_for(i)) == 2 for i in list(store.latest_predictions())[:20])


def test_one_runner_at_a_time(scored_store, tmp_path):
    store, _ = scored_store
    first, second = RescoreLock(store, tmp_path), RescoreLock(store, tmp_path)
    assert first.acquire()
    try:
        assert not second.acquire()
    finally:
        first.release()
    assert second.acquire()
    second.release()


def test_background_rescorer_reports_progress_and_finishes(
    scored_store, models, tiny_registry, tmp_path
):
    store, _ = scored_store
    _, new = models
    rescorer = Rescorer(store, folder=tmp_path, batch_size=60, settle_seconds=0)
    rescorer.request(new, model_name="lead-readiness", version=tiny_registry.other)
    try:
        assert rescorer.finished.wait(120)
    finally:
        rescorer.stop()
    status = rescorer.status()
    assert status["state"] == "done" and status["version"] == tiny_registry.other
    assert status["done"] == status["total"] == 240
    assert (tmp_path / "rescore-status.json").exists()


def test_missing_inputs_are_counted_not_hidden(scored_store, models, tiny_registry):
    store, _ = scored_store
    _, new = models

    class Wider:
        """The new model, reading one column no snapshot has."""

        input_columns = [*new.input_columns, "budget_band"]

        def predict_records(self, records, **kwargs):
            return new.predict_records(records, **kwargs)

    result = rescore_to(store, Wider(), model_name="lead-readiness", version="9")
    assert result.rescored == 240 and result.missing_inputs == {"budget_band": 240}
