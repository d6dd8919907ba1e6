"""Retraining with reps' corrections: the training set, the gate set, the MLflow run."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from data.store import Store
from tests.support.review_data import base_set
from training.dataset import TrainingSet, holdout_mask
from training.retrain import (
    CURRENT_COLUMNS,
    RetrainConfig,
    base_train_config,
    build_retrain_set,
    current_corrections,
)
from training.train import TrainConfig

# --------------------------------------------------------------------------- helpers


def correction(i: int, lead_id: str, field: str, label: str, **kw) -> dict:
    row = dict.fromkeys(CURRENT_COLUMNS)
    row.update(
        id=i,
        lead_id=lead_id,
        field=field,
        new_label=label,
        kind="reclassify",
        reviewer="dana",
        source="ui",
    )
    row.update(kw)
    return row


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(CURRENT_COLUMNS))


# ------------------------------------------------------------------- training set


def test_a_correction_replaces_its_leads_label_and_features_with_a_weight():
    base = base_set()
    rows = frame(
        [
            correction(
                1,
                "L0004",
                "stage",
                "purchase",
                features={"visits": 99.0, "lead_source": "event"},
            )
        ]
    )
    rs = build_retrain_set(base, rows, correction_weight=3.0, gate_share=0.0)
    t = rs.training
    assert len(t) == len(base) and rs.gate is None
    assert t.y_stage["L0004"] == "purchase"
    assert t.y_persona["L0004"] == base.y_persona["L0004"]  # the other head keeps marketing's
    assert t.X.loc["L0004", "visits"] == 99.0
    assert t.X.loc["L0004", "lead_source"] == "event"
    assert t.X.loc["L0005", "visits"] == 5.0
    assert pd.api.types.is_float_dtype(t.X["visits"])  # numbers stay numbers
    weights = pd.Series(rs.sample_weight, index=t.ids)
    assert weights["L0004"] == 3.0 and (weights.drop("L0004") == 1.0).all()
    assert t.slices.loc["L0004", "label_source"] == "rep"
    assert t.slices.loc["L0004", "stage"] == "purchase"
    assert rs.summary.n_changed == {"stage": 1, "persona": 0}
    assert base.y_stage["L0004"] != "purchase"  # the base set itself is untouched


def test_a_confirmation_counts_as_a_rep_label_with_its_weight():
    base = base_set()
    label = base.y_stage["L0007"]
    rows = frame([correction(1, "L0007", "stage", label, kind="confirm")])
    rs = build_retrain_set(base, rows, gate_share=0.0)
    assert rs.training.y_stage["L0007"] == label
    assert rs.sample_weight[list(rs.training.ids).index("L0007")] == 2.0
    assert rs.summary.by_kind == {"confirm": 1}
    assert rs.summary.n_changed["stage"] == 0


def test_new_leads_are_added_and_leads_without_features_are_skipped():
    base = base_set()
    rows = frame(
        [
            correction(1, "NEW1", "stage", "decision", features={"visits": 3.0}),
            correction(2, "NEW2", "stage", "decision"),  # no snapshot, not in the base
            correction(3, "L0001", "persona", "non_buyer"),  # no snapshot: base features
        ]
    )
    rs = build_retrain_set(base, rows, gate_share=0.0)
    t = rs.training
    assert "NEW1" in t.ids and "NEW2" not in t.ids
    assert t.y_stage["NEW1"] == "decision" and t.y_persona["NEW1"] is None
    assert t.X.loc["NEW1", "visits"] == 3.0 and pd.isna(t.X.loc["NEW1", "lead_source"])
    assert t.X.loc["L0001", "visits"] == 1.0
    assert t.y_persona["L0001"] == "non_buyer"
    assert rs.summary.n_new_leads == 1
    assert rs.summary.skipped == {"no feature snapshot and not in the base data": 1}
    assert rs.summary.n_training == 2


def test_without_corrections_the_base_data_is_used_and_the_notes_say_so():
    base = base_set()
    rs = build_retrain_set(base, frame([]))
    pd.testing.assert_frame_equal(rs.training.X, base.X)
    assert (rs.sample_weight == 1.0).all() and not rs.corrected.any()
    assert rs.gate is None
    assert "no reps' corrections" in rs.notes[0]
    assert rs.summary.n_used == 0


def corrections_for(ids, base: TrainingSet, start: int = 1) -> pd.DataFrame:
    """Stage corrections (flipped labels) for ``ids``; persona too for every other lead."""
    rows = []
    for n, lead_id in enumerate(ids, start=start):
        flipped = "awareness" if base.y_stage[lead_id] == "decision" else "decision"
        rows.append(correction(2 * n, lead_id, "stage", flipped, reviewer=f"rep{n % 3}"))
        if n % 2:
            rows.append(
                correction(
                    2 * n + 1,
                    lead_id,
                    "persona",
                    "non_buyer",
                    reason="student",
                    reviewer=f"rep{n % 3}",
                )
            )
    return frame(rows)


def test_the_gate_set_is_the_holdout_hash_share_kept_out_of_training():
    base = base_set()
    corrected = list(base.ids[:300])
    rs = build_retrain_set(base, corrections_for(corrected, base), min_gate_leads=5)
    expected = set(np.asarray(corrected)[holdout_mask(corrected, 0.2)])
    assert set(rs.gate.ids) == expected and len(expected) >= 5
    assert not expected & set(rs.training.ids)
    # Every other base lead is still in training, gate leads only are removed.
    assert len(rs.training) == len(base) - len(expected)
    # Gate labels are the reps' only: no marketing persona where no rep gave one.
    for lead_id in rs.gate.ids:
        assert rs.gate.y_stage[lead_id] != base.y_stage[lead_id]
        assert rs.gate.y_persona[lead_id] in (None, "non_buyer")
    assert rs.gate.y_persona.isna().any()
    # No corrected training lead falls in the training holdout: none is wasted.
    corrected_training = rs.training.ids[rs.corrected]
    assert not holdout_mask(corrected_training, 0.2).any()
    assert rs.summary.n_gate == len(expected)
    assert set(rs.used.loc[rs.used["role"] == "gate", "lead_id"]) == expected


def test_the_gate_set_is_stable_as_corrections_accumulate():
    base = base_set()
    first = build_retrain_set(base, corrections_for(base.ids[:150], base), min_gate_leads=5)
    more = pd.concat(
        [corrections_for(base.ids[:150], base), corrections_for(base.ids[150:350], base, 1000)]
    )
    second = build_retrain_set(base, more, min_gate_leads=5)
    assert set(first.gate.ids) <= set(second.gate.ids)
    assert set(second.gate.ids) - set(first.gate.ids) <= set(base.ids[150:350])


def test_too_few_gate_leads_keep_no_gate_set_and_every_correction_trains():
    base = base_set()
    rs = build_retrain_set(base, corrections_for(base.ids[:30], base), min_gate_leads=20)
    assert rs.gate is None
    assert rs.corrected.sum() == 30
    assert any("no gate set is kept" in note for note in rs.notes)


def test_a_gate_share_above_the_holdout_warns_of_the_champions_advantage():
    base = base_set()
    rs = build_retrain_set(
        base, corrections_for(base.ids[:300], base), gate_share=0.5, min_gate_leads=5
    )
    assert len(rs.gate) > int(holdout_mask(base.ids[:300], 0.2).sum())
    assert any("the champion was trained on them" in note for note in rs.notes)


def test_labels_of_a_head_the_base_data_lacks_are_not_used():
    base = base_set(persona=False)
    rows = frame(
        [
            correction(1, "L0002", "persona", "non_buyer"),
            correction(2, "L0003", "stage", "decision"),
        ]
    )
    rs = build_retrain_set(base, rows, gate_share=0.0)
    assert rs.training.y_persona is None
    assert rs.summary.skipped == {"no persona labels in the base data": 1}
    assert rs.summary.n_training == 1
    assert any("persona" in note for note in rs.notes)


def test_the_summary_counts_by_class_rep_reason_kind_and_source():
    base = base_set()
    rows = corrections_for(base.ids[:6], base)
    rows.loc[0, "source"] = "import"
    rs = build_retrain_set(base, rows, gate_share=0.0)
    s = rs.summary
    assert s.n_labels == len(rows) == 9 and s.n_leads == 6
    assert sum(s.by_class["stage"].values()) == 6
    assert s.by_class["persona"] == {"non_buyer": 3}
    assert s.by_rep == {"rep0": 3, "rep1": 3, "rep2": 3}
    assert s.by_reason == {"(none)": 6, "student": 3}
    assert s.by_source == {"import": 1, "ui": 8}
    assert set(s.correction_ids) == set(rows["id"])
    metrics = s.metrics()
    assert metrics["corrections_persona__non_buyer"] == 3.0
    assert metrics["corrections_by_rep__rep0"] == 3.0
    assert json.dumps(s.to_dict())


# ------------------------------------------------------------- current corrections


@pytest.fixture
def store(tmp_path):
    with Store(f"sqlite:///{tmp_path / 'store.db'}") as s:
        s.upgrade()
        s.upsert_leads(
            [
                {"lead_id": f"L{i}", "stage": "awareness", "persona": "practitioner"}
                for i in range(4)
            ]
        )
        s.record_predictions(
            [
                {
                    "lead_id": f"L{i}",
                    "model_name": "m",
                    "model_version": "1",
                    "source": "batch",
                    "stage": "consideration",
                    "features": {"visits": float(i)},
                }
                for i in range(4)
            ]
        )
        yield s


def test_current_corrections_follow_the_latest_row_and_undo(store):
    store.add_correction("L0", "stage", "decision", reviewer="a")
    store.add_correction("L0", "stage", "purchase", reviewer="b")  # the later one wins
    first = store.add_correction("L1", "stage", "decision", reviewer="a")
    store.undo_correction(first.id, reviewer="a")  # back to the model: not a rep label
    store.add_correction("L2", "persona", "non_buyer", reviewer="a", kind="confirm")
    store.record_predictions(
        [
            {
                "lead_id": "L3",
                "model_name": "m",
                "model_version": "2",
                "source": "api",
                "features": {"visits": 30.0},
            }
        ]
    )
    store.add_correction("L3", "stage", "decision", reviewer="c")
    current = current_corrections(store)
    by = {(r.lead_id, r.field): r for r in current.itertuples()}
    assert set(by) == {("L0", "stage"), ("L2", "persona"), ("L3", "stage")}
    assert by[("L0", "stage")].new_label == "purchase"
    assert by[("L2", "persona")].kind == "confirm"
    # The snapshot is the one of the prediction the rep reviewed (the newest then).
    assert by[("L3", "stage")].features == {"visits": 30.0}
    assert by[("L0", "stage")].features == {"visits": 0.0}


def test_current_corrections_of_an_empty_store_is_an_empty_frame(store):
    current = current_corrections(store)
    assert current.empty and list(current.columns) == list(CURRENT_COLUMNS)


# ---------------------------------------------------------------------- base config


def test_the_base_runs_settings_come_back_from_its_parameters(tmp_path):
    leads = tmp_path / "leads.csv"
    events = tmp_path / "events.csv"
    leads.write_text("lead_id\n")
    events.write_text("lead_id\n")
    logged = TrainConfig(
        leads_path=leads,
        events_path=events,
        tracking_uri="sqlite:///elsewhere.db",
        id_col="Contact ID",
        stage_col="Lifecycle Stage",
        persona_col=None,
        exclude=("Email", "Converted"),
        holdout_share=0.25,
        n_estimators=40,
        learning_rate=0.1,
        sales_ready=("SQL",),
        as_of=pd.Timestamp("2026-06-30T00:00:00Z").to_pydatetime(),
    )
    config = RetrainConfig(tracking_uri="sqlite:///here.db", artifact_root=tmp_path / "art")
    got = base_train_config(config, logged.to_dict(), base_version="3")
    expected = replace(
        logged,
        tracking_uri="sqlite:///here.db",
        artifact_root=tmp_path / "art",
        gate=False,
        actor="leadready retrain",
    )
    assert got == expected
    # Overrides win.
    moved = tmp_path / "moved.csv"
    moved.write_text("lead_id\n")
    got = base_train_config(replace(config, leads_path=moved, seed=7), logged.to_dict())
    assert got.leads_path == moved and got.seed == 7 and got.exclude == ("Email", "Converted")


def test_an_unknown_base_says_what_to_give(tmp_path):
    config = RetrainConfig(tracking_uri="sqlite:///x.db")
    with pytest.raises(ValueError, match="logged no leads_path.*--leads"):
        base_train_config(config, None, base_version="1")
    with pytest.raises(ValueError, match="label columns"):
        base_train_config(replace(config, leads_path=tmp_path / "x.csv"), {})
    params = TrainConfig(
        leads_path=tmp_path / "gone.csv", tracking_uri="t", stage_col="stage"
    ).to_dict()
    with pytest.raises(ValueError, match="no longer exists"):
        base_train_config(config, params, base_version="1")


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"correction_weight": 0}, "correction weight"),
        ({"gate_share": 1.0}, "gate share"),
        ({"min_gate_leads": 0}, "min_gate_leads"),
        ({"soft_relabel": 0.0}, "soft relabel"),
    ],
)
def test_retrain_config_refuses_bad_settings(kw, message):
    with pytest.raises(ValueError, match=message):
        RetrainConfig(tracking_uri="sqlite:///x.db", **kw)


# ------------------------------------------------------------------ end to end (MLflow)


@pytest.fixture(scope="module")
def loop(tmp_path_factory, simulated_champion):
    """A champion trained by ``train`` on simulated leads; its scores and reps' truth in a store."""
    from data.simulate import SimulationConfig, simulate

    root = tmp_path_factory.mktemp("retrain")
    sim = simulate(SimulationConfig(n_leads=900, seed=11))
    champion = simulated_champion(sim, root, n_estimators=25)
    store = Store(f"sqlite:///{root / 'store.db'}")
    store.upgrade()
    champion.record_scores(store, sim.leads)
    truth = sim.truth.set_index("lead_id")
    reviewed = list(truth.index[:300])
    for n, lead_id in enumerate(reviewed):
        for head in ("stage", "persona"):
            store.add_correction(
                lead_id, head, truth.at[lead_id, f"true_{head}"], reviewer=f"rep{n % 2}"
            )
    yield root, champion.config, store, reviewed
    store.dispose()


