"""How long the model of corrections takes to refit, at 5,000 reviewed leads.

``python -m bench.correction_refit [--corrections 5000] [--leads 20000]`` writes
``bench/results/correction_refit.json``.

Simulated leads (features as ``leadready train`` builds them); the served answer
is marketing's label, the rep's label the hidden truth. The correction model
(:class:`training.correction_model.CorrectionModel`, default settings, one
thread) is fitted on ``corrections`` leads and predicts every other lead, with
the out-of-fold disagreement inputs the queue's refit gives it
(:func:`training.learned_queue.out_of_fold_disagreement` over every lead, timed
apart: it depends only on the snapshots and marketing's labels). CPU
time (user + sys of this process) is reported next to wall time: on a shared
machine the wall time is inflated by other work.
"""

from __future__ import annotations

import argparse
import os
import time

import pandas as pd

from bench.common import write_result


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def main(argv: list[str] | None = None) -> None:
    """Measure and write the result."""
    from data.simulate import SimulationConfig, simulate
    from model.features import build_features
    from training.correction_model import CorrectionModel
    from training.learned_queue import out_of_fold_disagreement

    parser = argparse.ArgumentParser(prog="python -m bench.correction_refit")
    parser.add_argument("--corrections", type=int, default=5000)
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    sim = simulate(SimulationConfig(n_leads=args.leads, seed=args.seed))
    leads = sim.leads.assign(lead_id=sim.leads["lead_id"].astype(str)).set_index("lead_id")
    X = build_features(sim.leads.drop(columns=["stage", "persona"]), sim.events)
    X.index = X.index.astype(str)
    truth = sim.truth.assign(lead_id=sim.truth["lead_id"].astype(str)).set_index("lead_id")
    queue = pd.DataFrame(
        {
            "stage": leads["stage"],
            "persona": leads["persona"],
            "marketing_stage": leads["stage"],
            "marketing_persona": leads["persona"],
        }
    )
    cpu, wall = _cpu(), time.perf_counter()
    queue = queue.join(out_of_fold_disagreement(X.reindex(queue.index), queue))
    oof_cpu, oof_wall = _cpu() - cpu, time.perf_counter() - wall
    ids = queue.index[: args.corrections]
    rest = queue.index[args.corrections :]
    reps = truth.loc[ids, ["true_stage", "true_persona"]].set_axis(["stage", "persona"], axis=1)
    cpu, wall = _cpu(), time.perf_counter()
    model = CorrectionModel().fit(X.loc[ids], queue.loc[ids], reps)
    fit_cpu, fit_wall = _cpu() - cpu, time.perf_counter() - wall
    cpu, wall = _cpu(), time.perf_counter()
    pred = model.predict(X.loc[rest], queue.loc[rest])
    predict_cpu, predict_wall = _cpu() - cpu, time.perf_counter() - wall
    assert pred is not None
    result = {
        "corrections": len(ids),
        "predicted_leads": len(rest),
        "fit_cpu_s": fit_cpu,
        "fit_wall_s": fit_wall,
        "predict_cpu_s": predict_cpu,
        "predict_wall_s": predict_wall,
        "out_of_fold_leads": len(queue),
        "out_of_fold_cpu_s": oof_cpu,
        "out_of_fold_wall_s": oof_wall,
        "load_average": os.getloadavg()[0],
        "target_s": 10.0,
    }
    print(result)
    write_result("correction_refit", result)


if __name__ == "__main__":
    main()
