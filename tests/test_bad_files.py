"""`leadready train` on bad tables: a clear message and a non-zero exit, or a documented
handling, and never a Python traceback.

Each case writes a variant of a small simulated lead table (plus its events)
and runs the real command in a subprocess (tmp home, a few trees, no gate).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    from data.simulate import SimulationConfig, simulate

    sim = simulate(SimulationConfig(n_leads=240, seed=7))
    root = tmp_path_factory.mktemp("bad-files")
    events = root / "events.csv"
    sim.events.to_csv(events, index=False)
    return sim.leads.copy(), events, root


def _train(tmp_path: Path, leads: Path, events: Path | None, *extra: str):
    cmd = [sys.executable, "-m", "leadready", "train", "--leads", str(leads)]
    if events is not None:
        cmd += ["--events", str(events)]
    cmd += ["--n-estimators", "5", "--no-gate", "--no-compile", *extra]
    env = {**os.environ, "LEADREADY_HOME": str(tmp_path / "home")}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("DATABASE_URL", None)
    proc = subprocess.run(
        cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    output = proc.stdout + proc.stderr
    assert "Traceback (most recent call last)" not in output, output[-3000:]
    return proc.returncode, output


def _labels(*names: str) -> list[str]:
    out: list[str] = []
    for name in names:
        out += ["--" + name.replace("_", "-") + "-col", name]
    return out


def test_a_missing_label_column_is_named(tables, tmp_path):
    leads, events, _ = tables
    path = tmp_path / "leads.csv"
    leads.drop(columns=["stage"]).to_csv(path, index=False)
    code, output = _train(tmp_path, path, events, *_labels("stage", "persona"))
    assert code != 0
    assert "no column 'stage' (stage label column); the columns are:" in output


def test_one_class_only_is_refused_with_a_message(tables, tmp_path):
    leads, events, _ = tables
    one = leads.assign(stage="awareness")
    path = tmp_path / "leads.csv"
    one.drop(columns=["persona"]).to_csv(path, index=False)
    code, output = _train(tmp_path, path, events, *_labels("stage"))
    assert code != 0
    assert "has only 'awareness'; a classifier needs at least two classes" in output


def test_all_null_features_are_refused_or_reported(tables, tmp_path):
    leads, _, _ = tables
    empty = leads[["lead_id", "stage", "persona"]].copy()
    for col in ("job_title", "company", "company_size", "country"):
        empty[col] = np.nan
    path = tmp_path / "leads.csv"
    empty.to_csv(path, index=False)
    code, output = _train(tmp_path, path, None, *_labels("stage", "persona"))
    assert code != 0, output[-2000:]
    assert "feature" in output.lower()


def test_duplicate_lead_ids_are_named(tables, tmp_path):
    leads, events, _ = tables
    dup = leads.iloc[list(range(len(leads))) + list(range(10))]
    path = tmp_path / "leads.csv"
    dup.to_csv(path, index=False)
    code, output = _train(tmp_path, path, events, *_labels("stage", "persona"))
    assert code != 0, output[-2000:]
    assert "has 10 duplicate ids (10 repeated rows)" in output, output[-2000:]
    assert repr(str(leads["lead_id"].iloc[0])) in output


def test_ten_percent_unparseable_rows_are_reported(tables, tmp_path):
    leads, events, _ = tables
    path = tmp_path / "leads.csv"
    leads.to_csv(path, index=False)
    lines = path.read_text().splitlines()
    bad = set(range(1, len(lines), 10))  # every 10th data row
    for i in bad:
        lines[i] = lines[i] + ',"unterminated,extra,fields'
    path.write_text("\n".join(lines) + "\n")
    code, output = _train(tmp_path, path, events, *_labels("stage", "persona"))
    assert "row" in output.lower(), output[-2000:]
    if code == 0:
        assert "reject" in output.lower() or "skipp" in output.lower(), output[-2000:]


def test_a_table_bigger_than_max_rows_is_sampled_with_a_notice(tables, tmp_path):
    """The documented handling of a big file (bench/bigfile.py runs it on 2 GB): the
    table is streamed and a uniform sample of --max-rows leads trained on, as stderr
    says and the MLflow run records."""
    import mlflow

    from leadready.config import Settings

    leads, events, _ = tables
    path = tmp_path / "leads.csv"
    leads.to_csv(path, index=False)
    cmd = [sys.executable, "-m", "leadready", "train", "--leads", str(path)]
    cmd += ["--events", str(events), *_labels("stage", "persona")]
    cmd += ["--n-estimators", "5", "--no-gate", "--no-compile", "--max-rows", "150", "--seed", "4"]
    env = {**os.environ, "LEADREADY_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("DATABASE_URL", None)
    proc = subprocess.run(
        cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert (
        f"leads.csv has {len(leads)} readable rows, more than the bound of 150: kept a "
        "uniform random sample of 150 (seed 4)" in proc.stderr
    ), proc.stderr[-2000:]
    assert "uniform random sample" not in proc.stdout

    mlflow.set_tracking_uri(Settings.for_home(tmp_path / "home").mlflow_tracking_uri)
    (run,) = mlflow.search_runs(search_all_experiments=True, output_format="list")
    params = run.data.params
    assert params["max_rows"] == "150"
    assert params["rows_in_file"] == str(len(leads))
    assert params["sampled"] == "True"
    assert params["n_leads"] == "150"
