"""The MLflow package: log, register, alias, load in a fresh process, predict."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import mlflow
import numpy as np
import pandas as pd
import pytest

from model import registry
from model.package import LeadReadinessModel
from model.pyfunc import LeadReadinessPyfunc, Precompiled, log_model, unwrap
from tests.support.leads import trained

NAME = "lead-readiness-test"


@pytest.fixture(scope="module")
def mlflow_home(tmp_path_factory):
    """A throwaway SQLite tracking store; MLflow's process-wide settings are restored after
    through its public setters (URIs, then the active experiment when one was set)."""
    home = tmp_path_factory.mktemp("mlflow")
    saved_env = {
        k: os.environ.get(k)
        for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_ID")
    }
    saved_uris = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    cwd = os.getcwd()
    os.chdir(home)  # anything written to ./mlruns would land here, and is checked
    try:
        uri = f"sqlite:///{home / 'mlflow.db'}"
        experiment_id = registry.configure(uri, home / "artifacts")
        yield {"home": home, "uri": uri, "experiment_id": experiment_id}
    finally:
        os.chdir(cwd)
        mlflow.set_tracking_uri(saved_uris[0])
        mlflow.set_registry_uri(saved_uris[1])
        if saved_env["MLFLOW_EXPERIMENT_ID"] is not None:
            mlflow.set_experiment(experiment_id=saved_env["MLFLOW_EXPERIMENT_ID"])
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def logged(mlflow_home):
    model, X, _, _ = trained()
    with mlflow.start_run(experiment_id=mlflow_home["experiment_id"]):
        info = log_model(model, registered_model_name=NAME, input_example=X.head(3))
    return info


def test_configure_keeps_artifacts_under_the_artifact_root(mlflow_home, logged):
    home = mlflow_home["home"]
    experiment = mlflow.get_experiment_by_name(registry.EXPERIMENT_NAME)
    assert experiment.experiment_id == mlflow_home["experiment_id"]
    assert experiment.artifact_location == (home / "artifacts" / "leadready").as_uri()
    assert not (home / "mlruns").exists()
    assert any((home / "artifacts" / "leadready").rglob("lead_model.pkl"))
    assert registry.configure(mlflow_home["uri"], home / "artifacts") == experiment.experiment_id


def test_signature_names_inputs_as_optional_and_params(logged):
    model = trained()[0]
    sig = logged.signature
    assert sig.inputs.input_names() == model.input_columns
    assert not any(spec.required for spec in sig.inputs.inputs)
    assert {p.name: p.default for p in sig.params.params} == {"reasons": False, "top_k": 3}
    outputs = sig.outputs.input_names()
    assert outputs[: len(model.output_columns())] == model.output_columns()
    assert {"stage_reasons", "persona_reasons"} <= set(outputs)


def test_alias_helpers(mlflow_home, logged):
    assert logged.registered_model_version == 1
    assert registry.alias_version(NAME, "champion") is None
    registry.set_alias(NAME, "champion", 1)
    assert registry.alias_version(NAME, "champion") == "1"
    assert registry.alias_version("no-such-model", "champion") is None
    assert registry.resolve_uri(f"models:/{NAME}@champion") == (f"models:/{NAME}/1", "1")
    with pytest.raises(LookupError, match="challenger"):
        registry.resolve_uri(f"models:/{NAME}@challenger")


def test_load_model_resolves_the_alias(mlflow_home, logged):
    registry.set_alias(NAME, "champion", 1)
    model, version = registry.load_model(f"models:/{NAME}@champion")
    assert isinstance(model, LeadReadinessModel) and version == "1"
    original, X, _, _ = trained()
    pd.testing.assert_frame_equal(model.predict_frame(X), original.predict_frame(X))
    _, run_version = registry.load_model(logged.model_uri)
    assert run_version is None


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_load_model_skips_the_dependency_mismatch_check(logged, tmp_path):
    # A copy of the model whose requirements this environment does not meet: MLflow's
    # own load reports the mismatch; ours (a model from our own lock) does not check.
    path = mlflow.artifacts.download_artifacts(logged.model_uri, dst_path=str(tmp_path))
    requirements = tmp_path.joinpath(path, "requirements.txt")
    requirements.write_text(requirements.read_text().rstrip("\n") + "\nlightgbm==0.0.1\n")
    handler = _Records()
    mlflow_logger = logging.getLogger("mlflow")
    mlflow_logger.addHandler(handler)
    try:
        mlflow.pyfunc.load_model(path)
        assert any("mismatches" in m and "lightgbm" in m for m in handler.messages)
        handler.messages.clear()
        model, version = registry.load_model(path)
    finally:
        mlflow_logger.removeHandler(handler)
    assert isinstance(model, LeadReadinessModel) and version is None
    assert not [m for m in handler.messages if "mismatches" in m]


def test_registry_client_is_made_once_per_uri(mlflow_home, logged, monkeypatch, tmp_path):
    from mlflow import tracking

    made: list[str | None] = []

    class Counted(tracking.MlflowClient):
        def __init__(self, tracking_uri=None, registry_uri=None):
            made.append(tracking_uri)
            super().__init__(tracking_uri=tracking_uri, registry_uri=registry_uri)

    monkeypatch.setattr(tracking, "MlflowClient", Counted)
    other = f"sqlite:///{tmp_path / 'other.db'}"
    try:
        registry.configure(other)
        assert registry.alias_version(NAME, "no-such-alias") is None
        assert registry.alias_version(NAME, "no-such-alias") is None
        assert made == [other]  # a new URI: one client, made on first use
        assert registry.registry_client() is registry.registry_client()
    finally:
        registry.configure(mlflow_home["uri"], mlflow_home["home"] / "artifacts")
    assert registry.alias_version(NAME, "no-such-alias") is None
    registry.version_task(NAME, logged.registered_model_version)
    assert made == [other]  # back on the first URI: its client is reused


def test_pyfunc_predict_accepts_frames_records_and_params(logged):
    original, X, _, _ = trained()
    loaded = mlflow.pyfunc.load_model(logged.model_uri)
    sample = X.head(5)
    expected = original.predict_frame(sample, reasons=True)
    got = loaded.predict(sample, params={"reasons": True})
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True))
    plain = loaded.predict(sample.drop(columns=["industry"]).assign(crm_note="x"))
    assert "stage_reasons" not in plain.columns
    assert list(plain.columns) == original.output_columns()
    records = json.loads(sample.to_json(orient="records"))
    from_records = loaded.predict(pd.DataFrame(records))
    np.testing.assert_allclose(
        from_records["stage_confidence"].to_numpy(), expected["stage_confidence"].to_numpy()
    )
    assert unwrap(loaded).stage_labels == original.stage_labels
    wrapper = LeadReadinessPyfunc()
    wrapper.lead_model = original
    out = wrapper.predict(None, records[:2], params={"reasons": False})
    assert list(out.columns) == original.output_columns()


def test_unwrap_rejects_other_models():
    class Other:
        def unwrap_python_model(self):
            return object()

    with pytest.raises(TypeError, match="not a leadready model"):
        unwrap(Other())


@pytest.mark.slow
def test_fresh_process_loads_and_predicts(mlflow_home, logged, tmp_path):
    registry.set_alias(NAME, "champion", 1)
    original, X, _, _ = trained()
    sample = X.head(4)
    (tmp_path / "rows.json").write_text(sample.to_json(orient="records"))
    script = textwrap.dedent(
        f"""
        import json, sys
        import mlflow.pyfunc
        import pandas as pd
        from model import registry
        registry.configure({mlflow_home["uri"]!r})
        version = registry.alias_version({NAME!r}, "champion")
        pyfunc = mlflow.pyfunc.load_model("models:/{NAME}@champion")
        rows = pd.DataFrame(json.load(open("rows.json")))
        out = pyfunc.predict(rows, params={{"reasons": True}})
        print(json.dumps({{"version": version, "out": out.to_dict(orient="list")}}))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["version"] == "1"
    expected = original.predict_frame(sample, reasons=True)
    got = pd.DataFrame(result["out"])
    assert list(got.columns) == list(expected.columns)
    for col in expected.columns:
        if expected[col].dtype == float:
            np.testing.assert_allclose(
                got[col].to_numpy(float), expected[col].to_numpy(), atol=1e-9
            )
        else:
            assert got[col].tolist() == expected[col].tolist()
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.slow
def test_compiled_artifact_is_logged_loaded_and_equal_to_lightgbm(mlflow_home):
    pytest.importorskip("lleaves")
    original, X, _, _ = trained()
    with mlflow.start_run(experiment_id=mlflow_home["experiment_id"]):
        info = log_model(original, input_example=X.head(3), compile_rows=X.head(64))
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    model = unwrap(loaded)
    assert model.engine == "compiled"
    assert model.engine_status == {h: "compiled" for h in model.heads}
    assert not any(est.uses_compiled for est in original.heads.values())
    rows = X.head(200).copy()
    rows.iloc[::7, :] = np.nan
    expected = original.predict_frame(rows, reasons=True)
    got = loaded.predict(rows, params={"reasons": True})
    numeric = [c for c in expected.columns if expected[c].dtype.kind == "f"]
    diff = np.nanmax(np.abs(got[numeric].to_numpy() - expected[numeric].to_numpy()))
    assert diff <= 1e-9
    others = [c for c in expected.columns if c not in numeric]
    pd.testing.assert_frame_equal(got[others], expected[others])
    records = rows.head(3).to_dict("records")
    for a, b in zip(
        model.predict_records(records, reasons=True),
        original.predict_records(records, reasons=True),
        strict=True,
    ):
        assert a["stage"]["label"] == b["stage"]["label"]
        assert abs(a["readiness"] - b["readiness"]) <= 1e-9


