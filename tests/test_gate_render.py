"""The gate's decision as the Retrain button's result and the Models page render it."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader

from review_ui.jobs import summarize_result
from training.promote import GateDecision

TEMPLATES = Path(__file__).resolve().parents[1] / "review_ui" / "templates"

DECISION = GateDecision(
    promote=True,
    reasons=["rep-verified, persona: macro-F1 0.733 is below the champion's 1.000 (too few)"],
    challenger_version="3",
    champion_version="2",
    sets=[
        {
            "name": "rep-verified",
            "sizes": {"persona": 15},
            "note": "fewer than 100 labelled leads for persona: reported only",
            "heads": [
                {
                    "head": "persona",
                    "n": 15,
                    "challenger": 0.733,
                    "champion": 1.0,
                    "difference": -0.267,
                    "difference_interval": [-0.6, 0.05],
                    "challenger_interval": [0.4, 1.0],
                    "champion_interval": [1.0, 1.0],
                    "verdict": "inside the noise",
                    "confidence": 0.95,
                }
            ],
        }
    ],
)


class _Result:
    version = "3"
    base_version = "2"
    run_id = "abc"
    gate = DECISION
    gate_set = "rep-verified"
    notes = ()


def test_the_retrain_result_carries_the_whole_decision_and_renders_it():
    summary = summarize_result(_Result())
    assert summary["gate"]["sets"][0]["heads"][0]["difference_interval"] == [-0.6, 0.05]
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True)
    macro = env.get_template("review/_gate.html").module.gate_decision
    html = " ".join(str(macro(summary["gate"])).split())
    assert "rep-verified · persona 15 leads" in html
    assert "0.733" in html and "[-0.600, +0.050]" in html and "inside the noise" in html
    assert "reported only" in html and "Promoted" in html
