"""The review loop in rounds: does a queue that learns from corrections find wrong answers?

``python -m bench.review_loop --rounds`` (or ``python -m bench.review_rounds``)
writes ``bench/results/review_rounds.json`` and ``.md``.

Per seed, the data, base model and filled store are prepared exactly as
:mod:`bench.review_loop` does (simulated leads, 20% noisy marketing labels, half
of the noise systematic; a quarter kept as the truth-scored test set). Then,
for each arm, on a copy of the store, reps review ``round_size`` leads per
round up to ``max_reviews``, the queue updated between rounds:

adaptive
    :func:`training.learned_queue.refit_queue` before every round (the model of
    corrections fitted on everything reviewed so far; today's ranking until it
    has enough), then the top of ``leadready queue``;
today
    the stored queue order as shipped (``data.review_queue.STORED_CONFIG``);
uncertainty
    stage and persona margins only (close calls first);
random
    leads drawn at random.

Simulated reps label stage and persona with the hidden truth; three reps err on
3% of labels, one on 15% (each lead goes to the next rep in turn). Reported per
K (after each round): the share of reviewed leads whose served answer (stage or
persona of the latest prediction) was wrong against the truth, its lift over
random and the oracle's ceiling (an oracle picks only wrong answers while there
are any), and the share of marketing's label errors (stage and persona fields of
the CRM leads) that reps have fixed. At the retraining Ks the challenger is
retrained on marketing's labels plus the corrections (``training.retrain``'s
``build_retrain_set``, as ``leadready retrain``) and stage/persona macro-F1
against the truth on the test set is reported per seed, with the refit noise
floor (the base model refitted with another LightGBM seed, no corrections).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.common import RESULTS, write_result

__all__ = ["ARMS", "RoundsConfig", "main", "markdown", "run", "run_seed"]

ARMS: tuple[str, ...] = ("adaptive", "today", "uncertainty", "random")
_HEADS: tuple[str, ...] = ("stage", "persona")
#: Reviewers in turn and their error rates: three careful reps and one sloppy one.
REPS: tuple[tuple[str, float], ...] = (("ana", 0.03), ("ben", 0.03), ("chloe", 0.03), ("dev", 0.15))


@dataclass(frozen=True)
class RoundsConfig:
    """One measurement of the loop in rounds."""

    n_leads: int = 20_000
    seeds: tuple[int, ...] = (1, 2, 3, 4, 5)
    arms: tuple[str, ...] = ARMS
    round_size: int = 100
    max_reviews: int = 1000
    retrain_at: tuple[int, ...] = (500, 1000)
    label_noise: float = 0.2
    correction_weight: float = 2.0
    holdout_share: float = 0.2
    n_estimators: int = 200
    num_threads: int = 1

    def __post_init__(self) -> None:
        unknown = set(self.arms) - set(ARMS)
        if unknown:
            raise ValueError(f"unknown arms {sorted(unknown)}; use {', '.join(ARMS)}")
        if self.round_size < 1 or self.max_reviews < self.round_size:
            raise ValueError("round_size must be at least 1 and at most max_reviews")

    def loop_config(self) -> Any:
        from bench.review_loop import LoopConfig

        return LoopConfig(
            n_leads=self.n_leads,
            seeds=self.seeds,
            ks=self.retrain_at,
            strategies=("random",),
            label_noise=self.label_noise,
            correction_weight=self.correction_weight,
            holdout_share=self.holdout_share,
            n_estimators=self.n_estimators,
            num_threads=self.num_threads,
        )


def _pick(store: Any, arm: str, k: int, rng: np.random.Generator) -> list[str]:
    from data.review_queue import QueueConfig, review_queue

    if arm == "random":
        reviewed = set(_reviewed(store))
        ids = sorted(i for i in store.latest_predictions(with_features=False) if i not in reviewed)
        return [str(i) for i in rng.choice(ids, size=min(k, len(ids)), replace=False)]
    config = None
    if arm == "uncertainty":
        config = QueueConfig(w_sales=0.0, w_changed=0.0, w_mislabel=0.0, w_persona_mislabel=0.0)
    page = review_queue(store, limit=k, reviewed=False, config=config)
    return [item.lead_id for item in page.items]


def _reviewed(store: Any) -> list[str]:
    from data.review_queue import queue_frame

    frame = queue_frame(store)
    return list(frame.index[frame["reviewed"].astype(bool)])


def _review(
    store: Any,
    lead_ids: list[str],
    truth: pd.DataFrame,
    labels: dict[str, tuple[str, ...]],
    rng: np.random.Generator,
    start: int,
) -> None:
    """Reps label both heads of each lead: the truth, wrong at their error rate."""
    latest = store.latest_predictions(lead_ids, with_features=False)
    for n, lead_id in enumerate(lead_ids):
        reviewer, error = REPS[(start + n) % len(REPS)]
        predicted = latest.get(lead_id, {})
        for head in _HEADS:
            label = str(truth.at[lead_id, f"true_{head}"])
            if rng.random() < error:
                label = str(rng.choice([c for c in labels[head] if c != label]))
            kind = "confirm" if predicted.get(head) == label else "reclassify"
            store.add_correction(
                lead_id,
                head,
                label,
                reviewer=reviewer,
                kind=kind,
                reason="other" if kind == "reclassify" else None,
                source="ui",
            )


def _retrain(prepared: Any, store: Any, config: RoundsConfig) -> dict[str, float]:
    from bench.review_loop import truth_metrics
    from training.dataset import holdout_mask
    from training.retrain import build_retrain_set, current_corrections
    from training.train import fit_lead_model

    retrain_set = build_retrain_set(
        prepared.base,
        current_corrections(store),
        correction_weight=config.correction_weight,
        holdout_share=config.holdout_share,
    )
    training = retrain_set.training
    fit_rows = ~holdout_mask(training.ids, config.holdout_share)
    challenger = fit_lead_model(
        training.subset(fit_rows),
        prepared.train_config,
        sample_weight=retrain_set.sample_weight[fit_rows],
        trusted=retrain_set.corrected[fit_rows],
    )
    after = truth_metrics(challenger, prepared.test_X, prepared.truth)
    return {key: after[key] - prepared.before[key] for key in after}


def _arm(
    config: RoundsConfig, prepared: Any, arm: str, workdir: Path, verbose: bool
) -> dict[str, Any]:
    from data.store import Store
    from training.learned_queue import refit_queue

    path = workdir / f"rounds-{prepared.seed}-{arm}.db"
    shutil.copyfile(prepared.store_path, path)
    truth = prepared.truth
    base = prepared.base
    marketing = {h: base.labels(h).astype(str) for h in _HEADS}
    true = {h: truth[f"true_{h}"].reindex(marketing[h].index).astype(str) for h in _HEADS}
    errors = {h: set(marketing[h].index[marketing[h] != true[h]]) for h in _HEADS}
    n_errors = sum(len(e) for e in errors.values())
    rng = np.random.default_rng([prepared.seed, ARMS.index(arm), 19])
    rounds: list[dict[str, Any]] = []
    retrained: dict[int, dict[str, float]] = {}
    wrong_total = 0
    picked_all: list[str] = []
    refit_s: list[float] = []
    with Store(f"sqlite:///{path}") as store:
        while len(picked_all) < config.max_reviews:
            if arm == "adaptive":
                result = refit_queue(store)
                refit_s.append(result.seconds)
            k = min(config.round_size, config.max_reviews - len(picked_all))
            picked = _pick(store, arm, k, rng)
            served = store.latest_predictions(picked, with_features=False)
            wrong = sum(
                any(served[i].get(h) != str(truth.at[i, f"true_{h}"]) for h in _HEADS)
                for i in picked
            )
            _review(store, picked, truth, prepared.labels, rng, len(picked_all))
            picked_all.extend(picked)
            wrong_total += wrong
            fixed = _fixed(store, picked_all, errors, true)
            rounds.append(
                {
                    "k": len(picked_all),
                    "served_wrong": wrong_total,
                    "served_wrong_share": wrong_total / len(picked_all),
                    "round_served_wrong_share": wrong / max(len(picked), 1),
                    "marketing_errors_fixed": fixed,
                    "marketing_errors_fixed_share": fixed / max(n_errors, 1),
                }
            )
            if len(picked_all) in config.retrain_at:
                retrained[len(picked_all)] = _retrain(prepared, store, config)
            if verbose:
                print(
                    f"  seed {prepared.seed} {arm:<11} K={len(picked_all):>5} served wrong "
                    f"{wrong_total / len(picked_all):.0%} (round {wrong / max(len(picked), 1):.0%})"
                    + (
                        f" stage ΔF1 {retrained[len(picked_all)]['stage_macro_f1']:+.3f}"
                        if len(picked_all) in retrained
                        else ""
                    ),
                    flush=True,
                )
    path.unlink(missing_ok=True)
    return {
        "arm": arm,
        "rounds": rounds,
        "retrained": {str(k): v for k, v in retrained.items()},
        "refit_seconds": refit_s,
        "n_marketing_errors": n_errors,
    }


def _fixed(
    store: Any, lead_ids: list[str], errors: dict[str, set[str]], true: dict[str, pd.Series]
) -> int:
    """Marketing label errors (lead, field) whose current label is now the truth."""
    fixed = 0
    for lead_id in lead_ids:
        current = store.labels_for(lead_id)
        for head in _HEADS:
            if lead_id in errors[head] and current.get(head) == true[head].get(lead_id):
                fixed += 1
    return fixed


def run_seed(config: RoundsConfig, seed: int, workdir: Path, verbose: bool) -> dict[str, Any]:
    """Every arm of one seed."""
    from bench.review_loop import _prepare

    start = time.perf_counter()
    prepared = _prepare(config.loop_config(), seed, workdir)
    ids = prepared.base.ids
    served = prepared.model.predict_frame(prepared.base.X)
    truth = prepared.truth.reindex(ids)
    wrong = np.zeros(len(ids), dtype=bool)
    for head in _HEADS:
        wrong |= served[head].astype(str).to_numpy() != truth[f"true_{head}"].astype(str).to_numpy()
    arms = [_arm(config, prepared, arm, workdir, verbose) for arm in config.arms]
    return {
        "seed": seed,
        "n_crm_leads": len(ids),
        "served_wrong_base_rate": float(wrong.mean()),
        "n_served_wrong": int(wrong.sum()),
        "before": prepared.before,
        "noise_floor": prepared.noise_floor,
        "arms": arms,
        "seconds": time.perf_counter() - start,
    }


def _mean(values: list[float]) -> float:
    return statistics.mean(values) if values else float("nan")


def summarize(results: list[dict[str, Any]], config: RoundsConfig) -> dict[str, Any]:
    """Per arm and K: means over seeds; lifts over random; the oracle's ceiling."""
    table = []
    ks = sorted({r["k"] for s in results for a in s["arms"] for r in a["rounds"]})
    for k in ks:
        oracle = _mean([min(1.0, s["n_served_wrong"] / k) for s in results])
        rand = None
        for arm in config.arms:
            per_seed = [
                next(r for r in a["rounds"] if r["k"] == k)
                for s in results
                for a in s["arms"]
                if a["arm"] == arm
            ]
            row = {
                "k": k,
                "arm": arm,
                "served_wrong_share": _mean([r["served_wrong_share"] for r in per_seed]),
                "served_wrong_by_seed": [r["served_wrong_share"] for r in per_seed],
                "marketing_errors_fixed_share": _mean(
                    [r["marketing_errors_fixed_share"] for r in per_seed]
                ),
                "oracle_share": oracle,
            }
            if arm == "random":
                rand = row["served_wrong_share"]
            table.append(row)
        base_rate = _mean([s["served_wrong_base_rate"] for s in results])
        for row in table:
            if row["k"] == k:
                ref = rand if rand is not None else base_rate
                row["lift"] = row["served_wrong_share"] / ref if ref else float("nan")
                row["oracle_lift"] = oracle / ref if ref else float("nan")
    f1 = []
    for k in config.retrain_at:
        rand_by_seed = {
            s["seed"]: a["retrained"].get(str(k))
            for s in results
            for a in s["arms"]
            if a["arm"] == "random"
        }
        for arm in config.arms:
            entry: dict[str, Any] = {"k": k, "arm": arm}
            for head in _HEADS:
                key = f"{head}_macro_f1"
                by_seed = {
                    s["seed"]: a["retrained"][str(k)][key]
                    for s in results
                    for a in s["arms"]
                    if a["arm"] == arm and str(k) in a["retrained"]
                }
                entry[f"{head}_delta"] = _mean(list(by_seed.values()))
                entry[f"{head}_delta_by_seed"] = list(by_seed.values())
                wins = [
                    by_seed[seed] > rand_by_seed[seed][key]
                    for seed in by_seed
                    if rand_by_seed.get(seed)
                ]
                entry[f"{head}_wins_vs_random"] = f"{sum(wins)}/{len(wins)}"
            f1.append(entry)
    refits = [t for s in results for a in s["arms"] for t in a["refit_seconds"]]
    return {
        "table": table,
        "f1": f1,
        "served_wrong_base_rate": _mean([s["served_wrong_base_rate"] for s in results]),
        "noise_floor": {
            head: max(abs(s["noise_floor"][f"{head}_macro_f1"]) for s in results) for head in _HEADS
        },
        "refit_seconds_max": max(refits) if refits else None,
    }


