"""Quality against the simulator's hidden truth, with and without label-noise handling.

``python -m bench.quality`` writes ``bench/results/quality.json``.

For each seed (1, 2, 3 by default) the simulator writes 20,000 leads with its
default label noise (a fifth of marketing's labels wrong, half of those
systematically). The model is trained on marketing's labels, as a user would,
on the leads outside training's hash holdout, once per ``label_noise`` mode
(``none``, ``prune``, ``reweight``: see :mod:`training.noise`), with
``training.train.fit_lead_model`` and the default settings. Each is measured
against the truth on the held-out leads (macro-F1 and accuracy per head), next
to the logistic-regression baseline trained on the same rows and labels and
next to marketing's own labels on those leads. The fit's CPU time is recorded
per mode, so the cost of the noise handling is visible.

The ceiling: the model and the logistic regression trained on the TRUE labels
of the same rows (``truth_trained_*``) show how far the features let any
model go, and how much of that a linear model already reaches.

Seed 1 is where the default was chosen; seeds 2 and 3 are reported as the
unbiased figures (``report_seeds``, averaged in ``report_mean``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import write_result

__all__ = ["MODES", "baselines_vs_truth", "main", "run", "run_seed", "summary_rows"]

MODES: tuple[str, ...] = ("none", "prune", "reweight")
HEADS: tuple[str, ...] = ("stage", "persona")


def baselines_vs_truth(
    train_set: Any, held: Any, true: dict[str, Any], *, seed: int
) -> dict[str, dict[str, float]]:
    """Per head: the logistic-regression and majority baselines trained on
    ``train_set``'s (marketing's) labels, and marketing's own labels on ``held``,
    each as macro-F1 against the ``true`` labels of ``held``."""
    import pandas as pd

    from training.evaluate import HeadPrediction, baselines, head_metrics

    base = baselines(
        train_set.X,
        held.X,
        y_train_stage=train_set.y_stage,
        y_train_persona=train_set.y_persona,
        y_test_stage=true["stage"],
        y_test_persona=true["persona"],
        seed=seed,
    )
    out: dict[str, dict[str, float]] = {}
    for head in HEADS:
        labels = held.labels(head)
        classes = tuple(sorted(labels.dropna().unique()))
        onehot = (labels.to_numpy()[:, None] == pd.Index(classes).to_numpy()[None, :]).astype(float)
        marketing = head_metrics(true[head], HeadPrediction(classes, onehot, held.ids))
        out[head] = {
            "logreg_macro_f1": base["logreg"][head]["macro_f1"],
            "majority_macro_f1": base["majority"][head]["macro_f1"],
            "marketing_labels_macro_f1": marketing["macro_f1"],
        }
    return out


def run_seed(seed: int, n_leads: int = 20_000, trees: int = 200) -> dict[str, Any]:
    """Simulate one data set, fit every mode and score everything against the truth."""
    from dataclasses import replace

    import pandas as pd

    from data.simulate import SimulationConfig, simulate, write
    from training.dataset import holdout_mask, load_training_table
    from training.evaluate import baselines, evaluate_heads
    from training.train import TrainConfig, fit_lead_model

    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        data = Path(tmp)
        write(simulate(SimulationConfig(n_leads=n_leads, seed=seed)), data, fmt="parquet")
        ts = load_training_table(
            data / "leads.parquet",
            events_path=data / "events.parquet",
            stage_col="stage",
            persona_col="persona",
        )
        truth = pd.read_parquet(data / "truth.parquet").set_index("lead_id")
    truth.index = truth.index.astype(str)
    config = TrainConfig(
        leads_path=data / "leads.parquet",
        tracking_uri="unused",
        stage_col="stage",
        persona_col="persona",
        n_estimators=trees,
    )
    mask = holdout_mask(ts.ids, config.holdout_share)
    train_set, held = ts.subset(~mask), ts.subset(mask)
    true = {h: truth.loc[held.ids, f"true_{h}"] for h in HEADS}
    train_truth = {h: truth.loc[train_set.ids, f"true_{h}"] for h in HEADS}

    out: dict[str, Any] = {"seed": seed, "n_train": len(train_set), "n_holdout": len(held)}
    out["train_label_noise_rate"] = {
        h: float((train_set.labels(h) != train_truth[h]).mean()) for h in HEADS
    }
    base = baselines_vs_truth(train_set, held, true, seed=config.seed)
    for head in HEADS:
        out[head] = {
            "logreg_macro_f1": base[head]["logreg_macro_f1"],
            "marketing_labels_macro_f1": base[head]["marketing_labels_macro_f1"],
        }
    # The ceiling: the same learners trained on the TRUE labels of the training rows.
    # How far the data lets any model go, and how far a linear one already gets.
    clean = replace(
        train_set,
        y_stage=train_truth["stage"].set_axis(train_set.y_stage.index),
        y_persona=train_truth["persona"].set_axis(train_set.y_persona.index),
    )
    base_true = baselines(
        clean.X,
        held.X,
        y_train_stage=clean.y_stage,
        y_train_persona=clean.y_persona,
        y_test_stage=true["stage"],
        y_test_persona=true["persona"],
        seed=config.seed,
    )
    ceiling = evaluate_heads(
        fit_lead_model(clean, _replace(config, label_noise="none")),
        held.X,
        true["stage"],
        true["persona"],
    )
    for head in HEADS:
        out[head]["truth_trained_macro_f1"] = ceiling[head]["macro_f1"]
        out[head]["truth_trained_logreg_macro_f1"] = base_true["logreg"][head]["macro_f1"]
    out["fit_cpu_seconds"] = {}
    out["label_noise"] = {}
    for mode in MODES:
        cpu = time.process_time()
        model = fit_lead_model(train_set, _replace(config, label_noise=mode))
        out["fit_cpu_seconds"][mode] = round(time.process_time() - cpu, 2)
        scored = evaluate_heads(model, held.X, true["stage"], true["persona"])
        for head in HEADS:
            out[head][f"{mode}_macro_f1"] = scored[head]["macro_f1"]
            out[head][f"{mode}_accuracy"] = scored[head]["accuracy"]
            out[head][f"{mode}_per_class_recall"] = {
                k: v["recall"] for k, v in scored[head]["per_class"].items()
            }
        info = model.metadata.get("label_noise")
        if info:
            out["label_noise"][mode] = info
    return out


def _replace(config: Any, **changes: Any) -> Any:
    from dataclasses import replace

    return replace(config, **changes)


def run(
    seeds: tuple[int, ...] = (1, 2, 3),
    choose_seed: int = 1,
    n_leads: int = 20_000,
    trees: int = 200,
) -> dict[str, Any]:
    """Every seed's figures, and the mean over the seeds other than ``choose_seed``."""
    result: dict[str, Any] = {
        "n_leads": n_leads,
        "trees_per_head": trees,
        "choose_seed": choose_seed,
        "seeds": {},
    }
    for seed in seeds:
        start = time.perf_counter()
        result["seeds"][str(seed)] = run_seed(seed, n_leads, trees)
        print(f"seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    report = [s for s in seeds if s != choose_seed] or list(seeds)
    result["report_seeds"] = report
    mean: dict[str, Any] = {}
    keys = [f"{m}_macro_f1" for m in MODES] + [
        "logreg_macro_f1",
        "marketing_labels_macro_f1",
        "truth_trained_macro_f1",
        "truth_trained_logreg_macro_f1",
    ]
    for head in HEADS:
        mean[head] = {
            k: statistics.fmean(result["seeds"][str(s)][head][k] for s in report) for k in keys
        }
    mean["fit_cpu_seconds"] = {
        m: statistics.fmean(result["seeds"][str(s)]["fit_cpu_seconds"][m] for s in report)
        for m in MODES
    }
    result["report_mean"] = mean
    return result


def summary_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Rows for ``bench/results/SUMMARY.md``: (figure, value, target)."""
    mean = result.get("report_mean")
    if not mean:
        return []
    seeds = ",".join(str(s) for s in result.get("report_seeds", []))
    rows = []
    for head in HEADS:
        m = mean[head]
        rows.append(
            (
                f"{head} macro-F1 vs truth, seeds {seeds} (none / prune / reweight / logreg)",
                " / ".join(
                    f"{m[k]:.3f}" for k in ("none_macro_f1", "prune_macro_f1", "reweight_macro_f1")
                )
                + f" / {m['logreg_macro_f1']:.3f}",
                "model > logreg",
            )
        )
        rows.append(
            (
                f"{head} macro-F1 vs truth when trained on the TRUE labels (model / logreg)",
                f"{m['truth_trained_macro_f1']:.3f} / {m['truth_trained_logreg_macro_f1']:.3f}",
                "the ceiling",
            )
        )
        rows.append(
            (
                f"{head} macro-F1 of marketing's labels vs truth",
                f"{m['marketing_labels_macro_f1']:.3f}",
                "",
            )
        )
    cpu = mean["fit_cpu_seconds"]
    rows.append(
        (
            "fit CPU s at 20k (none / prune / reweight)",
            " / ".join(f"{cpu[m]:.1f}" for m in MODES),
            "",
        )
    )
    return rows


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and write ``bench/results/quality.json``."""
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__)
    parser.add_argument("--seeds", default="1,2,3", help="simulator seeds, comma-separated")
    parser.add_argument(
        "--choose-seed", type=int, default=1, help="the seed defaults were chosen on"
    )
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--trees", type=int, default=200, help="boosting rounds per head")
    args = parser.parse_args(argv)
    seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
    result = run(seeds, args.choose_seed, args.leads, args.trees)
    path = write_result("quality", result)
    for row in summary_rows(result):
        print(" | ".join(row))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
