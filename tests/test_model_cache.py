"""The champion resolved once (``model.model_cache``): ``score`` without MLflow while the
registry is unchanged, and the new champion as soon as it moves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from leadready.cli import main
from leadready.config import Settings

# Trains and registers models, runs the CLI end to end: the full suite, not the inner loop.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
MODEL = "lead-readiness"


@pytest.fixture(scope="module")
def home(crm_export):
    """A home whose registry has version 1 (champion) and version 2 of another training."""
    from mlflow import MlflowClient

    from training.train import train

    export = crm_export("cache", 300, seed=7)
    root = export.root
    settings = Settings.for_home(root / "home")
    settings.ensure_home()
    for trees in (15, 4):  # two versions that score differently
        train(
            export.config(
                tracking_uri=settings.mlflow_tracking_uri,
                artifact_root=settings.artifact_root,
                exclude=("Email",),
                n_estimators=trees,
                compile=True,  # the kept copy of the model carries its compiled trees
            )
        )
    client = MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)
    champion = str(client.get_model_version_by_alias(MODEL, "champion").version)
    other = "2" if champion == "1" else "1"
    assert client.get_model_version(MODEL, other)
    return root, settings, champion, other


@pytest.fixture
def cli(home, monkeypatch):
    root, settings, _, _ = home
    monkeypatch.setenv("LEADREADY_HOME", str(settings.home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    def invoke(*args: str):
        result = CliRunner().invoke(main, list(args))
        assert result.exit_code == 0, result.output
        return result

    return invoke


def _score(cli, root: Path, out: Path):
    result = cli(
        "score", "--in", str(root / "contacts.csv"), "--events", str(root / "events.csv"),
        "--id-col", "Contact ID", "--out", str(out),
    )  # fmt: skip
    return result, pd.read_csv(out)


def _score_in_a_new_process(
    root: Path, settings: Settings, out: Path, *watched: str
) -> subprocess.CompletedProcess:
    """``leadready score`` in a fresh interpreter; it prints whether MLflow was imported
    (``MLFLOW``) and which of LightGBM and ``watched`` were (``FITTING``)."""
    env = {**os.environ, "LEADREADY_HOME": str(settings.home), "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    modules = ("lightgbm", *watched)
    script = (
        "import sys\n"
        "from leadready.cli import main\n"
        "try:\n"
        f"    main(['score', '--in', {str(root / 'contacts.csv')!r}, '--events', "
        f"{str(root / 'events.csv')!r}, '--id-col', 'Contact ID', '--out', {str(out)!r}])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print('MLFLOW', 'mlflow' in sys.modules)\n"
        f"print('FITTING', sorted(m for m in {modules!r} if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def _settle(settings: Settings) -> None:
    """As if the registry's last write were a second old (commands run seconds apart):
    a stamp of a file written in the last 100 ms is not trusted (``model_cache.settled``)."""
    import time

    db = Path(settings.mlflow_tracking_uri.removeprefix("sqlite:///"))
    old = time.time_ns() - 1_000_000_000
    os.utime(db, ns=(old, old))


def _entries(settings: Settings) -> list[dict]:
    return [json.loads(p.read_text()) for p in settings.model_cache_dir.glob("*.json")]


def test_the_champion_moves_between_two_scores_and_the_second_uses_the_new_one(home, cli, tmp_path):
    from model.model_cache import load_cached

    root, settings, champion, other = home
    uri = f"models:/{MODEL}@champion"
    _settle(settings)
    first, scored1 = _score(cli, root, tmp_path / "a.csv")
    assert f"(version {champion})" in first.output
    [entry] = [e for e in _entries(settings) if e["uri"] == uri]
    assert entry["version"] == champion
    cached = load_cached(settings.model_cache_dir, settings.mlflow_tracking_uri, uri)
    assert cached is not None and cached[1] == champion

    # The copy scores exactly as the model MLflow loads.
    again, scored1b = _score(cli, root, tmp_path / "b.csv")
    assert f"(version {champion})" in again.output
    pd.testing.assert_frame_equal(scored1, scored1b)

    cli("promote", other, "--reason", "cache test")
    _settle(settings)
    assert load_cached(settings.model_cache_dir, settings.mlflow_tracking_uri, uri) is None
    moved, scored2 = _score(cli, root, tmp_path / "c.csv")
    assert f"(version {other})" in moved.output
    assert not scored2.equals(scored1)  # the other version scores differently
    assert load_cached(settings.model_cache_dir, settings.mlflow_tracking_uri, uri)[1] == other

    cli("rollback", "--reason", "cache test")
    _settle(settings)
    back, scored3 = _score(cli, root, tmp_path / "d.csv")
    assert f"(version {champion})" in back.output
    pd.testing.assert_frame_equal(scored1, scored3)


def test_a_second_process_scores_without_importing_mlflow(home, cli, tmp_path):
    root, settings, _, _ = home
    _settle(settings)
    _score(cli, root, tmp_path / "warm.csv")  # resolves and caches
    proc = _score_in_a_new_process(root, settings, tmp_path / "fresh.csv", "sklearn", "scipy")
    assert "MLFLOW False" in proc.stdout
    # The served copy (model.served) scores: no scikit-learn, SciPy or LightGBM either.
    assert "FITTING []" in proc.stdout
    assert "(version" in proc.stderr
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "fresh.csv"), pd.read_csv(tmp_path / "warm.csv")
    )


def test_a_copy_that_does_not_load_is_resolved_through_mlflow_again(home, cli, tmp_path):
    from model.model_cache import load_cached

    root, settings, _, _ = home
    uri = f"models:/{MODEL}@champion"
    _settle(settings)
    _, before = _score(cli, root, tmp_path / "x.csv")
    [entry] = [e for e in _entries(settings) if e["uri"] == uri]
    (settings.model_cache_dir / entry["copy"] / entry["lead_model"]).write_bytes(b"not a pickle")
    assert load_cached(settings.model_cache_dir, settings.mlflow_tracking_uri, uri) is None
    # The broken copy is not used; MLflow resolves and loads the version itself.
    _, after = _score(cli, root, tmp_path / "y.csv")
    pd.testing.assert_frame_equal(before, after)


def test_only_a_sqlite_registry_file_is_stamped(tmp_path):
    from model.model_cache import registry_stamp

    assert registry_stamp("http://tracking:5000") is None
    assert registry_stamp("sqlite:///:memory:") is None
    assert registry_stamp(f"sqlite:///{tmp_path / 'missing.db'}") is None
    db = tmp_path / "r.db"
    db.write_bytes(b"x")
    first = registry_stamp(f"sqlite:///{db}")
    assert first is not None
    assert registry_stamp(f"sqlite:///{db}") == first
    with db.open("ab") as fh:
        fh.write(b"y")
    assert registry_stamp(f"sqlite:///{db}") != first
    (tmp_path / "r.db-wal").write_bytes(b"")
    assert registry_stamp(f"sqlite:///{db}") != first


def test_a_kept_value_is_recalled_until_the_registry_file_changes(tmp_path):
    import sqlite3

    from model.model_cache import keep, recall, registry_stamp

    db = tmp_path / "mlflow.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
    uri = f"sqlite:///{db}"
    cache = tmp_path / "cache"
    assert recall(cache, uri, "labels") is None
    keep(cache, uri, "labels", registry_stamp(uri), {"stage": ["MQL", "SQL"]})
    assert recall(cache, uri, "labels") == {"stage": ["MQL", "SQL"]}
    assert recall(cache, uri, "other") is None
    with sqlite3.connect(db) as conn:  # any write: an alias move, a tag…
        conn.execute("INSERT INTO t VALUES (1)")
    assert recall(cache, uri, "labels") is None


def test_a_version_uri_is_kept_too(home, cli, tmp_path):
    from model.model_cache import load_cached

    root, settings, _, other = home
    uri = f"models:/{MODEL}/{other}"
    _settle(settings)
    args = ("--in", str(root / "contacts.csv"), "--id-col", "Contact ID", "--model", uri)
    first = cli("score", *args, "--out", str(tmp_path / "v1.csv"))
    assert f"(version {other})" in first.output
    assert load_cached(settings.model_cache_dir, settings.mlflow_tracking_uri, uri)[1] == other
    again = cli("score", *args, "--out", str(tmp_path / "v2.csv"))
    assert f"(version {other})" in again.output
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "v1.csv"), pd.read_csv(tmp_path / "v2.csv")
    )


def test_a_stamp_of_a_file_written_in_the_same_clock_tick_is_not_trusted(tmp_path):
    import time

    from model.model_cache import SETTLED_NS, keep, recall, registry_stamp, settled

    db = tmp_path / "r.db"
    db.write_bytes(b"x")
    uri = f"sqlite:///{db}"
    stamp = registry_stamp(uri)
    written = db.stat().st_mtime_ns
    assert not settled(stamp, written + SETTLED_NS - 1)
    assert settled(stamp, written + SETTLED_NS)
    # A value read right after a write is not kept (a second write in the same tick
    # could leave the stamp as it is); one read later is.
    keep(tmp_path / "c", uri, "k", stamp, 1, taken_ns=written)
    assert recall(tmp_path / "c", uri, "k") is None
    keep(tmp_path / "c", uri, "k", stamp, 2, taken_ns=time.time_ns() + SETTLED_NS)
    assert recall(tmp_path / "c", uri, "k") == 2


def test_the_first_score_after_a_move_loads_the_served_copy_logged_with_the_model(
    home, cli, tmp_path
):
    import shutil

    root, settings, _, _ = home
    shutil.rmtree(settings.model_cache_dir, ignore_errors=True)  # as after a move
    # (Not SciPy: MLflow imports it itself, mlflow.models.utils imports scipy.sparse.)
    proc = _score_in_a_new_process(root, settings, tmp_path / "served.csv", "sklearn")
    assert "MLFLOW True" in proc.stdout and "FITTING []" in proc.stdout
    # The full model (reasons need its booster) gives the same predictions.
    cli(
        "score", "--in", str(root / "contacts.csv"), "--events", str(root / "events.csv"),
        "--id-col", "Contact ID", "--out", str(tmp_path / "full.csv"), "--reasons",
    )  # fmt: skip
    served = pd.read_csv(tmp_path / "served.csv")
    full = pd.read_csv(tmp_path / "full.csv")[served.columns]
    pd.testing.assert_frame_equal(served, full, check_exact=False, rtol=0, atol=1e-9)
