"""The review loop, measured small: truthful corrections from the queue raise macro-F1 vs the truth.

The fast test plays ``bench.review_loop`` on a few hundred leads (in-process
fits, the real store, queue, corrections and retraining set). The slow test runs
the real path once end to end: ``train`` → batch predictions recorded in the
store → the queue's top K reviewed by reps who know the truth →
``training.retrain.retrain`` (MLflow run, registry, gate) → the registered
challenger is better against the truth than the champion it was compared with.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import pytest

from bench.review_loop import LoopConfig, apply_reviews, pick_leads, run_seed, truth_metrics
from data.store import Store

_F1 = ("stage_macro_f1", "persona_macro_f1")


def _mean_f1(metrics: dict[str, float]) -> float:
    return sum(metrics[k] for k in _F1) / len(_F1)


@pytest.mark.slow
def test_queue_corrections_raise_macro_f1_against_the_truth(tmp_path):
    config = LoopConfig(
        n_leads=1200,
        seeds=(1,),
        ks=(250,),
        strategies=("queue",),
        random_draws=1,
        rep_error=0.0,
        n_estimators=40,
        num_threads=1,
    )
    result = run_seed(config, 1, tmp_path)
    [run] = result["runs"]
    assert run["reviewed"] == 250
    assert run["corrections"] == 500  # stage and persona of every reviewed lead
    # The queue finds marketing's mistakes far above their 20% base rate ...
    assert run["diagnostics"]["stage_marketing_wrong_share"] > 0.3
    # ... and retraining on the corrections brings the model closer to the truth.
    assert _mean_f1(run["after"]) > _mean_f1(run["before"])
    assert run["n_training"] + run["n_gate"] == 250


def test_picked_leads_and_reviews_follow_the_queue_and_the_truth(tmp_path):
    """Reps with a 0% error rate write the truth; the queue strategy takes the queue's top."""
    import pandas as pd

    from data.review_queue import review_queue

    with Store(f"sqlite:///{tmp_path / 's.db'}") as store:
        store.upgrade()
        store.upsert_leads([{"lead_id": f"L{i}", "stage": "awareness"} for i in range(6)])
        store.record_predictions(
            [
                {
                    "lead_id": f"L{i}",
                    "model_name": "m",
                    "model_version": "1",
                    "source": "batch",
                    "stage": "decision",
                    "stage_confidence": 0.4 + 0.1 * i,
                    "stage_margin": 0.05 * i,
                    "probabilities": {"stage": {"awareness": 0.1, "decision": 0.4 + 0.1 * i}},
                }
                for i in range(6)
            ]
        )
        top = pick_leads(store, "queue", 4, seed=1)
        assert top == [item.lead_id for item in review_queue(store, limit=4).items]
        randomly = pick_leads(store, "random", 4, seed=1)
        assert len(set(randomly)) == 4 and pick_leads(store, "random", 4, seed=1) == randomly
        # Half from the top of the retraining order, the rest other leads at random.
        mixed = pick_leads(store, "queue_mixed", 4, seed=1)
        retraining = pick_leads(store, "queue_retraining", 2, seed=1)
        assert mixed[:2] == retraining and len(set(mixed)) == 4
        assert not set(mixed[2:]) & set(retraining)
        truth = pd.DataFrame(
            {"true_stage": ["purchase"] * 6, "true_persona": ["non_buyer"] * 6},
            index=[f"L{i}" for i in range(6)],
        )
        labels = {"stage": ("awareness", "decision", "purchase"), "persona": ("non_buyer", "x")}
        counts = apply_reviews(store, top, truth, labels, rep_error=0.0, seed=1)
        assert counts == {"corrections": 8, "rep_errors": 0, "confirms": 0}
        current = store.current_labels()
        assert set(current) == set(top)
        assert all(v == {"stage": "purchase", "persona": "non_buyer"} for v in current.values())
        # Reviewed leads leave the unreviewed queue.
        assert not set(top) & {i.lead_id for i in review_queue(store, reviewed=False).items}


def _fake_run(seed: int, strategy: str, k: int, stage: float, draw: int = 0) -> dict:
    before = {"stage_macro_f1": 0.6, "persona_macro_f1": 0.9}
    after = {"stage_macro_f1": 0.6 + stage, "persona_macro_f1": 0.9}
    return {
        "seed": seed,
        "strategy": strategy,
        "draw": draw,
        "k": k,
        "before": before,
        "after": after,
        "delta": {key: after[key] - before[key] for key in after},
        "gate_promote": True,
        "diagnostics": {"stage_marketing_wrong_share": 0.5 if strategy == "queue" else 0.2},
    }


