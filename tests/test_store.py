"""The store on SQLite and PostgreSQL: schema, leads, predictions, corrections, users, keys."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from argon2 import PasswordHasher

from data.schema import LEAD_COLUMNS
from data.store import (
    Base,
    CorrectionRow,
    LeadRow,
    PredictionRow,
    QueueRow,
    Store,
    alembic_config,
)

TABLES = {"leads", "events", "predictions", "corrections", "users", "api_keys", "lead_queue"}
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


#: Cheap argon2 parameters so user tests stay fast; the default cost is tested once.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture
def store(db_url):
    s = Store(db_url, password_hasher=FAST_HASHER)
    s.upgrade()
    yield s
    s.dispose()


def _lead(lead_id: str, **values) -> dict:
    base = {
        "lead_id": lead_id,
        "job_title": "VP Engineering",
        "company": "Acme Corp",
        "company_size": 250,
        "country": "DE",
        "created_at": T0,
        "stage": "awareness",
        "persona": "practitioner",
    }
    base.update(values)
    return base


def _prediction(lead_id: str, stage: str = "consideration", persona: str = "economic_buyer", **kw):
    row = {
        "lead_id": lead_id,
        "model_name": "lead-readiness",
        "model_version": "3",
        "stage": stage,
        "stage_confidence": 0.7,
        "stage_margin": 0.4,
        "persona": persona,
        "persona_confidence": 0.6,
        "persona_margin": 0.2,
        "probabilities": {"stage": {stage: 0.7, "awareness": 0.3}, "persona": {persona: 0.6}},
        "readiness": 0.55,
        "route": "nurture",
        "reasons": [{"feature": "pricing_views_30d", "text": "viewed pricing", "weight": 0.3}],
        "features": {"pricing_views_30d": 3, "company_size": 250},
        "source": "api",
    }
    row.update(kw)
    return row


# ------------------------------------------------------------------------ schema


def test_upgrade_creates_every_table_and_is_idempotent(store):
    assert store.current_revision() == store.head_revision() is not None
    store.upgrade()
    assert store.current_revision() == store.head_revision()
    names = set(sa.inspect(store.engine).get_table_names())
    assert TABLES | {"alembic_version"} <= names


def test_migrations_match_the_models(store):
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


@pytest.fixture
def other_db_url(request, db_url, tmp_path):
    """A second empty database on the backend of ``db_url``."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'other.db'}"
        return
    base = request.getfixturevalue("pg_base_url")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(base)
    with engine.begin() as conn:
        conn.execute(sa.text(f'create schema "{schema}"'))
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(sa.text(f'drop schema "{schema}" cascade'))
    engine.dispose()


_ODD = 'ready "now". v2'
_QUEUE_LEADS = [
    _lead("Q1", stage="awareness", persona="practitioner", company="Acme"),
    _lead("Q2", stage=_ODD, persona="economic_buyer", company="Globex"),
    _lead("Q4", stage="consideration", persona=None, company=None),
    _lead("Q5", stage="decision", persona="practitioner"),
]
# Q3 is scored but has no profile.
_QUEUE_FIRST = [
    _prediction(
        "Q1",
        "awareness",
        stage_margin=0.05,
        created_at=T0 - timedelta(days=10),
        probabilities={
            "stage": {"awareness": 0.5, "consideration": 0.45, "decision": 0.05},
            "persona": {"economic_buyer": 0.6, "practitioner": 0.4},
        },
    ),
    _prediction(
        "Q2",
        "decision",
        created_at=T0,
        probabilities={"stage": {"decision": 0.9, _ODD: 0.1}, "persona": {"economic_buyer": 1}},
    ),
    _prediction("Q3", "purchase", stage_confidence=0.5, created_at=T0 - timedelta(days=3)),
    _prediction("Q4", None, stage_margin=None, persona=None, probabilities=None, created_at=T0),
    _prediction("Q5", "decision", created_at=T0 - timedelta(days=20)),
]
_QUEUE_SECOND = [
    _prediction("Q1", "decision", stage_confidence=0.5, created_at=T0 - timedelta(days=2)),
    _prediction("Q5", "decision", created_at=T0 - timedelta(days=1)),
]


def _queue_rows(store: Store) -> dict[str, dict]:
    table = QueueRow.__table__
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(table).order_by(table.c.lead_id)).mappings().all()
    return {row["lead_id"]: dict(row) for row in rows}


