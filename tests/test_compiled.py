"""Native code for the trees (lleaves): equal to LightGBM, verified at load, never pickled."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("lleaves")

from model import compiled  # noqa: E402
from tests.support.leads import trained  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """A fresh copy of the small two-head model and its compiled folder."""
    model, X, _, _ = trained()
    model = pickle.loads(pickle.dumps(model))
    folder = tmp_path_factory.mktemp("compiled")
    manifest = compiled.compile_model(model, folder, check_rows=X.head(64))
    return model, X, folder, manifest


def _hard_rows(X: pd.DataFrame) -> pd.DataFrame:
    """Training rows plus missing values, unseen categories and strings where numbers go."""
    rows = X.head(200).copy()
    rows.iloc[::7, :] = np.nan
    for col in rows.columns[:20]:
        rows.loc[rows.index[1::5], col] = np.nan
    if "industry" in rows:
        rows["industry"] = rows["industry"].astype(object)
        rows.loc[rows.index[::3], "industry"] = "Never Seen"
    return rows


def test_compiled_scores_equal_lightgbms(artifact):
    model, X, folder, manifest = artifact
    assert set(manifest["heads"]) == set(model.heads)
    assert (folder / compiled.MANIFEST).is_file() and (folder / "check.npz").is_file()
    fresh = pickle.loads(pickle.dumps(model))
    status = compiled.attach_compiled(fresh, folder)
    assert status == {h: "compiled" for h in model.heads}
    assert all(est.uses_compiled for est in fresh.heads.values())
    rows = _hard_rows(X)
    for head, est in fresh.heads.items():
        Z = est.encode(rows)
        native = est.raw_logits_encoded(Z, num_threads=1)
        lgbm = model.heads[head].raw_logits_encoded(Z, num_threads=1)
        assert not model.heads[head].uses_compiled
        np.testing.assert_allclose(native, lgbm, rtol=0, atol=1e-9)
    a = fresh.predict_frame(rows, reasons=True)
    b = model.predict_frame(rows, reasons=True)
    numeric = [c for c in a.columns if a[c].dtype.kind == "f"]
    np.testing.assert_allclose(a[numeric].to_numpy(), b[numeric].to_numpy(), rtol=0, atol=1e-9)
    assert (a.drop(columns=numeric) == b.drop(columns=numeric)).all().all()
    records = rows.head(3).to_dict("records")
    assert fresh.predict_records(records)[0]["route"] == model.predict_records(records)[0]["route"]


def test_the_compiled_code_is_not_pickled(artifact):
    model, X, folder, _ = artifact
    fresh = pickle.loads(pickle.dumps(model))
    size = len(pickle.dumps(fresh))
    compiled.attach_compiled(fresh, folder)
    assert len(pickle.dumps(fresh)) == size
    again = pickle.loads(pickle.dumps(fresh))
    assert not any(est.uses_compiled for est in again.heads.values())
    np.testing.assert_allclose(
        again.predict_frame(X.head(20))["readiness"], fresh.predict_frame(X.head(20))["readiness"]
    )


def test_another_models_code_is_refused(artifact, tmp_path):
    model, X, folder, _ = artifact
    other = pickle.loads(pickle.dumps(model))
    stage = other.heads["stage"]
    stage.fit(X.head(150), trained()[2]["stage"].head(150).to_numpy())  # a new booster
    status = compiled.attach_compiled(other, folder)
    assert status["stage"] == "lightgbm: the compiled booster is not this model's"
    assert status["persona"] == "compiled"
    assert not stage.uses_compiled


def test_code_for_another_cpu_or_version_is_refused(artifact, tmp_path):
    model, _, folder, manifest = artifact
    for change, reason in (
        ({"cpu": {"name": "other", "features": "+avx512f"}}, "compiled for another CPU"),
        ({"versions": {**manifest["versions"], "lleaves": "0.0.1"}}, "compiled with lleaves 0.0.1"),
        ({"format": 99}, "artifact format 99"),
    ):
        copy = tmp_path / reason.replace(" ", "_")
        copy.mkdir()
        for path in folder.iterdir():
            (copy / path.name).write_bytes(path.read_bytes())
        (copy / compiled.MANIFEST).write_text(json.dumps({**manifest, **change}))
        fresh = pickle.loads(pickle.dumps(model))
        status = compiled.attach_compiled(fresh, copy)
        assert all(s.startswith(f"lightgbm: {reason}") for s in status.values()), status
        assert not any(est.uses_compiled for est in fresh.heads.values())


def test_wrong_check_scores_are_refused(artifact, tmp_path):
    model, _, folder, _ = artifact
    for path in folder.iterdir():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    with np.load(folder / "check.npz") as checks:
        data = {k: checks[k].copy() for k in checks.files}
    data["persona__raw"] = data["persona__raw"] + 1e-6
    np.savez(tmp_path / "check.npz", **data)
    fresh = pickle.loads(pickle.dumps(model))
    status = compiled.attach_compiled(fresh, tmp_path)
    assert status["persona"].startswith("lightgbm: compiled scores differ by 1e-06")
    assert status["stage"] == "compiled"


def test_a_missing_folder_keeps_lightgbm(artifact, tmp_path):
    model = pickle.loads(pickle.dumps(artifact[0]))
    status = compiled.attach_compiled(model, tmp_path / "nowhere")
    assert all(s.startswith("lightgbm: no compiled.json") for s in status.values())


def test_detaching_goes_back_to_lightgbm(artifact):
    model, X, folder, _ = artifact
    fresh = pickle.loads(pickle.dumps(model))
    compiled.attach_compiled(fresh, folder)
    est = fresh.heads["stage"]
    assert est.uses_compiled
    est.attach_compiled(None)
    assert not est.uses_compiled
