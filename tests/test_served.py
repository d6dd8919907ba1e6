"""The served copy (``model.served``): scores as the full model, unpickled and scoring
without scikit-learn, SciPy or LightGBM."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("lleaves")

from model import compiled  # noqa: E402
from model.served import ServedHead, served_copy  # noqa: E402
from tests.support.leads import trained  # noqa: E402
from tests.test_compiled import _hard_rows  # noqa: E402  (missing values, unseen categories)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The small two-head model on its compiled trees, its folder and its rows."""
    model, X, _, _ = trained()
    model = pickle.loads(pickle.dumps(model))
    folder = tmp_path_factory.mktemp("compiled")
    compiled.compile_model(model, folder, check_rows=X.head(64))
    assert set(model.prepare(folder).values()) == {"compiled"}
    return model, X, folder


def test_the_served_copy_scores_as_the_full_model(prepared, tmp_path):
    model, X, folder = prepared
    served = served_copy(model, folder)
    assert served is not None and served.engine == "compiled"
    assert all(isinstance(est, ServedHead) for est in served.heads.values())
    again = pickle.loads(pickle.dumps(served))  # as the cache keeps it
    assert set(again.prepare(folder, explanations=False).values()) == {"compiled"}
    rows = _hard_rows(X)
    # 200 rows, then 400: below and above the rows from which strings are encoded once each
    for big in (rows, pd.concat([rows] * 2, ignore_index=True)):
        a = again.predict_frame(big)
        b = model.predict_frame(big)
        assert list(a.columns) == list(b.columns)
        numeric = [c for c in a.columns if a[c].dtype.kind == "f"]
        np.testing.assert_allclose(a[numeric].to_numpy(), b[numeric].to_numpy(), rtol=0, atol=1e-9)
        assert (a.drop(columns=numeric) == b.drop(columns=numeric)).all().all()
    records = rows.head(5).to_dict("records")
    for got, want in zip(again.predict_rows(records), model.predict_rows(records), strict=True):
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert got[key] == (
                pytest.approx(value, abs=1e-9) if isinstance(value, float) else value
            )
    assert again.summary()["heads"].keys() == model.summary()["heads"].keys()
    assert again.task == model.task


def test_the_served_copy_cannot_explain(prepared):
    model, X, folder = prepared
    served = served_copy(model, folder)
    with pytest.raises(ValueError, match="load the full model for reasons"):
        served.predict_frame(X.head(3), reasons=True)
    with pytest.raises(ValueError, match="load the full model for reasons"):
        served.prepare(folder, explanations=True)


def test_no_served_copy_without_compiled_trees(prepared):
    model, _, _ = prepared
    plain = pickle.loads(pickle.dumps(model))  # compiled code is never pickled
    assert served_copy(plain, "/nonexistent") is None


def test_a_served_copy_of_other_trees_does_not_score(prepared, tmp_path):
    model, X, folder = prepared
    served = pickle.loads(pickle.dumps(served_copy(model, folder)))
    for est in served.heads.values():
        est.model_sha256_ = "0" * 64
    status = served.prepare(folder, explanations=False)
    assert set(status.values()) == {"lightgbm: the compiled booster is not this model's"}
    with pytest.raises(RuntimeError, match="no compiled trees"):
        served.predict_frame(X.head(3))


def test_the_served_copy_loads_and_scores_without_sklearn_scipy_or_lightgbm(prepared, tmp_path):
    model, X, folder = prepared
    (tmp_path / "served.pkl").write_bytes(pickle.dumps(served_copy(model, folder)))
    rows = _hard_rows(X)
    rows.to_pickle(tmp_path / "rows.pkl")
    model.predict_frame(rows).to_pickle(tmp_path / "want.pkl")
    script = (  # a fresh interpreter: what unpickling and scoring import
        "import pickle, sys\n"
        "import numpy as np, pandas as pd\n"
        f"served = pickle.loads(open({str(tmp_path / 'served.pkl')!r}, 'rb').read())\n"
        f"assert set(served.prepare({str(folder)!r}, explanations=False).values()) == {{'compiled'}}\n"
        f"got = served.predict_frame(pd.read_pickle({str(tmp_path / 'rows.pkl')!r}))\n"
        f"want = pd.read_pickle({str(tmp_path / 'want.pkl')!r})\n"
        "num = [c for c in got.columns if got[c].dtype.kind == 'f']\n"
        "assert np.abs(got[num].to_numpy() - want[num].to_numpy()).max() <= 1e-9\n"
        "assert (got.drop(columns=num) == want.drop(columns=num)).all().all()\n"
        "print(sorted(m for m in ('sklearn', 'scipy', 'lightgbm', 'mlflow') if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