def _assert_same_rows(got: dict[str, dict], expected: dict[str, dict]) -> None:
    assert list(got) == list(expected)
    for lead_id, row in expected.items():
        for name, value in row.items():
            if isinstance(value, float):
                assert got[lead_id][name] == pytest.approx(value, abs=1e-12), (lead_id, name)
            else:
                assert got[lead_id][name] == value, (lead_id, name)


def test_migration_backfills_the_queue_as_the_store_keeps_it(db_url, other_db_url):
    """A home written by the first revision upgrades to the rows the write paths make."""
    old = Store(db_url)
    live = Store(other_db_url)
    try:
        old.upgrade("0001")
        assert old.current_revision() == "0001"
        with old.engine.begin() as conn:
            conn.execute(
                sa.insert(LeadRow.__table__),
                [
                    {
                        "lead_id": lead["lead_id"],
                        "company": lead["company"],
                        "marketing_stage": lead["stage"],
                        "marketing_persona": lead["persona"],
                        "first_seen": T0,
                        "updated_at": T0,
                    }
                    for lead in _QUEUE_LEADS
                ],
            )
            for batch in (_QUEUE_FIRST, _QUEUE_SECOND):
                conn.execute(sa.insert(PredictionRow.__table__), batch)
            corrections = CorrectionRow.__table__
            base = {"reviewer": "ana", "created_at": T0, "source": "ui", "old_label": None}
            conn.execute(
                sa.insert(corrections),
                [
                    {**base, "lead_id": "Q1", "field": "stage", "new_label": "consideration"}
                    | {"kind": "reclassify", "is_rep_label": True},
                    {**base, "lead_id": "Q4", "field": "stage", "new_label": "awareness"}
                    | {"kind": "reclassify", "is_rep_label": True},
                    {**base, "lead_id": "Q5", "field": "persona", "new_label": "practitioner"}
                    | {"kind": "confirm", "is_rep_label": True},
                ],
            )
            first_q4 = conn.execute(
                sa.select(corrections.c.id).where(corrections.c.lead_id == "Q4")
            ).scalar_one()
            conn.execute(
                sa.insert(corrections),
                {**base, "lead_id": "Q4", "field": "stage", "new_label": None}
                | {"kind": "undo", "is_rep_label": False, "undo_of": first_q4},
            )
        old.upgrade()
        assert old.current_revision() == old.head_revision()

        live.upgrade()
        live.upsert_leads(_QUEUE_LEADS)
        live.record_predictions(_QUEUE_FIRST)
        live.record_predictions(_QUEUE_SECOND)
        live.add_correction("Q1", "stage", "consideration", reviewer="ana")
        undone = live.add_correction("Q4", "stage", "awareness", reviewer="ana")
        live.add_correction("Q5", "persona", "practitioner", reviewer="ana", kind="confirm")
        live.undo_correction(undone.id, reviewer="ana")

        expected = _queue_rows(live)
        assert [lead_id for lead_id, row in expected.items() if row["reviewed"]] == ["Q1", "Q5"]
        assert expected["Q1"]["previous_stage"] == "awareness"
        assert expected["Q1"]["changed_at"] == T0 - timedelta(days=2)
        assert expected["Q5"]["changed_at"] is None
        assert expected["Q2"]["p_marketing_stage"] == pytest.approx(0.1)
        assert expected["Q3"]["company"] is None
        _assert_same_rows(_queue_rows(old), expected)

        # Down and up again: the table goes, and comes back the same.
        with old.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0001")
        assert "lead_queue" not in sa.inspect(old.engine).get_table_names()
        old.upgrade()
        _assert_same_rows(_queue_rows(old), expected)
    finally:
        old.dispose()
        live.dispose()


@pytest.mark.parametrize("draft_index", [False, True], ids=["0002", "0002-with-draft-index"])
def test_a_home_at_0002_upgrades_to_the_filter_index(db_url, draft_index):
    store = Store(db_url)
    try:
        store.upgrade("0002")
        if draft_index:
            with store.engine.begin() as conn:
                conn.execute(
                    sa.text(
                        "CREATE INDEX ix_lead_queue_filters "
                        "ON lead_queue (stage, persona, route, reviewed)"
                    )
                )
        store.upgrade()
        assert store.current_revision() == store.head_revision()
        indexes = {i["name"] for i in sa.inspect(store.engine).get_indexes("lead_queue")}
        assert "ix_lead_queue_filters" in indexes
        with store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        store.dispose()


def test_leads_table_carries_the_contract_columns(store):
    columns = {c["name"] for c in sa.inspect(store.engine).get_columns("leads")}
    assert set(LEAD_COLUMNS) | {"extra", "marketing_stage", "marketing_persona"} <= columns


