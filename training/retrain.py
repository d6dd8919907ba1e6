"""Retrain with reps' corrections: base data + every lead's current rep label → challenger → gate.

What goes in
------------
* **The base data**: the lead table (and events) the base model — by default the
  current champion — was trained on, with the same columns and settings.
  ``training.train`` logs its :class:`~training.train.TrainConfig` as run
  parameters (``leads_path``, ``events_path``, ``id_col``, ``stage_col``,
  ``persona_col``, ``exclude``, ``as_of``, LightGBM and routing settings), so
  :func:`base_train_config` reads them back from the base version's run. Any of
  the paths and columns can be overridden in :class:`RetrainConfig` (the files
  moved, or the base model was registered by hand and has no such run). A
  retrain run logs the same parameters, so retrains chain.
* **Every lead's current rep label** (``Store.corrections_frame``): per lead and
  field the newest correction row wins, and counts only when it leaves a rep's
  label current (``is_rep_label``: a reclassify, a confirm, or an undo back to an
  earlier rep label). The lead's row is the **feature snapshot of the prediction
  the rep reviewed** (the newest such snapshot when the rep corrected both
  fields at different times) with the rep's label replacing marketing's for the
  corrected head; the other head keeps the base data's label. A corrected lead
  that is not in the base data is added; one without a snapshot falls back to its
  base feature row (or is skipped, and counted, when it has neither). Corrected
  rows carry ``correction_weight`` (default 2.0) as their sample weight and are
  passed as ``trusted``, so label-noise handling (``TrainConfig.label_noise``)
  never prunes or down-weights them, and weighs them
  (:data:`training.noise.TRUSTED_WEIGHT`) in its out-of-fold fits: marketing
  labels that contradict the reps' labels of similar leads get a low
  out-of-fold probability and are down-weighted, so a correction also cleans
  the marketing labels that share its mistake (marketing's mistakes are partly
  systematic). Its folds follow the lead id, so a retrain that changes a few
  labels leaves the other rows' flags where they were. Weights and trust are
  per row (one for both heads), so a lead whose stage was corrected also
  weighs, and protects, its uncorrected persona label.

The gate set
------------
The rep-verified leads whose id falls in the training holdout — the hash share
:func:`training.dataset.holdout_mask` gives ``holdout_share`` (20%), the rows
``training.train`` never fits on — are kept out of training and are the gate
set: the challenger and the champion are compared on the reps' labels there.
The choice depends on the lead id alone, so it is stable across retrains, is
independent of the label (each class gets its share in expectation; the counts
per class are logged) and, above all, takes only leads that *neither* model was
trained on. A larger ``gate_share`` is allowed, but the leads it adds were in the
champion's training data (with marketing's labels): on them the champion is
scored in-sample, which favours it — on simulated data by about 0.13 stage
macro-F1 — so the result notes it. Forcing every class into the gate set would
have the same flaw, so strata are left to the hash. With fewer than
``min_gate_leads`` leads in the gate set, no gate set is kept: every correction
trains (those in the holdout are evaluated there with the rep's label) and the
gate runs on the training holdout as ``leadready train`` does (reps' labels where
they exist, marketing's elsewhere); the result says so.

What comes out
--------------
A new registered version with alias ``challenger`` (``training.train.train_on``:
evaluation, baselines, plots and the model in an MLflow run), the corrections
that went in logged to that run (parameters, ``corrections_*`` metrics by class,
rep, reason, kind and source, ``corrections/summary.json`` and
``corrections/used.csv``), and the gate decision
(``training.promote.run_gate``). Serving processes follow the ``champion`` alias
on their own, so a promoted challenger is served without a restart.
"""

from __future__ import annotations

import tempfile
import types
import typing
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from training.dataset import TrainingSet, holdout_mask, load_training_table
from training.evaluate import HEADS, metric_key
from training.label_trust import apply_label_trust, gather_evidence
from training.promote import CHAMPION, GateDecision, current_version, run_gate
from training.rep_labels import CURRENT_COLUMNS, current_corrections
from training.train import TrainConfig, TrainResult, train_on

if TYPE_CHECKING:
    from rich.console import Console

    from data.store import Store

__all__ = [
    "CorrectionSummary",
    "RetrainConfig",
    "RetrainResult",
    "RetrainSet",
    "base_train_config",
    "build_retrain_set",
    "current_corrections",
    "retrain",
]

