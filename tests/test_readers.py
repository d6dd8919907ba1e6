"""Readers: bad input is reported by file, row, column and value, never dropped silently."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from data.readers import InputError, RowError, read_events, read_leads, read_table
from data.schema import EVENT_COLUMNS

FIXTURES = Path(__file__).parent / "fixtures" / "readers"
MALFORMED = FIXTURES / "events_malformed.csv"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- malformed events


def test_malformed_events_name_file_row_column_and_value():
    result = read_events(MALFORMED)
    by_row = {e.row: e for e in result.rejected}
    assert sorted(by_row) == [5, 17]
    ts = by_row[17]
    assert (ts.file, ts.column, ts.value) == ("events_malformed.csv", "timestamp", "yesterday")
    assert str(ts) == (
        "events_malformed.csv, line 18, column 'timestamp': cannot parse 'yesterday' as a timestamp"
    )
    kind = by_row[5]
    assert kind.column == "type"
    assert "'page_veiw'" in kind.message
    assert "page_view" in kind.message and "meeting_booked" in kind.message  # lists the allowed


def test_malformed_events_keep_good_rows_typed():
    result = read_events(MALFORMED)
    frame = result.frame
    assert len(frame) == 18
    assert result.n_rows == 20
    assert list(frame.columns) == list(EVENT_COLUMNS)
    assert str(frame["timestamp"].dtype) == "datetime64[us, UTC]"
    assert frame["timestamp"].iloc[0] == pd.Timestamp("2026-03-01T09:01:00", tz="UTC")
    assert "yesterday" not in frame["timestamp"].astype(str).tolist()
    assert set(frame["type"]) <= {
        "email_open",
        "email_click",
        "page_view",
        "content_download",
        "webinar_attend",
    }
    assert frame["page_category"].isna().sum() == 18 - (frame["type"] == "page_view").sum()
    assert not result.ok


def test_rejected_rows_are_reported_not_dropped(tmp_path):
    result = read_events(MALFORMED)
    assert result.rejected_rows["row"].tolist() == [5, 17]
    assert result.rejected_rows["timestamp"].tolist()[1] == "yesterday"
    assert len(result.frame) + len(result.rejected_rows) == result.n_rows
    text = result.report()
    assert "20 rows read, 18 kept, 2 rejected" in text
    assert "line 18, column 'timestamp'" in text
    out = result.write_report(tmp_path / "report" / "rejected.csv")
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["row"], r["column"], r["value"]) for r in rows] == [
        ("5", "type", "page_veiw"),
        ("17", "timestamp", "yesterday"),
    ]
    assert all(r["file"] == "events_malformed.csv" for r in rows)


def test_strict_raises_naming_the_first_errors():
    with pytest.raises(InputError, match=r"2 of 20 rows rejected") as info:
        read_events(MALFORMED, strict=True)
    message = str(info.value)
    assert "line 18, column 'timestamp': cannot parse 'yesterday'" in message
    assert "line 6, column 'type'" in message
    assert [e.row for e in info.value.errors] == [5, 17]
    assert isinstance(info.value, ValueError)


def test_clean_file_reports_all_kept_and_strict_passes(tmp_path):
    path = _write(tmp_path / "ok.csv", "lead_id,timestamp,type\nA,2026-01-01,email_open\n")
    result = read_events(path, strict=True)
    assert result.ok and result.rejected == []
    assert result.report() == "ok.csv: 1 rows read, all kept"


def test_missing_and_blank_required_values(tmp_path):
    path = _write(
        tmp_path / "e.csv",
        "lead_id,timestamp,type\n,2026-01-01,email_open\nB,,email_open\nC,2026-01-01,\n"
        "  ,2026-01-01,page_view\nD,2026-01-02,page_view\n",
    )
    result = read_events(path)
    got = [(e.row, e.column, e.message) for e in result.rejected]
    assert got == [
        (1, "lead_id", "lead_id is missing"),
        (2, "timestamp", "timestamp is missing"),
        (3, "type", "type is missing"),
        (4, "lead_id", "lead_id is missing"),
    ]
    assert result.frame["lead_id"].tolist() == ["D"]


def test_too_many_fields_is_a_row_error_and_other_rows_stay(tmp_path):
    path = _write(
        tmp_path / "e.csv",
        "lead_id,timestamp,type\nA,2026-01-01,email_open\nB,2026-01-01,email_open,surplus\n\n"
        "C,2026-01-03,page_view\n",
    )
    result = read_events(path)
    assert [(e.row, e.line, e.column) for e in result.rejected] == [(2, 3, "type")]
    assert "e.csv, line 3, column 'type': expected 3 fields, found 4" in str(result.rejected[0])
    assert result.frame["lead_id"].tolist() == ["A", "C"]
    assert result.rejected_rows["raw"].tolist() == ["B,2026-01-01,email_open,surplus"]
    with pytest.raises(InputError, match="line 3, column 'type': expected 3 fields"):
        read_table(path)


# --------------------------------------------------------------------------- columns and files


def test_missing_required_column_names_file_and_column(tmp_path):
    path = _write(tmp_path / "events.csv", "lead_id,type\nA,email_open\n")
    with pytest.raises(
        InputError, match=r"events\.csv: missing required column 'timestamp'"
    ) as info:
        read_events(path)
    assert [(e.file, e.row, e.column) for e in info.value.errors] == [
        ("events.csv", None, "timestamp")
    ]


def test_missing_id_column(tmp_path):
    path = _write(tmp_path / "leads.csv", "email,company\na@x.io,X\n")
    with pytest.raises(InputError, match=r"leads\.csv: missing required column 'lead_id'"):
        read_leads(path)
    assert len(read_leads(path, id_col="email").frame) == 1


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("nowhere.csv", None, "no such file"),
        ("leads.xlsx", "x", "cannot read as an Excel workbook"),
        ("leads.xls", "x", "unknown file type '.xls'"),
        ("broken.parquet", "not parquet at all", "cannot read as Parquet"),
        ("empty.csv", "", "the file is empty"),
        ("array.json", "[{", "not valid JSON"),
    ],
)
def test_unreadable_files_raise_input_error(tmp_path, name, content, match):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(InputError, match=match):
        read_table(path)


def test_a_folder_is_not_a_file(tmp_path):
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(InputError, match="not a file"):
        read_events(tmp_path / "dir.csv")


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_header_only_file_gives_an_empty_typed_frame(tmp_path, suffix):
    path = tmp_path / f"e.{suffix}"
    empty = pd.DataFrame({"lead_id": [], "timestamp": [], "type": []}).astype("str")
    if suffix == "csv":
        empty.to_csv(path, index=False)
    else:
        empty.to_parquet(path)
    result = read_events(path, strict=True)
    assert len(result.frame) == 0 and result.n_rows == 0
    assert list(result.frame.columns) == list(EVENT_COLUMNS)
    assert str(result.frame["timestamp"].dtype) == "datetime64[us, UTC]"


def test_read_table_keeps_text_columns_and_infers_the_rest(tmp_path):
    path = _write(tmp_path / "t.csv", "lead_id,score,label\n00123,1.5,a\n00124,2,b\n")
    frame = read_table(path, text_columns=["lead_id"])
    assert frame["lead_id"].tolist() == ["00123", "00124"]
    assert frame["score"].dtype == "float64"
    assert read_table(path)["lead_id"].tolist() == [123, 124]


def test_semicolon_separated_csv(tmp_path):
    path = _write(tmp_path / "e.csv", "lead_id;timestamp;type\nA;2026-01-01;email_open\n")
    assert read_events(path).frame["lead_id"].tolist() == ["A"]


# --------------------------------------------------------------------------- formats


def _events_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": ["A", "B", "C"],
            "timestamp": pd.to_datetime(
                ["2026-01-01 10:00", "2026-01-02 11:30", "2026-01-03 12:45"], utc=True
            ).as_unit("us"),
            "type": ["page_view", "email_open", "demo_request"],
            "page_category": ["pricing", None, None],
            "content_type": [None, None, None],
            "content_topic": [None, "ai", None],
            "channel": ["web", "email", "web"],
        }
    ).astype({c: "str" for c in EVENT_COLUMNS if c != "timestamp"})


def test_parquet_round_trip(tmp_path):
    original = _events_frame()
    original.to_parquet(tmp_path / "events.parquet")
    result = read_events(tmp_path / "events.parquet")
    assert result.ok
    pd.testing.assert_frame_equal(result.frame, original)
    original.to_parquet(tmp_path / "events.pq")
    assert len(read_events(tmp_path / "events.pq").frame) == 3


def test_parquet_naive_timestamps_are_taken_as_utc_and_bad_rows_found(tmp_path):
    frame = _events_frame()
    frame["timestamp"] = frame["timestamp"].dt.tz_localize(None)
    frame.loc[1, "type"] = "fax_received"
    frame.to_parquet(tmp_path / "e.parquet")
    result = read_events(tmp_path / "e.parquet")
    assert result.frame["timestamp"].dt.tz is not None
    assert result.frame["timestamp"].iloc[0] == pd.Timestamp("2026-01-01 10:00", tz="UTC")
    assert [(e.row, e.column, e.value) for e in result.rejected] == [(2, "type", "fax_received")]


def test_jsonl_round_trip_with_properties_flattened(tmp_path):
    lines = [
        {
            "lead_id": "A",
            "timestamp": "2026-01-01T10:00:00Z",
            "type": "page_view",
            "properties": {"page_category": "pricing", "channel": "web"},
        },
        {
            "lead_id": "B",
            "timestamp": "2026-01-02T11:30:00+00:00",
            "type": "email_open",
            "properties": {"content_topic": "ai", "channel": "email"},
        },
        {
            "lead_id": "C",
            "timestamp": "2026-01-03T13:45:00+01:00",
            "type": "demo_request",
            "channel": "web",
        },
    ]
    path = _write(tmp_path / "events.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n")
    result = read_events(path)
    assert result.ok
    pd.testing.assert_frame_equal(result.frame, _events_frame())
    ndjson = _write(tmp_path / "events.ndjson", path.read_text())
    pd.testing.assert_frame_equal(read_events(ndjson).frame, _events_frame())
    as_array = _write(tmp_path / "events.json", json.dumps(lines))
    pd.testing.assert_frame_equal(read_events(as_array).frame, _events_frame())


def test_jsonl_bad_lines_are_row_errors(tmp_path):
    path = _write(
        tmp_path / "e.jsonl",
        '{"lead_id": 7, "timestamp": 1767225600, "type": "email_open"}\n'
        "\n"
        "{not json\n"
        '["a list"]\n'
        '{"lead_id": "x", "timestamp": 1767225600000, "type": "page_view"}\n',
    )
    result = read_events(path)
    # Rows of JSON Lines are the file's physical lines (the blank line counts).
    assert [(e.line, e.message.split(":")[0]) for e in result.rejected] == [
        (3, "not valid JSON"),
        (4, "expected a JSON object"),
    ]
    assert str(result.rejected[0]).startswith("e.jsonl, line 3: not valid JSON")
    assert result.frame["lead_id"].tolist() == ["7", "x"]  # numeric ids become text
    # epoch seconds and milliseconds both read as 2026-01-01
    assert (result.frame["timestamp"] == pd.Timestamp("2026-01-01", tz="UTC")).all()


def test_properties_json_text_in_csv(tmp_path):
    path = _write(
        tmp_path / "e.csv",
        "lead_id,timestamp,type,properties\n"
        'A,2026-01-01,page_view,"{""page_category"": ""docs""}"\n'
        "B,2026-01-01,page_view,{oops\n"
        'C,2026-01-01,page_view,"{""channel"": {""nested"": 1}}"\n'
        "D,2026-01-01,page_view,\n",
    )
    result = read_events(path)
    assert [(e.row, e.column) for e in result.rejected] == [(2, "properties"), (3, "properties")]
    assert "cannot parse '{oops'" in result.rejected[0].message
    assert result.frame["page_category"].tolist()[0] == "docs"
    assert "properties" not in result.frame.columns
    assert result.frame["lead_id"].tolist() == ["A", "D"]


def test_timestamp_offsets_are_converted_to_utc(tmp_path):
    path = _write(
        tmp_path / "e.csv",
        "lead_id,timestamp,type\nA,2026-01-01T12:00:00+02:00,email_open\n"
        "B,06/30/2026 08:00,email_open\nC,2026-02-30,email_open\n",
    )
    result = read_events(path)
    assert result.frame["timestamp"].tolist() == [
        pd.Timestamp("2026-01-01 10:00", tz="UTC"),
        pd.Timestamp("2026-06-30 08:00", tz="UTC"),
    ]
    assert [(e.row, e.value) for e in result.rejected] == [(3, "2026-02-30")]


# --------------------------------------------------------------------------- leads


LEADS_CSV = (
    "lead_id,job_title,company_size,created_at,crm_score,stage\n"
    "001, VP of Finance ,250,2026-01-05,7,decision\n"
    "002,,51-200,2026-01-06,3,awareness\n"
    "001,CFO,10,2026-01-07,9,purchase\n"
    ",Analyst,5,,1,awareness\n"
    "003,Student,-4,someday,0,awareness\n"
    "004,Data Analyst,12.5,,2,consideration\n"
    "005,,,,,\n"
)


def test_duplicate_missing_and_bad_lead_values(tmp_path):
    result = read_leads(_write(tmp_path / "leads.csv", LEADS_CSV))
    got = [(e.row, e.column, e.message) for e in result.rejected]
    assert got == [
        (2, "company_size", "cannot parse '51-200' as a company size (a whole number)"),
        (3, "lead_id", "duplicate lead id '001' (first seen on line 2)"),
        (4, "lead_id", "lead id is missing"),
        (5, "company_size", "company size must be at least 0, got -4"),
        (5, "created_at", "cannot parse 'someday' as a timestamp"),
        (6, "company_size", "company size must be whole, got '12.5'"),
    ]
    assert result.rejected_row_numbers == [2, 3, 4, 5, 6]
    assert result.frame["lead_id"].tolist() == ["001", "005"]


def test_leads_are_typed_and_extra_columns_untouched(tmp_path):
    frame = read_leads(_write(tmp_path / "leads.csv", LEADS_CSV)).frame
    assert list(frame.columns) == [
        "lead_id",
        "job_title",
        "company_size",
        "created_at",
        "crm_score",
        "stage",
    ]
    first = frame.iloc[0]
    assert first["job_title"] == "VP of Finance"  # stripped
    assert str(frame["company_size"].dtype) == "Int64"
    assert first["company_size"] == 250
    assert pd.isna(frame["company_size"].iloc[1])
    assert first["created_at"] == pd.Timestamp("2026-01-05", tz="UTC")
    assert frame["crm_score"].tolist()[0] == 7.0  # inferred by pandas, not forced to text
    assert frame["stage"].tolist()[0] == "decision"


def test_leads_strict_and_custom_id_column(tmp_path):
    path = _write(tmp_path / "crm.csv", "contact,company_size\nx,1\ny,2\nx,3\n")
    with pytest.raises(InputError, match=r"crm\.csv, line 4, column 'contact': duplicate lead id"):
        read_leads(path, id_col="contact", strict=True)
    result = read_leads(path, id_col="contact")
    assert result.frame["contact"].tolist() == ["x", "y"]


def test_leads_parquet_and_jsonl(tmp_path):
    frame = pd.DataFrame(
        {
            "lead_id": [1, 2, 3],
            "company_size": [10, 20, 30_000_000],
            "created_at": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03"]),
            "note": ["a", "b", "c"],
        }
    )
    frame.to_parquet(tmp_path / "l.parquet")
    result = read_leads(tmp_path / "l.parquet")
    assert result.frame["lead_id"].tolist() == ["1", "2"]
    assert [(e.row, e.column) for e in result.rejected] == [(3, "company_size")]
    assert "at most 10,000,000" in result.rejected[0].message
    frame.iloc[:2].to_json(tmp_path / "l.jsonl", orient="records", lines=True, date_format="iso")
    again = read_leads(tmp_path / "l.jsonl")
    assert again.ok
    assert again.frame["created_at"].tolist() == result.frame["created_at"].tolist()


def test_row_error_str_without_row_or_column():
    assert str(RowError("f.csv", None, "x", None, "required column is missing")) == (
        "f.csv, column 'x': required column is missing"
    )
    assert str(RowError("f.csv", 3, None, "raw", "bad")) == "f.csv, row 3: bad"


def test_a_table_without_ids_numbers_its_rows(tmp_path):
    from data.readers import ROW_ID

    path = tmp_path / "sessions.csv"
    path.write_text("pages,bought\n3,true\n5,false\n,true\n")
    result = read_leads(path, id_col=ROW_ID)
    assert result.frame[ROW_ID].tolist() == ["1", "2", "3"]
    assert result.frame["pages"].isna().tolist() == [False, False, True]
    with pytest.raises(InputError, match="lead_id"):
        read_leads(path, strict=True)


# --------------------------------------------------------------------------- bounded reads


def _lead_table(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": [f"L{i}" for i in range(n)],
            "job_title": ["VP Sales", "Engineer", "Student"] * (n // 3) + ["CTO"] * (n % 3),
            "company_size": [i % 900 + 1 for i in range(n)],
            "stage": ["awareness", "decision"] * (n // 2) + ["awareness"] * (n % 2),
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_bounded_read_keeps_a_uniform_sample_of_at_most_max_rows(tmp_path, suffix):
    table = _lead_table(2_500)
    path = tmp_path / f"leads{suffix}"
    if suffix == ".csv":
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path, index=False, row_group_size=700)

    result = read_leads(path, max_rows=300, seed=3, chunk_rows=128)
    assert len(result.frame) == 300
    assert result.sample is not None and result.sample.sampled
    assert (result.sample.n_rows, result.sample.n_kept, result.sample.max_rows) == (2_500, 300, 300)
    assert result.n_rows == 2_500 and result.ok
    # rows of the whole file, in file order, with their values and types intact
    ids = result.frame["lead_id"].str[1:].astype(int)
    assert ids.is_monotonic_increasing and ids.is_unique
    assert ids.min() < 500 and ids.max() > 2_000  # spread over the file, not its head
    assert result.frame["company_size"].tolist() == [i % 900 + 1 for i in ids]
    full = read_leads(path)
    assert result.frame.dtypes.to_dict() == full.frame.dtypes.to_dict()
    # the same seed gives the same rows whatever the chunk size; another seed others
    again = read_leads(path, max_rows=300, seed=3, chunk_rows=1_000)
    assert again.frame["lead_id"].tolist() == result.frame["lead_id"].tolist()
    other = read_leads(path, max_rows=300, seed=4, chunk_rows=128)
    assert other.frame["lead_id"].tolist() != result.frame["lead_id"].tolist()
    assert "uniform random sample of 300 (seed 3)" in result.sample.describe(path.name)


def test_a_bounded_read_of_a_small_file_is_the_whole_file(tmp_path):
    path = tmp_path / "leads.csv"
    _lead_table(400).to_csv(path, index=False)
    full = read_leads(path)
    bounded = read_leads(path, max_rows=400, chunk_rows=50)
    pd.testing.assert_frame_equal(bounded.frame, full.frame)
    assert bounded.sample is not None and not bounded.sample.sampled
    assert "all 400 readable rows kept" in bounded.sample.describe("leads.csv")


def test_a_bounded_read_is_uniform_over_the_file():
    """Each half of the file gets about half the sample (seeds 0–19, 100 of 1,000 rows)."""
    import numpy as np

    from data.readers import _Reservoir

    frame = pd.DataFrame({"x": range(1_000)})
    first_half = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        reservoir = _Reservoir(100)
        for start in range(0, 1_000, 64):
            part = frame.iloc[start : start + 64]
            reservoir.offer(part, part["x"].to_numpy(), rng.random(len(part)))
        kept, rows = reservoir.result(frame.columns)
        assert len(kept) == 100 and kept["x"].is_unique
        assert (kept["x"].to_numpy() == rows).all()
        first_half.append(int((rows < 500).sum()))
    assert 45 < sum(first_half) / len(first_half) < 55


def test_a_bounded_read_counts_unreadable_rows_over_the_whole_file(tmp_path):
    path = tmp_path / "leads.csv"
    _lead_table(2_000).to_csv(path, index=False)
    lines = path.read_text().splitlines()
    for i in range(1, len(lines), 10):  # data rows 1, 11, 21, …: one in ten
        lines[i] += ",extra,fields"
    path.write_text("\n".join(lines) + "\n")

    result = read_leads(path, max_rows=250, seed=0, chunk_rows=128)
    assert result.sample is not None
    assert result.sample.n_rows == 2_000
    assert result.sample.n_unreadable == 200
    assert len(result.frame) == 250
    assert [e.row for e in result.rejected[:3]] == [1, 11, 21]
    assert "expected 4 fields" in result.rejected[0].message
    # kept rows carry their own row numbers: lead Li is data row i + 1
    rows = {e.row for e in result.rejected}
    assert all(int(i[1:]) % 10 != 0 for i in result.frame["lead_id"])
    assert not rows & {int(i[1:]) + 1 for i in result.frame["lead_id"]}
    assert "2,000 rows read, 250 kept, 200 rejected" in result.report()


def test_a_bounded_read_of_json_lines_names_lines_like_a_whole_read(tmp_path):
    """A JSON Lines file is read whole, then sampled: its kept rows still name their lines."""
    path = tmp_path / "leads.jsonl"
    sizes = [-5 if i % 2 else 10 for i in range(60)]  # every other lead's size is refused
    records = [{"lead_id": f"L{i}", "company_size": n} for i, n in enumerate(sizes)]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")

    full, bounded = read_leads(path), read_leads(path, max_rows=20, seed=1)
    assert bounded.sample is not None and bounded.sample.sampled
    assert [e.line for e in full.rejected[:2]] == [2, 4]  # no header: data row N is line N
    assert bounded.rejected and all(e.line == e.row for e in bounded.rejected)
    assert ", line " in bounded.report() and ", row " not in bounded.report()


def test_a_bounded_read_refuses_a_bound_below_one(tmp_path):
    path = tmp_path / "leads.csv"
    _lead_table(10).to_csv(path, index=False)
    with pytest.raises(ValueError, match="at least 1"):
        read_leads(path, max_rows=0)


def test_a_bounded_read_of_json_lines_samples_after_reading(tmp_path):
    path = tmp_path / "leads.jsonl"
    _lead_table(900).to_json(path, orient="records", lines=True)
    result = read_leads(path, max_rows=100, seed=5)
    assert len(result.frame) == 100 and result.sample is not None and result.sample.sampled
    assert result.sample.n_rows == 900
    again = read_leads(path, max_rows=100, seed=5)
    assert again.frame["lead_id"].tolist() == result.frame["lead_id"].tolist()
    assert result.frame["lead_id"].str[1:].astype(int).is_monotonic_increasing
