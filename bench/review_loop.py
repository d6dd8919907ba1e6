"""The review loop, measured: do reps' corrections pay, and does the queue's order beat random?

``python -m bench.review_loop [--seeds 1 2 3] [--ks 100 500 2000] [--leads 20000]``
writes ``bench/results/review_loop.json`` and ``bench/results/review_loop.md``.

For each seed, on simulated data (marketing's labels are the truth corrupted at
the simulator's default 20% noise rate):

1. a quarter of the leads (by a salted hash of the id) is the **test set**: never
   trained on, never in the store, scored against the simulator's hidden truth;
2. the rest are the CRM's leads: the **base model** is trained on marketing's
   labels exactly as ``leadready train`` does (``load_training_table`` on the
   written files, the same 20% id-hash holdout, ``fit_lead_model``);
3. the base model scores every CRM lead and the predictions, with their feature
   snapshots and marketing's labels, go into a store
   (``training.record.record_scored_frame``, as ``leadready score --record``);
4. for each K and each strategy, on a copy of that store, simulated reps review
   K leads — the top K of the review queue (``data.review_queue.review_queue``,
   unreviewed leads, in its order), or K leads drawn at random — and label both
   stage and persona with the truth, wrong at the rep error rate (3%), through
   ``Store.add_correction`` (``confirm`` when they agree with the model). Every
   strategy is played ``draws`` times (three) and averaged: a random draw takes
   other leads and other rep errors, a queue draw the same leads with other rep
   errors. Both arms are averaged alike because a refit moves macro-F1 by about
   0.01 whatever changed (see the noise floor below), so one draw of an arm
   against the mean of three of the other compares noise with less noise.
   ``queue_retraining`` is the same queue in ``data.review_queue.RETRAINING_CONFIG``
   order (close calls and unsure sales-ready calls first, possible mislabels
   not ranked up). An optional strategy, ``queue_oof``, is the same queue over
   *out-of-fold* scores: every CRM lead scored by one of three models that did
   not train on it (the deployed model's scores of its own training leads are
   in-sample, which blunts the queue's "possible mislabel" and "close call"
   signals there);
5. the retraining set is built by the real code (``training.retrain.
   current_corrections`` and ``build_retrain_set``: snapshots, rep labels,
   correction weight, gate set) and the challenger is fitted on it with the
   same split ``train_on`` uses; stage and persona macro-F1 against the truth
   on the test set are reported before and after, with the gate decision the
   challenger would get on the rep-verified gate set.

MLflow logging is skipped here for speed (``training.retrain.retrain`` is
``build_retrain_set`` + ``train_on`` + ``run_gate``; ``tests/test_review_loop.py``
runs the real path end to end). Diagnostics per run explain the result: of the
reviewed leads, the share whose marketing label was wrong, whose base-model
prediction was wrong, whose marketing error the model had *learned* (it predicts
the same wrong label) or already *saw through* (it predicts the truth), and the
share in the base model's training holdout (never trained on, by any model). The
**noise floor** is how far macro-F1 moves when the base model is refitted with
another LightGBM seed and no corrections at all: differences smaller than that
are not evidence.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Container, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.common import RESULTS, write_result
from bench.review_sim import (
    DEFAULT_STRATEGIES,
    STRATEGIES,
    LoopConfig,
    PreparedSeed,
    prepare_seed,
    record_out_of_fold,
    truth_metrics,
)
from bench.review_sim import HEADS as _HEADS

__all__ = [
    "LoopConfig",
    "apply_reviews",
    "main",
    "markdown",
    "pick_leads",
    "record_out_of_fold",
    "run",
    "run_seed",
    "summary_rows",
    "truth_metrics",
]

_REVIEWERS: tuple[str, ...] = ("ana", "ben", "chloe", "dev")


def pick_leads(store: Any, strategy: str, k: int, *, seed: int) -> list[str]:
    """The K leads the reps review: the top of the queue, or K at random.

    Parameters
    ----------
    store : Store
        Filled with the base model's predictions.
    strategy : {"queue", "queue_retraining", "queue_balanced", "queue_mixed", "queue_oof", "random"}
        ``queue`` is the stored (default) order, ``queue_retraining`` the queue
        in ``data.review_queue.RETRAINING_CONFIG`` order, ``queue_balanced`` that
        order taken in turns across predicted stages (measured, not adopted:
        ``bench/results/review_loop_balanced.md``), ``queue_mixed`` the top
        half of K from that order and the other half at random (measured on
        seeds 4-6, not adopted: ``bench/results/review_loop_seeds456.md``),
        ``queue_oof`` the stored order of a store holding out-of-fold scores.
    k : int
    seed : int
        For the random draw.

    Returns
    -------
    list of str
    """
    from data.review_queue import RETRAINING_CONFIG, review_queue

    if strategy == "queue_balanced":
        return _balanced(store, k)
    if strategy == "queue_mixed":
        top = pick_leads(store, "queue_retraining", (k + 1) // 2, seed=seed)
        return top + _at_random(store, k - len(top), [seed, k, 11], exclude=set(top))
    if strategy in ("queue", "queue_retraining", "queue_oof"):
        config = RETRAINING_CONFIG if strategy == "queue_retraining" else None
        picked: list[str] = []
        while len(picked) < k:
            page = review_queue(
                store,
                limit=min(1000, k - len(picked)),
                offset=len(picked),
                reviewed=False,
                config=config,
            )
            picked.extend(item.lead_id for item in page.items)
            if not page.has_next or not page.items:
                break
        return picked
    return _at_random(store, k, [seed, k, 7])


def _at_random(
    store: Any, k: int, seed: list[int], exclude: Container[str] = frozenset()
) -> list[str]:
    """K scored leads drawn without replacement (reproducible for ``seed``), none of ``exclude``."""
    ids = sorted(i for i in store.latest_predictions(with_features=False) if i not in exclude)
    rng = np.random.default_rng(seed)
    return [str(i) for i in rng.choice(ids, size=min(k, len(ids)), replace=False)]


def _balanced(store: Any, k: int) -> list[str]:
    """The retraining order taken in turns across predicted stages.

    Class-balanced uncertainty sampling: the top of the queue may crowd one
    stage boundary; taking the leads in turns by predicted stage spreads K
    corrections over every stage. Measured on 3 seeds it beat random leads at
    K=100 and 500 but not at 2,000 (1 of 3 seeds), so the product keeps
    ``RETRAINING_CONFIG`` order.
    """
    from data.review_queue import RETRAINING_CONFIG, review_queue

    by_stage: dict[str, list[str]] = {}
    offset = 0
    while True:
        page = review_queue(
            store, limit=1000, offset=offset, reviewed=False, config=RETRAINING_CONFIG
        )
        for item in page.items:
            by_stage.setdefault(str(item.stage), []).append(item.lead_id)
        offset += len(page.items)
        if not page.has_next or not page.items or offset >= 4 * k:
            break
    picked: list[str] = []
    queues = [list(reversed(v)) for v in by_stage.values()]
    while len(picked) < k and any(queues):
        for q in queues:
            if q and len(picked) < k:
                picked.append(q.pop())
    return picked


def apply_reviews(
    store: Any,
    lead_ids: Sequence[str],
    truth: pd.DataFrame,
    labels: dict[str, tuple[str, ...]],
    *,
    rep_error: float,
    seed: int,
) -> dict[str, int]:
    """Simulated reps label stage and persona of each lead: the truth, wrong at ``rep_error``.

    Returns
    -------
    dict
        ``corrections``, ``rep_errors``, ``confirms``.
    """
    rng = np.random.default_rng([seed, len(lead_ids), 11])
    latest = store.latest_predictions(lead_ids, with_features=False)
    counts = {"corrections": 0, "rep_errors": 0, "confirms": 0}
    for n, lead_id in enumerate(lead_ids):
        predicted = latest.get(lead_id, {})
        for head in _HEADS:
            label = str(truth.at[lead_id, f"true_{head}"])
            if rng.random() < rep_error:
                others = [c for c in labels[head] if c != label]
                label = str(rng.choice(others))
                counts["rep_errors"] += 1
            kind = "confirm" if predicted.get(head) == label else "reclassify"
            counts["confirms"] += kind == "confirm"
            reason = "student_job_seeker" if label == "non_buyer" else "other"
            store.add_correction(
                lead_id,
                head,
                label,
                reviewer=_REVIEWERS[n % len(_REVIEWERS)],
                kind=kind,
                reason=reason if kind == "reclassify" else None,
                source="ui",
            )
            counts["corrections"] += 1
    return counts


def _diagnostics(prepared: PreparedSeed, picked: Sequence[str]) -> dict[str, float]:
    """What the reviewed leads were: marketing wrong, model wrong, errors learned or seen through."""
    from training.dataset import holdout_mask

    base = prepared.base
    picked = list(picked)
    if not picked:
        return {}
    truth = prepared.truth.reindex(picked)
    predicted = prepared.model.predict_frame(base.X.loc[picked])
    out: dict[str, float] = {
        "in_base_holdout_share": float(
            holdout_mask(picked, prepared.train_config.holdout_share).mean()
        )
    }
    for head in _HEADS:
        marketing = base.labels(head).reindex(picked).astype(str).to_numpy()
        true = truth[f"true_{head}"].astype(str).to_numpy()
        model = predicted[head].astype(str).to_numpy()
        wrong = marketing != true
        out[f"{head}_marketing_wrong_share"] = float(wrong.mean())
        out[f"{head}_model_wrong_share"] = float((model != true).mean())
        out[f"{head}_learned_error_share"] = float((wrong & (model == marketing)).mean())
        out[f"{head}_seen_through_share"] = float((wrong & (model == true)).mean())
    return out


def _one_run(
    config: LoopConfig, prepared: PreparedSeed, strategy: str, k: int, workdir: Path, draw: int = 0
) -> dict[str, Any]:
    """Review K leads by one strategy (random: draw ``draw``), retrain, measure against the truth."""
    from data.store import Store
    from training.dataset import holdout_mask
    from training.evaluate import evaluate_heads
    from training.promote import gate
    from training.retrain import build_retrain_set, current_corrections
    from training.train import fit_lead_model

    path = workdir / f"seed-{prepared.seed}-{strategy}-{k}-{draw}.db"
    source = prepared.oof_store_path if strategy == "queue_oof" else prepared.store_path
    if source is None:
        raise ValueError("queue_oof needs the out-of-fold store (include it in the strategies)")
    shutil.copyfile(source, path)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    with Store(f"sqlite:///{path}") as store:
        picked = pick_leads(store, strategy, k, seed=prepared.seed + 1000 * draw)
        counts = apply_reviews(
            store,
            picked,
            prepared.truth,
            prepared.labels,
            rep_error=config.rep_error,
            seed=prepared.seed + 1000 * draw,
        )
        corrections = current_corrections(store)
    timings["review_s"] = time.perf_counter() - start
    start = time.perf_counter()
    retrain_set = build_retrain_set(
        prepared.base,
        corrections,
        correction_weight=config.correction_weight,
        gate_share=config.gate_share,
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
    timings["retrain_s"] = time.perf_counter() - start
    after = truth_metrics(challenger, prepared.test_X, prepared.truth)
    decision = None
    if retrain_set.gate is not None:
        g = retrain_set.gate
        decision = gate(
            evaluate_heads(challenger, g.X, g.y_stage, g.y_persona),
            evaluate_heads(prepared.model, g.X, g.y_stage, g.y_persona),
            f1_tolerance=prepared.train_config.f1_tolerance,
            recall_margin=prepared.train_config.recall_margin,
        ).promote
    path.unlink(missing_ok=True)
    return {
        "seed": prepared.seed,
        "strategy": strategy,
        "draw": draw,
        "k": k,
        "reviewed": len(picked),
        **counts,
        "n_training": retrain_set.summary.n_training,
        "n_gate": retrain_set.summary.n_gate,
        "n_changed": retrain_set.summary.n_changed,
        "before": prepared.before,
        "after": after,
        "delta": {key: after[key] - prepared.before[key] for key in after},
        "gate_promote": decision,
        "diagnostics": _diagnostics(prepared, picked),
        "timings": timings,
    }


def run_seed(
    config: LoopConfig,
    seed: int,
    workdir: Path,
    *,
    on_run: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Every (strategy, K) run of one seed.

    Returns
    -------
    dict
        ``seed``, ``before`` (base model vs the truth), ``timings`` and ``runs``.
    """
    prepared = prepare_seed(config, seed, workdir)
    runs = []
    for k in config.ks:
        for strategy in config.strategies:
            for draw in range(config.random_draws):
                result = _one_run(config, prepared, strategy, k, workdir, draw)
                runs.append(result)
                if on_run is not None:
                    on_run(result)
    return {
        "seed": seed,
        "n_crm_leads": len(prepared.base),
        "n_test_leads": len(prepared.test_X),
        "before": prepared.before,
        "noise_floor": prepared.noise_floor,
        "timings": prepared.timings,
        "runs": runs,
    }