@pytest.mark.slow
def test_retrain_logs_the_corrections_and_gates_on_rep_verified_leads(loop, monkeypatch):
    from mlflow import MlflowClient

    import training.retrain as module
    from training.promote import current_version
    from training.retrain import retrain

    root, train_config, store, reviewed = loop
    seen: dict = {}
    real_train_on = module.train_on

    def spy(training_set, config, **kw):
        seen.update(kw, ids=training_set.ids, config=config)
        return real_train_on(training_set, config, **kw)

    monkeypatch.setattr(module, "train_on", spy)
    steps: list[tuple[str, float]] = []
    config = RetrainConfig(
        tracking_uri=train_config.tracking_uri,
        artifact_root=train_config.artifact_root,
        min_gate_leads=5,
        soft_relabel=None,  # down-weighting (the soft labels have their own test)
    )
    result = retrain(config, store, progress=lambda step, f: steps.append((step, f)))

    assert result.base_version == "1" and result.version == "2"
    # Reps' labels are trusted (label-noise pruning keeps them) and weigh double.
    trusted = pd.Series(seen["trusted"], index=seen["ids"])
    in_training = set(reviewed) & set(seen["ids"])
    assert set(trusted[trusted].index) == in_training
    weights = pd.Series(seen["sample_weight"], index=seen["ids"])
    # Marketing rows weigh 1, except those the model of corrections doubts
    # (issue 19): each is logged to MLflow with its factor.
    import mlflow

    doubted = mlflow.artifacts.load_dict(
        f"runs:/{result.run_id}/corrections/marketing_downweighted.json"
    )["marketing_weight_factor"]
    marketing = weights[~trusted]
    assert marketing.drop(list(doubted)).eq(1.0).all()
    for lead_id, factor in doubted.items():
        assert marketing[lead_id] == pytest.approx(factor) and factor < 1.0
    # Reps' factors come from agreement on multiply-reviewed leads: none here.
    trust = mlflow.artifacts.load_dict(f"runs:/{result.run_id}/corrections/label_trust.json")
    assert trust["rep_factors"] == {}
    assert (weights[list(in_training)] == 2.0).all()
    assert seen["config"].gate is False  # retrain runs its own gate
    assert result.base_config.leads_path == train_config.leads_path
    assert result.base_config.n_estimators == 25
    gate_ids = set(np.asarray(reviewed)[holdout_mask(reviewed, 0.2)])
    assert result.gate_set == "rep-verified"
    assert result.corrections.n_gate == len(gate_ids)
    assert result.corrections.n_training == len(reviewed) - len(gate_ids)
    assert result.gate_n("stage") == len(gate_ids)
    assert result.gate_macro_f1("stage", "champion") is not None

    fractions = [f for _, f in steps]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert fractions == sorted(fractions)
    assert "gate" in " ".join(s for s, _ in steps)

    client = MlflowClient()
    run = client.get_run(result.run_id)
    assert run.data.params["retrain_corrections"] == str(len(reviewed))
    assert run.data.params["retrain_base_version"] == "1"
    assert run.data.params["leads_path"] == str(train_config.leads_path)
    assert run.data.metrics["corrections_training"] == len(reviewed) - len(gate_ids)
    assert run.data.metrics["corrections_by_rep__rep0"] == 300.0
    assert run.data.tags["leadready.retrain"] == "true"
    assert run.data.tags["gate.decision"] in ("promoted", "refused")
    assert "gate_challenger_stage_macro_f1" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "corrections")}
    assert artifacts == {
        "corrections/summary.json",
        "corrections/used.csv",
        "corrections/label_trust.json",
        "corrections/marketing_downweighted.json",
    }
    summary = json.loads(
        Path(client.download_artifacts(result.run_id, "corrections/summary.json")).read_text()
    )
    assert summary["n_used"] == len(reviewed)
    champion = current_version("lead-readiness", "champion")
    assert champion == ("2" if result.gate.promote else "1")


