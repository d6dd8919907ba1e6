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
    leads drawn at random;
adaptive_no_oof (opt-in)
    the adaptive queue without the out-of-fold disagreement inputs.

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
floor (the base model refitted with another LightGBM seed, no corrections),
once per retraining design (:data:`DESIGNS`, ``--designs``; ``--design-arms``
get every design, the other arms the first one). Each finished (seed, arm) is
appended to ``bench/results/<name>.partial.jsonl`` as it ends: a stopped run
keeps what it measured, a rerun skips what is there, and ``--summarize``
rebuilds the JSON and Markdown from it.
"""

from __future__ import annotations

import argparse
import json
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
from bench.review_sim import LoopConfig, prepare_seed, truth_metrics

__all__ = ["ARMS", "RoundsConfig", "main", "markdown", "run", "run_seed"]

ARMS: tuple[str, ...] = ("adaptive", "today", "uncertainty", "random", "adaptive_no_oof")
#: The arms run by default (``adaptive_no_oof``, the adaptive queue without the
#: out-of-fold disagreement inputs, is the side-by-side check of those inputs).
DEFAULT_ARMS: tuple[str, ...] = ("adaptive", "random", "today", "uncertainty")
_HEADS: tuple[str, ...] = ("stage", "persona")
#: Reviewers in turn and their error rates: three careful reps and one sloppy one.
REPS: tuple[tuple[str, float], ...] = (("ana", 0.03), ("ben", 0.03), ("chloe", 0.03), ("dev", 0.15))


#: Retraining designs measured side by side on the same corrections (see :func:`_retrain`):
#: ``plain`` rep labels at weight 2 (``build_retrain_set``); ``trust`` + reps weighed by
#: CROWDLAB and doubted marketing labels down-weighted at p ≥ 0.8 (``leadready retrain
#: --soft-relabel 0``); ``soft50`` / ``soft80`` reps weighed, doubted marketing labels
#: soft-relabelled (the predicted rep label as an extra row at weight p) at p ≥ 0.5 / 0.8
#: (``soft80``: ``leadready retrain``'s default), all through ``training.label_trust.
#: apply_label_trust`` as ``retrain`` composes it; ``k4`` rep labels
#: at weight 4; ``soft50_k4`` / ``soft80_k4`` both; ``soft50_k8`` rep labels at weight 8;
#: ``_iw``: the model of corrections behind the soft labels weighs the reviewed leads as
#: the unreviewed ones (``gather_evidence(importance_weighted=True)``).
DESIGNS: dict[str, dict[str, Any]] = {
    "plain": {"weight": 2.0, "trust": False, "soft": None},
    "trust": {"weight": 2.0, "trust": True, "soft": None},
    "soft50": {"weight": 2.0, "trust": True, "soft": 0.5},
    "soft80": {"weight": 2.0, "trust": True, "soft": 0.8},
    "k4": {"weight": 4.0, "trust": True, "soft": None},
    "soft50_k4": {"weight": 4.0, "trust": True, "soft": 0.5},
    "soft80_k4": {"weight": 4.0, "trust": True, "soft": 0.8},
    "soft50_k8": {"weight": 8.0, "trust": True, "soft": 0.5},
    "soft80_iw": {"weight": 2.0, "trust": True, "soft": 0.8, "iw": True},
    "soft50_k4_iw": {"weight": 4.0, "trust": True, "soft": 0.5, "iw": True},
}


@dataclass(frozen=True)
class RoundsConfig:
    """One measurement of the loop in rounds."""

    n_leads: int = 20_000
    seeds: tuple[int, ...] = (1, 2, 3, 4, 5)
    arms: tuple[str, ...] = DEFAULT_ARMS
    round_size: int = 100
    max_reviews: int = 1000
    retrain_at: tuple[int, ...] = (500, 1000)
    label_noise: float = 0.2
    correction_weight: float = 2.0
    holdout_share: float = 0.2
    n_estimators: int = 200
    num_threads: int = 1
    designs: tuple[str, ...] = ("trust",)
    design_arms: tuple[str, ...] = DEFAULT_ARMS

    def __post_init__(self) -> None:
        unknown = set(self.arms) - set(ARMS)
        if unknown:
            raise ValueError(f"unknown arms {sorted(unknown)}; use {', '.join(ARMS)}")
        bad = set(self.designs) - set(DESIGNS)
        if bad or not self.designs:
            raise ValueError(f"unknown designs {sorted(bad)}; use {', '.join(DESIGNS)}")
        if self.round_size < 1 or self.max_reviews < self.round_size:
            raise ValueError("round_size must be at least 1 and at most max_reviews")

    def loop_config(self) -> Any:
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


def _retrain(
    prepared: Any, store: Any, config: RoundsConfig, designs: tuple[str, ...]
) -> dict[str, Any]:
    """Each design's challenger on the same corrections: macro-F1 gain vs the truth, and what changed."""
    from training.dataset import holdout_mask
    from training.label_trust import apply_label_trust, gather_evidence
    from training.rep_labels import current_corrections
    from training.retrain import build_retrain_set
    from training.train import fit_lead_model

    corrections = current_corrections(store)
    evidences: dict[bool, Any] = {}
    out: dict[str, Any] = {}
    for design in designs:
        spec = DESIGNS[design]
        started = time.perf_counter()
        iw = bool(spec.get("iw"))
        if spec["trust"] and iw not in evidences:
            evidences[iw] = gather_evidence(store, importance_weighted=iw)
        retrain_set = build_retrain_set(
            prepared.base,
            corrections,
            correction_weight=spec["weight"],
            holdout_share=config.holdout_share,
        )
        changed: dict[str, Any] = {}
        if spec["trust"]:
            retrain_set, trust = apply_label_trust(
                retrain_set,
                evidences[iw],
                soft_threshold=spec["soft"],
                holdout_share=config.holdout_share,
            )
            changed["rep_factors"] = trust.rep_factors
            changed["marketing_downweighted"] = len(trust.marketing_downweighted)
            if trust.soft is not None:
                relabelled = trust.soft.relabelled
                changed["soft_rows"] = sum(len(v) for v in relabelled.values())
                changed["soft_rows_right"] = sum(
                    entry["inferred"] == str(prepared.truth.at[lead_id, f"true_{head}"])
                    for lead_id, heads in relabelled.items()
                    for head, entry in heads.items()
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
        out[design] = {
            **{key: after[key] - prepared.before[key] for key in after},
            "changed": changed,
            "seconds": time.perf_counter() - started,
        }
    return out


def _arm(
    config: RoundsConfig, prepared: Any, arm: str, workdir: Path, verbose: bool
) -> dict[str, Any]:
    from data.store import Store
    from training.learned_queue import LearnedQueueConfig, refit_queue

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
            if arm.startswith("adaptive"):
                result = refit_queue(store, LearnedQueueConfig(out_of_fold=arm == "adaptive"))
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
                designs = config.designs if arm in config.design_arms else config.designs[:1]
                retrained[len(picked_all)] = _retrain(prepared, store, config, designs)
            if verbose:
                done = retrained.get(len(picked_all), {})
                print(
                    f"  seed {prepared.seed} {arm:<11} K={len(picked_all):>5} served wrong "
                    f"{wrong_total / len(picked_all):.0%} (round {wrong / max(len(picked), 1):.0%})"
                    + "".join(
                        f" {d} ΔF1 stage {v['stage_macro_f1']:+.3f} persona "
                        f"{v['persona_macro_f1']:+.3f}"
                        for d, v in done.items()
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


def run_seed(
    config: RoundsConfig,
    seed: int,
    workdir: Path,
    verbose: bool,
    partial: Path | None = None,
    done: frozenset[tuple[int, str]] = frozenset(),
) -> dict[str, Any]:
    """Every arm of one seed (arms in ``done`` skipped); each arm appended to ``partial``."""
    start = time.perf_counter()
    prepared = prepare_seed(config.loop_config(), seed, workdir)
    ids = prepared.base.ids
    served = prepared.model.predict_frame(prepared.base.X)
    truth = prepared.truth.reindex(ids)
    wrong = np.zeros(len(ids), dtype=bool)
    for head in _HEADS:
        wrong |= served[head].astype(str).to_numpy() != truth[f"true_{head}"].astype(str).to_numpy()
    head_info = {
        "seed": seed,
        "n_crm_leads": len(ids),
        "served_wrong_base_rate": float(wrong.mean()),
        "n_served_wrong": int(wrong.sum()),
        "before": prepared.before,
        "noise_floor": prepared.noise_floor,
    }
    arms = []
    for arm in config.arms:
        if (seed, arm) in done:
            continue
        record = _arm(config, prepared, arm, workdir, verbose)
        arms.append(record)
        if partial is not None:
            with partial.open("a") as fh:
                fh.write(json.dumps({**head_info, "arm_result": record}) + "\n")
    return {**head_info, "arms": arms, "seconds": time.perf_counter() - start}


def load_partial(path: Path) -> list[dict[str, Any]]:
    """Seeds as :func:`run_seed` returns them, rebuilt from the appended per-arm records."""
    seeds: dict[int, dict[str, Any]] = {}
    if not path.exists():
        return []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        arm = rec.pop("arm_result")
        entry = seeds.setdefault(rec["seed"], {**rec, "arms": []})
        entry["arms"] = [a for a in entry["arms"] if a["arm"] != arm["arm"]] + [arm]
    return [seeds[k] for k in sorted(seeds)]


def _mean(values: list[float]) -> float:
    return statistics.mean(values) if values else float("nan")


def _arm_of(seed: dict[str, Any], arm: str) -> dict[str, Any] | None:
    return next((a for a in seed["arms"] if a["arm"] == arm), None)


def summarize(results: list[dict[str, Any]], config: RoundsConfig) -> dict[str, Any]:
    """Per arm and K: means over the seeds that ran the arm; lifts over random; the oracle."""
    table = []
    ks = sorted({r["k"] for s in results for a in s["arms"] for r in a["rounds"]})
    arms = [a for a in ARMS if any(_arm_of(s, a) for s in results)]
    for k in ks:
        rows_k = []
        for arm in arms:
            per_seed = {
                s["seed"]: next(r for r in a["rounds"] if r["k"] == k)
                for s in results
                if (a := _arm_of(s, arm)) and any(r["k"] == k for r in a["rounds"])
            }
            if not per_seed:
                continue
            seeds_here = [s for s in results if s["seed"] in per_seed]
            oracle = _mean([min(1.0, s["n_served_wrong"] / k) for s in seeds_here])
            rand = {
                s["seed"]: next(r for r in a["rounds"] if r["k"] == k)["served_wrong_share"]
                for s in seeds_here
                if (a := _arm_of(s, "random")) and any(r["k"] == k for r in a["rounds"])
            }
            ref = _mean(list(rand.values())) if rand else None
            mine_paired = _mean([per_seed[sd]["served_wrong_share"] for sd in rand])
            row = {
                "k": k,
                "arm": arm,
                "seeds": sorted(per_seed),
                "served_wrong_share": _mean([r["served_wrong_share"] for r in per_seed.values()]),
                "served_wrong_by_seed": [r["served_wrong_share"] for r in per_seed.values()],
                "marketing_errors_fixed_share": _mean(
                    [r["marketing_errors_fixed_share"] for r in per_seed.values()]
                ),
                # The simulated reps review queue pages only; they do not act on "leads like
                # this one" suggestions, so none are accepted here.
                "marketing_errors_fixed_by_suggestions": 0,
                "oracle_share": oracle,
                "lift": mine_paired / ref if ref else float("nan"),
                "oracle_lift": _mean(
                    [min(1.0, s["n_served_wrong"] / k) for s in seeds_here if s["seed"] in rand]
                )
                / ref
                if ref
                else float("nan"),
            }
            rows_k.append(row)
        table.extend(rows_k)
    f1 = []
    designs = list(config.designs)
    for k in config.retrain_at:
        for design in designs:
            rand_by_seed = {
                s["seed"]: a["retrained"][str(k)][design]
                for s in results
                if (a := _arm_of(s, "random")) and design in a["retrained"].get(str(k), {})
            }
            for arm in arms:
                entry: dict[str, Any] = {"k": k, "arm": arm, "design": design}
                by_seed_all = {
                    s["seed"]: a["retrained"][str(k)][design]
                    for s in results
                    if (a := _arm_of(s, arm)) and design in a["retrained"].get(str(k), {})
                }
                if not by_seed_all:
                    continue
                entry["seeds"] = sorted(by_seed_all)
                for head in _HEADS:
                    key = f"{head}_macro_f1"
                    by_seed = {sd: v[key] for sd, v in by_seed_all.items()}
                    entry[f"{head}_delta"] = _mean(list(by_seed.values()))
                    entry[f"{head}_delta_by_seed"] = list(by_seed.values())
                    paired = [sd for sd in by_seed if sd in rand_by_seed]
                    wins = [by_seed[sd] > rand_by_seed[sd][key] for sd in paired]
                    entry[f"{head}_wins_vs_random"] = f"{sum(wins)}/{len(wins)}"
                    rand_mean = _mean([rand_by_seed[sd][key] for sd in paired])
                    mine = _mean([by_seed[sd] for sd in paired])
                    entry[f"{head}_x_random"] = (
                        mine / rand_mean if paired and rand_mean > 0 else float("nan")
                    )
                entry["changed"] = [v.get("changed", {}) for v in by_seed_all.values()]
                f1.append(entry)
    refits = [t for s in results for a in s["arms"] for t in a["refit_seconds"]]
    return {
        "table": table,
        "f1": f1,
        "served_wrong_base_rate": _mean([s["served_wrong_base_rate"] for s in results]),
        "noise_floor": {
            head: max(abs(s["noise_floor"][f"{head}_macro_f1"]) for s in results) for head in _HEADS
        }
        if results
        else {h: float("nan") for h in _HEADS},
        "noise_floor_by_seed": {
            s["seed"]: {h: s["noise_floor"][f"{h}_macro_f1"] for h in _HEADS} for s in results
        },
        "refit_seconds_max": max(refits) if refits else None,
        "complete": {s["seed"]: sorted(a["arm"] for a in s["arms"]) for s in results},
    }


def run(
    config: RoundsConfig,
    *,
    verbose: bool = True,
    jobs: int = 1,
    partial: Path | None = None,
) -> dict[str, Any]:
    """Every seed and arm not yet in ``partial``; the result over everything in it.

    Each finished (seed, arm) is appended to ``partial`` (JSON lines) as it
    ends, so a stopped run keeps what it measured and a rerun resumes.
    """
    started = time.perf_counter()
    cpu = time.process_time()
    earlier = load_partial(partial) if partial is not None else []
    done = frozenset((s["seed"], a["arm"]) for s in earlier for a in s["arms"])
    todo = [sd for sd in config.seeds if any((sd, a) not in done for a in config.arms)]
    with tempfile.TemporaryDirectory(prefix="review-rounds-") as tmp:
        root = Path(tmp)
        if jobs > 1 and len(todo) > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=min(jobs, len(todo))) as pool:
                futures = [
                    pool.submit(run_seed, config, sd, root, verbose, partial, done) for sd in todo
                ]
                fresh = [f.result() for f in futures]
        else:
            fresh = [run_seed(config, sd, root, verbose, partial, done) for sd in todo]
    results = load_partial(partial) if partial is not None else fresh
    results = [s for s in results if s["seed"] in config.seeds]
    return {
        "config": asdict(config),
        "seeds": results,
        **summarize(results, config),
        "seconds": time.perf_counter() - started,
        "cpu_seconds_main": time.process_time() - cpu,
    }


_NAMES = {
    "adaptive": "adaptive queue (learns from corrections)",
    "adaptive_no_oof": "adaptive, without out-of-fold inputs",
    "today": "today's queue",
    "uncertainty": "uncertainty only",
    "random": "random",
}


def markdown(result: dict[str, Any]) -> str:
    """The result as Markdown tables."""
    c = result["config"]
    floor = result["noise_floor"]
    complete = result.get("complete", {})
    ran = ", ".join(
        f"seed {sd}: {'all arms' if len(arms) == len(c['arms']) else ', '.join(arms)}"
        for sd, arms in complete.items()
    )
    lines = [
        "# The review loop in rounds, measured",
        "",
        f"{c['n_leads']:,} simulated leads per seed, marketing labels {c['label_noise']:.0%} wrong "
        f"(half systematic); rounds of {c['round_size']} reviews up to {c['max_reviews']}, the "
        "queue updated between rounds; reps: three at 3% error, one at 15%. Served answer "
        f"wrong (stage or persona) on {result['served_wrong_base_rate']:.1%} of all CRM leads. "
        f"Measured: {ran or 'nothing yet'} (of seeds {', '.join(map(str, c['seeds']))}).",
        "",
        "Share of reviewed leads whose served answer was wrong (mean over seeds), lift over "
        "random (paired seeds), the oracle's ceiling, and marketing label errors fixed "
        '(suggestions accepted: 0 — the simulated reps review queue pages only, not "leads '
        'like this one"):',
        "",
        "| K | arm | served wrong | per seed | lift vs random | oracle lift "
        "| marketing errors fixed |",
        "| ---: | --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for row in result["table"]:
        per_seed = " ".join(f"{v:.0%}" for v in row["served_wrong_by_seed"])
        lines.append(
            f"| {row['k']:,} | {_NAMES.get(row['arm'], row['arm'])} | "
            f"{row['served_wrong_share']:.1%} | {per_seed} | {row['lift']:.2f}× | "
            f"{row['oracle_lift']:.2f}× | {row['marketing_errors_fixed_share']:.1%} |"
        )
    by_seed_floor = result.get("noise_floor_by_seed", {})
    lines += [
        "",
        "Macro-F1 gain after retraining (vs the truth on held-out leads), per retraining "
        "design (`bench.review_rounds.DESIGNS`); refit noise floor (base model refitted with "
        f"another seed, no labels) up to {floor['stage']:.3f} stage, {floor['persona']:.3f} "
        "persona ("
        + ", ".join(
            f"seed {sd}: {v['stage']:+.3f} / {v['persona']:+.3f}" for sd, v in by_seed_floor.items()
        )
        + "):",
        "",
        "| K | design | arm | Δ stage | per seed | × random | ahead of random | Δ persona "
        "| per seed | ahead of random |",
        "| ---: | --- | --- | ---: | --- | ---: | --- | ---: | --- | --- |",
    ]
    for e in result["f1"]:
        lines.append(
            f"| {e['k']:,} | {e['design']} | {_NAMES.get(e['arm'], e['arm'])} | "
            f"{e['stage_delta']:+.4f} | "
            + " ".join(f"{v:+.3f}" for v in e["stage_delta_by_seed"])
            + f" | {e['stage_x_random']:.2f}× | {e['stage_wins_vs_random']} | "
            f"{e['persona_delta']:+.4f} | "
            + " ".join(f"{v:+.3f}" for v in e["persona_delta_by_seed"])
            + f" | {e['persona_wins_vs_random']} |"
        )
    refit = result.get("refit_seconds_max")
    lines += [
        "",
        f"Slowest refit of the adaptive queue: {refit:.1f} s (wall, shared machine)."
        if refit is not None
        else "",
        f"Command: `python -m bench.review_loop --rounds --seeds {' '.join(map(str, c['seeds']))} "
        f"--leads {c['n_leads']} --retrain-at {' '.join(map(str, c['retrain_at']))} --designs "
        f"{' '.join(c['designs'])} --arms {' '.join(c['arms'])} --max-reviews {c['max_reviews']}`.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the measurement (resuming from the partial file) and write JSON and Markdown."""
    parser = argparse.ArgumentParser(prog="python -m bench.review_rounds", description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--arms", nargs="+", default=list(DEFAULT_ARMS), choices=ARMS)
    parser.add_argument("--round-size", type=int, default=100)
    parser.add_argument("--max-reviews", type=int, default=1000)
    parser.add_argument("--retrain-at", type=int, nargs="*", default=[500, 1000])
    parser.add_argument("--designs", nargs="+", default=["trust"], choices=list(DESIGNS))
    parser.add_argument(
        "--design-arms",
        nargs="+",
        default=list(DEFAULT_ARMS),
        choices=ARMS,
        help="arms retrained with every design (the others with the first design only)",
    )
    parser.add_argument("--trees", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--name", default="review_rounds")
    parser.add_argument(
        "--summarize",
        action="store_true",
        help="only rebuild the JSON and Markdown from the partial file",
    )
    args = parser.parse_args(argv)
    config = RoundsConfig(
        n_leads=args.leads,
        seeds=tuple(args.seeds),
        arms=tuple(args.arms),
        round_size=args.round_size,
        max_reviews=args.max_reviews,
        retrain_at=tuple(args.retrain_at),
        n_estimators=args.trees,
        designs=tuple(args.designs),
        design_arms=tuple(args.design_arms),
    )
    partial = RESULTS / f"{args.name}.partial.jsonl"
    if args.summarize:
        results = [s for s in load_partial(partial) if s["seed"] in config.seeds]
        result = {
            "config": asdict(config),
            "seeds": results,
            **summarize(results, config),
            "seconds": 0.0,
            "cpu_seconds_main": 0.0,
        }
    else:
        result = run(config, jobs=args.jobs, partial=partial)
    path = write_result(args.name, result)
    md = RESULTS / f"{args.name}.md"
    md.write_text(markdown(result))
    print(markdown(result))
    print(f"wrote {path} and {md} (per-arm records: {partial})")


if __name__ == "__main__":
    main()
