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
   unreviewed leads, in its order) or K leads drawn at random — and label both
   stage and persona with the truth, wrong at the rep error rate (3%), through
   ``Store.add_correction`` (``confirm`` when they agree with the model);
5. the retraining set is built by the real code (``training.retrain.
   current_corrections`` and ``build_retrain_set``: snapshots, rep labels,
   correction weight, gate set) and the challenger is fitted on it with the
   same split ``train_on`` uses; stage and persona macro-F1 against the truth
   on the test set are reported before and after, with the gate decision the
   challenger would get on the rep-verified gate set.

MLflow logging is skipped here for speed (``training.retrain.retrain`` is
``build_retrain_set`` + ``train_on`` + ``run_gate``; ``tests/test_review_loop.py``
runs the real path end to end). Diagnostics per run explain the result: the share
of reviewed leads whose marketing label was wrong (label errors found) and whose
model prediction was wrong.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.common import RESULTS, write_result

__all__ = [
    "LoopConfig",
    "apply_reviews",
    "main",
    "markdown",
    "pick_leads",
    "run",
    "run_seed",
    "summary_rows",
    "truth_metrics",
]

STRATEGIES: tuple[str, ...] = ("queue", "random")
_HEADS: tuple[str, ...] = ("stage", "persona")
_MODEL_NAME = "lead-readiness"
_REVIEWERS: tuple[str, ...] = ("ana", "ben", "chloe", "dev")


@dataclass(frozen=True)
class LoopConfig:
    """One measurement of the loop.

    Parameters
    ----------
    n_leads : int
        Simulated leads per seed (test set included).
    seeds : tuple of int
        Simulation (and model) seeds.
    ks : tuple of int
        How many leads the reps review.
    strategies : tuple of str
        ``"queue"`` and/or ``"random"``.
    test_share : float
        Share of leads kept as the truth-scored test set.
    rep_error : float
        Share of a rep's labels that are wrong.
    correction_weight : float
        Sample weight of a corrected lead.
    gate_share : float, optional
        Gate share (default: the training holdout share, as ``retrain``).
    holdout_share : float
        The training holdout share (as ``leadready train``).
    label_noise : float
        Share of marketing's labels that are wrong.
    n_estimators, num_threads : int
        LightGBM settings.
    """

    n_leads: int = 20_000
    seeds: tuple[int, ...] = (1, 2, 3)
    ks: tuple[int, ...] = (100, 500, 2000)
    strategies: tuple[str, ...] = STRATEGIES
    test_share: float = 0.25
    rep_error: float = 0.03
    correction_weight: float = 2.0
    gate_share: float | None = None
    holdout_share: float = 0.2
    label_noise: float = 0.2
    n_estimators: int = 200
    num_threads: int = 1

    def __post_init__(self) -> None:
        unknown = set(self.strategies) - set(STRATEGIES)
        if unknown:
            raise ValueError(f"unknown strategies {sorted(unknown)}; use {', '.join(STRATEGIES)}")
        if not 0 < self.test_share < 1:
            raise ValueError(f"test share must be in (0, 1), got {self.test_share}")
        if not 0 <= self.rep_error < 1:
            raise ValueError(f"rep error must be in [0, 1), got {self.rep_error}")


@dataclass
class _Seed:
    """What one seed's runs share: data, base model, test set, the filled store."""

    seed: int
    base: Any
    train_config: Any
    model: Any
    test_X: pd.DataFrame
    truth: pd.DataFrame
    store_path: Path
    labels: dict[str, tuple[str, ...]]
    before: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)


def _salted_share(ids: Sequence[str], salt: str, share: float) -> np.ndarray:
    """Which ids hash (with a salt, so unlike the training holdout) under ``share``."""
    cut = round(share * 10_000)
    return np.fromiter(
        (
            int.from_bytes(hashlib.sha1(f"{salt}:{i}".encode()).digest()[:8], "big") % 10_000 < cut
            for i in ids
        ),
        dtype=bool,
        count=len(ids),
    )


def truth_metrics(model: Any, X: pd.DataFrame, truth: pd.DataFrame) -> dict[str, float]:
    """Stage and persona macro-F1 (and accuracy) of ``model`` against the hidden truth.

    Parameters
    ----------
    model : LeadReadinessModel
    X : DataFrame of shape (n_leads, n_features)
        Feature rows indexed by lead id.
    truth : DataFrame
        ``true_stage`` and ``true_persona`` indexed by lead id.

    Returns
    -------
    dict
        ``stage_macro_f1``, ``stage_accuracy``, ``persona_macro_f1``, ``persona_accuracy``.
    """
    from training.evaluate import evaluate_heads

    t = truth.reindex(X.index)
    result = evaluate_heads(model, X, t["true_stage"], t["true_persona"])
    return {
        f"{head}_{name}": float(result[head][name])
        for head in _HEADS
        for name in ("macro_f1", "accuracy")
    }