#: Called with (step in words, fraction done in [0, 1]).
Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class RetrainConfig:
    """Settings of one retrain. Frozen: use ``dataclasses.replace`` to vary it.

    Parameters
    ----------
    tracking_uri : str
        MLflow tracking (and registry) URI.
    artifact_root : Path, optional
        Artifact folder of a local (SQLite) tracking store.
    model_name : str
        Registered model name.
    base_version : str, optional
        The version whose training run names the base data and settings;
        default the current champion.
    leads_path, events_path : Path, optional
        Override the base run's lead table / events table.
    id_col, stage_col, persona_col : str, optional
        Override the base run's columns.
    correction_weight : float, default 2.0
        Sample weight of a corrected lead's row (base rows weigh 1).
    gate_share : float, optional
        Share (by id hash) of rep-verified leads kept out of training as the
        gate set; default the base run's training holdout share (see the module
        notes for why).
    min_gate_leads : int, default 20
        Below this many gate leads, no gate set is kept (see the module notes).
    gate : bool, default True
        Run the promotion gate.
    f1_tolerance, recall_margin : float, optional
        Gate settings; default the base run's.
    seed : int, optional
        Classifier seed; default the base run's.
    actor : str
        Recorded with alias moves and as the run's actor.
    run_name : str, optional
        MLflow run name (default ``retrain <n> corrections``).
    min_refuse_leads : int, default 100
        Fewest rep-verified gate leads of a head before they alone can refuse
        a challenger: below it their comparison is reported (with its wide
        interval) and the training holdout, compared too, decides.
    force : bool
        Let the gate promote over a champion of another task (recorded).
    label_trust : bool, default True
        Weigh each rep's labels by measured agreement on multiply-reviewed
        leads and down-weight marketing labels the model of corrections doubts
        (:mod:`training.label_trust`; logged to MLflow).
    soft_relabel : float or None, default 0.8
        With label trust on: split marketing labels the model of corrections
        says are wrong with at least this probability ``p`` into marketing's
        label at weight ``1 - p`` and the predicted rep label as an extra row
        at weight ``p`` (:func:`training.label_trust.soft_relabel`; soft
        labels, never rep labels; every one logged to MLflow). None:
        down-weight them instead (``max(0.1, 1 - p)``). Chosen by measurement
        (``bench/results/review_rounds_ar.md``: +0.060 stage macro-F1 after
        500 corrections against +0.043 down-weighted, mean of 5 seeds).
    """

    tracking_uri: str
    artifact_root: Path | None = None
    model_name: str = "lead-readiness"
    base_version: str | None = None
    leads_path: Path | None = None
    events_path: Path | None = None
    id_col: str | None = None
    stage_col: str | None = None
    persona_col: str | None = None
    correction_weight: float = 2.0
    gate_share: float | None = None
    min_gate_leads: int = 20
    gate: bool = True
    f1_tolerance: float | None = None
    recall_margin: float | None = None
    seed: int | None = None
    actor: str = "leadready retrain"
    run_name: str | None = None
    min_refuse_leads: int = 100
    force: bool = False
    label_trust: bool = True
    soft_relabel: float | None = 0.8

    def __post_init__(self) -> None:
        if self.soft_relabel is not None and not 0.0 < self.soft_relabel <= 1.0:
            raise ValueError(f"soft relabel threshold must be in (0, 1], got {self.soft_relabel}")
        if not self.correction_weight > 0:
            raise ValueError(f"correction weight must be positive, got {self.correction_weight}")
        if self.gate_share is not None and not 0.0 <= self.gate_share < 1.0:
            raise ValueError(f"gate share must be in [0, 1), got {self.gate_share}")
        if self.min_gate_leads < 1:
            raise ValueError(f"min_gate_leads must be at least 1, got {self.min_gate_leads}")


