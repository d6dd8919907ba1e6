"""Real CRM exports (generated here: HubSpot, Salesforce, Marketo shapes) through the one reader."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from data.csvscan import CsvScanner
from data.readers import InputError, iter_table, read_leads, read_table
from tests.fixtures.crm.messy import hubspot_export, marketo_export, salesforce_export

ID = "Record ID"


@pytest.fixture
def hubspot(tmp_path):
    path = tmp_path / "hubspot.csv"
    return path, hubspot_export(path)


def test_every_malformed_line_is_named_by_line_and_column(hubspot):
    path, d = hubspot
    result = read_leads(path, id_col=ID)
    by_line = {e.line: e for e in result.rejected}
    assert sorted(by_line) == [d.too_many, d.too_few, d.unterminated]
    assert str(by_line[d.too_many]).startswith(
        f"hubspot.csv, line {d.too_many}, column 'Became a Customer Date': "
        "expected 18 fields, found 20"
    )
    assert str(by_line[d.too_few]).startswith(
        f"hubspot.csv, line {d.too_few}, column 'Job Title': expected 18 fields, found 6"
    )
    assert str(by_line[d.unterminated]).startswith(
        f"hubspot.csv, line {d.unterminated}, column 'Company Name': unterminated quote"
    )
    assert len(result.frame) == d.n_records - 3
    assert result.report().startswith("hubspot.csv: 400 rows read, 397 kept, 3 rejected")


def test_a_runaway_quote_never_swallows_the_next_record(hubspot):
    path, d = hubspot
    frame = read_leads(path, id_col=ID).frame
    # Record ids are 9,000,000 + (line - 2): the record after the broken line is kept whole.
    after = frame.loc[frame[ID] == str(9_000_000 + d.after_unterminated - 2)]
    assert len(after) == 1
    assert after["Company Name"].iloc[0] == f"Company {(d.after_unterminated - 2) % 97}"
    # No field anywhere holds a line break or another record's text.
    assert frame["Company Name"].str.fullmatch(r"Company \d+").all()
    assert not frame.astype(str).apply(lambda c: c.str.contains("\n")).any().any()


def test_too_few_fields_are_rejected_not_padded(hubspot):
    path, d = hubspot
    frame = read_leads(path, id_col=ID).frame
    assert str(9_000_000 + d.too_few - 2) not in set(frame[ID])
    assert str(9_000_000 + d.too_many - 2) not in set(frame[ID])


def test_strict_fails_on_the_first_bad_line(hubspot):
    path, d = hubspot
    with pytest.raises(InputError, match=rf"hubspot\.csv, line {d.too_many}, column"):
        read_leads(path, id_col=ID, strict=True)
    with pytest.raises(InputError, match=rf"line {d.too_many}"):
        read_table(path)


@pytest.mark.parametrize("chunk_rows", [7, 50, 100_000])
def test_streamed_chunks_read_exactly_what_the_whole_file_read_reads(hubspot, chunk_rows):
    path, d = hubspot
    whole = read_leads(path, id_col=ID)
    chunks = list(iter_table(path, chunk_rows=chunk_rows, text_columns=[ID]))
    ids = [i for c in chunks for i in c.frame[ID].tolist()]
    lines = sorted(e.line for c in chunks for e in c.errors)
    assert ids == whole.frame[ID].tolist()
    assert lines == [d.too_many, d.too_few, d.unterminated]
    rows = np.concatenate([c.rows for c in chunks])
    # Row numbers are the data lines after the header, so ids and rows agree.
    assert (rows == np.array([int(i) - 9_000_000 + 1 for i in ids])).all()


def test_bounded_read_reports_the_same_lines(hubspot):
    path, d = hubspot
    result = read_leads(path, id_col=ID, max_rows=100, chunk_rows=30, seed=1)
    assert len(result.frame) == 100
    assert sorted(e.line for e in result.rejected) == [d.too_many, d.too_few, d.unterminated]
    assert result.sample.n_rows == 400 and result.sample.n_unreadable == 3


def test_windows_1252_semicolons_are_read_and_said(tmp_path):
    path = tmp_path / "salesforce.csv"
    written = salesforce_export(path)
    result = read_leads(path, id_col=ID)
    assert result.ok and len(result.frame) == len(written)
    assert any("read as Windows-1252" in n for n in result.notes)
    assert any("separated by semicolons" in n for n in result.notes)
    assert set(result.frame["Last Name"]) == set(written["Last Name"])  # Müller, García…
    assert result.frame["Annual Revenue"].iloc[0].endswith("€")


def test_utf8_bom_and_tabs(tmp_path):
    path = tmp_path / "marketo.csv"
    written = marketo_export(path)
    result = read_leads(path, id_col=ID)
    assert list(result.frame.columns)[0] == ID  # the byte-order mark is not in the name
    assert result.frame[ID].tolist() == written[ID].tolist()
    assert result.notes == ["marketo.csv: fields separated by tabs"]


def test_excel_rows_are_named_as_the_sheet_numbers_them(tmp_path):
    path = tmp_path / "contacts.xlsx"
    frame = pd.DataFrame({ID: ["A1", "A2", "A2", "A4"], "Job Title": ["CFO", "CTO", "CEO", "Dev"]})
    frame.to_excel(path, index=False, engine="openpyxl")
    result = read_leads(path, id_col=ID)
    assert result.frame[ID].tolist() == ["A1", "A2", "A4"]
    (error,) = result.rejected
    assert str(error) == (
        "contacts.xlsx, line 4, column 'Record ID': duplicate lead id 'A2' (first seen on line 3)"
    )


def test_multi_line_notes_are_one_record(tmp_path):
    path = tmp_path / "notes.csv"
    path.write_text(
        'id,notes,owner\n1,"called twice\nsent pricing",ann\n2,"short",bob\n3,x,"c, d"\n'
    )
    result = read_leads(path, id_col="id")
    assert result.ok
    assert result.frame["notes"].tolist() == ["called twice\nsent pricing", "short", "x"]
    assert result.frame["owner"].tolist() == ["ann", "bob", "c, d"]


def test_a_record_that_spans_lines_but_looks_like_two_records_is_rejected(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('id,name,notes,x\n1,"Acme,a,b\n2,Beta,ok,"y"\n3,Gamma,ok,z\n')
    result = read_leads(path, id_col="id")
    # Line 2's quote runs on into line 3; the 4 fields would match by chance.
    assert [(e.line, e.column) for e in result.rejected] == [(2, "name")]
    assert result.frame["id"].tolist() == ["2", "3"]


def test_delimiter_is_sniffed_and_the_scanner_keeps_physical_lines(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("\n\na|b\n1|2\n\n3|4|5\n6|7\n")
    scanner = CsvScanner(path)
    assert scanner.delimiter == "|" and scanner.header_line == 3
    chunks = list(scanner.chunks())
    assert [int(x) for c in chunks for x in c.lines] == [4, 7]
    assert [(b.line, b.message.split(":")[0]) for c in chunks for b in c.bad] == [
        (6, "expected 2 fields, found 3")
    ]


def test_an_unterminated_quote_on_the_last_line(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b'id,notes\n1,ok\n2,"never closed')
    result = read_leads(path, id_col="id")
    assert result.frame["id"].tolist() == ["1"]
    assert re.match(r"t\.csv, line 3, column 'notes': unterminated quote", str(result.rejected[0]))


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_train_and_score_a_hubspot_export_end_to_end(tmp_path, monkeypatch):
    """Every defect reported by line and column by both commands; nothing personal learned."""
    import json

    from click.testing import CliRunner

    from leadready.cli import main

    path = tmp_path / "hubspot.csv"
    d = hubspot_export(path)
    home = tmp_path / "home"
    monkeypatch.setenv("LEADREADY_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    runner = CliRunner()
    args = ["--leads", str(path), "--id-col", ID, "--stage-col", "Lifecycle Stage"]
    trained = runner.invoke(
        main, ["train", *args, "--persona-col", "Persona", "--n-estimators", "10", "--no-compile"]
    )
    assert trained.exit_code == 0, trained.output
    out = trained.output
    assert "hubspot.csv: 400 lines read, 397 kept, 3 rejected" in out
    for line in (d.too_many, d.too_few, d.unterminated):
        assert f"hubspot.csv, line {line}, column" in out
    assert (
        "excluded as personal data: First Name, Last Name, Email, Phone Number, Street Address"
        in out
    )
    assert "HubSpot Score" in out and "Became a Customer Date" in out
    # Merged lifecycle spellings are named as the CRM shows them.
    assert "'Lead' ← " in out and "'Sales Qualified Lead' ← 'SQL', 'salesqualifiedlead'" in out
    assert "salesqualifiedlead," not in out.split("sales-ready stages inferred")[1]
    assert "Annual Revenue: number" in out and "Create Date: date" in out
    assert "sales-ready stages inferred from the CRM lifecycle stages" in out
    (report,) = (home / "reports").glob("hubspot-rejected-*.csv")
    lines = pd.read_csv(report)["line"].tolist()
    assert lines == [d.too_many, d.too_few, d.unterminated]

    from leadready.config import Settings
    from model.registry import configure, load_model

    settings = Settings.from_env()
    configure(settings.mlflow_tracking_uri, settings.artifact_root)
    model, _ = load_model(f"models:/{settings.model_name}@challenger")
    used = set(model.input_columns)
    assert not used & {"First Name", "Last Name", "Email", "Phone Number", "Street Address"}
    assert not used & {"HubSpot Score", "Became a Customer Date"}
    assert model.metadata["column_types"]["Annual Revenue"]["kind"] == "number"
    stages = set(model.labels["stage"])
    assert {"Lead", "Sales Qualified Lead", "Marketing Qualified Lead"} <= stages
    assert not stages & {"LEAD", "lead", "salesqualifiedlead", "SQL"}

    scored_path = tmp_path / "scored.csv"
    scored = runner.invoke(
        main,
        ["score", "--in", str(path), "--out", str(scored_path), "--id-col", ID,
         "--model", f"models:/{settings.model_name}@challenger"],
    )  # fmt: skip
    assert scored.exit_code == 0, scored.output
    assert "hubspot.csv: 400 lines read, 397 kept, 3 rejected" in scored.output
    frame = pd.read_csv(scored_path, dtype={ID: str})
    assert len(frame) == 397
    assert frame["readiness"].notna().all()
    strict = runner.invoke(
        main,
        ["score", "--in", str(path), "--out", str(tmp_path / "s2.csv"), "--id-col", ID,
         "--strict", "--model", f"models:/{settings.model_name}@challenger"],
    )  # fmt: skip
    assert strict.exit_code != 0
    assert f"line {d.too_many}" in strict.output
    assert not (tmp_path / "s2.csv").exists()
    json.dumps(model.metadata["column_types"])  # logged with the model: plain JSON


@pytest.mark.slow
def test_train_stops_when_sales_ready_stages_cannot_be_inferred(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from leadready.cli import main

    path = tmp_path / "leads.csv"
    rng = np.random.default_rng(0)
    n = 120
    pd.DataFrame(
        {
            "id": [f"L{i}" for i in range(n)],
            "visits": rng.integers(0, 50, n),
            "temperature": rng.choice(["hot", "warm", "cold"], n),
        }
    ).to_csv(path, index=False)
    monkeypatch.setenv("LEADREADY_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(
        main, ["train", "--leads", str(path), "--id-col", "id", "--stage-col", "temperature"]
    )
    assert result.exit_code != 0
    assert "cannot tell which stage labels are sales-ready (labels: cold, hot, warm)" in (
        result.output
    )
    assert "--sales-ready" in result.output
    # What was read is said before the stop.
    read = result.output.index("leads.csv: 120 lines read, 120 kept, 0 rejected")
    assert read < result.output.index("cannot tell which stage labels")


# --------------------------------------------------------------------------- leaks


def _leaky_table(tmp_path, n=300):
    rng = np.random.default_rng(3)
    stage = rng.choice(["cold", "warm", "hot"], n)
    frame = pd.DataFrame(
        {
            "id": [f"L{i}" for i in range(n)],
            "Visits": rng.integers(0, 50, n),
            "Industry": rng.choice(["retail", "tech", "finance"], n),
            # Filled in by the sales team once the stage is known: it is the label.
            "Rep Verdict": [f"v-{s}" for s in stage],
            "stage": stage,
        }
    )
    path = tmp_path / "leaky.csv"
    frame.to_csv(path, index=False)
    return path


def test_a_column_that_alone_predicts_the_label_is_excluded_and_said(tmp_path):
    from training.dataset import load_training_table

    path = _leaky_table(tmp_path)
    ts = load_training_table(path, id_col="id", stage_col="stage")
    assert "Rep Verdict" not in ts.leads.columns
    assert not any(c.startswith("Rep Verdict") for c in ts.X.columns)
    said = [line for line in ts.inferred if line.startswith("excluded as a leak")]
    assert len(said) == 1 and said[0].startswith("excluded as a leak: 'Rep Verdict' alone predicts")
    assert "--allow-column 'Rep Verdict'" in said[0]
    reasons = {e["column"]: e["reason"] for e in ts.input_report["excluded_columns"]}
    assert "leak" in reasons["Rep Verdict"] and "Visits" not in reasons

    kept = load_training_table(path, id_col="id", stage_col="stage", allow_columns=["Rep Verdict"])
    assert "Rep Verdict" in kept.leads.columns
    assert any("kept on purpose (--allow-column): 'Rep Verdict'" in line for line in kept.inferred)


# --------------------------------------------------------------------------- report privacy


def test_the_rejected_lines_report_is_private_and_masks_personal_values(hubspot, tmp_path):
    import stat

    from training.input_report import write_rejected

    path, d = hubspot
    result = read_leads(path, id_col=ID)
    by_line = {e.line: e for e in result.rejected}
    text = path.read_text(encoding="utf-8").splitlines()
    for line in (d.too_many, d.too_few):
        raw = text[line - 1]
        first, last, email = raw.split(",")[1:4]
        shown = by_line[line].value
        # The record id finds the line; names, e-mail and phone are not copied.
        assert shown.startswith(raw.split(",")[0] + ",***,***,***,***")
        assert first not in shown and last not in shown and email not in shown
        assert "@" not in shown
    report = write_rejected(tmp_path / "r" / "rejected.csv", result.rejected)
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    written = report.read_text(encoding="utf-8")
    assert "@" not in written and f",{d.too_few}," in written
    report.chmod(0o644)  # an existing report is made private again when rewritten
    write_rejected(report, result.rejected)
    assert stat.S_IMODE(report.stat().st_mode) == 0o600


def test_a_masked_line_keeps_its_other_text_as_in_the_file():
    from data.personal import mask_line

    header = ["id", "First Name", "Email", "Company", "Revenue"]
    line = '7,"Doe, Jane",jane@x.io,"Acme, Inc,414,"$36,142,000",12'  # quote runs on
    assert mask_line(line, header, ",") == '7,***,***,"Acme, Inc,414,"$36,142,000",12'
    shifted = "8;Jane;+49 30 1234567;Acme;1.200,50 €;notes"  # a field missing before
    assert mask_line(shifted, ["id", "Vorname", "E-Mail", "Telefon", "Firma"], ";") == (
        "8;***;***;***;1.200,50 €;notes"
    )
