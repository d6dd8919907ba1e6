"""Training end to end: a CRM export and simulator output → MLflow run, registry, gate.

One registry per module (training is the slow part), built by module fixtures so
any test can run alone or on another xdist worker; the test that moves aliases
leaves them as it found them.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from training.dataset import holdout_mask
from training.train import TrainConfig, train

# Trains and registers models, runs the CLI end to end: the full suite, not the inner loop.
pytestmark = pytest.mark.slow

MODEL = "lead-readiness"


@pytest.fixture(scope="module")
def crm(crm_export):
    """A CRM export with events, and the config that trains on it."""
    export = crm_export("crm", 800)
    config = export.config(slice_cols=("Lead Source",), n_estimators=40)
    return export.root, export.table, config


@pytest.fixture(scope="module")
def first(crm):
    """The first training run: no champion yet."""
    _, _, config = crm
    return train(config)


def _client(config: TrainConfig):
    from mlflow import MlflowClient

    from model.registry import configure

    configure(config.tracking_uri, config.artifact_root)
    return MlflowClient()


def _alias(client, alias: str) -> str:
    return str(client.get_model_version_by_alias(MODEL, alias).version)


def test_first_version_is_registered_as_challenger_and_promoted(crm, first):
    _, _, config = crm
    client = _client(config)
    assert first.version == "1"
    assert first.gate.promote
    assert "no champion" in first.gate.reasons[0]
    assert _alias(client, "challenger") == "1"
    assert _alias(client, "champion") == "1"
    # The holdout is the hash holdout of the ids, nothing else.
    ids = pd.read_csv(config.leads_path)["Contact ID"]
    assert first.n_holdout == int(holdout_mask(ids, 0.2).sum())
    assert first.n_train + first.n_holdout == len(ids)


def test_model_beats_the_majority_baseline_and_matches_logistic_regression(first):
    for head in ("stage", "persona"):
        model = first.macro_f1(head)
        assert model > first.macro_f1(head, "majority") + 0.2
        assert model >= first.macro_f1(head, "logreg") - 0.1


def test_the_run_holds_params_metrics_plots_data_and_the_gate(crm, first):
    _, _, config = crm
    client = _client(config)
    run = client.get_run(first.run_id)
    params, metrics = run.data.params, run.data.metrics
    assert params["id_col"] == "Contact ID"
    assert params["exclude"] == "Email,Converted"
    assert params["n_holdout"] == str(first.n_holdout)
    assert set(params["stage_labels"].split(",")) >= {"MQL", "SQL", "Opportunity"}
    for key in (
        "stage_macro_f1",
        "persona_macro_f1",
        "stage_baseline_logreg_macro_f1",
        "stage_baseline_majority_macro_f1",
        "stage_log_loss",
        "persona_ece",
        "stage_recall__MQL",
        "persona_precision__Technical",
        "stage_slice__Lead_Source__Webinar_macro_f1",
        "stage_slice__persona__Technical_macro_f1",
        "gate_promote",
        "gate_challenger_stage_macro_f1",
        "procedure_stage_oof_macro_f1_argmax",
        "procedure_stage_oof_macro_f1_decided",
        "procedure_stage_calibration_none_log_loss",
    ):
        assert key in metrics, key
    # cross-fitted heads boost on every training row; the tuned decision is never
    # worse than argmax on the out-of-fold rows it was tuned on
    assert 0 < metrics["procedure_stage_rows_boosted"] <= first.n_train
    assert (
        metrics["procedure_stage_oof_macro_f1_decided"]
        >= metrics["procedure_stage_oof_macro_f1_argmax"]
    )
    procedure = json.loads(
        Path(client.download_artifacts(first.run_id, "training/procedure.json")).read_text()
    )
    # (a class of this small table may have too few rows for 3 folds: then the slice)
    assert {procedure[h]["fitting"] for h in ("stage", "persona")} <= {
        "cross-fitted",
        "calibration slice",
    }
    assert procedure["stage"]["decision"]["method"] == "macro_f1"
    assert metrics["stage_macro_f1"] == pytest.approx(first.evaluation["stage"]["macro_f1"])
    assert metrics["gate_promote"] == 1.0
    artifacts = {a.path for a in client.list_artifacts(first.run_id, "plots")}
    assert artifacts == {
        "plots/stage_confusion_matrix.png",
        "plots/stage_calibration.png",
        "plots/persona_confusion_matrix.png",
        "plots/persona_calibration.png",
    }
    gate_file = Path(client.download_artifacts(first.run_id, "gate/decision.json"))
    assert json.loads(gate_file.read_text())["decision"]["promote"] is True
    contexts = {
        tag.value
        for ds in run.inputs.dataset_inputs
        for tag in ds.tags
        if tag.key == "mlflow.data.context"
    }
    assert contexts == {"training", "holdout"}
    version = client.get_model_version(MODEL, "1")
    assert version.run_id == first.run_id


def _shuffled_training_labels(table: pd.DataFrame, seed: int = 3) -> pd.DataFrame:
    """The same table with the labels of the *training* rows shuffled; holdout labels kept."""
    out = table.copy()
    train_rows = ~holdout_mask(out["Contact ID"], 0.2)
    rng = np.random.default_rng(seed)
    for col in ("Lifecycle Stage", "Segment"):
        values = out.loc[train_rows, col].to_numpy()
        out.loc[train_rows, col] = rng.permutation(values)
    return out


@pytest.fixture(scope="module")
def second(crm, first):
    """A second run on the same leads with the training rows' labels shuffled."""
    root, table, config = crm
    _shuffled_training_labels(table).to_csv(root / "shuffled.csv", index=False)
    return train(replace(config, leads_path=root / "shuffled.csv"))


