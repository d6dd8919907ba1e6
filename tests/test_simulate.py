"""The buyer-journey simulator: tables, balance, noise, determinism and journey shape."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from data.readers import read_events, read_leads, read_table
from data.schema import DEFAULT_PERSONAS, DEFAULT_STAGES, EVENT_COLUMNS, EVENT_TYPES, LEAD_COLUMNS
from data.simulate import (
    SIMULATED_LEAD_COLUMNS,
    TRUTH_COLUMNS,
    Simulation,
    SimulationConfig,
    simulate,
    write,
)
from leadready.cli import main

N = 2_000


@pytest.fixture(scope="module")
def sim() -> Simulation:
    return simulate(SimulationConfig(n_leads=N, seed=7))


@pytest.fixture(scope="module")
def joined(sim) -> pd.DataFrame:
    """Events with their lead's truth and profile."""
    return sim.events.merge(sim.truth, on="lead_id").merge(sim.leads, on="lead_id")


def _per_lead(sim: Simulation, mask: pd.Series, by: str) -> pd.Series:
    """Mean number of events matching ``mask`` per lead, for each value of truth column ``by``."""
    lead_truth = sim.truth.set_index("lead_id")[by]
    hits = sim.events.loc[mask, "lead_id"].map(lead_truth).value_counts()
    return hits.reindex(lead_truth.unique(), fill_value=0) / lead_truth.value_counts()


# --------------------------------------------------------------------------- tables


def test_tables_have_the_contract_columns_and_types(sim):
    assert list(sim.leads.columns) == [*LEAD_COLUMNS, "stage", "persona"]
    assert list(sim.leads.columns) == list(SIMULATED_LEAD_COLUMNS)
    assert list(sim.events.columns) == list(EVENT_COLUMNS)
    assert list(sim.truth.columns) == list(TRUTH_COLUMNS)
    assert len(sim.leads) == len(sim.truth) == N
    assert sim.leads["lead_id"].is_unique
    assert sim.truth["lead_id"].tolist() == sim.leads["lead_id"].tolist()
    assert set(sim.events["lead_id"]) <= set(sim.leads["lead_id"])
    assert set(sim.events["type"]) <= set(EVENT_TYPES)
    assert set(sim.truth["true_stage"]) == set(DEFAULT_STAGES)
    assert set(sim.truth["true_persona"]) == set(DEFAULT_PERSONAS)
    assert str(sim.events["timestamp"].dtype) == "datetime64[us, UTC]"
    assert str(sim.leads["created_at"].dtype) == "datetime64[us, UTC]"
    assert str(sim.leads["company_size"].dtype) == "Int64"
    assert sim.events["timestamp"].is_monotonic_increasing
    assert 10 <= len(sim.events) / N <= 40


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_written_files_pass_the_readers(sim, tmp_path, fmt):
    paths = write(sim, tmp_path / "out", fmt=fmt)
    assert sorted(paths) == ["events", "leads", "truth"]
    assert all(p.suffix == f".{fmt}" and p.exists() for p in paths.values())
    leads = read_leads(paths["leads"], strict=True).frame
    events = read_events(paths["events"], strict=True).frame
    truth = read_table(paths["truth"])
    assert list(leads.columns) == list(SIMULATED_LEAD_COLUMNS)
    assert list(events.columns) == list(EVENT_COLUMNS)
    assert list(truth.columns) == list(TRUTH_COLUMNS)
    assert len(events) == len(sim.events)
    pd.testing.assert_series_equal(events["timestamp"], sim.events["timestamp"])
    pd.testing.assert_series_equal(leads["company_size"], sim.leads["company_size"])


def test_csv_files_are_what_pandas_writes_and_values_needing_quotes_survive(sim, tmp_path):
    paths = write(sim, tmp_path / "fast")
    for name, frame in (("leads", sim.leads), ("events", sim.events), ("truth", sim.truth)):
        expected = tmp_path / f"pandas_{name}.csv"
        frame.to_csv(expected, index=False, date_format="%Y-%m-%dT%H:%M:%SZ", lineterminator="\n")
        assert paths[name].read_bytes() == expected.read_bytes(), name
    odd = Simulation(sim.leads.head(3).copy(), sim.events.head(5), sim.truth.head(3), sim.config)
    odd.leads.loc[0, "company"] = 'Acme, "The Best" Inc'
    odd.leads.loc[1, "job_title"] = "Head of\nIT"
    leads = read_leads(write(odd, tmp_path / "odd")["leads"], strict=True).frame
    assert leads.loc[0, "company"] == 'Acme, "The Best" Inc'
    assert leads.loc[1, "job_title"] == "Head of\nIT"
    assert leads["created_at"].tolist() == odd.leads["created_at"].tolist()


def test_write_rejects_unknown_format(sim, tmp_path):
    with pytest.raises(ValueError, match="fmt must be"):
        write(sim, tmp_path, fmt="xlsx")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- balance and noise