def _per_seed(results: list[dict[str, Any]], k: int, strategy: str) -> list[dict[str, Any]]:
    """One entry per seed: the runs (draws averaged) of ``strategy`` at ``k``."""
    out = []
    for s in results:
        runs = [r for r in s["runs"] if r["k"] == k and r["strategy"] == strategy]
        if not runs:
            continue
        entry: dict[str, Any] = {"seed": s["seed"], "before": s["before"], "draws": len(runs)}
        for part in ("after", "delta", "diagnostics"):
            keys = runs[0][part]
            entry[part] = {key: statistics.mean(r[part][key] for r in runs) for key in keys}
        promoted = [r["gate_promote"] for r in runs if r["gate_promote"] is not None]
        entry["gate_promoted"] = (sum(promoted), len(promoted))
        out.append(entry)
    return out


def _table(results: list[dict[str, Any]], config: LoopConfig) -> list[dict[str, Any]]:
    """One row per (K, strategy): means over seeds, per-seed stage deltas, diagnostics."""
    rows = []
    for k in config.ks:
        for strategy in config.strategies:
            seeds = _per_seed(results, k, strategy)
            if not seeds:
                continue
            row: dict[str, Any] = {
                "k": k,
                "strategy": strategy,
                "seeds": [e["seed"] for e in seeds],
                "draws": seeds[0]["draws"],
            }
            for head in _HEADS:
                key = f"{head}_macro_f1"
                row[f"{head}_before"] = statistics.mean(e["before"][key] for e in seeds)
                row[f"{head}_after"] = statistics.mean(e["after"][key] for e in seeds)
                row[f"{head}_delta"] = statistics.mean(e["delta"][key] for e in seeds)
                row[f"{head}_delta_by_seed"] = [e["delta"][key] for e in seeds]
            for name in seeds[0]["diagnostics"]:
                row[name] = statistics.mean(e["diagnostics"][name] for e in seeds)
            promoted = [e["gate_promoted"] for e in seeds]
            total = sum(n for _, n in promoted)
            row["gate_promoted"] = (
                f"{sum(p for p, _ in promoted)}/{total}" if total else "no gate set"
            )
            rows.append(row)
    return rows