@pytest.mark.slow
def test_retrain_without_corrections_trains_on_the_base_and_says_so(loop, tmp_path):
    from training.retrain import retrain

    _, train_config, _, _ = loop
    with Store(f"sqlite:///{tmp_path / 'empty.db'}") as empty:
        empty.upgrade()
        result = retrain(
            RetrainConfig(
                tracking_uri=train_config.tracking_uri,
                artifact_root=train_config.artifact_root,
                gate=False,
            ),
            empty,
        )
    assert result.corrections.n_used == 0
    assert "no reps' corrections" in result.notes[0]
    assert result.gate is None and result.gate_set == "none"
    assert result.train.n_train + result.train.n_holdout == 900


@pytest.mark.slow
def test_the_retrain_command_prints_corrections_f1_and_the_decision(loop, monkeypatch):
    from leadready.cli import main

    root, train_config, store, reviewed = loop
    monkeypatch.setenv("LEADREADY_HOME", str(root / "home"))
    monkeypatch.setenv("DATABASE_URL", str(store.engine.url))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", train_config.tracking_uri)
    result = CliRunner().invoke(main, ["retrain", "--min-gate-leads", "5", "--weight", "3"])
    assert result.exit_code == 0, result.output
    assert "corrected leads in training" in result.output
    assert "(weight 3)" in result.output
    assert "rep-verified (reps' labels)" in result.output
    assert "macro-F1 on" in result.output
    assert "champion" in result.output and "challenger" in result.output
    assert "decision" in result.output
    bad = CliRunner().invoke(main, ["retrain", "--base-version", "999"])
    assert bad.exit_code != 0


