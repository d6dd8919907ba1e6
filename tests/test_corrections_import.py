"""Importing a CRM export of corrections: validation, writes, reports; and the export."""

from __future__ import annotations

import contextlib
import csv
import os
import re
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from data.readers import InputError
from data.store import Store
from training.corrections import export_corrections, import_corrections, known_labels

REASONS = {
    "wrong_title": "Wrong title or role",
    "not_in_market": "Not in market",
    "talking_to_sales": "Already talking to sales",
    "student_job_seeker": "Student or job seeker",
    "other": "Other",
}
LABELS = {
    "stage": {"awareness", "consideration", "decision", "purchase"},
    "persona": {"economic_buyer", "technical_evaluator", "practitioner", "non_buyer"},
}
HEADER = "lead_id,stage,persona,reviewer,reason,note\n"


@pytest.fixture
def store(tmp_path):
    """Three stored leads with marketing's labels; L1 and L2 scored; one scored-only lead S9."""
    with Store(f"sqlite:///{tmp_path / 'store.db'}") as s:
        s.upgrade()
        s.upsert_leads(
            [
                {
                    "lead_id": "L1",
                    "company": "Acme",
                    "stage": "awareness",
                    "persona": "practitioner",
                },
                {
                    "lead_id": "L2",
                    "company": "Initech",
                    "stage": "decision",
                    "persona": "economic_buyer",
                },
                {
                    "lead_id": "L3",
                    "company": "Hooli",
                    "stage": "consideration",
                    "persona": "non_buyer",
                },
            ]
        )
        s.record_predictions(
            [
                {
                    "lead_id": lead,
                    "model_name": "m",
                    "model_version": "1",
                    "source": "batch",
                    "stage": stage,
                    "persona": persona,
                    "features": {"x": 1.0},
                }
                for lead, stage, persona in (
                    ("L1", "consideration", "practitioner"),
                    ("L2", "decision", "economic_buyer"),
                    ("S9", "awareness", "non_buyer"),
                )
            ]
        )
        yield s


def write(tmp_path: Path, body: str, name: str = "crm.csv") -> Path:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def run(path: Path, store: Store, **kw):
    return import_corrections(path, store, labels=LABELS, reasons=REASONS, **kw)


def test_good_rows_become_import_corrections_confirm_or_reclassify(tmp_path, store):
    path = write(
        tmp_path,
        HEADER
        + "L1,Decision,,dana,Already talking to sales,asked for a quote\n"
        + "L2,decision,technical_evaluator,eve,wrong_title,\n"
        + "S9,,non_buyer,,student job seeker,\n",
    )
    result = run(path, store, reviewer_default="ops")
    assert result.ok and result.n_rows == 3
    assert result.written == 4
    rows = store.corrections_frame()
    assert set(rows["source"]) == {"import"}
    by = {(r.lead_id, r.field): r for r in rows.itertuples()}
    # Labels and reasons are matched without regard to case; words map to codes.
    assert by[("L1", "stage")].new_label == "decision"
    assert by[("L1", "stage")].kind == "reclassify"
    assert by[("L1", "stage")].old_label == "consideration"
    assert by[("L1", "stage")].reason == "talking_to_sales"
    assert by[("L1", "stage")].note == "asked for a quote"
    # L2's stage equals the current (predicted) one: a confirmation, also a label.
    assert by[("L2", "stage")].kind == "confirm"
    assert by[("L2", "persona")].kind == "reclassify"
    assert result.confirmed == 2  # L2 stage, S9 persona
    assert by[("S9", "persona")].reviewer == "ops"
    assert by[("S9", "persona")].reason == "student_job_seeker"
    assert store.current_labels(["L1"])["L1"] == {"stage": "decision", "persona": None}


@pytest.mark.parametrize(
    ("line", "column", "message"),
    [
        (",,,,,", None, "empty row"),
        (",decision,,dana,,", "lead_id", "no lead id"),
        ("L404,decision,,dana,,", "lead_id", "unknown lead 'L404'"),
        ("L1,nirvana,,dana,,", "stage", "unknown stage 'nirvana'"),
        ("L1,,ceo,dana,,", "persona", "unknown persona 'ceo'"),
        ("L1,,,dana,other,", "stage", "nothing to correct"),
        ("L1,decision,,,other,", "reviewer", "no reviewer"),
        ("L1,decision,,dana,because,", "reason", "unknown reason 'because'"),
    ],
)
def test_each_bad_row_is_rejected_naming_file_row_and_column(
    tmp_path, store, line, column, message
):
    path = write(tmp_path, HEADER + "L2,,practitioner,dana,,\n" + line + "\n")
    result = run(path, store)
    assert result.written == 1  # the good first row still goes in
    assert len(result.rejected) == 1
    error = result.rejected[0]
    assert (error.file, error.row, error.column) == ("crm.csv", 2, column)
    assert message in error.message
    assert str(error).startswith("crm.csv, row 2")
    assert list(result.rejected_rows["row"]) == [2]
    assert len(store.corrections_frame()) == 1