def _beats_random(results: list[dict[str, Any]], config: LoopConfig) -> dict[str, Any]:
    """Per queue strategy, K and head: seeds where its delta beat random's (mean of draws)."""
    out: dict[str, Any] = {}
    if "random" not in config.strategies:
        return out
    for strategy in (s for s in config.strategies if s != "random"):
        for k in config.ks:
            rand = {e["seed"]: e for e in _per_seed(results, k, "random")}
            mine = {e["seed"]: e for e in _per_seed(results, k, strategy)}
            for head in _HEADS:
                key = f"{head}_macro_f1"
                margins = [mine[s]["delta"][key] - rand[s]["delta"][key] for s in mine if s in rand]
                out[f"{strategy}_k{k}_{head}"] = {
                    "wins": sum(m > 0 for m in margins),
                    "seeds": len(margins),
                    "margins": margins,
                }
    return out


def _noise_floor(results: list[dict[str, Any]]) -> dict[str, float]:
    """The largest macro-F1 move, per head, from refitting with another seed alone."""
    return {
        head: max(abs(s["noise_floor"][f"{head}_macro_f1"]) for s in results) for head in _HEADS
    }


def _seed_job(config: LoopConfig, seed: int, root: Path, verbose: bool) -> dict[str, Any]:
    """One seed in a worker process (``run(jobs > 1)``)."""
    return run_seed(config, seed, root, on_run=_show if verbose else None)


