"""Spark feature building and bulk scoring give the numbers of the local code paths.

One local Spark session (``local[2]``, UI off) for the module. The model is the
session's tiny champion (``tests.support.registry``). Compared:

* ``build_features_spark`` against ``model.features.build_features`` on the same
  leads and events (every column, 1e-9, NaN-aware, same order and dtypes);
* ``score_spark`` with events against ``training.score.score_table``;
* ``score_spark`` on 100,000 feature rows against ``LeadReadinessModel.predict_frame``;
* the command ``leadready score --engine spark`` against ``leadready score`` (local
  engine) on the same leads and events (the command uses the module's session).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pyspark = pytest.importorskip("pyspark")

pytestmark = [
    pytest.mark.slow,
    # PySpark 4 warns that it does not fully support pandas 3 on every conversion.
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]

N_BULK = 100_000


@pytest.fixture(scope="module")
def spark(tmp_path_factory):
    """One local Spark session for the module, stopped at its end."""
    from training.spark import local_session

    session = local_session(
        "local[2]",
        app_name="leadready-tests",
        driver_memory="2g",
        shuffle_partitions=4,
        local_dir=tmp_path_factory.mktemp("spark-local"),
        # Small Arrow batches: a bucket of leads then arrives in several batches (concatenated
        # text columns), as the buckets of a big table do.
        conf={"spark.sql.execution.arrow.maxRecordsPerBatch": "400"},
    )
    yield session
    session.stop()


@pytest.fixture(scope="module")
def lead_model(tiny_registry):
    from model.registry import load_model

    tiny_registry.configure()
    model, _ = load_model(tiny_registry.uri(tiny_registry.champion))
    return model


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """1,500 simulated leads and their events as Parquet, with awkward extra rows.

    Extra rows: a lead without events and without title or company size, and
    events of a lead that is not in the table, later than every other event
    (it must not move ``as_of`` for ``build_features``).
    """
    from data.simulate import SimulationConfig, simulate

    sim = simulate(SimulationConfig(n_leads=1_500, seed=11))
    leads = sim.leads.copy()
    lonely = leads.iloc[[0]].copy()
    lonely["lead_id"] = "L-no-events"
    lonely["job_title"] = None
    lonely["company_size"] = pd.NA
    leads = pd.concat([leads, lonely], ignore_index=True)
    late = sim.events.iloc[:3].copy()
    late["lead_id"] = "L-not-in-leads"
    late["timestamp"] = sim.events["timestamp"].max() + pd.Timedelta(days=3)
    events = pd.concat([sim.events, late], ignore_index=True)
    folder = tmp_path_factory.mktemp("spark-tables")
    leads.to_parquet(folder / "leads.parquet", index=False)
    events.to_parquet(folder / "events.parquet", index=False)
    return folder, leads, events


def _assert_same_frame(local: pd.DataFrame, spark_rows: pd.DataFrame, atol: float) -> None:
    """Same columns in the same order and the same values (NaN = NaN) row by row."""
    assert list(spark_rows.columns) == list(local.columns)
    assert len(spark_rows) == len(local)
    for name in local.columns:
        a, b = local[name], spark_rows[name]
        if pd.api.types.is_numeric_dtype(a.dtype) and not pd.api.types.is_bool_dtype(a.dtype):
            x = a.to_numpy(dtype=np.float64, na_value=np.nan)
            y = b.to_numpy(dtype=np.float64, na_value=np.nan)
            assert np.array_equal(np.isnan(x), np.isnan(y)), name
            assert np.allclose(x, y, rtol=0, atol=atol, equal_nan=True), (
                f"{name}: max difference {np.nanmax(np.abs(x - y))}"
            )
        else:
            xs = [None if pd.isna(v) else v for v in a.astype(object)]
            ys = [None if pd.isna(v) else v for v in b.astype(object)]
            assert xs == ys, name


def test_spark_features_equal_build_features(spark, tables):
    from model.features import build_features
    from training.spark import build_features_spark

    folder, leads, events = tables
    local = build_features(leads, events, exclude=["stage", "persona"])
    frame = build_features_spark(
        spark.read.parquet(str(folder / "leads.parquet")),
        spark.read.parquet(str(folder / "events.parquet")),
        exclude=["stage", "persona"],
        buckets=3,
    ).toPandas()

    assert frame["lead_id"].is_unique
    frame = frame.set_index("lead_id").loc[local.index]
    _assert_same_frame(local, frame, atol=1e-9)
    # the features are not trivially equal: engagement varies, the lonely lead has none
    assert local["n_events_total"].nunique() > 10
    assert frame.loc["L-no-events", "n_events_total"] == 0
    assert np.isnan(frame.loc["L-no-events", "days_since_any"])
    assert frame.loc["L-no-events", "title_seniority"] == "unknown"
    for name in ("n_events_total", "max_events_per_minute"):
        assert pd.api.types.is_integer_dtype(frame[name].dtype)


def test_spark_features_without_events_and_with_a_given_as_of(spark, tables):
    from model.features import build_features
    from training.spark import build_features_spark

    folder, leads, _ = tables
    as_of = pd.Timestamp("2030-01-01T00:00:00Z")
    local = build_features(leads, None, as_of=as_of)
    frame = build_features_spark(
        spark.read.parquet(str(folder / "leads.parquet")), as_of=as_of
    ).toPandas()
    frame = frame.set_index("lead_id").loc[local.index]
    _assert_same_frame(local, frame, atol=1e-9)
    assert (frame["lead_age_days"].dropna() > 365).all()


def test_score_spark_with_events_equals_score_table(
    spark, tables, lead_model, tiny_registry, tmp_path
):
    from training.score import score_table
    from training.spark import score_spark

    folder, leads, events = tables
    tiny_registry.configure()
    uri = f"models:/{tiny_registry.name}@champion"
    local_out = tmp_path / "local.parquet"
    score_table(
        lead_model,
        folder / "leads.parquet",
        local_out,
        events_path=folder / "events.parquet",
        chunk_size=400,
    )
    spark_out = tmp_path / "scored"
    summary = score_spark(
        spark,
        folder / "leads.parquet",
        spark_out,
        model_uri=uri,
        events_path=folder / "events.parquet",
        buckets=3,
    )

    local = pd.read_parquet(local_out).set_index("lead_id")
    scored = pd.read_parquet(spark_out).set_index("lead_id").loc[local.index]
    _assert_same_frame(local, scored, atol=1e-6)
    assert summary.version == tiny_registry.champion
    assert summary.model_uri == tiny_registry.uri(tiny_registry.champion)
    assert summary.rows == len(leads)
    assert summary.renamed_columns == {"stage": "stage_input", "persona": "persona_input"}
    assert summary.routes == scored["route"].value_counts().sort_index().to_dict()
    assert summary.as_of == events["timestamp"].max().to_pydatetime()
    assert scored["stage"].nunique() > 1
    assert summary.missing_columns == []
    assert not list(tmp_path.glob(".scored.*"))


def test_score_spark_100k_feature_rows_equal_predict_frame(
    spark, lead_model, tiny_registry, tmp_path
):
    from data.simulate import SimulationConfig, simulate
    from model.features import build_features
    from training.spark import score_spark

    sim = simulate(SimulationConfig(n_leads=N_BULK, seed=5))
    features = build_features(
        sim.leads.drop(columns=["stage", "persona"]), sim.events, as_of=sim.config.end
    )
    assert len(features) >= 100_000
    path = tmp_path / "features.parquet"
    # Spark splits Parquet by row group: four of them let both cores score.
    features.reset_index().to_parquet(path, index=False, row_group_size=25_000)
    local = lead_model.predict_frame(features)

    summary = score_spark(
        spark,
        path,
        tmp_path / "scored",
        model_uri=tiny_registry.uri(tiny_registry.champion),
        features_ready=True,
    )
    scored = pd.read_parquet(tmp_path / "scored").set_index("lead_id").loc[features.index]
    _assert_same_frame(local, scored[list(local.columns)], atol=1e-6)
    assert summary.rows == len(features)
    assert summary.missing_columns == []
    assert summary.as_of is None
    assert sum(summary.routes.values()) == len(features)
    assert set(summary.routes) == set(local["route"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"in_path": "leads.csv"}, "Parquet only"),
        ({"out_path": "scored.jsonl"}, "Parquet only"),
        ({"id_col": "crm_id"}, "no id column 'crm_id'"),
    ],
)
def test_score_spark_refuses_bad_arguments(spark, tables, tiny_registry, tmp_path, kwargs, message):
    from training.spark import score_spark

    folder, _, _ = tables
    tiny_registry.configure()
    args = {
        "in_path": folder / "leads.parquet",
        "out_path": tmp_path / "out",
        "model_uri": tiny_registry.uri(tiny_registry.champion),
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        score_spark(spark, args.pop("in_path"), args.pop("out_path"), **args)
    assert not (tmp_path / "out").exists()


def test_spark_features_refuse_text_timestamps(spark):
    from training.spark import build_features_spark

    leads = spark.createDataFrame([("L1", "VP Sales")], "lead_id string, job_title string")
    events = spark.createDataFrame(
        [("L1", "2026-01-01T00:00:00Z", "page_view")],
        "lead_id string, timestamp string, type string",
    )
    with pytest.raises(ValueError, match="must be a Spark timestamp"):
        build_features_spark(leads, events)
    with pytest.raises(ValueError, match="lack the column"):
        build_features_spark(leads, events.drop("type"))


def test_score_spark_output_on_input_is_refused(spark, tables, tiny_registry):
    from training.spark import score_spark

    folder, _, _ = tables
    with pytest.raises(ValueError, match="overwrite the input"):
        score_spark(
            spark,
            folder / "leads.parquet",
            folder / "leads.parquet",
            model_uri=tiny_registry.uri(tiny_registry.champion),
        )


def test_score_spark_unknown_alias_is_a_lookup_error(spark, tables, tiny_registry, tmp_path):
    from training.spark import score_spark

    folder, _, _ = tables
    tiny_registry.configure()
    with pytest.raises(LookupError, match="no version"):
        score_spark(
            spark,
            folder / "leads.parquet",
            tmp_path / "out",
            model_uri=f"models:/{tiny_registry.name}@nobody",
        )
    assert not Path(tmp_path / "out").exists()


def test_score_on_spark_prints_the_summary_and_turns_errors_into_click_errors(
    spark, tables, tiny_registry, tmp_path
):
    import io

    import click
    from rich.console import Console

    from leadready.commands.spark import score_on_spark
    from leadready.config import Settings

    _, leads, _ = tables
    small = tmp_path / "small.parquet"
    leads.head(40).to_parquet(small, index=False)
    settings = Settings.for_home(tmp_path / "home", mlflow_tracking_uri=tiny_registry.tracking_uri)
    uri = f"models:/{tiny_registry.name}@champion"
    out = io.StringIO()
    console = Console(file=out, width=200)
    score_on_spark(settings, uri, small, tmp_path / "scored", reasons=True, console=console)
    text = out.getvalue()
    assert "scored 40 rows on Spark" in text
    assert f"(version {tiny_registry.champion})" in text
    assert "stage → stage_input" in text
    assert "input columns are missing" in text and "pass --events" in text
    first = pd.read_parquet(tmp_path / "scored")
    assert len(first) == 40
    reasons = json.loads(first["stage_reasons"].iloc[0])
    assert reasons and {"feature", "text", "weight"} <= set(reasons[0])
    assert spark.range(3).count() == 3  # the shared session is still running (not stopped)

    # a second run replaces the output folder whole
    leads.head(25).to_parquet(small, index=False)
    score_on_spark(settings, uri, small, tmp_path / "scored", console=console)
    assert len(pd.read_parquet(tmp_path / "scored")) == 25

    with pytest.raises(click.ClickException, match="no id column 'crm_id'"):
        score_on_spark(settings, uri, small, tmp_path / "x", id_col="crm_id", console=console)
    dupes = tmp_path / "dupes.parquet"
    pd.concat([leads.head(5), leads.head(1)]).to_parquet(dupes, index=False)
    with pytest.raises(click.ClickException, match="duplicate ids"):
        score_on_spark(settings, uri, dupes, tmp_path / "y", console=console)
    assert not (tmp_path / "y").exists()
    assert not list(tmp_path.glob(".y.*"))


def test_score_command_with_engine_spark_equals_the_local_engine(
    spark, tables, tiny_registry, tmp_path, monkeypatch
):
    """``leadready score --engine spark --in --out`` through the command line, in this
    process (so it scores on the module's session, which it leaves running), against
    ``leadready score`` with the local engine on the same leads and events."""
    from click.testing import CliRunner

    from leadready.cli import main

    folder, leads, events = tables
    monkeypatch.setenv("LEADREADY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tiny_registry.tracking_uri)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    common = [
        "--in",
        str(folder / "leads.parquet"),
        "--events",
        str(folder / "events.parquet"),
        "--model",
        f"models:/{tiny_registry.name}@champion",
    ]

    def score(*args: str):
        result = CliRunner().invoke(main, ["score", *common, *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    local_text = score("--out", str(tmp_path / "local.parquet"), "--chunk-size", "400")
    spark_text = score("--engine", "spark", "--out", str(tmp_path / "scored"))

    local = pd.read_parquet(tmp_path / "local.parquet").set_index("lead_id")
    scored = pd.read_parquet(tmp_path / "scored").set_index("lead_id").loc[local.index]
    _assert_same_frame(local, scored, atol=1e-6)
    assert len(scored) == len(leads) and scored["stage"].nunique() > 1
    n = f"{len(leads):,}"
    assert f"scored {n} rows on Spark (local[2]) with models:/" in spark_text
    assert f"scored {n} rows in 4 chunk(s) with models:/" in local_text
    version = f"(version {tiny_registry.champion})"
    for text in (local_text, spark_text):
        # the one summary of both engines: version, routes, renamed label columns
        assert version in text
        routes = ", ".join(
            f"{k} {v:,}" for k, v in local["route"].value_counts().sort_index().items()
        )
        assert f"routes: {routes}" in text
        assert "stage → stage_input" in text
        assert "input columns are missing" not in text
    assert spark.range(3).count() == 3  # the module's session is still running (not stopped)