def test_the_table_averages_random_draws_and_counts_seeds_the_queue_wins():
    from bench.review_loop import _beats_random, _table, markdown

    config = LoopConfig(seeds=(1, 2), ks=(100,), strategies=("queue", "random"))
    results = [
        {
            "seed": 1,
            "before": {"stage_macro_f1": 0.6, "persona_macro_f1": 0.9},
            "noise_floor": {"stage_macro_f1": 0.01, "persona_macro_f1": -0.004},
            "runs": [
                _fake_run(1, "queue", 100, 0.03),
                _fake_run(1, "random", 100, 0.01, 0),
                _fake_run(1, "random", 100, 0.03, 1),  # random mean 0.02: the queue wins
            ],
        },
        {
            "seed": 2,
            "before": {"stage_macro_f1": 0.6, "persona_macro_f1": 0.9},
            "noise_floor": {"stage_macro_f1": -0.02, "persona_macro_f1": 0.0},
            "runs": [
                _fake_run(2, "queue", 100, 0.01),
                _fake_run(2, "random", 100, 0.02, 0),
                _fake_run(2, "random", 100, 0.02, 1),  # the queue loses here
            ],
        },
    ]
    table = {row["strategy"]: row for row in _table(results, config)}
    assert table["random"]["draws"] == 2
    assert table["random"]["stage_delta"] == pytest.approx(0.02)
    assert table["queue"]["stage_delta_by_seed"] == pytest.approx([0.03, 0.01])
    wins = _beats_random(results, config)["queue_k100_stage"]
    assert (wins["wins"], wins["seeds"]) == (1, 2)
    assert wins["margins"] == pytest.approx([0.01, -0.01])
    text = markdown(
        {
            "config": asdict(config),
            "table": list(table.values()),
            "beats_random": _beats_random(results, config),
            "noise_floor": {"stage": 0.02, "persona": 0.004},
            "seconds": 60.0,
        }
    )
    assert "up to 0.020 (stage)" in text
    assert "review queue, K=100, stage: 1 of 2 (margins +0.010 -0.010)" in text
    assert "| 100 | random | 0.600 → 0.620 | +0.020 |" in text


@pytest.mark.slow
def test_the_real_retrain_path_closes_the_loop(tmp_path, simulated_champion):
    from data.simulate import Simulation, SimulationConfig, simulate
    from model.features import build_features
    from model.registry import load_model
    from training.retrain import RetrainConfig, retrain

    sim = simulate(SimulationConfig(n_leads=2000, seed=4))
    test_ids = set(sim.leads["lead_id"].iloc[::4])
    in_test = sim.leads["lead_id"].isin(test_ids)
    pool = sim.leads[~in_test].reset_index(drop=True)
    pool_events = sim.events[~sim.events["lead_id"].isin(test_ids)]
    trained = simulated_champion(
        Simulation(pool, pool_events, sim.truth, sim.config), tmp_path, n_estimators=40
    )
    champion, first, base, paths = trained.model, trained.result, trained.base, trained.paths
    tracking = trained.config.tracking_uri
    test_X = build_features(
        sim.leads[in_test].drop(columns=["stage", "persona"]),
        sim.events[sim.events["lead_id"].isin(test_ids)],
        as_of=base.as_of,
    )
    truth = sim.truth.set_index("lead_id")

    with Store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        store.upgrade()
        trained.record_scores(store, pool)
        picked = pick_leads(store, "queue", 400, seed=4)
        apply_reviews(store, picked, truth, dict(champion.labels), rep_error=0.0, seed=4)
        result = retrain(
            RetrainConfig(tracking_uri=tracking, artifact_root=tmp_path / "artifacts"), store
        )

    assert result.corrections.n_used == 400 and result.gate_set == "rep-verified"
    challenger, _ = load_model(result.model_uri)
    before = truth_metrics(champion, test_X, truth)
    after = truth_metrics(challenger, test_X, truth)
    assert _mean_f1(after) > _mean_f1(before)
    # The gate compared the two on reps' labels and recorded why.
    assert result.gate is not None and result.gate.champion_version == first.version
    assert result.gate.reasons
    assert Path(result.base_config.leads_path) == paths["leads"]


def test_queue_draws_are_averaged_like_random_draws():
    """Every arm is the mean of its draws (queue draws differ in the reps' errors only)."""
    from bench.review_loop import _beats_random, _table

    config = LoopConfig(seeds=(1,), ks=(100,), strategies=("queue", "random"), random_draws=2)
    results = [
        {
            "seed": 1,
            "before": {"stage_macro_f1": 0.6, "persona_macro_f1": 0.9},
            "noise_floor": {"stage_macro_f1": 0.01, "persona_macro_f1": 0.0},
            "runs": [
                _fake_run(1, "queue", 100, 0.00, 0),
                _fake_run(1, "queue", 100, 0.04, 1),
                _fake_run(1, "random", 100, 0.01, 0),
                _fake_run(1, "random", 100, 0.02, 1),
            ],
        }
    ]
    table = {row["strategy"]: row for row in _table(results, config)}
    assert table["queue"]["draws"] == 2
    assert table["queue"]["stage_delta"] == pytest.approx(0.02)
    wins = _beats_random(results, config)["queue_k100_stage"]
    assert wins["margins"] == pytest.approx([0.005])