@pytest.mark.postgres
def test_postgres_tables_and_version_table_land_in_the_url_schema(pg_url):
    schema = pg_url.rsplit("%3D", 1)[1]
    store = Store(pg_url)
    try:
        assert store.current_revision() is None
        store.upgrade()
        with store.engine.connect() as conn:
            found = set(
                conn.execute(
                    sa.text(
                        "select table_name from information_schema.tables where table_schema = :s"
                    ),
                    {"s": schema},
                ).scalars()
            )
            in_public = set(
                conn.execute(
                    sa.text(
                        "select table_name from information_schema.tables "
                        "where table_schema = 'public' and table_name = any(:t)"
                    ),
                    {"t": sorted(TABLES | {"alembic_version"})},
                ).scalars()
            )
        assert TABLES | {"alembic_version"} <= found
        assert in_public == set()
    finally:
        store.dispose()


def test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'nested' / 'deeper' / 'lr.db'}")
    try:
        store.upgrade()
        assert (tmp_path / "nested" / "deeper" / "lr.db").exists()
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    finally:
        store.dispose()


def test_corrections_table_refuses_update_and_delete(store):
    store.upsert_leads([_lead("L1")])
    store.add_correction("L1", "stage", "decision", reviewer="ana")
    for statement in ("UPDATE corrections SET new_label = 'x'", "DELETE FROM corrections"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), store.engine.begin() as conn:
            conn.exec_driver_sql(statement)
    assert [c["new_label"] for c in store.corrections_for("L1")] == ["decision"]


# ------------------------------------------------------------------ leads/events


def test_upsert_inserts_then_updates_only_the_given_columns(store):
    assert store.upsert_leads([_lead("L1"), _lead("L2", company="Globex")]) == 2
    first = store.get_lead("L1")
    assert first["company"] == "Acme Corp"
    assert first["marketing_stage"] == "awareness"
    assert first["created_at"] == T0
    assert first["extra"] == {}

    assert store.upsert_leads([{"lead_id": "L1", "company": "Acme GmbH", "stage": "decision"}]) == 1
    updated = store.get_lead("L1")
    assert updated["company"] == "Acme GmbH"
    assert updated["marketing_stage"] == "decision"
    assert updated["marketing_persona"] == "practitioner"  # not in the record: kept
    assert updated["job_title"] == "VP Engineering"
    assert updated["first_seen"] == first["first_seen"]
    assert updated["updated_at"] >= first["updated_at"]
    assert store.get_lead("L2")["company"] == "Globex"
    assert store.get_lead("nope") is None


def test_upsert_accepts_dataframe_records_and_keeps_unknown_columns_as_extra(store):
    frame = pd.DataFrame(
        {
            "lead_id": ["A", "B", "A"],
            "company": ["Initech", None, "Initech AG"],
            "company_size": [np.int64(40), np.nan, np.int64(41)],
            "created_at": [pd.Timestamp("2025-01-02 10:00"), pd.NaT, pd.Timestamp("2025-01-03")],
            "crm_score": [np.float64(0.5), np.nan, np.float64(0.75)],
            "stage": ["awareness", None, "consideration"],
        }
    )
    assert store.upsert_leads(frame.to_dict("records")) == 2
    a = store.get_lead("A")
    assert a["company"] == "Initech AG"  # duplicated id: the later row wins
    assert a["company_size"] == 41
    assert a["created_at"] == datetime(2025, 1, 3, tzinfo=UTC)
    assert a["extra"] == {"crm_score": 0.75}
    assert a["marketing_stage"] == "consideration"
    b = store.get_lead("B")
    assert b["company"] is None and b["company_size"] is None and b["created_at"] is None
    assert b["extra"] == {"crm_score": None}


def test_upsert_rejects_records_without_an_id(store):
    with pytest.raises(ValueError, match="lead_id"):
        store.upsert_leads([{"company": "Acme"}])
    with pytest.raises(ValueError, match="company_size"):
        store.upsert_leads([{"lead_id": "X", "company_size": "many"}])
    assert store.get_lead("X") is None


def test_upsert_many_leads_in_chunks(store):
    rows = [
        {"lead_id": f"L{i:05d}", "company": f"Co {i % 50}", "stage": "awareness"}
        for i in range(12_000)
    ]
    assert store.upsert_leads(rows) == 12_000
    assert store.get_lead("L11999")["company"] == "Co 49"
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("select count(*) from leads").scalar() == 12_000


