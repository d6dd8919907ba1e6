"""Do "leads like this one" carry the same mistake? Precision on the simulator, against its truth.

``python -m bench.similar_quality [--leads 8000] [--seeds 1 2 3]`` writes
``bench/results/similar_quality.json`` (and ``.md``).

Per seed, the data, base model and filled store are prepared as
:mod:`bench.review_loop` prepares them (simulated leads, 20% noisy marketing
labels, half of the noise systematic; the base model trained on marketing's
labels, every CRM lead scored and stored). Simulated reps (the truth, 3% error)
then review leads drawn at random, in steps up to each checkpoint (``--at``,
reviewed leads). At each checkpoint, every reclassify the last step made (served
X → rep's Y, up to ``--per-checkpoint`` of them) is taken as the correction a
rep just made, and the unreviewed leads served X are ranked by
:func:`training.similar.rank_candidates`, once by the model of corrections
(when it can) and once by nearest neighbours.

Reported per checkpoint and method: precision@10 and @50 — the share of the
top leads whose truth for that field is Y (the same mistake: served X, truly
Y) — next to the base rate (the share among every candidate, i.e. what picking
leads served X at random finds), and their ratio (lift). Mean over the
corrections of a seed, then over seeds, with each seed's figure.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RESULTS, write_result

__all__ = ["main", "run"]

_KS = (10, 50)


def _precision(order: Any, truth: Any, field: str, to_label: str, k: int) -> float | None:
    top = list(order[:k])
    if not top:
        return None
    return float((truth.loc[top, f"true_{field}"].astype(str) == to_label).mean())


def _seed(
    seed: int, n_leads: int, checkpoints: list[int], per_checkpoint: int, workdir: Path
) -> dict[str, Any]:
    from bench.review_loop import LoopConfig, _prepare, apply_reviews
    from data.store import Store
    from training.correction_model import CorrectionModelConfig
    from training.similar import SimilarConfig, forget_models, rank_candidates

    start = time.perf_counter()
    prepared = _prepare(
        LoopConfig(n_leads=n_leads, seeds=(seed,), strategies=("random",)), seed, workdir
    )
    truth = prepared.truth
    rng = np.random.default_rng([seed, 19])
    ids = list(prepared.base.ids.astype(str))
    order = list(rng.permutation(ids))
    model_cfg = SimilarConfig(refit_every=1)
    neighbours_cfg = SimilarConfig(model=CorrectionModelConfig(min_corrections=10**9))
    out: dict[str, Any] = {"seed": seed, "checkpoints": []}
    forget_models()
    with Store(f"sqlite:///{prepared.store_path}") as store:
        done = 0
        for target in checkpoints:
            before = int(store.corrections_frame()["id"].max() or 0) if done else 0
            apply_reviews(
                store,
                order[done:target],
                truth,
                prepared.labels,
                rep_error=0.03,
                seed=seed + target,
            )
            done = target
            frame = store.corrections_frame()
            fresh = frame[
                (frame["id"] > before)
                & (frame["kind"] == "reclassify")
                & (frame["old_label"] != frame["new_label"])
            ]
            fresh = fresh.sample(
                n=min(per_checkpoint, len(fresh)), random_state=seed + target
            ).sort_values("id")
            rows: dict[str, list[dict[str, Any]]] = {"correction_model": [], "neighbours": []}
            fell_back = 0
            for correction in fresh.to_dict("records"):
                field, to_label = correction["field"], str(correction["new_label"])
                for name, cfg in (("correction_model", model_cfg), ("neighbours", neighbours_cfg)):
                    ranked = rank_candidates(store, correction, cfg)
                    if name == "correction_model" and ranked.method != name:
                        fell_back += 1
                        continue
                    cands = ranked.candidates.index
                    if not len(cands):
                        continue
                    base = float((truth.loc[cands, f"true_{field}"].astype(str) == to_label).mean())
                    entry = {"base_rate": base, "n_candidates": len(cands)}
                    for k in _KS:
                        entry[f"p_at_{k}"] = _precision(ranked.order, truth, field, to_label, k)
                    rows[name].append(entry)
            summary: dict[str, Any] = {
                "reviewed_leads": target,
                "corrections_ranked": len(fresh),
                "model_fell_back_to_neighbours": fell_back,
            }
            for name, entries in rows.items():
                if not entries:
                    summary[name] = None
                    continue
                s = {
                    "n": len(entries),
                    "base_rate": statistics.mean(e["base_rate"] for e in entries),
                }
                for k in _KS:
                    vals = [e[f"p_at_{k}"] for e in entries if e[f"p_at_{k}"] is not None]
                    s[f"p_at_{k}"] = statistics.mean(vals) if vals else None
                    s[f"lift_at_{k}"] = (
                        s[f"p_at_{k}"] / s["base_rate"] if vals and s["base_rate"] > 0 else None
                    )
                summary[name] = s
            out["checkpoints"].append(summary)
    out["seconds"] = round(time.perf_counter() - start, 1)
    return out


def _mean_over(seeds: list[dict[str, Any]], i: int, name: str, key: str) -> float | None:
    vals = [
        s["checkpoints"][i][name][key]
        for s in seeds
        if s["checkpoints"][i].get(name) and s["checkpoints"][i][name].get(key) is not None
    ]
    return statistics.mean(vals) if vals else None


def run(
    n_leads: int = 8000,
    seeds: tuple[int, ...] = (1, 2, 3),
    checkpoints: tuple[int, ...] = (20, 100, 300),
    per_checkpoint: int = 12,
) -> dict[str, Any]:
    """Every seed, then the means."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-similar-quality-"))
    try:
        per_seed = [_seed(s, n_leads, list(checkpoints), per_checkpoint, workdir) for s in seeds]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    table = []
    for i, target in enumerate(checkpoints):
        row: dict[str, Any] = {"reviewed_leads": target}
        for name in ("correction_model", "neighbours"):
            row[name] = {
                key: _mean_over(per_seed, i, name, key)
                for key in ("base_rate", "p_at_10", "p_at_50", "lift_at_10", "lift_at_50")
            }
            row[name]["per_seed_p_at_10"] = [
                (s["checkpoints"][i].get(name) or {}).get("p_at_10") for s in per_seed
            ]
        table.append(row)
    return {
        "leads": n_leads,
        "seeds": list(seeds),
        "checkpoints": list(checkpoints),
        "per_checkpoint": per_checkpoint,
        "table": table,
        "per_seed": per_seed,
    }