def test_a_worse_challenger_is_refused_and_the_champion_stays(crm, second):
    _, _, config = crm
    result = second
    client = _client(config)
    assert result.version == "2"
    assert not result.gate.promote
    assert any("below the champion" in r for r in result.gate.reasons)
    assert _alias(client, "champion") == "1"
    assert _alias(client, "challenger") == "2"
    metrics = client.get_run(result.run_id).data.metrics
    assert metrics["gate_promote"] == 0.0
    assert metrics["gate_champion_stage_macro_f1"] > metrics["gate_challenger_stage_macro_f1"]


def test_promote_by_hand_then_rollback_moves_the_alias_and_records_why(crm, second):
    from training.promote import alias_moves, promote, rollback

    _, _, config = crm
    client = _client(config)
    moves = promote("2", model_name=MODEL, by="ana", why="trying the shuffled one")
    assert [(m.alias, m.from_version, m.to_version) for m in moves] == [
        ("previous_champion", None, "1"),
        ("champion", "1", "2"),
    ]
    assert _alias(client, "champion") == "2"
    assert _alias(client, "previous_champion") == "1"

    rollback(model_name=MODEL, by="ben", why="it was worse")
    assert _alias(client, "champion") == "1"
    # Version 1 replaced nobody: there is nothing further back.
    with pytest.raises(ValueError, match="no previous champion"):
        rollback(model_name=MODEL, by="ben")
    history = [(m.alias, m.to_version, m.by) for m in alias_moves(MODEL)]
    assert ("champion", "2", "ana") in history
    assert ("champion", "1", "ben") in history
    last = alias_moves(MODEL)[-1]
    assert "it was worse" in last.why and last.at
    with pytest.raises(ValueError, match=r"no version '9' \(versions: 2, 1\)"):
        promote("9", model_name=MODEL, by="ana")


def test_train_cli_prints_the_comparison_and_the_gate(crm, monkeypatch, tmp_path):
    from leadready.cli import main

    root, _, _ = crm
    monkeypatch.setenv("LEADREADY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--leads",
            str(root / "contacts.csv"),
            "--id-col",
            "Contact ID",
            "--stage-col",
            "Lifecycle Stage",
            "--persona-col",
            "Segment",
            "--exclude",
            "Email, Converted",
            "--slice-cols",
            "Lead Source,Country",
            "--n-estimators",
            "20",
            "--threads",
            "1",
            "--no-compile",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "lead-readiness version 1" in result.output
    assert "logreg" in result.output and "majority" in result.output
    assert "training procedure" in result.output  # what was chosen, with the CV scores
    assert "promoted to champion" in result.output
    assert (tmp_path / "home" / "mlflow.db").exists()
    from mlflow import MlflowClient

    run_metrics = (
        MlflowClient().get_run(MlflowClient().get_model_version(MODEL, "1").run_id).data.metrics
    )
    assert "stage_slice__Country__DE_macro_f1" in run_metrics
    assert "persona_slice__Lead_Source__Referral_n" in run_metrics

    runner = CliRunner()
    common = ["--leads", str(root / "contacts.csv"), "--id-col", "Contact ID"]
    labels = ["--stage-col", "Lifecycle Stage", "--persona-col", "Segment"]
    again = runner.invoke(
        main,
        ["train", *common, *labels, "--n-estimators", "5", "--threads", "1", "--no-gate"]
        + ["--no-compile"],
    )
    assert again.exit_code == 0, again.output
    assert "gate: not run" in again.output

    evaluated = runner.invoke(
        main, ["evaluate", *common, *labels, "--model", "models:/lead-readiness/2"]
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert "models:/lead-readiness/2 (version 2)" in evaluated.output
    assert "stage" in evaluated.output and "persona" in evaluated.output

    promoted = runner.invoke(main, ["promote", "2", "--reason", "cli test"])
    assert promoted.exit_code == 0, promoted.output
    assert "lead-readiness@champion: 1 → 2" in promoted.output
    back = runner.invoke(main, ["rollback"])
    assert back.exit_code == 0, back.output
    assert "lead-readiness@champion: 2 → 1" in back.output
    nothing = runner.invoke(main, ["rollback"])
    assert nothing.exit_code == 1
    assert "no previous champion" in nothing.output
    missing = runner.invoke(main, ["promote", "7"])
    assert missing.exit_code == 1
    assert "has no version '7' (versions: 2, 1)" in missing.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stage-col", "Stage"], "no column 'Stage' (stage label column)"),
        (["--stage-col", "Lifecycle Stage", "--exclude", "Nope"], "no column 'Nope'"),
        ([], "name at least one label column"),
    ],
)
def test_train_cli_errors_are_messages_not_tracebacks(crm, monkeypatch, tmp_path, args, message):
    from leadready.cli import main

    root, _, _ = crm
    monkeypatch.setenv("LEADREADY_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(
        main, ["train", "--leads", str(root / "contacts.csv"), "--id-col", "Contact ID", *args]
    )
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.slow
def test_training_on_simulator_output_beats_the_baselines_against_the_truth(
    tmp_path, simulated_champion
):
    from data.simulate import SimulationConfig, simulate
    from model.registry import alias_version
    from training.evaluate import evaluate_heads

    sim = simulate(SimulationConfig(n_leads=2500, seed=11))
    trained = simulated_champion(sim, tmp_path, n_estimators=60, fmt="parquet")
    result = trained.result
    assert result.gate.promote
    for head in ("stage", "persona"):
        assert result.macro_f1(head) > result.macro_f1(head, "majority") + 0.2

    # Against the hidden truth on the held-out leads, the registered model does
    # better than marketing's own (noisy) labels do on those leads.
    ts = trained.base
    held = ts.subset(holdout_mask(ts.ids, 0.2))
    truth = sim.truth.set_index("lead_id").loc[held.ids]
    assert alias_version(MODEL, "champion") == result.version == trained.version
    scored = evaluate_heads(trained.model, held.X, truth["true_stage"], truth["true_persona"])
    assert scored["stage"]["macro_f1"] > 0.5
    assert scored["persona"]["macro_f1"] > 0.6