def test_timestamps_are_stored_as_utc_and_read_back_aware(store):
    plus_two = timezone(timedelta(hours=2))
    store.upsert_leads(
        [
            _lead("N", created_at=datetime(2025, 5, 1, 8, 0)),
            _lead("Z", created_at=datetime(2025, 5, 1, 10, 0, tzinfo=plus_two)),
        ]
    )
    assert store.get_lead("N")["created_at"] == datetime(2025, 5, 1, 8, 0, tzinfo=UTC)
    z = store.get_lead("Z")["created_at"]
    assert z.utcoffset() == timedelta(0)
    assert z == datetime(2025, 5, 1, 8, 0, tzinfo=UTC)


def test_events_are_returned_in_time_order_and_limit_keeps_the_latest(store):
    store.upsert_leads([_lead("L1")])
    events = [
        {"lead_id": "L1", "timestamp": T0 + timedelta(days=d), "type": t, "page_category": p}
        for d, t, p in [
            (3, "page_view", "pricing"),
            (1, "email_open", None),
            (2, "demo_request", None),
        ]
    ]
    assert store.add_events(events) == 3
    got = store.events_for("L1")
    assert [e["type"] for e in got] == ["email_open", "demo_request", "page_view"]
    assert got[2]["page_category"] == "pricing"
    assert got[0]["timestamp"] == T0 + timedelta(days=1)
    assert [e["type"] for e in store.events_for("L1", limit=2)] == ["demo_request", "page_view"]
    assert store.events_for("other") == []


def test_events_of_unknown_leads_or_types_are_refused(store):
    store.upsert_leads([_lead("L1")])
    with pytest.raises(KeyError, match="ghost"):
        store.add_events([{"lead_id": "ghost", "timestamp": T0, "type": "page_view"}])
    with pytest.raises(ValueError, match="unknown event type"):
        store.add_events([{"lead_id": "L1", "timestamp": T0, "type": "telepathy"}])
    with pytest.raises(ValueError, match="timestamp"):
        store.add_events([{"lead_id": "L1", "timestamp": "yesterday", "type": "page_view"}])
    assert store.events_for("L1") == []


def test_search_is_case_insensitive_and_exact_ids_come_first(store):
    store.upsert_leads(
        [
            _lead("acme-1", company="Acme Corp"),
            _lead("L2", company="Big ACME Holdings"),
            _lead("L3", company="Globex", job_title="Head of Acme Relations"),
            _lead("L4", company="Umbrella"),
            _lead("L5", company="100% Pure_Data"),
        ]
    )
    found = [lead["lead_id"] for lead in store.search_leads("acme", limit=10)]
    assert sorted(found) == ["L2", "L3", "acme-1"]
    assert store.search_leads("ACME-1", limit=10)[0]["lead_id"] == "acme-1"
    assert len(store.search_leads("acme", limit=2)) == 2
    assert [lead["lead_id"] for lead in store.search_leads("0% p", limit=10)] == ["L5"]
    assert store.search_leads("%", limit=10)[0]["lead_id"] == "L5"
    assert store.search_leads("  ", limit=10) == []


# ------------------------------------------------------------------- predictions


def test_predictions_round_trip_and_latest_is_newest(store):
    assert store.record_predictions([_prediction("L1", "awareness"), _prediction("L2")]) == 2
    assert store.record_predictions([_prediction("L1", "decision", source="batch")]) == 1
    history = store.predictions_for("L1")
    assert [p["stage"] for p in history] == ["decision", "awareness"]
    latest = store.latest_prediction("L1")
    assert latest["stage"] == "decision" and latest["source"] == "batch"
    assert latest["probabilities"]["stage"]["decision"] == pytest.approx(0.7)
    assert latest["reasons"][0]["text"] == "viewed pricing"
    assert latest["created_at"].tzinfo is not None
    assert store.latest_prediction("none") is None

    everyone = store.latest_predictions()
    assert set(everyone) == {"L1", "L2"}
    assert everyone["L1"]["id"] == latest["id"]
    some = store.latest_predictions(["L2", "missing"], with_features=False)
    assert set(some) == {"L2"} and "features" not in some["L2"]


def test_prediction_json_carries_numpy_values_and_nan_as_null(store):
    row = _prediction(
        "L1",
        stage_confidence=np.float64("nan"),
        features={"a": np.float32(1.5), "b": float("nan"), "c": np.int64(7), "d": np.array([1, 2])},
    )
    store.record_predictions([row])
    got = store.latest_prediction("L1")
    assert got["features"] == {"a": 1.5, "b": None, "c": 7, "d": [1, 2]}
    assert got["stage_confidence"] is None