def _prepare(config: LoopConfig, seed: int, workdir: Path) -> _Seed:
    """Simulate, split, train the base model on marketing's labels, fill the store."""
    from data.simulate import SimulationConfig, simulate, write
    from data.store import Store
    from model.features import build_features
    from training.dataset import holdout_mask, load_training_table
    from training.record import record_scored_frame
    from training.train import TrainConfig, fit_lead_model

    timings: dict[str, float] = {}
    start = time.perf_counter()
    sim = simulate(
        SimulationConfig(n_leads=config.n_leads, seed=seed, label_noise=config.label_noise)
    )
    ids = sim.leads["lead_id"].astype(str)
    is_test = _salted_share(ids.tolist(), f"review-loop-test-{seed}", config.test_share)
    test_ids = set(ids[is_test])
    pool = sim.leads[~is_test].reset_index(drop=True)
    pool_events = sim.events[~sim.events["lead_id"].isin(test_ids)]
    test_leads = sim.leads[is_test].reset_index(drop=True)
    test_events = sim.events[sim.events["lead_id"].isin(test_ids)]
    data_dir = workdir / f"seed-{seed}"
    data_dir.mkdir(parents=True, exist_ok=True)
    from data.simulate import Simulation

    paths = write(Simulation(pool, pool_events, sim.truth, sim.config), data_dir, fmt="parquet")
    base = load_training_table(
        paths["leads"], events_path=paths["events"], stage_col="stage", persona_col="persona"
    )
    test_X = build_features(
        test_leads.drop(columns=["stage", "persona"]), test_events, as_of=base.as_of
    )
    test_X.index = test_X.index.astype(str)
    timings["data_s"] = time.perf_counter() - start

    start = time.perf_counter()
    train_config = TrainConfig(
        leads_path=paths["leads"],
        events_path=paths["events"],
        tracking_uri="sqlite:///:memory:",
        stage_col="stage",
        persona_col="persona",
        holdout_share=config.holdout_share,
        n_estimators=config.n_estimators,
        num_threads=config.num_threads,
        seed=seed,
    )
    model = fit_lead_model(base.subset(~holdout_mask(base.ids, config.holdout_share)), train_config)
    timings["fit_base_s"] = time.perf_counter() - start
    truth = sim.truth.assign(lead_id=sim.truth["lead_id"].astype(str)).set_index("lead_id")
    before = truth_metrics(model, test_X, truth)

    start = time.perf_counter()
    store_path = data_dir / "store.db"
    store_path.unlink(missing_ok=True)
    with Store(f"sqlite:///{store_path}") as store:
        store.upgrade()
        scored = model.predict_frame(base.X)
        record_scored_frame(
            store,
            base.X,
            scored,
            _MODEL_NAME,
            "1",
            source="batch",
            leads=pool,
            input_columns=model.input_columns,
        )
    timings["score_and_record_s"] = time.perf_counter() - start
    return _Seed(
        seed=seed,
        base=base,
        train_config=train_config,
        model=model,
        test_X=test_X,
        truth=truth,
        store_path=store_path,
        labels={h: tuple(v) for h, v in model.labels.items()},
        before=before,
        timings=timings,
    )


def pick_leads(store: Any, strategy: str, k: int, *, seed: int) -> list[str]:
    """The K leads the reps review: the top of the queue, or K at random.

    Parameters
    ----------
    store : Store
        Filled with the base model's predictions.
    strategy : {"queue", "random"}
    k : int
    seed : int
        For the random draw.

    Returns
    -------
    list of str
    """
    from data.review_queue import review_queue

    if strategy == "queue":
        picked: list[str] = []
        while len(picked) < k:
            page = review_queue(
                store, limit=min(1000, k - len(picked)), offset=len(picked), reviewed=False
            )
            picked.extend(item.lead_id for item in page.items)
            if not page.has_next or not page.items:
                break
        return picked
    ids = sorted(store.latest_predictions(with_features=False))
    rng = np.random.default_rng([seed, k, 7])
    return [str(i) for i in rng.choice(ids, size=min(k, len(ids)), replace=False)]


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


