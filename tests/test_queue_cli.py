"""``leadready queue``: the review queue's order and reasons on a command line."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

from data.review_queue import review_queue
from data.store import Store
from leadready.cli import main
from leadready.commands import review

STAGES = ("awareness", "consideration", "decision", "purchase")
PERSONAS = ("economic_buyer", "technical_evaluator", "practitioner", "non_buyer")


def _prediction(lead_id: str, stage_probs: dict[str, float], persona: str) -> dict:
    ranked = sorted(stage_probs.items(), key=lambda kv: -kv[1])
    persona_probs = {p: (0.85 if p == persona else 0.05) for p in PERSONAS}
    return {
        "lead_id": lead_id,
        "model_name": "lead-readiness",
        "model_version": "1",
        "source": "batch",
        "stage": ranked[0][0],
        "stage_confidence": ranked[0][1],
        "stage_margin": ranked[0][1] - ranked[1][1],
        "persona": persona,
        "persona_confidence": 0.85,
        "persona_margin": 0.8,
        "probabilities": {"stage": stage_probs, "persona": persona_probs},
        "readiness": stage_probs["decision"] + stage_probs["purchase"],
        "route": "sales" if ranked[0][0] in ("decision", "purchase") else "nurture",
        "features": {"x": 1.0},
    }


@pytest.fixture
def store(tmp_path):
    """Eight scored leads: mislabels, close calls, sure ones, and one a rep reviewed."""
    with Store(f"sqlite:///{tmp_path / 'store.db'}") as s:
        s.upgrade()
        leads, predictions = [], []
        cases = [
            # marketing stage, model stage probabilities
            (
                "awareness",
                {"awareness": 0.05, "consideration": 0.15, "decision": 0.45, "purchase": 0.35},
            ),
            (
                "consideration",
                {"awareness": 0.44, "consideration": 0.46, "decision": 0.05, "purchase": 0.05},
            ),
            (
                "awareness",
                {"awareness": 0.9, "consideration": 0.06, "decision": 0.02, "purchase": 0.02},
            ),
            (
                "decision",
                {"awareness": 0.02, "consideration": 0.08, "decision": 0.55, "purchase": 0.35},
            ),
            (
                "purchase",
                {"awareness": 0.7, "consideration": 0.2, "decision": 0.05, "purchase": 0.05},
            ),
            (
                "consideration",
                {"awareness": 0.1, "consideration": 0.8, "decision": 0.05, "purchase": 0.05},
            ),
            (
                "awareness",
                {"awareness": 0.5, "consideration": 0.4, "decision": 0.05, "purchase": 0.05},
            ),
            (
                "decision",
                {"awareness": 0.05, "consideration": 0.05, "decision": 0.45, "purchase": 0.45},
            ),
        ]
        for i, (marketing, probs) in enumerate(cases, start=1):
            lead_id = f"L{i}"
            leads.append(
                {
                    "lead_id": lead_id,
                    "company": f"Company {i}",
                    "stage": marketing,
                    "persona": "practitioner",
                }
            )
            predictions.append(_prediction(lead_id, probs, "practitioner"))
        s.upsert_leads(leads)
        s.record_predictions(predictions)
        # L5 is the strongest mislabel, but a rep has labelled it: it sinks to the bottom.
        s.add_correction("L5", "stage", "awareness", reviewer="dana", kind="confirm")
        yield s


@pytest.fixture
def cli(tmp_path, monkeypatch, store):
    monkeypatch.setenv("LEADREADY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DATABASE_URL", str(store.engine.url))
    runner = CliRunner()

    def invoke(*args: str) -> str:
        result = runner.invoke(main, ["queue", *args])
        assert result.exit_code == 0, result.output
        return result.output

    return invoke


def _ids(page) -> list[str]:
    return [item.lead_id for item in page.items]


def test_csv_is_the_queue_in_its_order_with_reasons(cli, store):
    rows = list(csv.DictReader(io.StringIO(cli("--top", "8", "--format", "csv"))))
    expected = review_queue(store, limit=8)
    assert [r["lead_id"] for r in rows] == _ids(expected)
    assert [int(r["rank"]) for r in rows] == list(range(1, 9))
    assert list(rows[0]) == list(review.QUEUE_CSV_COLUMNS)
    first = rows[0]
    assert first["lead_id"] == "L1"
    assert "possible_mislabel" in first["reason_codes"].split(";")
    assert "Marketing says awareness" in first["reasons"]
    # The reviewed lead comes last and says so.
    assert rows[-1]["lead_id"] == "L5" and rows[-1]["reviewed"] == "True"
    priorities = [float(r["priority"]) for r in rows[:-1]]
    assert priorities == sorted(priorities, reverse=True)


def test_top_k_cuts_the_queue(cli, store):
    rows = list(csv.DictReader(io.StringIO(cli("--top", "3", "--format", "csv"))))
    assert [r["lead_id"] for r in rows] == _ids(review_queue(store, limit=3))


def test_json_carries_the_total_and_every_reason(cli, store):
    payload = json.loads(cli("--top", "2", "--format", "json"))
    assert payload["total"] == 8
    assert [i["rank"] for i in payload["items"]] == [1, 2]
    assert [i["lead_id"] for i in payload["items"]] == _ids(review_queue(store, limit=2))
    reasons = payload["items"][0]["reasons"]
    assert {"code", "text"} <= set(reasons[0])


def test_the_table_shows_leads_and_why(cli):
    out = cli("--top", "2")
    assert "L1" in out and "top 2 of 8" in out
    assert "Marketing says" in out


def test_more_than_one_page_of_the_queue_is_read_in_order(cli, store, monkeypatch):
    monkeypatch.setattr(review, "_PAGE", 3)
    rows = list(csv.DictReader(io.StringIO(cli("--top", "7", "--format", "csv"))))
    assert [r["lead_id"] for r in rows] == _ids(review_queue(store, limit=7))


def test_filters_reach_the_queue(cli, store):
    rows = list(csv.DictReader(io.StringIO(cli("--top", "10", "--format", "csv", "--unreviewed"))))
    assert "L5" not in {r["lead_id"] for r in rows} and len(rows) == 7
    rows = list(csv.DictReader(io.StringIO(cli("--format", "csv", "--stage", "awareness"))))
    assert {r["stage"] for r in rows} == {"awareness"}
    assert {r["lead_id"] for r in rows} == set(_ids(review_queue(store, stage="awareness")))
    rows = list(csv.DictReader(io.StringIO(cli("--format", "csv", "--search", "company 2"))))
    assert [r["lead_id"] for r in rows] == ["L2"]


def test_an_empty_queue_says_so(cli):
    assert "the queue is empty" in cli("--stage", "renewal")


def test_refit_at_cold_start_says_so_and_keeps_the_order(tmp_path, monkeypatch, store):
    monkeypatch.setenv("LEADREADY_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DATABASE_URL", str(store.engine.url))
    before = _ids(review_queue(store, limit=8))
    result = CliRunner().invoke(main, ["queue", "--refit", "--top", "8", "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert "cold start: 1 reviewed leads are too few" in result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["lead_id"] for r in rows] == before