def test_predictions_with_unknown_keys_or_sources_are_refused(store):
    with pytest.raises(ValueError, match="unknown fields"):
        store.record_predictions([_prediction("L1", stage_prob=0.3)])
    with pytest.raises(ValueError, match="source"):
        store.record_predictions([_prediction("L1", source="cron")])
    assert store.predictions_for("L1") == []


# ------------------------------------------------------------------- corrections


def test_old_label_comes_from_marketing_then_prediction_then_corrections(store):
    store.upsert_leads([_lead("L1", stage="awareness")])
    first = store.add_correction("L1", "stage", "consideration", reviewer="ana", note="read docs")
    assert (first.old_label, first.new_label, first.conflict) == (
        "awareness",
        "consideration",
        False,
    )

    store.upsert_leads([_lead("L2", stage="awareness")])
    store.record_predictions([_prediction("L2", "decision")])
    second = store.add_correction("L2", "stage", "purchase", reviewer="ben")
    assert second.old_label == "decision"

    third = store.add_correction("L2", "stage", "consideration", reviewer="ana")
    assert third.old_label == "purchase"
    assert store.labels_for("L2") == {"stage": "consideration", "persona": "economic_buyer"}


def test_corrections_are_appended_with_full_history(store):
    store.upsert_leads([_lead("L1")])
    store.record_predictions([_prediction("L1", "decision", model_version="7")])
    pred_id = store.latest_prediction("L1")["id"]
    a = store.add_correction(
        "L1", "stage", "awareness", reviewer="ana", reason="student", note="job seeker", source="ui"
    )
    b = store.add_correction("L1", "persona", "non_buyer", reviewer="ana", kind="reclassify")
    c = store.add_correction("L1", "stage", "consideration", reviewer="ben", source="api")
    assert a.id < b.id < c.id
    history = store.corrections_for("L1")
    assert [(h["field"], h["old_label"], h["new_label"]) for h in history] == [
        ("stage", "decision", "awareness"),
        ("persona", "economic_buyer", "non_buyer"),
        ("stage", "awareness", "consideration"),
    ]
    assert history[0]["reviewer"] == "ana" and history[0]["reason"] == "student"
    assert history[0]["note"] == "job seeker"
    assert history[0]["prediction_id"] == pred_id and history[0]["model_version"] == "7"
    assert history[2]["source"] == "api"
    assert all(h["created_at"].tzinfo is not None for h in history)
    assert store.current_labels() == {"L1": {"stage": "consideration", "persona": "non_buyer"}}


def test_undo_appends_a_row_restoring_the_previous_label(store):
    store.upsert_leads([_lead("L1", stage="awareness")])
    first = store.add_correction("L1", "stage", "consideration", reviewer="ana")
    second = store.add_correction("L1", "stage", "decision", reviewer="ana")
    undo = store.undo_correction(second.id, reviewer="ana")
    assert (undo.kind, undo.old_label, undo.new_label, undo.conflict) == (
        "undo",
        "decision",
        "consideration",
        False,
    )
    history = store.corrections_for("L1")
    assert [h["new_label"] for h in history] == ["consideration", "decision", "consideration"]
    assert history[-1]["undo_of"] == second.id
    assert store.current_labels()["L1"]["stage"] == "consideration"

    # Undoing the first correction returns the lead to marketing's label and
    # leaves no rep label behind for retraining.
    back = store.undo_correction(first.id, reviewer="ana")
    assert back.new_label == "awareness"
    assert back.conflict is False  # "consideration" was current again, via the undo
    assert store.labels_for("L1")["stage"] == "awareness"
    assert "L1" not in store.current_labels()
    assert len(store.corrections_for("L1")) == 4

    with pytest.raises(KeyError):
        store.undo_correction(999_999, reviewer="ana")


def test_undoing_a_correction_that_was_since_replaced_is_a_conflict(store):
    store.upsert_leads([_lead("L1", stage="awareness")])
    ana = store.add_correction("L1", "stage", "decision", reviewer="ana")
    store.add_correction("L1", "stage", "purchase", reviewer="ben")
    undo = store.undo_correction(ana.id, reviewer="ana")
    assert undo.conflict is True
    assert (undo.old_label, undo.new_label) == ("purchase", "awareness")
    assert len(store.corrections_for("L1")) == 3


