"""The adaptive review queue: refit the model of corrections, write the queue's keys.

:func:`refit_queue` reads the store (the queue rows, the feature snapshots of the
served predictions, reps' current labels), fits
:class:`training.correction_model.CorrectionModel` on the reviewed leads and
ranks every unreviewed lead by the estimated probability that its served answer
is wrong, with a diversity discount so that one boundary (say, practitioner →
non_buyer) does not take the whole page: within a group of leads sharing the
same predicted change, the r-th lead's probability is divided by ``1 + r /
diversity_scale``. The result goes into ``lead_queue.sort_key`` (minus
``key_scale`` times the discounted probability), so a page of the queue is still
an index walk. Reviewed leads keep today's key (they sink below the others
anyway).

Cold start (too few corrections to fit): every key is today's priority again.
Run it after every N corrections or on a schedule (``leadready queue --refit``);
a rescoring recomputes the keys of rescored leads with today's formula until
the next refit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from training.correction_model import HEADS, CorrectionModel, CorrectionModelConfig

if TYPE_CHECKING:
    from data.store import Store

__all__ = ["LearnedQueueConfig", "RefitResult", "diversified", "refit_queue", "rep_label_frame"]


@dataclass(frozen=True)
class LearnedQueueConfig:
    """How the adaptive queue ranks.

    Parameters
    ----------
    model
        The correction model's settings (cold-start thresholds included).
    diversity_scale
        The r-th lead of one predicted change counts ``1 / (1 + r /
        diversity_scale)`` of its probability (0: no discount).
    key_scale
        ``sort_key = -key_scale * discounted p_wrong``: on the scale of today's
        priorities, so the read-time stage-change term keeps its weight.
    """

    model: CorrectionModelConfig = field(default_factory=CorrectionModelConfig)
    diversity_scale: float = 150.0
    key_scale: float = 3.0

    def __post_init__(self) -> None:
        if self.diversity_scale < 0:
            raise ValueError(f"diversity_scale must not be negative, got {self.diversity_scale}")
        if self.key_scale <= 0:
            raise ValueError(f"key_scale must be positive, got {self.key_scale}")


@dataclass
class RefitResult:
    """What one refit did."""

    fitted: bool
    n_reviewed: int
    n_wrong: dict[str, int]
    n_keys: int
    seconds: float
    model: CorrectionModel
    predictions: pd.DataFrame | None = None
    queue: pd.DataFrame | None = None

    def summary(self) -> str:
        """One line for a person."""
        if not self.fitted:
            return (
                f"cold start: {self.n_reviewed} reviewed leads are too few to learn from; "
                f"{self.n_keys} leads keep today's ranking"
            )
        wrong = ", ".join(f"{h} {n}" for h, n in self.n_wrong.items())
        return (
            f"learned from {self.n_reviewed} reviewed leads (served answer wrong: {wrong}); "
            f"re-ranked {self.n_keys} leads in {self.seconds:.1f} s"
        )


def rep_label_frame(corrections: pd.DataFrame) -> pd.DataFrame:
    """Reps' current labels, one row per lead: ``stage`` and ``persona`` (NaN: not labelled).

    ``corrections`` is :func:`training.retrain.current_corrections`'s frame.
    """
    if corrections.empty:
        return pd.DataFrame(columns=list(HEADS), dtype=object)
    wide = corrections.pivot_table(
        index="lead_id", columns="field", values="new_label", aggfunc="last"
    )
    return wide.reindex(columns=list(HEADS)).astype(object)


def _features(store: Store, lead_ids: Any) -> pd.DataFrame:
    latest = store.latest_predictions(lead_ids, with_features=True)
    snapshots = {i: row.get("features") or {} for i, row in latest.items()}
    return pd.DataFrame.from_dict(snapshots, orient="index")


def diversified(p_wrong: pd.Series, group: pd.Series, scale: float) -> pd.Series:
    """``p_wrong / (1 + r / scale)``, r the lead's rank by ``p_wrong`` within its group."""
    if scale <= 0 or p_wrong.empty:
        return p_wrong.astype(float)
    frame = pd.DataFrame({"p": p_wrong.astype(float), "g": group.astype(str)})
    rank = frame.groupby("g")["p"].rank(method="first", ascending=False) - 1.0
    return frame["p"] / (1.0 + rank / scale)


def _groups(pred: pd.DataFrame, queue: pd.DataFrame) -> pd.Series:
    """The predicted change of each lead: its likelier wrong head, served label → rep label."""
    stage_first = pred["p_stage_wrong"] >= pred["p_persona_wrong"]
    stage = "stage:" + queue["stage"].astype(str) + ">" + pred["stage_to"].astype(str)
    persona = "persona:" + queue["persona"].astype(str) + ">" + pred["persona_to"].astype(str)
    return stage.where(stage_first, persona)


def refit_queue(
    store: Store, config: LearnedQueueConfig | None = None, *, write: bool = True
) -> RefitResult:
    """Fit the model of corrections on the corrections so far and re-key the queue.

    ``write=False`` fits and predicts without touching the keys (for retraining).

    Returns
    -------
    RefitResult
        ``predictions`` holds, per unreviewed lead, ``p_wrong``, the per-head
        probabilities and predicted changes, and ``priority`` (discounted);
        None at cold start.
    """
    from data.review_queue import queue_frame, write_sort_keys
    from training.retrain import current_corrections

    config = config or LearnedQueueConfig()
    start = time.perf_counter()
    queue = queue_frame(store)
    reps = rep_label_frame(current_corrections(store))
    reps = reps[reps.index.isin(queue.index)]
    model = CorrectionModel(config.model)
    if len(reps) >= config.model.min_corrections:
        model.fit(_features(store, list(reps.index)), queue.loc[reps.index], reps)
    open_ids = queue.index[~queue["reviewed"].astype(bool) & ~queue.index.isin(reps.index)]
    predictions = None
    if model.fitted_:
        open_queue = queue.loc[open_ids]
        predictions = model.predict(_features(store, list(open_ids)), open_queue)
        assert predictions is not None
        predictions["group"] = _groups(predictions, open_queue)
        predictions["priority"] = diversified(
            predictions["p_wrong"], predictions["group"], config.diversity_scale
        )
        keys = {i: -config.key_scale * float(p) for i, p in predictions["priority"].items()}
    else:
        keys = {i: -float(p) for i, p in queue.loc[open_ids, "base_priority"].items()}
    # Reviewed rows get today's key back (they sink below the others in any case).
    reviewed = queue.index.difference(open_ids)
    keys.update({i: -float(p) for i, p in queue.loc[reviewed, "base_priority"].items()})
    n = write_sort_keys(store, keys) if write else 0
    return RefitResult(
        fitted=model.fitted_,
        n_reviewed=len(reps),
        n_wrong=dict(model.n_wrong_),
        n_keys=n,
        seconds=time.perf_counter() - start,
        model=model,
        predictions=predictions,
        queue=queue,
    )