def _show(result: dict[str, Any]) -> None:
    d = result["delta"]
    print(
        f"  seed {result['seed']} K={result['k']:>5} "
        f"{result['strategy'] + str(result['draw']):<12} "
        f"stage {result['before']['stage_macro_f1']:.3f}→{result['after']['stage_macro_f1']:.3f} "
        f"({d['stage_macro_f1']:+.3f})  persona "
        f"{result['before']['persona_macro_f1']:.3f}→{result['after']['persona_macro_f1']:.3f} "
        f"({d['persona_macro_f1']:+.3f})  marketing wrong on "
        f"{result['diagnostics'].get('stage_marketing_wrong_share', 0):.0%} "
        "(stage) of reviewed",
        flush=True,
    )


def run(
    config: LoopConfig, *, workdir: Path | None = None, verbose: bool = True, jobs: int = 1
) -> dict[str, Any]:
    """Measure the loop for every seed, K and strategy.

    ``jobs`` > 1 plays that many seeds at once in worker processes (each
    LightGBM fit stays on ``config.num_threads`` threads); the results are the
    same as one at a time.

    Returns
    -------
    dict
        The result written to ``bench/results/review_loop.json``.
    """
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="review-loop-") as tmp:
        root = workdir or Path(tmp)
        if verbose:
            print(
                f"seeds {', '.join(map(str, config.seeds))}: simulating {config.n_leads:,} "
                "leads each, training the base models",
                flush=True,
            )
        if jobs > 1 and len(config.seeds) > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=min(jobs, len(config.seeds))) as pool:
                futures = [
                    pool.submit(_seed_job, config, seed, root, verbose) for seed in config.seeds
                ]
                results = [f.result() for f in futures]
        else:
            for seed in config.seeds:
                results.append(run_seed(config, seed, root, on_run=_show if verbose else None))
    return {
        "config": asdict(config),
        "seeds": results,
        "table": _table(results, config),
        "beats_random": _beats_random(results, config),
        "noise_floor": _noise_floor(results),
        "seconds": time.perf_counter() - started,
    }