def test_undo_of_an_undo_restores_the_rep_label(store):
    store.upsert_leads([_lead("L1", stage="awareness")])
    store.record_predictions([_prediction("L1", "consideration")])
    fix = store.add_correction("L1", "stage", "decision", reviewer="ana")
    undo = store.undo_correction(fix.id, reviewer="ana")
    assert undo.new_label == "consideration"  # the model's label again
    assert "L1" not in store.current_labels()
    redo = store.undo_correction(undo.id, reviewer="ana")
    assert redo.new_label == "decision"
    assert store.current_labels() == {"L1": {"stage": "decision", "persona": None}}


def test_conflict_is_flagged_and_both_corrections_are_kept(store):
    store.upsert_leads([_lead("L1", stage="awareness")])
    seen_by_both = store.labels_for("L1")["stage"]
    ana = store.add_correction(
        "L1", "stage", "decision", reviewer="ana", expected_label=seen_by_both
    )
    ben = store.add_correction(
        "L1", "stage", "purchase", reviewer="ben", expected_label=seen_by_both
    )
    assert ana.conflict is False
    assert ben.conflict is True
    assert ben.old_label == "decision"
    assert [h["reviewer"] for h in store.corrections_for("L1")] == ["ana", "ben"]
    assert store.labels_for("L1")["stage"] == "purchase"
    none_expected = store.add_correction(
        "L1", "stage", "decision", reviewer="cy", expected_label=None
    )
    assert none_expected.conflict is True


def test_current_labels_take_the_latest_correction_per_field(store):
    store.upsert_leads([_lead("L1"), _lead("L2"), _lead("L3")])
    store.add_correction("L1", "stage", "decision", reviewer="ana")
    store.add_correction("L1", "stage", "purchase", reviewer="ben")
    store.add_correction("L2", "persona", "technical_evaluator", reviewer="ana")
    assert store.current_labels() == {
        "L1": {"stage": "purchase", "persona": None},
        "L2": {"stage": None, "persona": "technical_evaluator"},
    }
    assert store.current_labels(["L2", "L3"]) == {
        "L2": {"stage": None, "persona": "technical_evaluator"}
    }


def test_correction_errors(store):
    store.upsert_leads([_lead("L1")])
    store.record_predictions([_prediction("L2")])
    with pytest.raises(KeyError, match="ghost"):
        store.add_correction("ghost", "stage", "decision", reviewer="ana")
    with pytest.raises(ValueError, match="field"):
        store.add_correction("L1", "budget", "high", reviewer="ana")
    with pytest.raises(ValueError, match="new_label"):
        store.add_correction("L1", "stage", "  ", reviewer="ana")
    with pytest.raises(ValueError, match="reviewer"):
        store.add_correction("L1", "stage", "decision", reviewer="")
    with pytest.raises(ValueError, match="source"):
        store.add_correction("L1", "stage", "decision", reviewer="ana", source="email")
    other = store.latest_prediction("L2")["id"]
    with pytest.raises(ValueError, match="not a prediction of lead"):
        store.add_correction("L1", "stage", "decision", reviewer="ana", prediction_id=other)
    assert store.corrections_for("L1") == []


def test_a_scored_lead_without_a_profile_can_be_corrected(store):
    store.record_predictions([_prediction("crm-9", "decision")])
    result = store.add_correction("crm-9", "stage", "awareness", reviewer="hubspot", source="api")
    assert result.old_label == "decision"
    assert store.get_lead("crm-9")["lead_id"] == "crm-9"


def test_corrections_frame_has_every_row_and_optional_features(store):
    empty = store.corrections_frame()
    assert len(empty) == 0 and {"lead_id", "field", "new_label", "created_at"} <= set(empty.columns)
    store.upsert_leads([_lead("L1"), _lead("L2")])
    store.record_predictions([_prediction("L1")])
    store.add_correction("L1", "stage", "decision", reviewer="ana")
    store.add_correction("L2", "persona", "non_buyer", reviewer="ben")
    frame = store.corrections_frame(with_features=True)
    assert list(frame["lead_id"]) == ["L1", "L2"]
    assert frame.loc[0, "features"] == {"pricing_views_30d": 3, "company_size": 250}
    assert frame.loc[1, "features"] is None
    assert str(frame["created_at"].dt.tz) == "UTC"


