"""The gate on real training runs: like with like, and never another task over the champion."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest
from rich.console import Console

from training.dataset import holdout_mask, load_training_table
from training.promote import GateDecision, gate
from training.train import train

# Trains and registers models, runs the CLI end to end: the full suite, not the inner loop.
pytestmark = pytest.mark.slow

MODEL = "lead-readiness"
SHOPPERS = "/work/shared/datasets/online_shoppers/online_shoppers_intention.csv"


@pytest.fixture(scope="module")
def crm(crm_export):
    export = crm_export("gate-task", 600)
    config = export.config(slice_cols=(), n_estimators=30)
    first = train(config)
    assert first.gate.promote and first.version == "1"
    return export.root, config


def _champion(config):
    from model.registry import configure, load_model

    configure(config.tracking_uri, config.artifact_root)
    return load_model(f"models:/{MODEL}@champion")


def test_a_challenger_with_fewer_columns_meets_the_champion_scored_on_its_own(crm):
    from training.evaluate import evaluate_heads

    _, config = crm
    fewer = replace(config, exclude=(*config.exclude, "Web Visits (30d)", "Pricing Page Views"))
    result = train(fewer)
    champion, version = _champion(config)
    assert version == "1"
    dropped = {"Web Visits (30d)", "Pricing Page Views"}
    assert dropped <= set(champion.input_columns)

    # The champion's score computed directly: its own columns, same held-out leads.
    full = load_training_table(
        config.leads_path,
        events_path=config.events_path,
        id_col=config.id_col,
        stage_col=config.stage_col,
        persona_col=config.persona_col,
        exclude=config.exclude,
        slice_cols=(),
    )
    holdout = full.subset(holdout_mask(full.ids, config.holdout_share))
    direct = evaluate_heads(champion, holdout.X, holdout.y_stage, holdout.y_persona)
    gate_set = result.gate.sets[0]
    assert gate_set["name"] == "training holdout" and gate_set["champion_scored"]
    for comp in gate_set["heads"]:
        assert comp["champion"] == pytest.approx(direct[comp["head"]]["macro_f1"], abs=1e-12)
        assert comp["n"] == direct[comp["head"]]["n"] == gate_set["sizes"][comp["head"]]
        lo, hi = comp["difference_interval"]
        assert lo <= comp["difference"] <= hi
    assert result.gate.input_changes["removed"] == sorted(dropped)


def test_another_task_never_moves_the_champion_and_says_how_to_proceed(crm):
    root, config = crm
    shoppers = pd.read_csv(SHOPPERS).head(3000)
    shoppers.to_csv(root / "shoppers.csv", index=False)
    result = train(
        replace(
            config,
            leads_path=root / "shoppers.csv",
            events_path=None,
            id_col="row_id",
            stage_col="Revenue",
            persona_col="VisitorType",
            exclude=("PageValues",),
        )
    )
    decision = result.gate
    assert not decision.promote
    assert any("stage labels differ" in d for d in decision.task_differences)
    text = " ".join(decision.reasons)
    assert "--model-name" in text and "LEADREADY_MODEL_NAME" in text and "--force" in text
    _, version = _champion(config)
    assert version == "1"
    from model.registry import version_task

    task = version_task(MODEL, result.version)
    assert task is not None and set(task.labels["stage"]) == {"False", "True"}
    console = Console(record=True, width=200)
    from leadready.commands.gate_text import print_decision

    print_decision(console, decision.to_dict())
    out = console.export_text()
    assert "refused: version 1 stays champion" in out and "--model-name" in out


def test_too_few_rep_verified_leads_report_but_cannot_refuse():
    champ = {
        "persona": {"n": 15, "macro_f1": 1.0, "per_class": {"a": {"recall": 1.0, "support": 8}}}
    }
    chall = {
        "persona": {"n": 15, "macro_f1": 0.733, "per_class": {"a": {"recall": 0.8, "support": 8}}}
    }
    small = gate(chall, champ, can_refuse={"persona": False}, set_name="rep-verified")
    assert small.promote
    assert all("too few leads to refuse on" in r for r in small.reasons)
    assert not gate(chall, champ, can_refuse={"persona": True}).promote


def test_decision_round_trips_and_reads_the_same_everywhere():
    decision = GateDecision(
        promote=False,
        reasons=["stage: macro-F1 0.50 below"],
        challenger_version="3",
        champion_version="2",
        sets=[
            {
                "name": "rep-verified",
                "sizes": {"stage": 15},
                "heads": [
                    {
                        "head": "stage",
                        "n": 15,
                        "challenger": 0.5,
                        "champion": 0.6,
                        "difference": -0.1,
                        "difference_interval": [-0.3, 0.1],
                        "challenger_interval": [0.3, 0.7],
                        "champion_interval": [0.4, 0.8],
                        "verdict": "inside the noise",
                        "confidence": 0.95,
                    }
                ],
            }
        ],
    )
    again = GateDecision.from_dict(decision.to_dict())
    assert again == decision
    lines = again.set_lines()
    assert lines[0] == "set: rep-verified (stage 15 leads)"
    assert "difference -0.100 [-0.300, +0.100]" in lines[1] and "inside the noise" in lines[1]
    assert "rep-verified: stage 0.500 vs 0.600" in again.summary()