@dataclass(frozen=True)
class CorrectionSummary:
    """Which corrections went into a retrain.

    Attributes
    ----------
    n_labels : int
        Current rep labels (lead × field) found in the store.
    n_leads : int
        Leads with at least one current rep label.
    n_training, n_gate : int
        Corrected leads whose row went into training / into the gate set.
    n_new_leads : int
        Corrected leads that are not in the base data (added rows).
    n_changed : dict
        Per head, rep labels that differ from the base data's label.
    skipped : dict
        Leads or labels left out, by why.
    by_class, by_rep, by_reason, by_kind, by_source : dict
        Counts of the labels used (``by_class`` per head, then label).
    gate_by_class : dict
        Per head and label, how many of them are in the gate set.
    gate_share : float
        The gate share used.
    correction_ids : tuple of int
        The correction rows used (training and gate).
    """

    n_labels: int = 0
    n_leads: int = 0
    n_training: int = 0
    n_gate: int = 0
    n_new_leads: int = 0
    n_changed: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    by_class: dict[str, dict[str, int]] = field(default_factory=dict)
    gate_by_class: dict[str, dict[str, int]] = field(default_factory=dict)
    gate_share: float = 0.0
    by_rep: dict[str, int] = field(default_factory=dict)
    by_reason: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)
    by_source: dict[str, int] = field(default_factory=dict)
    correction_ids: tuple[int, ...] = ()

    @property
    def n_used(self) -> int:
        """Corrected leads used at all (training or gate)."""
        return self.n_training + self.n_gate

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        out = asdict(self)
        out["correction_ids"] = list(self.correction_ids)
        out["n_used"] = self.n_used
        return out

    def metrics(self) -> dict[str, float]:
        """MLflow metrics: ``corrections_*`` counts overall, by class, rep, reason, kind, source."""
        out = {
            "corrections_labels": float(self.n_labels),
            "corrections_leads": float(self.n_leads),
            "corrections_training": float(self.n_training),
            "corrections_gate": float(self.n_gate),
            "corrections_new_leads": float(self.n_new_leads),
        }
        for head, n in self.n_changed.items():
            out[metric_key("corrections_changed", head)] = float(n)
        for prefix, by_class in (
            ("corrections", self.by_class),
            ("corrections_gate", self.gate_by_class),
        ):
            for head, counts in by_class.items():
                for label, n in counts.items():
                    out[f"{metric_key(prefix, head)}__{metric_key(label)}"] = float(n)
        for name, counts in (
            ("rep", self.by_rep),
            ("reason", self.by_reason),
            ("kind", self.by_kind),
            ("source", self.by_source),
        ):
            for key, n in counts.items():
                out[f"corrections_by_{name}__{metric_key(key)}"] = float(n)
        return out


@dataclass(frozen=True)
class RetrainSet:
    """The training set of a retrain, its weights and the gate set.

    Attributes
    ----------
    training : TrainingSet
        Base rows and corrected rows (gate leads removed); a ``label_source``
        slice says ``rep`` or ``marketing`` per lead.
    sample_weight : ndarray of shape (n_training,)
        1 for base rows, ``correction_weight`` for corrected rows.
    corrected : ndarray of bool, shape (n_training,)
        Which training rows carry a rep label.
    gate : TrainingSet or None
        The rep-verified gate set: snapshot rows with the reps' labels only
        (None for a head the rep did not label); None when no gate set is kept.
    used : DataFrame
        The correction rows used, with ``role`` = ``training`` or ``gate``.
    summary : CorrectionSummary
    notes : tuple of str
        What a person should know about this set, in words.
    """

    training: TrainingSet
    sample_weight: np.ndarray
    corrected: np.ndarray
    gate: TrainingSet | None
    used: pd.DataFrame
    summary: CorrectionSummary
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class RetrainResult:
    """What a retrain produced."""

    run_id: str
    version: str
    model_uri: str
    config: RetrainConfig
    base_version: str | None
    base_config: TrainConfig
    corrections: CorrectionSummary
    gate: GateDecision | None
    gate_set: str
    gate_metrics: dict[str, Any]
    train: TrainResult
    notes: tuple[str, ...] = ()

    def gate_macro_f1(self, head: str, which: str = "challenger") -> float | None:
        """Macro-F1 of ``"challenger"`` or ``"champion"`` on the gate set, or None."""
        metrics = self.gate_metrics.get(which) or {}
        value = metrics.get(head, {}).get("macro_f1")
        return None if value is None else float(value)

    def gate_n(self, head: str) -> int:
        """How many gate leads carry a label of ``head``."""
        metrics = self.gate_metrics.get("challenger") or {}
        return int(metrics.get(head, {}).get("n", 0))


