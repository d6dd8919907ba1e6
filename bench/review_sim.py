"""What the review benchmarks share: one simulated seed, its base model, its filled store.

:func:`prepare_seed` simulates leads (marketing's labels are the truth corrupted
at ``label_noise``), keeps a salted quarter as the truth-scored test set, trains
the base model on marketing's labels exactly as ``leadready train`` does, scores
the CRM leads into a store (as ``leadready score --record``) and measures the
refit noise floor. :mod:`bench.review_loop` (one batch of K reviews) and
:mod:`bench.review_rounds` (reviews in rounds, the queue refitted between them)
both start from it, so neither imports the other.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "DEFAULT_STRATEGIES",
    "HEADS",
    "MODEL_NAME",
    "STRATEGIES",
    "LoopConfig",
    "PreparedSeed",
    "prepare_seed",
    "record_out_of_fold",
    "truth_metrics",
]

STRATEGIES: tuple[str, ...] = (
    "queue",
    "queue_retraining",
    "queue_balanced",
    "queue_mixed",
    "queue_oof",
    "random",
)
#: The strategies measured by default.
DEFAULT_STRATEGIES: tuple[str, ...] = ("queue", "queue_retraining", "random")
#: Folds of the out-of-fold scores behind ``queue_oof``.
OOF_FOLDS = 3
HEADS: tuple[str, ...] = ("stage", "persona")
MODEL_NAME = "lead-readiness"


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
        Any of ``"queue"``, ``"queue_retraining"``, ``"queue_oof"`` and ``"random"``.
    random_draws : int
        Draws per K and strategy, averaged: random draws take other leads and
        other rep errors, queue draws the same leads with other rep errors.
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
    strategies: tuple[str, ...] = DEFAULT_STRATEGIES
    random_draws: int = 3
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
        if self.random_draws < 1:
            raise ValueError(f"random draws must be at least 1, got {self.random_draws}")


@dataclass
class PreparedSeed:
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
    oof_store_path: Path | None = None
    noise_floor: dict[str, float] = field(default_factory=dict)
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
        for head in HEADS
        for name in ("macro_f1", "accuracy")
    }


def prepare_seed(config: LoopConfig, seed: int, workdir: Path) -> PreparedSeed:
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
            MODEL_NAME,
            "1",
            source="batch",
            leads=pool,
            input_columns=model.input_columns,
        )
    timings["score_and_record_s"] = time.perf_counter() - start

    # The noise floor: the same data, another LightGBM seed, no corrections.
    start = time.perf_counter()
    refit = fit_lead_model(
        base.subset(~holdout_mask(base.ids, config.holdout_share)),
        replace(train_config, seed=seed + 101),
    )
    again = truth_metrics(refit, test_X, truth)
    noise_floor = {key: again[key] - before[key] for key in before}
    timings["noise_floor_s"] = time.perf_counter() - start

    oof_path = None
    if "queue_oof" in config.strategies:
        start = time.perf_counter()
        oof_path = data_dir / "store-oof.db"
        shutil.copyfile(store_path, oof_path)
        with Store(f"sqlite:///{oof_path}") as store:
            record_out_of_fold(store, base, train_config, folds=OOF_FOLDS, salt=f"oof-{seed}")
        timings["out_of_fold_s"] = time.perf_counter() - start
    return PreparedSeed(
        seed=seed,
        base=base,
        train_config=train_config,
        model=model,
        test_X=test_X,
        truth=truth,
        store_path=store_path,
        labels={h: tuple(v) for h, v in model.labels.items()},
        before=before,
        oof_store_path=oof_path,
        noise_floor=noise_floor,
        timings=timings,
    )


def record_out_of_fold(
    store: Any, base: Any, train_config: Any, *, folds: int = OOF_FOLDS, salt: str = "oof"
) -> int:
    """Score every lead of ``base`` with a model that did not train on it, into ``store``.

    The leads are split into ``folds`` groups by a salted hash of the id; each
    group is scored by a model fitted (``fit_lead_model``, the same settings) on
    the other groups, and the scores are recorded as the leads' newest
    predictions (model version ``oof``), so the review queue ranks on them.

    Returns
    -------
    int
        The number of predictions recorded.
    """
    from training.record import record_scored_frame
    from training.train import fit_lead_model

    ids = [str(i) for i in base.ids]
    group = np.fromiter(
        (
            int.from_bytes(hashlib.sha1(f"{salt}:{i}".encode()).digest()[:8], "big") % folds
            for i in ids
        ),
        dtype=int,
        count=len(ids),
    )
    n = 0
    for k in range(folds):
        model = fit_lead_model(base.subset(group != k), train_config)
        X = base.X[group == k]
        n += record_scored_frame(
            store,
            X,
            model.predict_frame(X),
            MODEL_NAME,
            "oof",
            source="batch",
            input_columns=model.input_columns,
        )
    return n