def run(config: RoundsConfig, *, verbose: bool = True, jobs: int = 1) -> dict[str, Any]:
    """Every seed and arm; the result written to ``bench/results/review_rounds.json``."""
    started = time.perf_counter()
    cpu = time.process_time()
    with tempfile.TemporaryDirectory(prefix="review-rounds-") as tmp:
        root = Path(tmp)
        if jobs > 1 and len(config.seeds) > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=min(jobs, len(config.seeds))) as pool:
                futures = [pool.submit(run_seed, config, s, root, verbose) for s in config.seeds]
                results = [f.result() for f in futures]
        else:
            results = [run_seed(config, s, root, verbose) for s in config.seeds]
    return {
        "config": asdict(config),
        "seeds": results,
        **summarize(results, config),
        "seconds": time.perf_counter() - started,
        "cpu_seconds_main": time.process_time() - cpu,
    }


_NAMES = {
    "adaptive": "adaptive queue (learns from corrections)",
    "today": "today's queue",
    "uncertainty": "uncertainty only",
    "random": "random",
}


def markdown(result: dict[str, Any]) -> str:
    """The result as Markdown tables."""
    c = result["config"]
    floor = result["noise_floor"]
    lines = [
        "# The review loop in rounds, measured",
        "",
        f"{c['n_leads']:,} simulated leads per seed (seeds "
        f"{', '.join(map(str, c['seeds']))}), marketing labels {c['label_noise']:.0%} wrong "
        f"(half systematic); rounds of {c['round_size']} reviews up to {c['max_reviews']}, the "
        "queue updated between rounds; reps: three at 3% error, one at 15%. Served answer "
        f"wrong (stage or persona) on {result['served_wrong_base_rate']:.1%} of all CRM leads.",
        "",
        "Share of reviewed leads whose served answer was wrong (mean over seeds), lift over "
        "random, the oracle's ceiling, and marketing label errors fixed:",
        "",
        "| K | arm | served wrong | per seed | lift vs random | oracle lift "
        "| marketing errors fixed |",
        "| ---: | --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for row in result["table"]:
        if row["k"] not in (100, 200, 300, 500, 700, 1000):
            continue
        per_seed = " ".join(f"{v:.0%}" for v in row["served_wrong_by_seed"])
        lines.append(
            f"| {row['k']:,} | {_NAMES.get(row['arm'], row['arm'])} | "
            f"{row['served_wrong_share']:.1%} | {per_seed} | {row['lift']:.2f}× | "
            f"{row['oracle_lift']:.2f}× | {row['marketing_errors_fixed_share']:.1%} |"
        )
    lines += [
        "",
        f"Macro-F1 gain after retraining (vs the truth on held-out leads); refit noise floor "
        f"{floor['stage']:.3f} (stage), {floor['persona']:.3f} (persona):",
        "",
        "| K | arm | Δ stage | per seed | ahead of random | Δ persona | per seed "
        "| ahead of random |",
        "| ---: | --- | ---: | --- | --- | ---: | --- | --- |",
    ]
    for e in result["f1"]:
        lines.append(
            f"| {e['k']:,} | {_NAMES.get(e['arm'], e['arm'])} | {e['stage_delta']:+.4f} | "
            + " ".join(f"{v:+.3f}" for v in e["stage_delta_by_seed"])
            + f" | {e['stage_wins_vs_random']} | {e['persona_delta']:+.4f} | "
            + " ".join(f"{v:+.3f}" for v in e["persona_delta_by_seed"])
            + f" | {e['persona_wins_vs_random']} |"
        )
    refit = result.get("refit_seconds_max")
    lines += [
        "",
        f"Slowest refit of the model of corrections: {refit:.1f} s (wall, shared machine)."
        if refit is not None
        else "",
        f"Command: `python -m bench.review_loop --rounds --seeds {' '.join(map(str, c['seeds']))} "
        f"--leads {c['n_leads']}` ({result['seconds'] / 60:.0f} min wall).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the measurement and write JSON and Markdown results."""
    parser = argparse.ArgumentParser(prog="python -m bench.review_rounds", description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--round-size", type=int, default=100)
    parser.add_argument("--max-reviews", type=int, default=1000)
    parser.add_argument("--retrain-at", type=int, nargs="*", default=[500, 1000])
    parser.add_argument("--trees", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--name", default="review_rounds")
    args = parser.parse_args(argv)
    config = RoundsConfig(
        n_leads=args.leads,
        seeds=tuple(args.seeds),
        arms=tuple(args.arms),
        round_size=args.round_size,
        max_reviews=args.max_reviews,
        retrain_at=tuple(args.retrain_at),
        n_estimators=args.trees,
    )
    result = run(config, jobs=args.jobs)
    path = write_result(args.name, result)
    md = RESULTS / f"{args.name}.md"
    md.write_text(markdown(result))
    print(markdown(result))
    print(f"wrote {path} and {md}")


if __name__ == "__main__":
    main()