def test_class_balance_follows_the_config(sim):
    stages = sim.class_balance()["stage"]
    assert stages["decision"] + stages["purchase"] == pytest.approx(0.15, abs=0.03)
    assert stages["awareness"] > stages["consideration"] > stages["decision"] > stages["purchase"]
    assert sim.class_balance()["persona"]["non_buyer"] == pytest.approx(0.20, abs=0.04)
    more_late = simulate(SimulationConfig(n_leads=N, seed=7, late_stage_share=0.4))
    late = more_late.class_balance()["stage"]
    assert late["decision"] + late["purchase"] == pytest.approx(0.4, abs=0.04)


def test_non_buyers_are_never_late_stage(sim):
    late = sim.truth["true_stage"].isin(["decision", "purchase"])
    assert not (late & (sim.truth["true_persona"] == "non_buyer")).any()


@pytest.mark.parametrize("noise", [0.0, 0.2, 0.35])
def test_measured_noise_matches_the_config(noise):
    sim = simulate(SimulationConfig(n_leads=N, seed=3, label_noise=noise))
    rates = sim.noise_rates()
    assert rates["stage"] == pytest.approx(noise, abs=1 / N)
    assert rates["persona"] == pytest.approx(noise, abs=1 / N)
    if noise == 0.0:
        assert sim.leads["stage"].tolist() == sim.truth["true_stage"].tolist()
        assert sim.leads["persona"].tolist() == sim.truth["true_persona"].tolist()


def test_students_are_marked_practitioner_more_than_uniform_noise_would(sim):
    table = sim.truth.merge(sim.leads, on="lead_id")
    students = table["true_persona"].eq("non_buyer") & table["job_title"].str.contains(
        "student|phd", case=False, na=False
    )
    assert students.sum() > 50
    share = table.loc[students, "persona"].eq("practitioner").mean()
    uniform = sim.config.label_noise / (len(DEFAULT_PERSONAS) - 1)  # ~0.067
    assert share > 3 * uniform


def test_heavy_webinar_attendees_are_marked_a_stage_later(sim):
    attends = sim.events.loc[sim.events["type"] == "webinar_attend", "lead_id"].value_counts()
    table = sim.truth.merge(sim.leads, on="lead_id")
    table = table[table["true_stage"] != "purchase"]
    heavy = table["lead_id"].isin(attends[attends >= 2].index)
    rank = {s: i for i, s in enumerate(DEFAULT_STAGES)}
    later = table["stage"].map(rank) == table["true_stage"].map(rank) + 1
    assert heavy.sum() > 30
    assert later[heavy].mean() > 2 * later[~heavy].mean()


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path, fmt):
    config = SimulationConfig(n_leads=500, seed=11)
    a = write(simulate(config), tmp_path / "a", fmt=fmt)
    b = write(simulate(config), tmp_path / "b", fmt=fmt)
    c = write(simulate(SimulationConfig(n_leads=500, seed=12)), tmp_path / "c", fmt=fmt)
    for name in a:
        assert a[name].read_bytes() == b[name].read_bytes(), name
        assert a[name].read_bytes() != c[name].read_bytes(), name


# --------------------------------------------------------------------------- journey shape


def test_late_stage_leads_show_more_buying_signals(sim):
    events = sim.events
    signals = events["page_category"].eq("pricing") | events["type"].isin(
        ["demo_request", "trial_start", "meeting_booked"]
    )
    per = _per_lead(sim, signals, "true_stage")
    assert per["decision"] > 5 * per["awareness"]
    assert per["purchase"] > 5 * per["awareness"]
    demos = _per_lead(sim, events["type"].eq("demo_request"), "true_stage")
    assert demos["decision"] > 10 * demos["awareness"]


def test_early_stages_read_blogs_and_middle_stages_case_studies(sim):
    events = sim.events
    blogs = _per_lead(sim, events["page_category"].eq("blog"), "true_stage")
    assert blogs["awareness"] > 2 * blogs["decision"]
    cases = _per_lead(sim, events["content_type"].eq("case_study"), "true_stage")
    assert cases["consideration"] > 3 * cases["awareness"]


def test_late_stage_activity_is_recent(joined, sim):
    end = pd.Timestamp(sim.config.end)
    age = (end - joined["timestamp"]).dt.total_seconds() / 86_400
    median = age.groupby(joined["true_stage"]).median()
    assert median["purchase"] < median["consideration"] < median["awareness"]
    assert median["decision"] < 0.6 * median["awareness"]


def test_personas_shape_what_leads_read(sim):
    events = sim.events
    docs = _per_lead(sim, events["page_category"].eq("docs"), "true_persona")
    assert docs["technical_evaluator"] > 2 * max(docs["economic_buyer"], docs["practitioner"])
    roi = _per_lead(
        sim,
        events["page_category"].eq("roi") | events["content_type"].eq("analyst_report"),
        "true_persona",
    )
    assert roi["economic_buyer"] > 2 * roi["technical_evaluator"]
    careers = _per_lead(sim, events["page_category"].eq("careers"), "true_persona")
    assert careers["non_buyer"] > 5 * careers["economic_buyer"]