def _diagnostics(prepared: _Seed, picked: Sequence[str]) -> dict[str, float]:
    """How many reviewed leads had a wrong marketing label, or a wrong prediction."""
    base = prepared.base
    truth = prepared.truth.reindex(picked)
    out: dict[str, float] = {}
    predicted = prepared.model.predict_frame(base.X.loc[list(picked)]) if picked else None
    for head in _HEADS:
        marketing = base.labels(head).reindex(picked)
        wrong = (marketing.astype(str) != truth[f"true_{head}"].astype(str)).to_numpy()
        out[f"{head}_marketing_wrong_share"] = float(wrong.mean()) if len(picked) else 0.0
        if predicted is not None:
            miss = (predicted[head].astype(str) != truth[f"true_{head}"].astype(str)).to_numpy()
            out[f"{head}_model_wrong_share"] = float(miss.mean())
    return out


def _one_run(
    config: LoopConfig, prepared: _Seed, strategy: str, k: int, workdir: Path
) -> dict[str, Any]:
    """Review K leads by one strategy, retrain, measure against the truth."""
    from data.store import Store
    from training.dataset import holdout_mask
    from training.evaluate import evaluate_heads
    from training.promote import gate
    from training.retrain import build_retrain_set, current_corrections
    from training.train import fit_lead_model

    path = workdir / f"seed-{prepared.seed}-{strategy}-{k}.db"
    shutil.copyfile(prepared.store_path, path)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    with Store(f"sqlite:///{path}") as store:
        picked = pick_leads(store, strategy, k, seed=prepared.seed)
        counts = apply_reviews(
            store,
            picked,
            prepared.truth,
            prepared.labels,
            rep_error=config.rep_error,
            seed=prepared.seed,
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
    prepared = _prepare(config, seed, workdir)
    runs = []
    for k in config.ks:
        for strategy in config.strategies:
            result = _one_run(config, prepared, strategy, k, workdir)
            runs.append(result)
            if on_run is not None:
                on_run(result)
    return {
        "seed": seed,
        "n_crm_leads": len(prepared.base),
        "n_test_leads": len(prepared.test_X),
        "before": prepared.before,
        "timings": prepared.timings,
        "runs": runs,
    }


def _table(results: list[dict[str, Any]], config: LoopConfig) -> list[dict[str, Any]]:
    """One row per (K, strategy): mean deltas over seeds and per-seed stage deltas."""
    rows = []
    for k in config.ks:
        for strategy in config.strategies:
            runs = [
                r for s in results for r in s["runs"] if r["k"] == k and r["strategy"] == strategy
            ]
            if not runs:
                continue
            row: dict[str, Any] = {"k": k, "strategy": strategy, "seeds": [r["seed"] for r in runs]}
            for head in _HEADS:
                key = f"{head}_macro_f1"
                row[f"{head}_before"] = statistics.mean(r["before"][key] for r in runs)
                row[f"{head}_after"] = statistics.mean(r["after"][key] for r in runs)
                row[f"{head}_delta"] = statistics.mean(r["delta"][key] for r in runs)
                row[f"{head}_delta_by_seed"] = [r["delta"][key] for r in runs]
                row[f"{head}_marketing_wrong_share"] = statistics.mean(
                    r["diagnostics"][f"{head}_marketing_wrong_share"] for r in runs
                )
            promoted = [r["gate_promote"] for r in runs if r["gate_promote"] is not None]
            row["gate_promoted"] = f"{sum(promoted)}/{len(promoted)}" if promoted else "no gate set"
            rows.append(row)
    return rows


def _queue_beats_random(results: list[dict[str, Any]], config: LoopConfig) -> dict[str, Any]:
    """Per K and head: on how many seeds the queue's delta beat random's."""
    out: dict[str, Any] = {}
    for k in config.ks:
        for head in _HEADS:
            key = f"{head}_macro_f1"
            wins = []
            for s in results:
                by = {r["strategy"]: r for r in s["runs"] if r["k"] == k}
                if "queue" in by and "random" in by:
                    wins.append(by["queue"]["delta"][key] > by["random"]["delta"][key])
            out[f"k{k}_{head}"] = {"wins": sum(wins), "seeds": len(wins)}
    return out


def run(config: LoopConfig, *, workdir: Path | None = None, verbose: bool = True) -> dict[str, Any]:
    """Measure the loop for every seed, K and strategy.

    Returns
    -------
    dict
        The result written to ``bench/results/review_loop.json``.
    """
    started = time.perf_counter()

    def show(result: dict[str, Any]) -> None:
        if verbose:
            d = result["delta"]
            print(
                f"  seed {result['seed']} K={result['k']:>5} {result['strategy']:<6} "
                f"stage {result['before']['stage_macro_f1']:.3f}→{result['after']['stage_macro_f1']:.3f} "
                f"({d['stage_macro_f1']:+.3f})  persona "
                f"{result['before']['persona_macro_f1']:.3f}→{result['after']['persona_macro_f1']:.3f} "
                f"({d['persona_macro_f1']:+.3f})  marketing wrong on "
                f"{result['diagnostics']['stage_marketing_wrong_share']:.0%} (stage) of reviewed",
                flush=True,
            )

    results = []
    with tempfile.TemporaryDirectory(prefix="review-loop-") as tmp:
        root = workdir or Path(tmp)
        for seed in config.seeds:
            if verbose:
                print(
                    f"seed {seed}: simulating {config.n_leads:,} leads, training the base model",
                    flush=True,
                )
            results.append(run_seed(config, seed, root, on_run=show))
    return {
        "config": asdict(config),
        "seeds": results,
        "table": _table(results, config),
        "queue_beats_random": _queue_beats_random(results, config),
        "seconds": time.perf_counter() - started,
    }


def markdown(result: dict[str, Any]) -> str:
    """The result as a Markdown table (mean over seeds; per-seed stage deltas)."""
    config = result["config"]
    seeds = ", ".join(str(s) for s in config["seeds"])
    lines = [
        "# The review loop, measured",
        "",
        f"{config['n_leads']:,} simulated leads per seed (seeds {seeds}); a quarter held out "
        "as the test set, scored against the simulator's hidden truth. The base model is "
        f"trained on marketing's labels ({config['label_noise']:.0%} wrong); reps "
        f"({config['rep_error']:.0%} error rate) label stage and persona of K leads taken "
        "from the top of the review queue or at random; the challenger is retrained on the "
        "base data plus their corrections (weight "
        f"{config['correction_weight']:g}, gate set kept out).",
        "",
        "Macro-F1 against the truth on the test set, mean over seeds (Δ = after − before):",
        "",
        "| K | leads from | stage before | stage after | Δ stage | Δ stage per seed "
        "| persona before | persona after | Δ persona | marketing wrong on reviewed (stage / persona) "
        "| gate would promote |",
        "| ---: | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for row in result["table"]:
        per_seed = " ".join(f"{d:+.3f}" for d in row["stage_delta_by_seed"])
        lines.append(
            f"| {row['k']:,} | {row['strategy']} | {row['stage_before']:.3f} | "
            f"{row['stage_after']:.3f} | {row['stage_delta']:+.3f} | {per_seed} | "
            f"{row['persona_before']:.3f} | {row['persona_after']:.3f} | "
            f"{row['persona_delta']:+.3f} | {row['stage_marketing_wrong_share']:.0%} / "
            f"{row['persona_marketing_wrong_share']:.0%} | {row['gate_promoted']} |"
        )
    lines += ["", "Queue beats random (seeds where its Δ is larger):", ""]
    for key, value in result["queue_beats_random"].items():
        lines.append(f"- {key.replace('_', ' ')}: {value['wins']} of {value['seeds']}")
    lines += [
        "",
        f"Command: `python -m bench.review_loop --seeds {' '.join(map(str, config['seeds']))} "
        f"--ks {' '.join(map(str, config['ks']))} --leads {config['n_leads']}` "
        f"({result['seconds'] / 60:.0f} min).",
        "",
    ]
    return "\n".join(lines)


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Rows for ``bench/results/SUMMARY.md``: stage Δ of queue vs random per K."""
    rows = []
    by = {(r["k"], r["strategy"]): r for r in result["table"]}
    for k in result["config"]["ks"]:
        queue, rand = by.get((k, "queue")), by.get((k, "random"))
        if queue is None or rand is None:
            continue
        wins = result["queue_beats_random"][f"k{k}_stage"]
        rows.append(
            (
                f"stage macro-F1 Δ, K={k:,}: queue vs random",
                f"{queue['stage_delta']:+.3f} vs {rand['stage_delta']:+.3f} "
                f"(queue ahead on {wins['wins']}/{wins['seeds']} seeds)",
                "queue ahead on every seed",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    """Run the measurement and write the JSON and Markdown results."""
    parser = argparse.ArgumentParser(prog="python -m bench.review_loop", description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--ks", type=int, nargs="+", default=[100, 500, 2000])
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--weight", type=float, default=2.0, help="correction weight")
    parser.add_argument("--rep-error", type=float, default=0.03)
    parser.add_argument("--trees", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default="review_loop", help="result file name")
    args = parser.parse_args(argv)
    config = LoopConfig(
        n_leads=args.leads,
        seeds=tuple(args.seeds),
        ks=tuple(args.ks),
        strategies=tuple(args.strategies),
        rep_error=args.rep_error,
        correction_weight=args.weight,
        n_estimators=args.trees,
        num_threads=args.threads,
    )
    result = run(config)
    path = write_result(args.name, result)
    md = RESULTS / f"{args.name}.md"
    md.write_text(markdown(result))
    print(markdown(result))
    print(f"wrote {path} and {md}")


if __name__ == "__main__":
    main()