def test_a_store_refusal_is_a_rejected_row_too(tmp_path, store):
    path = write(tmp_path, HEADER + f"L1,decision,,{'x' * 300},,\n")
    result = run(path, store)
    assert result.written == 0
    [error] = result.rejected
    assert error.column == "reviewer"
    assert "longer than" in error.message


def test_the_report_lists_every_rejected_row_with_its_values(tmp_path, store):
    path = write(tmp_path, HEADER + "L404,decision,,dana,,\n,,,,,\nL1,decision,,dana,,\n")
    result = run(path, store)
    report = result.write_report(tmp_path / "out" / "rejected.csv")
    with report.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["row"] for r in rows] == ["1", "2"]
    assert rows[0]["column"] == "lead_id" and rows[0]["lead_id"] == "L404"
    assert rows[0]["stage"] == "decision"
    assert "rejected 2 row(s)" in result.report()


def test_a_file_without_a_lead_id_column_writes_nothing(tmp_path, store):
    store.add_correction("L1", "stage", "purchase", reviewer="dana")
    path = write(tmp_path, "id,stage\nL1,decision\n")
    with pytest.raises(InputError, match="missing column 'lead_id'") as info:
        run(path, store)
    assert info.value.errors[0].column == "lead_id"
    # What was stored before is untouched.
    assert store.current_labels()["L1"]["stage"] == "purchase"
    assert len(store.corrections_frame()) == 1


def test_an_unparseable_file_writes_nothing_and_names_the_row(tmp_path, store):
    path = write(tmp_path, HEADER + "L1,decision,,dana,,\nL2,decision,,dana,,,extra,fields\n")
    with pytest.raises(InputError) as info:
        run(path, store)
    assert info.value.errors[0].row == 2
    assert store.corrections_frame().empty


def test_importing_the_same_file_twice_adds_nothing_the_second_time(tmp_path, store):
    path = write(tmp_path, HEADER + "L1,purchase,non_buyer,dana,other,\n")
    assert run(path, store).written == 2
    again = run(path, store)
    assert (again.written, again.skipped) == (0, 2)
    assert len(store.corrections_frame()) == 2
    # A changed row is a new correction (append-only).
    path = write(tmp_path, HEADER + "L1,decision,non_buyer,dana,other,\n")
    third = run(path, store)
    assert (third.written, third.skipped) == (1, 1)
    assert len(store.corrections_frame()) == 3


def test_dry_run_validates_and_writes_nothing(tmp_path, store):
    path = write(tmp_path, HEADER + "L1,purchase,,dana,,\nL404,purchase,,dana,,\n")
    result = run(path, store, dry_run=True)
    assert (result.written, len(result.rejected)) == (1, 1)
    assert "would write 1" in result.report()
    assert store.corrections_frame().empty


def test_created_at_is_kept_and_bad_times_are_rejected(tmp_path, store):
    path = write(
        tmp_path,
        "lead_id,stage,reviewer,created_at\nL1,purchase,dana,2026-05-01T10:00:00Z\n"
        "L2,purchase,dana,yesterday\n",
    )
    result = run(path, store)
    assert result.written == 1
    assert result.rejected[0].column == "created_at"
    stamp = store.corrections_frame()["created_at"].iloc[0]
    assert stamp == pd.Timestamp("2026-05-01T10:00:00Z")


def test_known_labels_are_the_data_the_corrections_and_the_model(store):
    store.add_correction("L1", "stage", "evaluation", reviewer="dana")
    labels = known_labels(store, {"stage": ["renewal"], "persona": ["buyer"]})
    assert {"awareness", "decision", "consideration"} <= labels["stage"]
    assert {"evaluation", "renewal"} <= labels["stage"]
    assert {"practitioner", "non_buyer", "buyer"} <= labels["persona"]
    assert "purchase" not in labels["stage"]