_NAMES = {
    "queue": "review queue",
    "queue_retraining": "review queue, retraining order",
    "queue_balanced": "review queue, retraining order in turns by predicted stage",
    "queue_mixed": "review queue, retraining order, half the leads at random",
    "queue_oof": "review queue, out-of-fold scores",
    "random": "random",
}


def markdown(result: dict[str, Any]) -> str:
    """The result as Markdown: mean over seeds, per-seed stage deltas, what was reviewed."""
    config = result["config"]
    seeds = ", ".join(str(s) for s in config["seeds"])
    floor = result["noise_floor"]
    lines = [
        "# The review loop, measured",
        "",
        f"{config['n_leads']:,} simulated leads per seed (seeds {seeds}); a quarter held out "
        "as the test set, scored against the simulator's hidden truth. The base model is "
        f"trained on marketing's labels ({config['label_noise']:.0%} wrong); reps "
        f"({config['rep_error']:.0%} error rate) label stage and persona of K leads taken "
        "from the top of the review queue or at random; every row is the mean of "
        f"{config['random_draws']} draws (random: other leads and rep errors; queue: the same "
        "leads, other rep errors). The challenger is retrained on the base data plus the "
        f"corrections (weight {config['correction_weight']:g}, gate set kept out) with the "
        "label-noise step informed by them (reps' labels weigh more in its out-of-fold fits, "
        "folds by lead id). *review queue* is the stored (default) order; *review queue, "
        "retraining order* the same queue in `data.review_queue.RETRAINING_CONFIG` order (close "
        "calls and unsure sales-ready calls first; possible mislabels do not add to the "
        "priority); *review queue, out-of-fold scores* the stored order over scores from models "
        "that did not train on the lead.",
        "",
        f"Noise floor: refitting the base model with another LightGBM seed, no corrections, "
        f"moves macro-F1 by up to {floor['stage']:.3f} (stage) and {floor['persona']:.3f} "
        "(persona); smaller differences are not evidence.",
        "",
        "Macro-F1 against the truth on the test set, mean over seeds (Δ = after − before):",
        "",
        "| K | leads from | stage before → after | Δ stage | Δ stage per seed "
        "| persona before → after | Δ persona | reviewed: marketing wrong (stage) "
        "| … model already right | … model learned the error | … in the training holdout "
        "| gate would promote |",
        "| ---: | --- | --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in result["table"]:
        per_seed = " ".join(f"{d:+.3f}" for d in row["stage_delta_by_seed"])
        lines.append(
            f"| {row['k']:,} | {_NAMES.get(row['strategy'], row['strategy'])} | "
            f"{row['stage_before']:.3f} → {row['stage_after']:.3f} | {row['stage_delta']:+.3f} | "
            f"{per_seed} | {row['persona_before']:.3f} → {row['persona_after']:.3f} | "
            f"{row['persona_delta']:+.3f} | {row.get('stage_marketing_wrong_share', 0):.0%} | "
            f"{row.get('stage_seen_through_share', 0):.0%} | "
            f"{row.get('stage_learned_error_share', 0):.0%} | "
            f"{row.get('in_base_holdout_share', 0):.0%} | {row['gate_promoted']} |"
        )
    if result["beats_random"]:
        lines += ["", "Seeds on which a queue's Δ beat random's (mean of the draws):", ""]
        for key, value in result["beats_random"].items():
            strategy, k, head = key.rsplit("_", 2)
            margins = " ".join(f"{m:+.3f}" for m in value["margins"])
            lines.append(
                f"- {_NAMES.get(strategy, strategy)}, K={k[1:]}, {head}: "
                f"{value['wins']} of {value['seeds']} (margins {margins})"
            )
    lines += [
        "",
        f"Command: `python -m bench.review_loop --seeds {' '.join(map(str, config['seeds']))} "
        f"--ks {' '.join(map(str, config['ks']))} --leads {config['n_leads']} "
        f"--draws {config['random_draws']} --weight {config['correction_weight']:g} "
        f"--trees {config['n_estimators']}"
        + (
            ""
            if tuple(config["strategies"]) == DEFAULT_STRATEGIES
            else f" --strategies {' '.join(config['strategies'])}"
        )
        + "` "
        f"({result['seconds'] / 60:.0f} min).",
        "",
    ]
    return "\n".join(lines)


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Rows for ``bench/results/SUMMARY.md``: stage Δ of the queue vs random per K."""
    rows = []
    by = {(r["k"], r["strategy"]): r for r in result["table"]}
    for k in result["config"]["ks"]:
        rand = by.get((k, "random"))
        for strategy in (s for s in STRATEGIES if s != "random"):
            mine = by.get((k, strategy))
            wins = result["beats_random"].get(f"{strategy}_k{k}_stage")
            if mine is None or rand is None or wins is None:
                continue
            rows.append(
                (
                    f"stage macro-F1 Δ, K={k:,}: {_NAMES[strategy]} vs random",
                    f"{mine['stage_delta']:+.3f} vs {rand['stage_delta']:+.3f} "
                    f"(ahead on {wins['wins']}/{wins['seeds']} seeds)",
                    "ahead on every seed",
                )
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    """Run the measurement and write the JSON and Markdown results.

    ``--rounds`` runs the loop in rounds instead (:mod:`bench.review_rounds`: the
    adaptive queue, today's, uncertainty only and random, the queue updated
    between rounds); the other arguments are then that module's.
    """
    import sys

    args_in = list(sys.argv[1:] if argv is None else argv)
    if "--rounds" in args_in:
        from bench.review_rounds import main as rounds_main

        args_in.remove("--rounds")
        rounds_main(args_in)
        return
    parser = argparse.ArgumentParser(prog="python -m bench.review_loop", description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--ks", type=int, nargs="+", default=[100, 500, 2000])
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument(
        "--strategies", nargs="+", default=list(DEFAULT_STRATEGIES), choices=STRATEGIES
    )
    parser.add_argument("--draws", type=int, default=3, help="draws per K and strategy")
    parser.add_argument("--jobs", type=int, default=1, help="seeds played at once")
    parser.add_argument("--weight", type=float, default=2.0, help="correction weight")
    parser.add_argument("--rep-error", type=float, default=0.03)
    parser.add_argument("--trees", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default="review_loop", help="result file name")
    args = parser.parse_args(args_in)
    config = LoopConfig(
        n_leads=args.leads,
        seeds=tuple(args.seeds),
        ks=tuple(args.ks),
        strategies=tuple(args.strategies),
        random_draws=args.draws,
        rep_error=args.rep_error,
        correction_weight=args.weight,
        n_estimators=args.trees,
        num_threads=args.threads,
    )
    result = run(config, jobs=args.jobs)
    path = write_result(args.name, result)
    md = RESULTS / f"{args.name}.md"
    md.write_text(markdown(result))
    print(markdown(result))
    print(f"wrote {path} and {md}")


if __name__ == "__main__":
    main()
