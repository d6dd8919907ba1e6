"""Column typing, the label policy, personal/leaky columns and stage-order inference."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from data.coltypes import apply_types, infer_types, parse_types
from data.labels import infer_stage_order, label_key, match_label, merge_label_variants
from data.personal import screen_columns

DAY = pd.Timestamp("1970-01-01", tz="UTC")


def _days(text: str) -> float:
    return (pd.Timestamp(text, tz="UTC") - DAY) / pd.Timedelta(days=1)


def _one(values, **kw):
    frame, (report,) = infer_types(pd.DataFrame({"c": pd.Series(values, dtype="str")}), **kw)
    return frame["c"], report


def test_numbers_as_people_type_them():
    values, report = _one(["1,234", "$4,365,000", "12", None, "(1,000)", "oops"] + ["7"] * 20)
    assert report.kind == "number"
    assert values.iloc[:5].tolist()[:3] == [1234.0, 4_365_000.0, 12.0]
    assert math.isnan(values.iloc[3]) and values.iloc[4] == -1000.0
    assert report.n_unfit == 1 and report.examples == [(None, "oops")]
    assert "thousands separators removed" in report.note
    assert "currency signs removed" in report.note


def test_numbers_with_padded_text_are_numbers():
    # Values that stripping merges: the column used to be dropped before typing (a crash).
    values, report = _one([" $12 ", "$13", " $14", "$13 "])
    assert report.kind == "number" and values.tolist() == [12.0, 13.0, 14.0, 13.0]


def test_decimal_commas_and_percent():
    values, report = _one(["1.234,50 €", "12,5", "3,25", "1.000.000,00"])
    assert report.kind == "number" and "decimal comma" in report.note
    assert values.tolist() == [1234.5, 12.5, 3.25, 1_000_000.0]
    values, report = _one(["12,5 %", "40%", "7 %"])
    assert values.tolist() == pytest.approx([0.125, 0.40, 0.07])
    assert "percent" in report.note


def test_dates_one_order_per_column_and_said():
    values, report = _one(["03/04/2026", "12/25/2026", "2026-01-02T10:00:00+02:00"])
    assert report.kind == "date" and "month/day/year" in report.note
    assert values.iloc[0] == _days("2026-03-04")
    assert values.iloc[1] == _days("2026-12-25")
    assert values.iloc[2] == pytest.approx(_days("2026-01-02 08:00"))
    values, report = _one(["03/04/2026", "25/12/2026"])
    assert "day/month/year" in report.note and values.iloc[0] == _days("2026-04-03")
    values, report = _one(["03/04/2026", "05/06/2026"])
    assert "ambiguous" in report.note and values.iloc[0] == _days("2026-03-04")
    values, report = _one(["03.04.2026", "05.06.2026"])
    assert "ambiguous" in report.note and values.iloc[0] == _days("2026-04-03")


def test_forced_kinds_and_epoch_seconds():
    frame = pd.DataFrame({"Close Date": ["03/04/2026", "05/06/2026"], "Code": ["001", "002"]})
    out, reports = infer_types(frame, overrides=parse_types("Close Date=date-dmy, Code=text"))
    assert out["Close Date"].iloc[0] == _days("2026-04-03")
    assert out["Code"].tolist() == ["001", "002"]
    assert all(r.forced for r in reports)
    epoch = pd.DataFrame({"Created At": [1767225600, 1767312000]})
    out, (report,) = infer_types(epoch)
    assert report.kind == "date" and out["Created At"].iloc[0] == _days("2026-01-01")
    with pytest.raises(ValueError, match="unknown kind 'money'"):
        parse_types("Revenue=money")
    with pytest.raises(ValueError, match="does not have: 'Nope'"):
        infer_types(frame, overrides={"Nope": "number"})


def test_booleans_empty_and_constant_columns():
    frame = pd.DataFrame(
        {
            "Opt In": ["Yes", "no", "YES", None],
            "Blank": [None, " ", None, ""],
            "Region": ["EU"] * 4,
        },
        dtype="str",
    )
    out, reports = infer_types(frame)
    kinds = {r.name: r.kind for r in reports}
    assert kinds == {"Opt In": "boolean", "Blank": "empty", "Region": "constant"}
    assert out["Opt In"].tolist()[:3] == [1.0, 0.0, 1.0]


def test_plain_numbers_and_european_thousands_in_text_columns():
    # Read as text (as train reads a CSV): "12.000" in a column of European numbers is
    # twelve thousand; a column of plain numbers is read as pandas would read it.
    frame = pd.DataFrame(
        {
            "Mitarbeiter": ["45", "180", "1.200", "12.000", None],
            "Rate": ["1.5", "2.25", "1.200", "3", "4"],
            "Flag": ["1", "0", "1", "0", "1"],
            "created_date": ["1767225600", "1767312000", "1767225600", "1767225600", None],
        },
        dtype="str",
    )
    typed, reports = infer_types(frame)
    # Dotted values with no whole numbers beside them, or a 0 before the dot, are
    # decimals (the Bank Marketing table's price index and Euribor rate).
    index, _ = infer_types(pd.DataFrame({"cons.price.idx": ["93.994", "92.893", "94.465"],
                                         "euribor3m": ["4.857", "0.634", "1.313"]}, dtype="str"))  # fmt: skip
    assert index["cons.price.idx"].tolist() == [93.994, 92.893, 94.465]
    assert index["euribor3m"].tolist() == [4.857, 0.634, 1.313]
    assert typed["Mitarbeiter"].tolist()[:4] == [45.0, 180.0, 1200.0, 12000.0]
    assert typed["Rate"].tolist() == [1.5, 2.25, 1.2, 3.0, 4.0]
    kinds = {r.name: r.kind for r in reports}
    assert kinds == {"Mitarbeiter": "number", "Rate": "number", "Flag": "boolean",
                     "created_date": "date"}  # fmt: skip
    assert typed["created_date"].iloc[1] == _days("2026-01-02")


def test_a_scoring_table_is_read_as_the_training_table_was():
    train, reports = infer_types(pd.DataFrame({"d": ["03/04/2026", "05/06/2026"]}, dtype="str"))
    specs = {r.name: r.as_dict()["spec"] for r in reports}
    # Alone, "25/12/2026" would make the column day-first; the training decision holds.
    scored = apply_types(pd.DataFrame({"d": ["01/02/2026"]}, dtype="str"), specs)
    assert scored["d"].iloc[0] == train["d"].iloc[0] - _days("2026-03-04") + _days("2026-01-02")


def test_label_policy_is_one_function():
    assert label_key(" Sales-Qualified_Lead ") == label_key("sales qualified lead")
    assert label_key("MQL") == label_key("Marketing Qualified Lead")
    assert match_label("Decision", ["awareness", "decision"]) == "decision"
    assert match_label("purchase", ["awareness", "decision"]) is None
    merged, variants = merge_label_variants(
        pd.Series(["lead", "LEAD", " lead", "mql", None, "lead"], dtype=object)
    )
    # A CRM lifecycle vocabulary is named as the CRM shows it.
    lead, mql = "Lead", "Marketing Qualified Lead"
    assert merged.tolist() == [lead, lead, lead, mql, None, lead]
    assert variants == {lead: [lead, "lead", "LEAD", " lead"], mql: [mql, "mql"]}
    # Other labels: words apart, not in capitals, then the most frequent spelling.
    merged, variants = merge_label_variants(
        pd.Series(["hotlead", "hotlead", "HOT_LEAD", "Hot Lead", "cold"], dtype=object)
    )
    assert merged.tolist() == ["Hot Lead"] * 4 + ["cold"]
    assert variants == {"Hot Lead": ["Hot Lead", "hotlead", "HOT_LEAD"]}
    merged, _ = merge_label_variants(
        pd.Series(["open - not contacted", "Open - Not Contacted", "open - not contacted"])
    )
    assert merged.tolist() == ["Open - Not Contacted"] * 3
    merged, _ = merge_label_variants(pd.Series(["Lead", "lead ", "lead"]))  # a known stage
    assert merged.tolist() == ["Lead"] * 3


def test_stage_order_is_inferred_only_when_plain():
    ready, sentence = infer_stage_order(["subscriber", "lead", "MQL", "SQL", "opportunity"])
    assert ready == ("SQL", "opportunity") and "CRM lifecycle" in sentence
    ready, _ = infer_stage_order(["Awareness", "Consideration", "Decision"])
    assert ready == ("Decision",)
    assert infer_stage_order(["hot", "cold"]) is None
    assert infer_stage_order(["lead", "other"]) is None


def test_personal_and_leaky_columns_by_name_and_content():
    n = 30
    frame = pd.DataFrame(
        {
            "id": [str(i) for i in range(n)],
            "Prénom": ["Anna"] * n,
            "Contact": [f"p{i}@mail.example.com" for i in range(n)],
            "Mobile": ["+49 151 2345 6789"] * n,
            "Straße": ["Hauptstraße 5"] * n,
            "HubSpot Score": np.arange(n),
            "Became a Customer Date": ["2026-01-01"] * n,
            "Web Visits": np.arange(n),
            "Notes URL": [f"https://x.example/{i}" for i in range(n)],
        }
    )
    screened = screen_columns(frame, skip={"id"}, allow={"Mobile"})
    assert screened.personal == ("Prénom", "Contact", "Straße")
    assert screened.vendor_scores == ("HubSpot Score",)
    assert screened.after_outcome == ("Became a Customer Date",)
    assert screened.allowed == ("Mobile",)
    assert screened.id_like == ("Notes URL",)
    assert "excluded as personal data: Prénom, Contact, Straße" in screened.messages()[0]
    with pytest.raises(ValueError, match="--allow-column names columns"):
        screen_columns(frame, allow={"Nope"})


def test_a_column_that_alone_predicts_the_label_is_flagged():
    from data.personal import single_column_leaks

    rng = np.random.default_rng(0)
    n = 400
    y = pd.Series(rng.choice(["lead", "mql", "sql"], n))
    frame = pd.DataFrame(
        {
            "Vendor Points": y.map({"lead": 5, "mql": 50, "sql": 90}) + rng.integers(0, 3, n),
            "Stage Copy": y.str.upper(),
            "Visits": rng.integers(0, 100, n),
            "Country": rng.choice(["DE", "FR", "US"], n),
        }
    )
    leaks = dict(single_column_leaks(frame, y, frame.columns))
    assert set(leaks) == {"Vendor Points", "Stage Copy"}
    assert leaks["Stage Copy"] == 1.0
    assert single_column_leaks(frame, y.where(pd.Series(range(n)) < 10), frame.columns) == []
