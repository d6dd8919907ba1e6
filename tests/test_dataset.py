"""training.dataset: any lead table → features and labels, with clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.fixtures.crm.crm import crm_events, crm_table
from training.dataset import holdout_mask, load_training_table, normalize_labels

CRM = Path(__file__).parent / "fixtures" / "crm"
EXPORT = CRM / "hubspot_export.csv"


def test_crm_export_becomes_features_and_text_labels():
    ts = load_training_table(
        EXPORT, id_col="Contact ID", stage_col="Lifecycle Stage", persona_col="Segment"
    )
    assert len(ts) == 20
    assert list(ts.ids[:2]) == ["C-001", "C-002"]
    assert ts.X.index.equals(ts.ids)
    # Labels and the id are not features; other columns are.
    for col in ("Lifecycle Stage", "Segment", "Contact ID"):
        assert col not in ts.X.columns
    for col in ("Job Title", "Lead Source", "Annual Revenue", "Converted", "title_seniority"):
        assert col in ts.X.columns
    assert ts.y_stage.loc["C-001"] == "Opportunity"
    assert ts.y_stage.loc["C-008"] is None
    assert ts.y_persona.loc["C-005"] is None
    assert set(ts.y_stage.dropna()) == {"MQL", "SQL", "Opportunity", "Customer"}
    assert ts.slices["stage"].loc["C-001"] == "Opportunity"


def test_boolean_and_integer_labels_are_the_same_text_from_csv_and_parquet(tmp_path):
    from_csv = load_training_table(
        EXPORT, id_col="Contact ID", stage_col="Converted", persona_col="Is Customer"
    )
    frame = pd.read_csv(EXPORT)
    frame["Converted"] = frame["Converted"].astype("boolean")
    frame["Is Customer"] = frame["Is Customer"].astype("Int64")
    path = tmp_path / "export.parquet"
    frame.to_parquet(path)
    from_parquet = load_training_table(
        path, id_col="Contact ID", stage_col="Converted", persona_col="Is Customer"
    )
    assert set(from_csv.y_stage.dropna()) == {"True", "False"}
    assert set(from_csv.y_persona.dropna()) == {"0", "1"}
    assert from_csv.y_stage.tolist() == from_parquet.y_stage.tolist()
    assert from_csv.y_persona.tolist() == from_parquet.y_persona.tolist()
    assert from_csv.y_persona.loc["C-005"] is None


def test_normalize_labels_handles_every_kind():
    values = pd.Series([True, 1, 1.0, 0, "  MQL ", "", None, np.nan, pd.NA, 2.5], dtype=object)
    assert normalize_labels(values).tolist() == [
        "True",
        "1",
        "1",
        "0",
        "MQL",
        None,
        None,
        None,
        None,
        "2.5",
    ]


def test_exclude_drops_columns_from_the_features():
    ts = load_training_table(
        EXPORT,
        id_col="Contact ID",
        stage_col="Lifecycle Stage",
        exclude=["Converted", "Notes"],
    )
    assert "Converted" not in ts.X.columns and "Notes" not in ts.X.columns
    assert ts.y_persona is None
    assert ts.exclude == ("Converted", "Notes")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"id_col": "contact_id", "stage_col": "Lifecycle Stage"}, r"no column 'contact_id'"),
        ({"id_col": "Contact ID", "stage_col": "Stage"}, r"no column 'Stage' \(stage label"),
        ({"id_col": "Contact ID", "persona_col": "Persona"}, r"no column 'Persona'"),
        (
            {"id_col": "Contact ID", "stage_col": "Lifecycle Stage", "exclude": ["Email"]},
            r"no column 'Email' \(excluded column\)",
        ),
        ({"id_col": "Contact ID"}, "at least one label column"),
    ],
)
def test_options_naming_missing_columns_say_which_columns_exist(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        load_training_table(EXPORT, **kwargs)
    text = str(info.value)
    assert text.startswith("hubspot_export.csv")
    if "no column" in message:
        assert "'Lifecycle Stage'" in text and "'Job Title'" in text


def test_a_label_with_one_class_is_refused(tmp_path):
    frame = pd.read_csv(EXPORT)
    frame["Plan"] = ["pro"] * 10 + [None] * 10
    path = tmp_path / "one_class.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"one_class.csv: .*'Plan' has only 'pro'"):
        load_training_table(path, id_col="Contact ID", stage_col="Plan")


def test_duplicate_ids_are_counted_and_named(tmp_path):
    frame = pd.read_csv(EXPORT)
    frame.loc[5, "Contact ID"] = "C-001"
    frame.loc[6, "Contact ID"] = "C-001"
    frame.loc[7, "Contact ID"] = "C-002"
    path = tmp_path / "dupes.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"dupes.csv: .*2 duplicate ids \(3 repeated rows\)") as e:
        load_training_table(path, id_col="Contact ID", stage_col="Lifecycle Stage")
    assert "'C-001'" in str(e.value) and "'C-002'" in str(e.value)


def test_empty_ids_are_refused_with_their_rows(tmp_path):
    frame = pd.read_csv(EXPORT)
    frame.loc[[3, 9], "Contact ID"] = "  "
    path = tmp_path / "empty_ids.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"empty_ids.csv: .*empty in 2 rows \(rows 4, 10\)"):
        load_training_table(path, id_col="Contact ID", stage_col="Lifecycle Stage")


def test_rows_the_reader_rejects_are_reported_not_silently_dropped(tmp_path):
    frame = crm_table(50)
    frame["company_size"] = 10
    frame.loc[4, "company_size"] = -3  # out of LeadProfile's bounds
    path = tmp_path / "crm.csv"
    frame.to_csv(path, index=False)
    ts = load_training_table(path, id_col="Contact ID", stage_col="Lifecycle Stage")
    assert len(ts) == 49
    assert [e.row for e in ts.rejected] == [5]
    assert ts.rejected[0].column == "company_size"


def test_events_add_engagement_features_as_of_the_last_event(tmp_path):
    table = crm_table(80)
    events = crm_events(table)
    table.to_parquet(tmp_path / "crm.parquet")
    events.to_csv(tmp_path / "events.csv", index=False)
    ts = load_training_table(
        tmp_path / "crm.parquet",
        events_path=tmp_path / "events.csv",
        id_col="Contact ID",
        stage_col="Lifecycle Stage",
        persona_col="Segment",
    )
    assert "n_events_total" in ts.X.columns
    counts = events.groupby("lead_id").size()
    assert ts.X["n_events_total"].loc[counts.index].tolist() == counts.tolist()
    assert pd.Timestamp(ts.as_of) == events["timestamp"].max().floor("us")
    assert "events.csv" in ts.source


def test_holdout_is_fixed_by_id_whatever_the_order():
    ids = [f"lead-{i}" for i in range(5000)]
    mask = holdout_mask(ids, 0.2)
    assert 0.18 < mask.mean() < 0.22
    shuffled = list(reversed(ids))
    again = dict(zip(shuffled, holdout_mask(shuffled, 0.2), strict=True))
    assert [again[i] for i in ids] == mask.tolist()
    # A larger share holds out a superset.
    assert (holdout_mask(ids, 0.3) >= mask).all()
    with pytest.raises(ValueError, match="between 0 and 1"):
        holdout_mask(ids, 1.5)


def test_subset_keeps_features_labels_and_slices_aligned(tmp_path):
    shutil.copy(EXPORT, tmp_path / "x.csv")
    ts = load_training_table(
        tmp_path / "x.csv", id_col="Contact ID", stage_col="Lifecycle Stage", persona_col="Segment"
    )
    mask = holdout_mask(ts.ids, 0.5)
    part = ts.subset(mask)
    assert list(part.ids) == list(ts.ids[mask])
    assert part.X.index.equals(part.ids) and part.y_stage.index.equals(part.ids)
    assert part.slices.index.equals(part.ids)


@pytest.mark.slow
def test_a_table_bigger_than_max_rows_is_a_seeded_uniform_sample(tmp_path):
    table = crm_table(600, seed=3)
    events = crm_events(table, seed=3)
    table.to_csv(tmp_path / "contacts.csv", index=False)
    events.to_csv(tmp_path / "events.csv", index=False)
    kw = {
        "events_path": tmp_path / "events.csv",
        "id_col": "Contact ID",
        "stage_col": "Lifecycle Stage",
        "persona_col": "Segment",
        "max_rows": 250,
    }
    ts = load_training_table(tmp_path / "contacts.csv", seed=1, **kw)
    assert len(ts) == 250 and len(ts.X) == 250
    assert ts.sample is not None and ts.sample.sampled
    assert (ts.sample.n_rows, ts.sample.n_kept) == (600, 250)
    assert set(ts.ids) <= set(table["Contact ID"].astype(str))
    assert ts.y_stage.index.equals(ts.ids) and ts.X.index.equals(ts.ids)
    # engagement features of a sampled lead are those of the whole table
    whole = load_training_table(tmp_path / "contacts.csv", **{**kw, "max_rows": None})
    assert whole.sample is None
    pd.testing.assert_frame_equal(ts.X, whole.X.loc[ts.ids], check_dtype=False)
    again = load_training_table(tmp_path / "contacts.csv", seed=1, **kw)
    assert list(again.ids) == list(ts.ids)
    other = load_training_table(tmp_path / "contacts.csv", seed=2, **kw)
    assert list(other.ids) != list(ts.ids)
    small = load_training_table(tmp_path / "contacts.csv", **{**kw, "max_rows": 10_000})
    assert small.sample is not None and not small.sample.sampled and len(small) == 600