@pytest.fixture
def own_registry(crm, tmp_path):
    """The CRM config with a tracking store of its own and 5 trees (runs are counted)."""
    _, _, config = crm
    return replace(
        config,
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifact_root=tmp_path / "artifacts",
        n_estimators=5,
    )


def _only_run(config: TrainConfig):
    client = _client(config)
    [run] = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return run


@contextmanager
def _sigterm_handler_restored():
    import signal

    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
def test_a_run_stopped_while_logging_ends_killed_not_running(own_registry, monkeypatch, stop):
    import model.pyfunc

    def stopped(*args, **kwargs):
        raise stop(143) if stop is SystemExit else stop()

    monkeypatch.setattr(model.pyfunc, "log_model", stopped)
    with pytest.raises(stop):
        train(own_registry)
    run = _only_run(own_registry)
    assert run.info.status == "KILLED"
    assert run.data.metrics  # it was under way: metrics were logged before the stop
    assert _client(own_registry).search_model_versions(f"name='{MODEL}'") == []


def test_a_sigterm_while_mlflow_sets_the_run_up_waits_and_ends_it_killed(own_registry, monkeypatch):
    import os
    import signal

    import mlflow

    from leadready.commands.train import stop_on_sigterm

    start_run = mlflow.start_run

    def interrupted_start(*args, **kwargs):
        run = start_run(*args, **kwargs)  # the run exists, RUNNING …
        os.kill(os.getpid(), signal.SIGTERM)  # … and the stop lands before it is handed back
        for _ in range(1000):
            pass
        return run

    monkeypatch.setattr(mlflow, "start_run", interrupted_start)
    with _sigterm_handler_restored():
        stop_on_sigterm()
        installed = signal.getsignal(signal.SIGTERM)
        with pytest.raises(SystemExit) as stopped:
            train(own_registry)
        assert signal.getsignal(signal.SIGTERM) is installed  # held, then given back
    assert stopped.value.code == 143
    assert _only_run(own_registry).info.status == "KILLED"


def test_a_stop_whose_exception_python_dropped_still_ends_the_run_killed(own_registry, monkeypatch):
    """A signal handler's exception raised inside a GC callback is dropped; the note is not."""
    import model.pyfunc
    from training.train import request_stop

    log_model = model.pyfunc.log_model

    def noted_only(*args, **kwargs):
        request_stop(143)  # the handler ran; its SystemExit went nowhere
        return log_model(*args, **kwargs)

    monkeypatch.setattr(model.pyfunc, "log_model", noted_only)
    with pytest.raises(SystemExit) as stopped:
        train(own_registry)
    assert stopped.value.code == 143
    assert _only_run(own_registry).info.status == "KILLED"
    assert _client(own_registry).get_registered_model(MODEL).aliases == {}  # no challenger, no gate

    monkeypatch.setattr(model.pyfunc, "log_model", log_model)
    assert train(own_registry).version == "2"  # the next run of the process is not stopped by it


def test_sigterm_stops_a_command_by_unwinding():
    import os
    import signal

    from leadready.commands.train import stop_on_sigterm

    with _sigterm_handler_restored():
        stop_on_sigterm()
        with pytest.raises(SystemExit) as stopped:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # Python runs the handler between bytecodes, at once
                pass
        assert stopped.value.code == 128 + signal.SIGTERM