# ----------------------------------------------------------------------- base data


def _hint_parts(hint: Any) -> tuple[Any, bool]:
    """(the non-None type of an annotation, whether None is allowed)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        kinds = [a for a in args if a is not type(None)]
        return (kinds[0] if len(kinds) == 1 else str), True
    return hint, False


def _parse_param(text: str, hint: Any) -> Any:
    """A ``TrainConfig.params()`` text value back as the field's type."""
    kind, optional = _hint_parts(hint)
    if text == "" and optional:
        return None
    origin = typing.get_origin(kind)
    if origin is tuple or kind is tuple:
        return tuple(part for part in text.split(",") if part != "")
    if kind is bool:
        if text not in ("True", "False"):
            raise ValueError(f"expected True or False, got {text!r}")
        return text == "True"
    if kind is int:
        return int(text)
    if kind is float:
        return float(text)
    if kind is Path:
        return Path(text)
    if kind is datetime:
        return datetime.fromisoformat(text)
    return text


def base_train_config(
    config: RetrainConfig, params: Mapping[str, str] | None, *, base_version: str | None = None
) -> TrainConfig:
    """The training settings of the base run, with the retrain's overrides.

    Parameters
    ----------
    config : RetrainConfig
    params : mapping of str to str, optional
        The base version's run parameters (None when there is no such run).
    base_version : str, optional
        For messages.

    Returns
    -------
    TrainConfig
        ``gate`` is False (the retrain runs its own gate), tracking and the
        model name are the retrain's.

    Raises
    ------
    ValueError
        No lead table is known (neither logged nor given), or no label column.
    """
    hints = typing.get_type_hints(TrainConfig)
    values: dict[str, Any] = {}
    for f in fields(TrainConfig):
        if params is None or f.name not in params:
            continue
        try:
            values[f.name] = _parse_param(params[f.name], hints[f.name])
        except ValueError as exc:
            raise ValueError(
                f"the base run's parameter {f.name}={params[f.name]!r} cannot be read: {exc}"
            ) from None
    overrides = {
        "leads_path": config.leads_path,
        "events_path": config.events_path,
        "id_col": config.id_col,
        "stage_col": config.stage_col,
        "persona_col": config.persona_col,
        "f1_tolerance": config.f1_tolerance,
        "recall_margin": config.recall_margin,
        "seed": config.seed,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    which = f"version {base_version}" if base_version else "the base model"
    if values.get("leads_path") is None:
        raise ValueError(
            f"cannot tell which lead table {which} was trained on (its run logged no "
            "leads_path); give the base data (--leads, --events and the label columns)"
        )
    if values.get("stage_col") is None and values.get("persona_col") is None:
        raise ValueError(
            f"cannot tell the label columns of {which}; give --stage-col and/or --persona-col"
        )
    for name in ("leads_path", "events_path"):
        path = values.get(name)
        if path is not None and not Path(path).is_file():
            raise ValueError(
                f"{which} was trained on {path}, which no longer exists; "
                f"give the base data's new place (--{name.split('_')[0]})"
            )
    values.update(
        tracking_uri=config.tracking_uri,
        artifact_root=config.artifact_root,
        model_name=config.model_name,
        gate=False,
        actor=config.actor,
        run_name=config.run_name,
    )
    return TrainConfig(**values)


# ----------------------------------------------------------------------- corrections


def _numeric(values: pd.Series) -> bool:
    return pd.api.types.is_bool_dtype(values.dtype) or pd.api.types.is_numeric_dtype(values.dtype)


def _snapshot_frame(
    snapshots: list[Mapping[str, Any]], ids: list[str], like: pd.DataFrame
) -> pd.DataFrame:
    """Feature snapshots as rows with the columns (and column kinds) of ``like``."""
    frame = pd.DataFrame.from_records(snapshots, index=pd.Index(ids, name=like.index.name))
    frame = frame.reindex(columns=like.columns)
    for column in like.columns:
        if _numeric(like[column]):
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
        else:
            values = frame[column].astype(object)
            frame[column] = values.where(values.notna(), None)
    return frame


def _labels_of(y: pd.Series | None, ids: pd.Index) -> pd.Series | None:
    if y is None:
        return None
    return y.reindex(ids).astype(object).where(lambda s: s.notna(), None)


def build_retrain_set(
    base: TrainingSet,
    corrections: pd.DataFrame,
    *,
    correction_weight: float = 2.0,
    gate_share: float | None = None,
    holdout_share: float = 0.2,
    min_gate_leads: int = 20,
) -> RetrainSet:
    """Combine the base training set with reps' current labels, and split off the gate set.

    Parameters
    ----------
    base : TrainingSet
        The base data (``load_training_table``).
    corrections : DataFrame
        :func:`current_corrections` output (or the same columns).
    correction_weight : float, default 2.0
        Sample weight of corrected rows.
    gate_share : float, optional
        Share (by id hash) of rep-verified leads in the gate set; default
        ``holdout_share``.
    holdout_share : float, default 0.2
        The training holdout share ``train_on`` will use.
    min_gate_leads : int, default 20
        Below this many gate leads, no gate set is kept.

    Returns
    -------
    RetrainSet
    """
    notes: list[str] = []
    heads = [h for h in HEADS if base.labels(h) is not None]
    skipped: Counter[str] = Counter()
    rows = corrections.copy() if len(corrections) else pd.DataFrame(columns=list(CURRENT_COLUMNS))
    rows["lead_id"] = rows["lead_id"].astype(str)
    unknown_head = ~rows["field"].isin(heads)
    for head in rows.loc[unknown_head, "field"].unique():
        n = int((rows["field"] == head).sum())
        skipped[f"no {head} labels in the base data"] += n
        notes.append(
            f"{n} rep {head} label(s) not used: the base data has no {head} labels to train a head on"
        )
    rows = rows[~unknown_head]

    base_ids = base.ids
    if not all(isinstance(i, str) for i in base_ids):
        base_ids = pd.Index(base_ids.astype(str), name=base_ids.name)
    in_base = set(base_ids)
    lead_ids = list(dict.fromkeys(rows["lead_id"]))
    # Newest snapshot a rep reviewed, per lead.
    has_snapshot = np.fromiter(
        (isinstance(f, Mapping) and len(f) > 0 for f in rows["features"]),
        dtype=bool,
        count=len(rows),
    )
    with_features = rows.loc[has_snapshot]
    snapshot_of = with_features.groupby("lead_id", sort=False)["features"].last().to_dict()
    usable = [i for i in lead_ids if i in snapshot_of or i in in_base]
    for lead_id in lead_ids:
        if lead_id not in snapshot_of and lead_id not in in_base:
            skipped["no feature snapshot and not in the base data"] += 1
    rows = rows[rows["lead_id"].isin(set(usable))]

    rep = {h: rows[rows["field"] == h].set_index("lead_id")["new_label"].astype(str) for h in heads}
    corrected_ids = pd.Index(usable, dtype=object)
    new_ids = [i for i in usable if i not in in_base]
    snap_ids = [i for i in usable if i in snapshot_of]
    X_base = base.X.copy()
    X_base.index = base_ids
    snapshots = _snapshot_frame([snapshot_of[i] for i in snap_ids], snap_ids, X_base)
    partial = sum(1 for i in snap_ids if set(X_base.columns) - set(snapshot_of[i]))
    if partial:
        notes.append(
            f"{partial} snapshot(s) lack some of the base data's feature columns "
            "(made by a model with other inputs): those columns are missing values"
        )

    # Corrected leads take their snapshot row; base leads without one keep theirs.
    if snap_ids:
        X = pd.concat([X_base.drop(index=snap_ids, errors="ignore"), snapshots])
        for column in X_base.columns:
            if _numeric(X_base[column]) and not _numeric(X[column]):
                X[column] = pd.to_numeric(X[column], errors="coerce")
    else:
        X = X_base
    order = base_ids.append(pd.Index(new_ids, dtype=object)) if new_ids else base_ids
    X = X.reindex(order.rename(base_ids.name))
    ids = X.index

    labels: dict[str, pd.Series | None] = {}
    changed: dict[str, int] = {}
    for head in HEADS:
        y = _labels_of(base.labels(head), ids)
        if y is None:
            labels[head] = None
            continue
        corrected = rep[head]
        before = y.reindex(corrected.index)
        changed[head] = int((before.astype(object).fillna("") != corrected).sum())
        y.loc[corrected.index] = corrected.to_numpy(dtype=object)
        y.name = head
        labels[head] = y

    is_corrected = ids.isin(corrected_ids)
    weights = np.where(is_corrected, float(correction_weight), 1.0)

    leads = base.leads.copy()
    leads.index = base_ids
    leads = leads.reindex(ids)
    slices = base.slices.copy()
    slices.index = base_ids
    slices = slices.reindex(ids)
    for column in slices.columns:
        if column in X.columns and len(new_ids):
            slices.loc[new_ids, column] = X.loc[new_ids, column].to_numpy(dtype=object)
    for head in HEADS:
        if labels[head] is not None and head in slices.columns:
            slices[head] = labels[head].to_numpy(dtype=object)
    slices["label_source"] = np.where(is_corrected, "rep", "marketing")
    full = replace(
        base,
        X=X,
        y_stage=labels["stage"],
        y_persona=labels["persona"],
        ids=ids,
        leads=leads,
        slices=slices,
    )

    # The gate set: the corrected leads whose id hashes under the gate share.
    share = holdout_share if gate_share is None else gate_share
    in_gate = holdout_mask(corrected_ids, share)
    gate_ids = corrected_ids[in_gate]
    if len(gate_ids) < min_gate_leads and len(corrected_ids) and share > 0:
        notes.append(
            f"only {len(gate_ids)} rep-verified lead(s) fall in the gate set (fewer than "
            f"{min_gate_leads}): no gate set is kept; every correction trains and the gate "
            "runs on the training holdout (reps' labels where they exist, marketing's elsewhere)"
        )
        gate_ids = corrected_ids[:0]
    elif share > holdout_share and len(gate_ids):
        seen = int((~holdout_mask(gate_ids, holdout_share)).sum())
        notes.append(
            f"{seen} of the {len(gate_ids)} gate leads hash outside the training holdout "
            f"(gate share {share} > holdout share {holdout_share}): the champion was trained "
            "on them, which favours it at the gate"
        )
    elif share < holdout_share and len(gate_ids):
        notes.append(
            f"the gate share {share} is below the training holdout share {holdout_share}: "
            "corrections in between are evaluated in the holdout instead of trained on"
        )
    gate_set = None
    if len(gate_ids):
        gate_rows = np.asarray(ids.isin(gate_ids))
        gate_set = full.subset(gate_rows)
        gate_set = replace(
            gate_set,
            y_stage=None
            if labels["stage"] is None
            else _rep_only(rep["stage"], gate_set.ids, "stage"),
            y_persona=None
            if labels["persona"] is None
            else _rep_only(rep["persona"], gate_set.ids, "persona"),
        )
        training = full.subset(~gate_rows)
        keep = ~gate_rows
    else:
        training = full
        keep = np.ones(len(ids), dtype=bool)

    used = rows.copy()
    used["role"] = np.where(used["lead_id"].isin(set(gate_ids)), "gate", "training")
    used = used.drop(columns=["features"]).reset_index(drop=True)

    def count(column: str) -> dict[str, int]:
        values = used[column].astype(object).where(used[column].notna(), "(none)").map(str)
        return {str(k): int(v) for k, v in values.value_counts().sort_index().items()}

    summary = CorrectionSummary(
        n_labels=int(len(corrections)),
        n_leads=int(corrections["lead_id"].nunique()) if len(corrections) else 0,
        n_training=int(len(corrected_ids) - len(gate_ids)),
        n_gate=int(len(gate_ids)),
        n_new_leads=len(new_ids),
        n_changed=changed,
        skipped=dict(skipped),
        by_class={h: _label_counts(used[used["field"] == h]) for h in heads},
        gate_by_class={
            h: _label_counts(used[(used["field"] == h) & (used["role"] == "gate")]) for h in heads
        },
        gate_share=float(share),
        by_rep=count("reviewer"),
        by_reason=count("reason"),
        by_kind=count("kind"),
        by_source=count("source"),
        correction_ids=tuple(int(i) for i in used["id"]),
    )
    if not len(corrections):
        notes.insert(0, "no reps' corrections in the store: trained on the base data only")
    return RetrainSet(
        training=training,
        sample_weight=weights[keep],
        corrected=np.asarray(is_corrected)[keep],
        gate=gate_set,
        used=used,
        summary=summary,
        notes=tuple(notes),
    )


def _label_counts(rows: pd.DataFrame) -> dict[str, int]:
    """How many rows carry each ``new_label``, by label."""
    counts = rows["new_label"].astype(str).value_counts().sort_index()
    return {str(k): int(v) for k, v in counts.items()}


def _rep_only(rep: pd.Series, ids: pd.Index, head: str) -> pd.Series:
    """The reps' labels of one head for ``ids`` (None where the rep gave none)."""
    y = rep.reindex(ids).astype(object)
    y = y.where(y.notna(), None)
    y.name = head
    return y


# ----------------------------------------------------------------------------- run


def _log_corrections(run_id: str, retrain_set: RetrainSet, base_version: str | None) -> None:
    """Log what went in to the challenger's run: metrics, tags, summary and the rows used."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    mlflow.log_metrics(retrain_set.summary.metrics(), run_id=run_id)
    client.set_tag(run_id, "leadready.retrain", "true")
    client.set_tag(run_id, "leadready.corrections", str(retrain_set.summary.n_used))
    client.set_tag(run_id, "leadready.base_version", base_version or "")
    mlflow.log_dict(
        {**retrain_set.summary.to_dict(), "notes": list(retrain_set.notes)},
        "corrections/summary.json",
        run_id=run_id,
    )
    with tempfile.TemporaryDirectory(prefix="leadready-corrections-") as tmp:
        path = Path(tmp) / "used.csv"
        frame = retrain_set.used.copy()
        if "created_at" in frame.columns:
            frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True).map(
                lambda t: None if pd.isna(t) else t.isoformat()
            )
        frame.to_csv(path, index=False)
        client.log_artifact(run_id, str(path), "corrections")


def _log_trust(run_id: str, trust: Any) -> None:
    """Log every change of training labels' weights: per-rep factors and doubted marketing rows."""
    import mlflow

    mlflow.log_metrics(
        {
            "retrain_marketing_downweighted": float(len(trust.marketing_downweighted)),
            "retrain_shared_rep_labels": float(trust.n_shared_leads),
        },
        run_id=run_id,
    )
    mlflow.log_dict(trust.to_dict(), "corrections/label_trust.json", run_id=run_id)
    soft = getattr(trust, "soft", None)
    if soft is not None:
        mlflow.log_metrics(
            {"retrain_marketing_soft_relabelled": float(soft.to_dict()["n_rows_added"])},
            run_id=run_id,
        )
        mlflow.log_dict(soft.to_dict(), "corrections/marketing_soft_relabelled.json", run_id=run_id)
    mlflow.log_dict(
        {"marketing_weight_factor": trust.marketing_downweighted},
        "corrections/marketing_downweighted.json",
        run_id=run_id,
    )


def retrain(
    config: RetrainConfig,
    store: Store,
    *,
    progress: Progress | None = None,
    console: Console | None = None,
) -> RetrainResult:
    """Train a challenger on the base data plus reps' corrections, log it, gate it.

    Parameters
    ----------
    config : RetrainConfig
    store : Store
        Where the corrections and the predictions' feature snapshots are.
    progress : callable, optional
        ``progress(step, fraction)`` at each step (the review UI's retrain
        button shows it).
    console : rich.console.Console, optional
        Passed to ``train_on`` for its own step output (leave None under a
        live progress display).

    Returns
    -------
    RetrainResult

    Raises
    ------
    ValueError
        The base data cannot be found or read (message says what to pass).
    """
    from mlflow import MlflowClient

    from model.registry import configure

    def report(step: str, fraction: float) -> None:
        if progress is not None:
            progress(step, fraction)

    report("finding the base training data", 0.0)
    configure(config.tracking_uri, config.artifact_root)
    client = MlflowClient()
    base_version = config.base_version or current_version(
        config.model_name, CHAMPION, client=client
    )
    params: dict[str, str] | None = None
    if base_version is not None:
        run_id = client.get_model_version(config.model_name, str(base_version)).run_id
        if run_id:
            params = dict(client.get_run(run_id).data.params)
    base_config = base_train_config(config, params, base_version=base_version)

    report(f"reading {Path(base_config.leads_path).name} and building features", 0.05)
    base = load_training_table(
        base_config.leads_path,
        events_path=base_config.events_path,
        id_col=base_config.id_col,
        stage_col=base_config.stage_col,
        persona_col=base_config.persona_col,
        exclude=base_config.exclude,
        as_of=base_config.as_of,
        slice_cols=base_config.slice_cols,
    )

    report("collecting reps' corrections", 0.3)
    retrain_set = build_retrain_set(
        base,
        current_corrections(store),
        correction_weight=config.correction_weight,
        gate_share=config.gate_share,
        holdout_share=base_config.holdout_share,
        min_gate_leads=config.min_gate_leads,
    )
    summary = retrain_set.summary
    trust = None
    if config.label_trust:
        report("weighing reps and marketing's labels", 0.32)
        retrain_set, trust = apply_label_trust(
            retrain_set,
            gather_evidence(store),
            soft_threshold=config.soft_relabel,
            holdout_share=base_config.holdout_share,
        )
    if base_config.run_name is None:
        base_config = replace(base_config, run_name=f"retrain {summary.n_used} corrections")

    report(f"training the challenger ({summary.n_training:,} corrected leads in training)", 0.35)
    trained = train_on(
        retrain_set.training,
        base_config,
        console=console,
        sample_weight=retrain_set.sample_weight,
        trusted=retrain_set.corrected,
        extra_params={
            "retrain_base_version": base_version or "",
            "retrain_correction_weight": config.correction_weight,
            "retrain_gate_share": summary.gate_share,
            "retrain_corrections": summary.n_used,
            "retrain_corrections_training": summary.n_training,
            "retrain_corrections_gate": summary.n_gate,
        },
    )
    report("logging the corrections used", 0.8)
    _log_corrections(trained.run_id, retrain_set, base_version)
    if trust is not None:
        _log_trust(trained.run_id, trust)

    decision: GateDecision | None = None
    gate_metrics: dict[str, Any] = {}
    gate_set = "none"
    if config.gate:
        holdout = retrain_set.training.subset(
            holdout_mask(retrain_set.training.ids, base_config.holdout_share)
        )
        from training.promote import GateSet, inputs_from_table

        def table_inputs(fallback: pd.DataFrame) -> Any:
            return inputs_from_table(
                leads_path=base_config.leads_path,
                fallback=fallback,
                events_path=base_config.events_path,
                id_col=base_config.id_col,
                stage_col=base_config.stage_col,
                persona_col=base_config.persona_col,
                as_of=base.as_of,
                seed=base_config.seed,
            )

        holdout_set = GateSet(
            "training holdout",
            holdout.X,
            holdout.y_stage,
            holdout.y_persona,
            table_inputs(holdout.X),
        )
        if retrain_set.gate is not None:
            # The reps' labels decide first; below min_refuse_leads per head they are
            # reported but cannot refuse alone, and the training holdout is compared too.
            gate_set = "rep-verified"
            first = GateSet(
                "rep-verified",
                retrain_set.gate.X,
                retrain_set.gate.y_stage,
                retrain_set.gate.y_persona,
                table_inputs(retrain_set.gate.X),
                config.min_refuse_leads,
            )
            extra = [holdout_set]
        else:
            gate_set = "training holdout"
            first, extra = holdout_set, []
        n_leads = len(first.X) + sum(len(e.X) for e in extra)
        report(f"running the promotion gate on the {gate_set} set ({n_leads:,} leads)", 0.85)
        decision, gate_metrics = run_gate(
            model_name=config.model_name,
            challenger_version=trained.version,
            X=first.X,
            y_stage=first.y_stage,
            y_persona=first.y_persona,
            run_id=trained.run_id,
            f1_tolerance=base_config.f1_tolerance,
            recall_margin=base_config.recall_margin,
            by=config.actor,
            client=client,
            set_name=first.name,
            champion_inputs=first.champion_inputs,
            min_refuse=first.min_refuse,
            extra_sets=extra,
            force=config.force,
            seed=base_config.seed,
        )
    verdict = "not gated" if decision is None else ("promoted" if decision.promote else "refused")
    report(f"done: version {trained.version} {verdict}", 1.0)
    return RetrainResult(
        run_id=trained.run_id,
        version=trained.version,
        model_uri=trained.model_uri,
        config=config,
        base_version=base_version,
        base_config=base_config,
        corrections=summary,
        gate=decision,
        gate_set=gate_set,
        gate_metrics=gate_metrics,
        train=trained,
        notes=retrain_set.notes,
    )