@pytest.mark.slow
def test_concurrent_corrections_are_all_stored_in_one_order(db_url):
    store = Store(db_url, pool_size=8, max_overflow=4)
    store.upgrade()
    leads = ["C1", "C2", "C3"]
    store.upsert_leads([_lead(lead_id, stage="awareness") for lead_id in leads])
    threads, per_thread = 8, 25
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def rep(t: int) -> None:
        try:
            start.wait()
            for i in range(per_thread):
                store.add_correction(
                    leads[(t + i) % len(leads)],
                    "stage",
                    f"s{t}-{i}",
                    reviewer=f"rep{t}",
                    note=f"{t}:{i}",
                )
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    workers = [threading.Thread(target=rep, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    try:
        assert errors == []
        frame = store.corrections_frame()
        assert len(frame) == threads * per_thread
        assert frame["note"].is_unique
        assert set(frame["note"]) == {f"{t}:{i}" for t in range(threads) for i in range(per_thread)}
        current = store.current_labels()
        for lead_id in leads:
            rows = frame[frame["lead_id"] == lead_id].sort_values("id")
            # Each correction replaced exactly the one before it: no lost update.
            assert list(rows["old_label"])[1:] == list(rows["new_label"])[:-1]
            assert rows["old_label"].iloc[0] == "awareness"
            assert current[lead_id]["stage"] == rows["new_label"].iloc[-1]
    finally:
        store.dispose()


# ------------------------------------------------------------------------ users


def test_users_are_stored_with_argon2_hashes(db_url):
    store = Store(db_url)  # the default (production) argon2 parameters
    store.upgrade()
    try:
        user = store.create_user("ana", "rep", "correct horse battery")
        assert (user.name, user.role, user.active) == ("ana", "rep", True)
        with store.engine.connect() as conn:
            stored = conn.exec_driver_sql("select password_hash from users").scalar()
        assert stored != "correct horse battery"
        assert stored.startswith("$argon2id$v=19$m=65536,")
        assert "correct horse battery" not in stored
        assert store.authenticate("ana", "correct horse battery") == user
        assert store.authenticate("ana", "wrong") is None
    finally:
        store.dispose()


def test_authenticate_and_look_up_users(store):
    user = store.create_user("ana", "rep", "correct horse battery")
    assert store.authenticate("ana", "correct horse battery") == user
    assert store.authenticate("ana", "wrong") is None
    assert store.authenticate("nobody", "correct horse battery") is None
    assert store.get_user(user.id) == user
    assert store.get_user(10_000) is None
    assert store.get_user_by_name("ana") == user
    assert store.get_user_by_name("nobody") is None


def test_user_validation(store):
    store.create_user("ana", "rep", "pw-1")
    with pytest.raises(ValueError, match="already exists"):
        store.create_user("ana", "analyst", "pw-2")
    with pytest.raises(ValueError, match="role"):
        store.create_user("ben", "superuser", "pw")
    with pytest.raises(ValueError, match="password"):
        store.create_user("ben", "rep", "")
    assert [u.name for u in store.list_users()] == ["ana"]


def test_password_change_and_deactivation(store):
    store.create_user("ana", "admin", "old-pass")
    store.set_password("ana", "new-pass")
    assert store.authenticate("ana", "old-pass") is None
    assert store.authenticate("ana", "new-pass") is not None
    disabled = store.deactivate_user("ana")
    assert disabled.active is False
    assert store.authenticate("ana", "new-pass") is None
    assert store.get_user_by_name("ana").active is False
    with pytest.raises(KeyError):
        store.set_password("ghost", "x")
    with pytest.raises(KeyError):
        store.deactivate_user("ghost")


def test_weak_hashes_are_upgraded_on_login(store, db_url):
    user = store.create_user("ana", "rep", "pw")  # made with FAST_HASHER's weak parameters
    with store.engine.connect() as conn:
        weak = conn.exec_driver_sql("select password_hash from users").scalar()
    stronger = Store(
        db_url, password_hasher=PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    )
    try:
        assert stronger.authenticate("ana", "pw") == user
        with store.engine.connect() as conn:
            rehashed = conn.exec_driver_sql("select password_hash from users").scalar()
        assert rehashed != weak and "m=2048,t=2" in rehashed
        assert stronger.authenticate("ana", "pw") == user
        assert stronger.authenticate("ana", "nope") is None
    finally:
        stronger.dispose()


# --------------------------------------------------------------------- API keys


def test_api_keys_verify_and_revoke(store):
    key = store.create_api_key("hubspot")
    admin_key = store.create_api_key("ops", role="admin")
    assert key.startswith("lr_") and len(key) > 40 and key != admin_key
    info = store.verify_api_key(key)
    assert (info.name, info.role, info.revoked) == ("hubspot", "client", False)
    assert store.verify_api_key(admin_key).role == "admin"
    assert store.verify_api_key(key + "x") is None
    assert store.verify_api_key("") is None

    revoked = store.revoke_api_key("hubspot")
    assert revoked.revoked and revoked.revoked_at is not None
    assert store.verify_api_key(key).revoked is True
    assert store.revoke_api_key("hubspot").revoked_at == revoked.revoked_at
    assert store.verify_api_key(admin_key).revoked is False
    with pytest.raises(KeyError):
        store.revoke_api_key("ghost")


def test_only_the_hash_of_an_api_key_is_stored(store):
    key = store.create_api_key("marketo")
    with store.engine.connect() as conn:
        row = conn.exec_driver_sql("select * from api_keys").mappings().one()
    assert key not in {str(v) for v in row.values()}
    assert row["prefix"] == key[:10]
    listed = store.list_api_keys()
    assert [(k.name, k.prefix, k.role, k.revoked) for k in listed] == [
        ("marketo", key[:10], "client", False)
    ]
    assert key not in repr(listed)


def test_api_key_validation(store):
    store.create_api_key("crm")
    with pytest.raises(ValueError, match="already exists"):
        store.create_api_key("crm")
    with pytest.raises(ValueError, match="role"):
        store.create_api_key("x", role="rep")


# -------------------------------------------------------------------- injection


INJECTIONS = [
    "Robert'); DROP TABLE leads;--",
    "<script>alert('x')</script>",
    "' OR '1'='1",
    '%_\\ "quoted" ; -- ',
    "名前 🚀 naïve",
]


@pytest.mark.parametrize("text", INJECTIONS)
def test_injection_looking_text_is_stored_verbatim(store, text):
    store.upsert_leads([_lead("L1", company=text, job_title=text, extra={"note": text})])
    lead = store.get_lead("L1")
    assert lead["company"] == text.strip() and lead["extra"] == {"note": text}
    assert [hit["lead_id"] for hit in store.search_leads(text, limit=5)] == ["L1"]
    result = store.add_correction("L1", "persona", text, reviewer=text, note=text, reason="x")
    history = store.corrections_for("L1")
    assert history[0]["note"] == text and history[0]["reviewer"] == text.strip()
    assert result.new_label == text.strip()
    user = store.create_user(text, "rep", text)
    assert store.authenticate(text, text) == user
    store.create_api_key(text)
    assert [k.name for k in store.list_api_keys()] == [text.strip()]
    assert set(sa.inspect(store.engine).get_table_names()) >= TABLES


def test_records_the_schema_validated_are_stored_like_hand_checked_ones(store):
    """The API path hands the store ``Checked`` model dumps: the store takes their values as
    pydantic left them and stores what the hand-checked bulk path stores."""
    from data.schema import Checked, Event, LeadProfile

    lead = {
        "job_title": " CTO ",
        "company": "",
        "company_size": 40,
        "extra": {"tier": "a", "score": float("nan")},
    }
    event = {"timestamp": "2024-02-01T00:00:00", "type": "page_view", "page_category": "pricing"}
    created = "2024-01-02T03:04:05+02:00"
    store.upsert_leads([dict(lead, lead_id="H", created_at=datetime(2024, 1, 2, 1, 4, 5))])
    store.add_events([dict(event, lead_id="H", timestamp=datetime(2024, 2, 1))])
    profile = LeadProfile.model_validate(dict(lead, lead_id="M", created_at=created))
    store.upsert_leads([Checked(profile.model_dump(exclude_unset=True))])
    checked_event = Checked(Event.model_validate(dict(event, lead_id="M")).model_dump())
    store.add_events([checked_event])
    hand, model = (
        {
            k: v
            for k, v in store.get_lead(i).items()
            if k not in ("lead_id", "first_seen", "updated_at")
        }
        for i in ("H", "M")
    )
    assert model == hand
    assert model["job_title"] == "CTO" and model["company"] is None
    assert model["extra"] == {"tier": "a", "score": None}
    hand_events, model_events = (
        [dict(e, lead_id=None) for e in store.events_for(i)] for i in ("H", "M")
    )
    assert model_events == hand_events and len(model_events) == 1
    store.add_events([Checked(checked_event)])
    assert len(store.events_for("M")) == 1  # the same derived event id: stored once


def test_the_schema_refuses_text_no_store_accepts():
    from pydantic import ValidationError

    from data.schema import Event, LeadProfile

    for bad in ({"job_title": "a\x00b"}, {"extra": {"k\x00": 1}}, {"extra": {"k": "v\x00"}}):
        with pytest.raises(ValidationError, match="NUL"):
            LeadProfile(lead_id="L1", **bad)
    with pytest.raises(ValidationError, match="channel"):
        Event(lead_id="L1", timestamp=datetime(2024, 1, 1), type="page_view", channel="\x00")