def test_without_compile_rows_the_model_scores_with_lightgbm(logged):
    model = unwrap(mlflow.pyfunc.load_model(logged.model_uri))
    assert model.engine == "lightgbm"
    assert all(s.startswith("lightgbm: no compiled artifact") for s in model.engine_status.values())


def test_a_failed_compile_logs_the_model_without_it(mlflow_home, monkeypatch):
    from model import compiled

    def broken(*args, **kwargs):
        raise ValueError("stage head: compiled scores differ from LightGBM's by 1")

    monkeypatch.setattr(compiled, "compile_model", broken)
    original, X, _, _ = trained()
    with mlflow.start_run(experiment_id=mlflow_home["experiment_id"]):
        info = log_model(original, input_example=X.head(3), compile_rows=X.head(16))
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    assert unwrap(loaded).engine == "lightgbm"
    pd.testing.assert_frame_equal(
        loaded.predict(X.head(5)).reset_index(drop=True),
        original.predict_frame(X.head(5)).reset_index(drop=True),
    )


@pytest.mark.slow
def test_trees_compiled_in_the_background_are_logged_and_cleaned_up(mlflow_home):
    pytest.importorskip("lleaves")
    original, X, _, _ = trained()
    precompiled = Precompiled(original, X.head(64))
    with mlflow.start_run(experiment_id=mlflow_home["experiment_id"]):
        info = log_model(original, input_example=X.head(3), precompiled=precompiled)
    folder = precompiled.folder()
    assert folder is not None and (folder / "compiled.json").exists()
    precompiled.close()
    assert not folder.exists()
    model = unwrap(mlflow.pyfunc.load_model(info.model_uri))
    assert model.engine_status == {h: "compiled" for h in model.heads}


def test_a_failed_background_compile_logs_the_model_without_it(mlflow_home, monkeypatch):
    from model import compiled

    def broken(*args, **kwargs):
        raise ValueError("persona head: compiled scores differ from LightGBM's by 1")

    monkeypatch.setattr(compiled, "compile_model", broken)
    original, X, _, _ = trained()
    precompiled = Precompiled(original, X.head(16))
    with mlflow.start_run(experiment_id=mlflow_home["experiment_id"]):
        info = log_model(original, input_example=X.head(3), precompiled=precompiled)
    precompiled.close()
    assert precompiled.folder() is None
    assert unwrap(mlflow.pyfunc.load_model(info.model_uri)).engine == "lightgbm"
