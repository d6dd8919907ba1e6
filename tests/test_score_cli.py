"""``leadready score`` and training.score: streaming, chunk-independence, clear errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from leadready.cli import main
from leadready.config import Settings

# Trains and registers models, runs the CLI end to end: the full suite, not the inner loop.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def home(crm_export):
    """A LEADREADY_HOME whose registry has a champion trained on a CRM export with events."""
    from training.train import train

    export = crm_export("score", 400, seed=5)
    root = export.root
    settings = Settings.for_home(root / "home")
    settings.ensure_home()
    train(
        export.config(
            tracking_uri=settings.mlflow_tracking_uri,
            artifact_root=settings.artifact_root,
            exclude=("Email",),
            n_estimators=15,
        )
    )
    return root, settings


@pytest.fixture
def run(home, monkeypatch):
    root, settings = home
    monkeypatch.setenv("LEADREADY_HOME", str(settings.home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    def invoke(*args: str):
        return CliRunner().invoke(main, ["score", *args])

    return invoke


def _score_csv(run, root: Path, out: Path, *extra: str) -> pd.DataFrame:
    result = run(
        "--in",
        str(root / "contacts.csv"),
        "--out",
        str(out),
        "--events",
        str(root / "events.csv"),
        "--id-col",
        "Contact ID",
        *extra,
    )
    assert result.exit_code == 0, result.output
    return pd.read_csv(out)


def test_streaming_in_small_chunks_keeps_every_row_and_matches_one_chunk(home, run, tmp_path):
    root, _ = home
    source = pd.read_csv(root / "contacts.csv")
    small = _score_csv(run, root, tmp_path / "small.csv", "--chunk-size", "37")
    whole = _score_csv(run, root, tmp_path / "whole.csv", "--chunk-size", "100000")
    assert len(small) == len(source)
    assert small["Contact ID"].tolist() == source["Contact ID"].tolist()
    assert list(small.columns[: len(source.columns)]) == list(source.columns)
    for col in ("stage", "stage_confidence", "persona", "readiness", "route"):
        assert col in small.columns
    stage_proba = small.filter(like="stage_proba__")
    assert set(stage_proba.columns) == {
        "stage_proba__Customer",
        "stage_proba__MQL",
        "stage_proba__Opportunity",
        "stage_proba__SQL",
    }
    assert np.allclose(stage_proba.sum(axis=1), 1.0)
    assert set(small["route"]) <= {"sales", "nurture", "review"}
    # Features are computed as of one time for the whole file: chunking changes nothing.
    pd.testing.assert_frame_equal(small, whole)


def test_events_read_ahead_in_another_process_score_the_same(home, run, tmp_path, monkeypatch):
    import training.score

    root, _ = home
    here = _score_csv(run, root, tmp_path / "here.csv")
    monkeypatch.setattr(training.score, "READ_AHEAD_BYTES", 0)  # every events file ahead
    ahead = _score_csv(run, root, tmp_path / "ahead.csv")
    pd.testing.assert_frame_equal(here, ahead)
    # Many chunks: each one's features are built there while the one before is scored here.
    pipelined = _score_csv(run, root, tmp_path / "pipelined.csv", "--chunk-size", "37")
    pd.testing.assert_frame_equal(here, pipelined)
    two = _score_csv(
        run, root, tmp_path / "two.csv", "--chunk-size", "37", "--feature-processes", "2"
    )
    pd.testing.assert_frame_equal(here, two)


def test_two_feature_processes_taking_chunks_in_turn_score_the_same(home, tmp_path):
    from model.registry import configure, load_model
    from training.score import EventsAhead, score_table

    root, settings = home
    configure(settings.mlflow_tracking_uri, settings.artifact_root)
    model, _ = load_model("models:/lead-readiness@champion")
    kwargs = {"id_col": "Contact ID", "chunk_size": 37}
    score_table(
        model,
        root / "contacts.csv",
        tmp_path / "one.csv",
        events_path=root / "events.csv",
        **kwargs,
    )
    ahead = EventsAhead(root / "events.csv", workers=2)
    try:
        assert ahead.workers == 2
        summary = score_table(
            model, root / "contacts.csv", tmp_path / "two.csv", events_path=ahead, **kwargs
        )
    finally:
        ahead.close()
    assert summary.chunks == 11  # 400 rows: the two processes took turns
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "one.csv"), pd.read_csv(tmp_path / "two.csv")
    )


def test_features_from_events_coded_once_are_those_of_the_events_table(home, tmp_path):
    # score_table codes the events once (model.features.EventCodes); each chunk's
    # features must be exactly those built from the events table itself.
    from data.readers import read_events
    from model.features import build_features
    from model.registry import configure, load_model
    from training.score import score_table

    root, settings = home
    configure(settings.mlflow_tracking_uri, settings.artifact_root)
    model, _ = load_model("models:/lead-readiness@champion")
    seen: list[tuple[pd.DataFrame, pd.DataFrame]] = []
    summary = score_table(
        model,
        root / "contacts.csv",
        tmp_path / "out.csv",
        events_path=root / "events.csv",
        id_col="Contact ID",
        chunk_size=150,
        on_scored=lambda leads, features, scored: seen.append((leads, features)),
    )
    events = read_events(root / "events.csv").frame
    events["lead_id"] = events["lead_id"].astype(str)
    assert len(seen) == 3
    for leads, features in seen:
        expected = build_features(
            leads, events, as_of=summary.as_of, config=model.feature_config, id_col="Contact ID"
        )
        pd.testing.assert_frame_equal(features, expected)


def test_a_bad_events_file_read_ahead_is_the_readers_error(home, run, tmp_path, monkeypatch):
    import training.score

    root, _ = home
    (tmp_path / "events.csv").write_text("lead_id,when\nC1,2026-01-01\n")
    monkeypatch.setattr(training.score, "READ_AHEAD_BYTES", 0)
    result = run(
        "--in", str(root / "contacts.csv"), "--out", str(tmp_path / "out.csv"),
        "--events", str(tmp_path / "events.csv"), "--id-col", "Contact ID",
    )  # fmt: skip
    monkeypatch.setattr(training.score, "READ_AHEAD_BYTES", 2**62)
    direct = run(
        "--in", str(root / "contacts.csv"), "--out", str(tmp_path / "out.csv"),
        "--events", str(tmp_path / "events.csv"), "--id-col", "Contact ID",
    )  # fmt: skip
    assert result.exit_code == direct.exit_code == 1
    assert "events.csv" in result.output and "timestamp" in result.output

    # Same message; the reader lists the columns it found in set order, which varies
    # between processes (string hashing), so the words are compared. The first run
    # of a fresh home may also show MLflow's download bar for the champion ("0%|…"),
    # which is not part of the message.
    def words(text: str) -> list[str]:
        kept = "\n".join(line for line in text.splitlines() if not re.search(r"\d+%\|", line))
        return sorted(kept.replace(",", " ").replace("(", " ").replace(")", " ").split())

    assert words(result.output) == words(direct.output)
    assert not (tmp_path / "out.csv").exists()


def test_parquet_in_and_out_with_reasons_and_a_label_column_kept_apart(home, run, tmp_path):
    root, _ = home
    frame = pd.read_csv(root / "contacts.csv").head(60)
    frame["stage"] = "MQL"  # an input column named like a prediction
    frame.to_parquet(tmp_path / "in.parquet")
    result = run(
        "--in",
        str(tmp_path / "in.parquet"),
        "--out",
        str(tmp_path / "out.parquet"),
        "--events",
        str(root / "events.csv"),
        "--id-col",
        "Contact ID",
        "--chunk-size",
        "25",
        "--reasons",
    )
    assert result.exit_code == 0, result.output
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert len(out) == 60
    assert (out["stage_input"] == "MQL").all()
    assert "stage → stage_input" in result.output
    # the thresholds behind the route column, stated once per run
    note = " ".join(result.output.split())
    assert "routing: readiness = P(" in note and "sales at readiness >= 0.50" in note
    assert "review when 0.40 < readiness < 0.60" in note
    reasons = json.loads(out["stage_reasons"].iloc[0])
    assert reasons and {"feature", "text", "weight"} <= set(reasons[0])


def test_without_events_the_missing_engagement_columns_are_named(home, run, tmp_path):
    root, _ = home
    result = run(
        "--in",
        str(root / "contacts.csv"),
        "--out",
        str(tmp_path / "o.csv"),
        "--id-col",
        "Contact ID",
    )
    assert result.exit_code == 0, result.output
    assert "input columns are missing" in result.output
    assert "pass --events" in result.output
    assert len(pd.read_csv(tmp_path / "o.csv")) == 400


def test_challenger_alias_can_be_tried_and_an_unknown_alias_is_a_clear_error(home, run, tmp_path):
    root, _ = home
    ok = run(
        "--in",
        str(root / "contacts.csv"),
        "--out",
        str(tmp_path / "c.csv"),
        "--model",
        "models:/lead-readiness@challenger",
        "--id-col",
        "Contact ID",
    )
    assert ok.exit_code == 0, ok.output
    assert "version 1" in ok.output
    bad = run(
        "--in",
        str(root / "contacts.csv"),
        "--out",
        str(tmp_path / "n.csv"),
        "--model",
        "models:/lead-readiness@nope",
    )
    assert bad.exit_code == 1
    assert "has alias 'nope'" in bad.output
    assert "Traceback" not in bad.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "{tmp}/o.txt"], "cannot write .txt"),
        (["--out", "{tmp}/o.csv", "--chunk-size", "0"], "Invalid value for '--chunk-size'"),
        (["--out", "{tmp}/o.csv", "--events", "{root}/events.csv"], "no id column 'lead_id'"),
        (["--out", "{root}/contacts.csv"], "would overwrite the input"),
        (["--out", "{tmp}/missing/o.csv"], "no such folder"),
        (["--out", "{tmp}/o.csv", "--as-of", "yesterday"], "not an ISO 8601 time"),
    ],
)
def test_bad_options_give_clear_messages(home, run, tmp_path, args, message):
    root, _ = home
    args = [a.format(tmp=tmp_path, root=root) for a in args]
    result = run("--in", str(root / "contacts.csv"), *args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert not list(tmp_path.glob(".o.*part"))  # no half-written output left behind


def test_repeated_ids_in_a_chunk_are_named(home, tmp_path):
    from model.registry import configure, load_model
    from training.score import score_table

    root, settings = home
    configure(settings.mlflow_tracking_uri, settings.artifact_root)
    model, _ = load_model("models:/lead-readiness@champion")
    frame = pd.read_csv(root / "contacts.csv").head(10)
    frame.loc[4, "Contact ID"] = frame.loc[2, "Contact ID"]
    frame.to_csv(tmp_path / "dupes.csv", index=False)
    with pytest.raises(ValueError, match=r"repeated ids in column 'Contact ID'.*'C-100002'"):
        score_table(
            model,
            tmp_path / "dupes.csv",
            tmp_path / "out.csv",
            events_path=root / "events.csv",
            id_col="Contact ID",
        )
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.slow
def test_a_fresh_process_loads_the_champion_and_scores(home, tmp_path):
    root, settings = home
    env = {**os.environ, "LEADREADY_HOME": str(settings.home), "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    out = tmp_path / "fresh.csv"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "leadready",
            "score",
            "--in",
            str(root / "contacts.csv"),
            "--out",
            str(out),
            "--events",
            str(root / "events.csv"),
            "--id-col",
            "Contact ID",
            "--chunk-size",
            "150",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    scored = pd.read_csv(out)
    assert len(scored) == 400
    assert "lead-readiness@champion (version 1)" in proc.stderr
    assert scored["stage"].notna().all()


def test_record_stores_every_prediction_with_its_feature_snapshot(home, run, tmp_path):
    from data.review_queue import review_queue
    from data.store import Store

    root, settings = home
    scored = _score_csv(run, root, tmp_path / "rec.csv", "--chunk-size", "150", "--record")
    store = Store(settings.database_url)
    try:
        first = str(scored["Contact ID"].iloc[0])
        [row] = store.predictions_for(first)
        assert row["source"] == "batch"
        assert row["stage"] == scored["stage"].iloc[0]
        assert row["features"], "the feature snapshot is stored"
        assert store.get_lead(first) is not None
        page = review_queue(store, limit=500)
        assert page.total == len(scored)
    finally:
        store.dispose()


@pytest.mark.parametrize(
    ("load", "said"),
    [
        (0.2, "features built in two processes"),
        (9.0, "features built in one process: the machine is busy"),
    ],
)
def test_by_default_a_second_feature_process_only_on_a_quiet_machine(
    home, run, tmp_path, monkeypatch, load, said
):
    import os

    import training.score

    root, _ = home
    here = _score_csv(run, root, tmp_path / "here.csv")
    monkeypatch.setattr(training.score, "READ_AHEAD_BYTES", 0)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    argv = ["--in", str(root / "contacts.csv"), "--out", str(tmp_path / "auto.csv")]
    argv += ["--events", str(root / "events.csv"), "--id-col", "Contact ID", "--chunk-size", "37"]
    result = run(*argv)
    assert result.exit_code == 0, result.output
    assert said in " ".join(result.output.split())
    pd.testing.assert_frame_equal(here, pd.read_csv(tmp_path / "auto.csv"))