@pytest.mark.slow
def test_soft_relabelled_marketing_labels_are_extra_rows_logged_to_mlflow(loop, monkeypatch):
    import mlflow

    import training.retrain as module
    from training.label_trust import soft_row_id
    from training.retrain import retrain

    root, train_config, store, reviewed = loop
    seen: dict = {}
    real_train_on = module.train_on

    def spy(training_set, config, **kw):
        seen.update(kw, set=training_set)
        return real_train_on(training_set, config, **kw)

    monkeypatch.setattr(module, "train_on", spy)
    config = RetrainConfig(
        tracking_uri=train_config.tracking_uri,
        artifact_root=train_config.artifact_root,
        min_gate_leads=5,
        gate=False,
        soft_relabel=0.5,
    )
    result = retrain(config, store)
    logged = mlflow.artifacts.load_dict(
        f"runs:/{result.run_id}/corrections/marketing_soft_relabelled.json"
    )
    run = mlflow.MlflowClient().get_run(result.run_id)
    assert run.data.metrics["retrain_marketing_soft_relabelled"] == logged["n_rows_added"]
    assert logged["n_rows_added"] > 0, "the model of corrections doubts some marketing labels"
    training = seen["set"]
    weights = pd.Series(seen["sample_weight"], index=training.ids)
    trusted = pd.Series(seen["trusted"], index=training.ids)
    inferred = training.slices["label_source"] == "inferred"
    assert int(inferred.sum()) == logged["n_rows_added"]
    assert not trusted[inferred].any(), "a soft label is never a rep label"
    for lead_id, heads in logged["relabelled"].items():
        assert lead_id not in set(reviewed)
        for head, entry in heads.items():
            row = soft_row_id(lead_id, head, 0.2)
            assert training.labels(head)[row] == entry["inferred"]
            assert training.labels(head)[lead_id] == entry["marketing"]
            assert weights[row] == pytest.approx(entry["p_wrong"], abs=1e-4)
            assert weights[lead_id] <= 1.0 - entry["p_wrong"] + 1e-4
    trust = mlflow.artifacts.load_dict(f"runs:/{result.run_id}/corrections/label_trust.json")
    assert trust["n_marketing_soft_relabelled"] == logged["n_rows_added"]
    assert trust["n_marketing_downweighted"] == 0