def markdown(result: dict[str, Any]) -> str:
    """The table the README quotes."""

    def pct(v: float | None) -> str:
        return "—" if v is None else f"{v * 100:.0f}%"

    def x(v: float | None) -> str:
        return "—" if v is None else f"{v:.1f}×"

    lines = [
        f"Simulator, {result['leads']:,} leads, seeds {', '.join(map(str, result['seeds']))}; "
        f"up to {result['per_checkpoint']} reclassifies ranked per checkpoint and seed.",
        "",
        "| reviewed leads | method | base rate | precision@10 | lift@10 | precision@50 | lift@50 |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in result["table"]:
        for name in ("correction_model", "neighbours"):
            r = row[name]
            lines.append(
                f"| {row['reviewed_leads']} | {name} | {pct(r['base_rate'])} | {pct(r['p_at_10'])} "
                f"| {x(r['lift_at_10'])} | {pct(r['p_at_50'])} | {x(r['lift_at_50'])} |"
            )
    lines.append("")
    for i, target in enumerate(result["checkpoints"]):
        ranked = sum(s["checkpoints"][i]["corrections_ranked"] for s in result["per_seed"])
        fell = sum(s["checkpoints"][i]["model_fell_back_to_neighbours"] for s in result["per_seed"])
        lines.append(
            f"At {target} reviewed leads the model of corrections ranked {ranked - fell} of "
            f"{ranked} reclassifies (the others: cold start, or a change it had not seen)."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run and write ``bench/results/similar_quality.json`` and ``.md``."""
    parser = argparse.ArgumentParser(prog="python -m bench.similar_quality", description=__doc__)
    parser.add_argument("--leads", type=int, default=8000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--at", type=int, nargs="+", default=[20, 100, 300])
    parser.add_argument("--per-checkpoint", type=int, default=12)
    parser.add_argument("--name", default="similar_quality")
    args = parser.parse_args(argv)
    result = run(args.leads, tuple(args.seeds), tuple(args.at), args.per_checkpoint)
    path = write_result(args.name, result)
    md = markdown(result)
    (RESULTS / f"{args.name}.md").write_text(md)
    print(md)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