def test_rounds_partial_records_resume_and_summarize_what_finished(tmp_path):
    """Per-arm records appended by the rounds benchmark rebuild seeds; lifts pair seeds."""
    import json

    from bench.review_rounds import RoundsConfig, load_partial, markdown, summarize

    def record(seed, arm, wrong_share, stage_gain):
        return {
            "seed": seed,
            "n_crm_leads": 1000,
            "served_wrong_base_rate": 0.25,
            "n_served_wrong": 250,
            "before": {"stage_macro_f1": 0.5, "persona_macro_f1": 0.5},
            "noise_floor": {"stage_macro_f1": 0.01, "persona_macro_f1": -0.02},
            "arm_result": {
                "arm": arm,
                "rounds": [
                    {
                        "k": 100,
                        "served_wrong": int(wrong_share * 100),
                        "served_wrong_share": wrong_share,
                        "round_served_wrong_share": wrong_share,
                        "marketing_errors_fixed": 5,
                        "marketing_errors_fixed_share": 0.05,
                    }
                ],
                "retrained": {
                    "100": {
                        "trust": {"stage_macro_f1": stage_gain, "persona_macro_f1": 0.0},
                    }
                },
                "refit_seconds": [1.0],
                "n_marketing_errors": 100,
            },
        }

    path = tmp_path / "r.partial.jsonl"
    lines = [
        record(1, "adaptive", 0.75, 0.04),
        record(1, "random", 0.25, 0.02),
        record(2, "adaptive", 0.60, 0.01),
        record(2, "random", 0.20, 0.03),
        record(3, "adaptive", 0.90, 0.05),  # no random arm yet on seed 3
        record(1, "random", 0.25, 0.02),  # a rerun's duplicate: kept once
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    seeds = load_partial(path)
    assert [s["seed"] for s in seeds] == [1, 2, 3]
    assert sorted(a["arm"] for a in seeds[0]["arms"]) == ["adaptive", "random"]
    config = RoundsConfig(seeds=(1, 2, 3), retrain_at=(100,), max_reviews=100)
    result = summarize(seeds, config)
    adaptive = next(r for r in result["table"] if r["arm"] == "adaptive")
    # Mean over the three seeds that ran it; the lift only over seeds with random too.
    assert adaptive["served_wrong_share"] == pytest.approx((0.75 + 0.60 + 0.90) / 3)
    assert adaptive["lift"] == pytest.approx(((0.75 + 0.60) / 2) / ((0.25 + 0.20) / 2))
    f1 = next(e for e in result["f1"] if e["arm"] == "adaptive")
    assert f1["stage_wins_vs_random"] == "1/2"
    assert f1["stage_x_random"] == pytest.approx(((0.04 + 0.01) / 2) / ((0.02 + 0.03) / 2))
    assert result["complete"] == {
        1: ["adaptive", "random"],
        2: ["adaptive", "random"],
        3: ["adaptive"],
    }
    text = markdown({**result, "config": __import__("dataclasses").asdict(config)})
    assert "seed 3: adaptive" in text


def test_rounds_retrain_every_design_through_the_shared_label_trust(tmp_path):
    from bench.review_rounds import RoundsConfig
    from bench.review_rounds import run_seed as rounds_seed

    config = RoundsConfig(
        n_leads=1500,
        seeds=(1,),
        arms=("adaptive", "random"),
        round_size=100,
        max_reviews=200,
        retrain_at=(200,),
        n_estimators=30,
        designs=("soft50", "trust", "plain"),
    )
    result = rounds_seed(config, 1, tmp_path, verbose=False)
    by_arm = {a["arm"]: a for a in result["arms"]}
    assert set(by_arm) == {"adaptive", "random"}
    for record in by_arm.values():
        designs = record["retrained"]["200"]
        assert set(designs) == {"soft50", "trust", "plain"}
        # Soft labels are counted, and checked against the truth only in the bench.
        soft = designs["soft50"]["changed"]
        assert 0 <= soft["soft_rows_right"] <= soft["soft_rows"]
        assert designs["plain"]["changed"] == {}
        assert "marketing_downweighted" in designs["trust"]["changed"]
        assert all(math.isfinite(d["stage_macro_f1"]) for d in designs.values())
    # The adaptive arm refits its queue before every round.
    assert len(by_arm["adaptive"]["refit_seconds"]) == 2