def test_export_writes_the_whole_history_including_undos(tmp_path, store):
    first = store.add_correction("L1", "stage", "purchase", reviewer="dana", note="a, b")
    store.undo_correction(first.id, reviewer="dana")
    store.add_correction("L2", "persona", "non_buyer", reviewer="eve")
    path, n = export_corrections(store, tmp_path / "out" / "history.csv")
    assert n == 3
    frame = pd.read_csv(path)
    assert list(frame["kind"]) == ["reclassify", "undo", "reclassify"]
    assert frame["note"].iloc[0] == "a, b"
    assert frame["created_at"].iloc[0].endswith("Z")
    parquet, _ = export_corrections(store, tmp_path / "history.parquet")
    assert len(pd.read_parquet(parquet)) == 3
    with pytest.raises(ValueError, match="write .csv or .parquet"):
        export_corrections(store, tmp_path / "history.xlsx")


# ------------------------------------------------------------------------------ CLI


@pytest.fixture
def home(tmp_path, monkeypatch, store):
    """The CLI pointed at ``store`` (no MLflow champion: labels come from the data)."""
    monkeypatch.setenv("LEADREADY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DATABASE_URL", str(store.engine.url))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path / "home"


def test_cli_import_prints_rejects_writes_a_report_and_exits_1(tmp_path, home, store):
    from leadready.cli import main

    # With no champion, the known labels are the data's: "purchase" is not one of them.
    path = write(
        tmp_path, HEADER + "L1,decision,,dana,other,\nL404,decision,,dana,,\nL3,purchase,,dana,,\n"
    )
    report = tmp_path / "rejected.csv"
    result = CliRunner().invoke(main, ["corrections", "import", str(path), "--report", str(report)])
    assert result.exit_code == 1, result.output
    assert "crm.csv, row 2, column 'lead_id': unknown lead 'L404'" in result.output
    assert "wrote 1 correction(s)" in result.output
    assert "row 3, column 'stage': unknown stage 'purchase'" in result.output
    assert report.exists() and "L404" in report.read_text()
    assert store.current_labels()["L1"]["stage"] == "decision"


@pytest.mark.slow
def test_cli_import_of_a_clean_file_exits_0_and_uses_the_default_reviewer(tmp_path, home, store):
    from leadready.cli import main

    path = write(tmp_path, HEADER + "L3,,economic_buyer,,wrong title,\n")
    result = CliRunner().invoke(
        main, ["corrections", "import", str(path), "--reviewer-default", "crm-sync"]
    )
    assert result.exit_code == 0, result.output
    assert store.corrections_frame()["reviewer"].tolist() == ["crm-sync"]
    assert not (home / "reports").exists()
    # The queue re-ranks in a process of its own; the command said which, and its log.
    found = re.search(r"in the background \(process (\d+), log (.+?)\)", result.output)
    assert found, result.output
    _wait_for_child(int(found.group(1)))
    assert re.match(r"cold start: \d+ reviewed leads are too few", Path(found.group(2)).read_text())


def _wait_for_child(pid: int) -> None:
    """Wait for a process this test started (already reaped by ``subprocess``: done)."""
    with contextlib.suppress(ChildProcessError):
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.slow
def test_cli_import_refit_now_reranks_before_returning(tmp_path, home, store):
    from leadready.cli import main

    path = write(tmp_path, HEADER + "L3,,economic_buyer,ann,wrong title,\n")
    result = CliRunner().invoke(main, ["corrections", "import", str(path), "--refit-now"])
    assert result.exit_code == 0, result.output
    assert re.search(r"cold start: \d+ reviewed leads are too few", result.output)
    assert "in the background" not in result.output


def test_cli_import_of_a_file_without_lead_ids_reports_and_imports_nothing(tmp_path, home, store):
    from leadready.cli import main

    path = write(tmp_path, "id,stage\nL1,decision\n")
    result = CliRunner().invoke(main, ["corrections", "import", str(path)])
    assert result.exit_code == 1
    assert "nothing was imported" in result.output
    assert store.corrections_frame().empty
    assert list((home / "reports").glob("crm-rejected-*.csv"))


def test_cli_export(tmp_path, home, store):
    from leadready.cli import main

    store.add_correction("L1", "stage", "purchase", reviewer="dana")
    out = tmp_path / "corrections.csv"
    result = CliRunner().invoke(main, ["corrections", "export", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out)["new_label"].tolist() == ["purchase"]


def test_the_default_reasons_are_the_ones_reps_choose_from(tmp_path, store):
    from data.schema import CORRECTION_REASONS

    words = dict(CORRECTION_REASONS)["student_job_seeker"]
    path = write(tmp_path, HEADER + f"L1,decision,,dana,{words},\nL2,decision,,dana,because,\n")
    result = import_corrections(path, store, labels=LABELS)
    assert result.written == 1
    assert store.corrections_frame()["reason"].tolist() == ["student_job_seeker"]
    assert result.rejected[0].column == "reason"