def test_profiles_follow_personas(sim):
    table = sim.truth.merge(sim.leads, on="lead_id")
    buyers = table[table["true_persona"] == "economic_buyer"]["job_title"].dropna().str.lower()
    assert buyers.str.contains("cfo|finance|procurement|vp|chief|ceo|coo|director").mean() > 0.9
    non_buyers = table[table["true_persona"] == "non_buyer"]
    assert non_buyers["company_size"].isna().mean() > 0.5
    assert table.loc[table["true_persona"] != "non_buyer", "company_size"].isna().mean() < 0.15
    vendors = non_buyers["job_title"].str.contains(" at ", na=False)
    assert vendors.sum() > 10
    assert set(sim.leads["lead_source"]) == {
        "webinar",
        "organic_search",
        "paid_social",
        "content_syndication",
        "referral",
        "event",
        "direct",
    }


def test_webinar_leads_arrive_in_bursts_on_webinar_dates(sim):
    attends = sim.events[sim.events["type"] == "webinar_attend"]
    days = attends["timestamp"].dt.floor("D").value_counts()
    webinar_days = days.index[: sim.config.window_days // 21]
    assert days.iloc[: len(webinar_days)].sum() > 0.5 * len(attends)
    created = sim.leads["created_at"]
    gap = pd.Series(np.inf, index=sim.leads.index)
    for day in webinar_days:
        ahead = (day + pd.Timedelta(days=1) - created).dt.total_seconds() / 86_400
        gap = gap.where(~((ahead >= 0) & (ahead < gap)), ahead)
    near = gap <= 3
    webinar = sim.leads["lead_source"] == "webinar"
    assert webinar.mean() == pytest.approx(0.15, abs=0.03)
    # registrations cluster in the days just before a webinar; other leads arrive any day
    assert near[webinar].mean() > 0.6
    assert near[~webinar].mean() < 0.25


def test_noise_bots_missing_titles_and_partial_profiles(sim):
    clicks = sim.events[sim.events["type"] == "email_click"]
    per_second = clicks.groupby(["lead_id", clicks["timestamp"].dt.floor("min")]).size()
    bots = per_second[per_second >= 40].index.get_level_values(0).unique()
    assert len(bots) == pytest.approx(N * sim.config.bot_share, abs=3)
    assert sim.leads["job_title"].isna().mean() == pytest.approx(0.05, abs=0.02)
    assert sim.leads["country"].isna().mean() > 0.02


def test_events_stay_within_the_window_and_after_creation(joined, sim):
    end = pd.Timestamp(sim.config.end)
    start = pd.Timestamp(sim.config.start)
    assert sim.events["timestamp"].max() <= end
    assert sim.events["timestamp"].min() >= start
    assert (joined["timestamp"] >= joined["created_at"]).all()
    assert sim.leads["created_at"].between(start, end).all()


def test_end_date_and_window_are_configurable():
    end = datetime(2025, 3, 31)
    sim = simulate(SimulationConfig(n_leads=300, seed=1, end=end, window_days=30))
    assert sim.config.end == datetime(2025, 3, 31, tzinfo=UTC)
    assert sim.events["timestamp"].max() <= pd.Timestamp("2025-03-31", tz="UTC")
    assert sim.events["timestamp"].min() >= pd.Timestamp("2025-03-01", tz="UTC")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"n_leads": 0}, "n_leads"),
        ({"label_noise": 1.5}, "label_noise"),
        ({"window_days": 0}, "window_days"),
        ({"late_stage_share": 1.0}, "late_stage_share"),
    ],
)
def test_config_rejects_impossible_values(change, match):
    with pytest.raises(ValueError, match=match):
        SimulationConfig(**change)


# --------------------------------------------------------------------------- command line


def test_cli_writes_files_and_prints_a_summary(tmp_path):
    out = tmp_path / "sim"
    result = CliRunner().invoke(
        main,
        ["simulate", "--leads", "400", "--seed", "5", "--out", str(out), "--noise", "0.1"],
    )
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {"leads.csv", "events.csv", "truth.csv"}
    assert result.output.startswith("Simulated 400 leads")
    assert "Label noise measured: stage 10.0%, persona 10.0%" in result.output
    assert "awareness" in result.output and "non_buyer" in result.output
    assert str(out / "events.csv") in result.output.replace("\n", "")
    leads = pd.read_csv(out / "leads.csv")
    truth = pd.read_csv(out / "truth.csv")
    assert (leads["stage"] != truth["true_stage"]).mean() == pytest.approx(0.1)


def test_cli_parquet_and_bad_option(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(
        main, ["simulate", "--leads", "200", "--out", str(tmp_path), "--format", "parquet"]
    )
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "events.parquet").exists()
    bad = runner.invoke(
        main, ["simulate", "--leads", "200", "--noise", "2", "--out", str(tmp_path)]
    )
    assert bad.exit_code == 2
    assert "--noise" in bad.output
