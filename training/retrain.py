"""Retrain with reps' corrections: base data + every lead's current rep label → challenger → gate.
Design notes: ``docs/design/training.md``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from training.dataset import TrainingSet, holdout_mask, load_training_table
from training.evaluate import HEADS, metric_key
from training.label_trust import apply_label_trust, gather_evidence
from training.promote import CHAMPION, GateDecision, GateSet, current_version
from training.rep_labels import CURRENT_COLUMNS, current_corrections
from training.train import (
    CONFIG_ARTIFACT,
    TrainConfig,
    TrainResult,
    gate_set,
    run_gate_with,
    train_on,
)

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
    """Settings of one retrain. Frozen: use ``dataclasses.replace`` to vary it."""

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
    """Which corrections went into a retrain."""

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
        counted = ("labels", "leads", "training", "gate", "new_leads")
        out = {f"corrections_{name}": float(getattr(self, f"n_{name}")) for name in counted}
        for head, n in self.n_changed.items():
            out[metric_key("corrections_changed", head)] = float(n)
        by_class = {"corrections": self.by_class, "corrections_gate": self.gate_by_class}
        for prefix, per_head in by_class.items():
            for head, counts in per_head.items():
                for label, n in counts.items():
                    out[f"{metric_key(prefix, head)}__{metric_key(label)}"] = float(n)
        for name in ("rep", "reason", "kind", "source"):
            for key, n in getattr(self, f"by_{name}").items():
                out[f"corrections_by_{name}__{metric_key(key)}"] = float(n)
        return out


@dataclass(frozen=True)
class RetrainSet:
    """The training set of a retrain, its weights and the gate set."""

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


def base_train_config(
    config: RetrainConfig, logged: Mapping[str, Any] | None, *, base_version: str | None = None
) -> TrainConfig:
    """The training settings of the base run, with the retrain's overrides."""
    values: dict[str, Any] = dict(logged or {})
    overrides = ("leads_path", "events_path", "id_col", "stage_col", "persona_col")
    overrides += ("f1_tolerance", "recall_margin", "seed")
    values.update({k: getattr(config, k) for k in overrides if getattr(config, k) is not None})
    which = f"version {base_version}" if base_version else "the base model"
    if values.get("leads_path") is None:
        raise ValueError(
            f"cannot tell which lead table {which} was trained on (its run logged no "
            f"leads_path in {CONFIG_ARTIFACT}, as runs from before that artifact do not); "
            "give the base data (--leads, --events and the label columns)"
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
    try:
        return TrainConfig.from_dict(values)
    except ValueError as exc:
        raise ValueError(f"the base run's training settings cannot be read: {exc}") from None


def _logged_config(client: Any, config: RetrainConfig, version: str) -> dict[str, Any] | None:
    """The :data:`~training.train.CONFIG_ARTIFACT` of a version's run, or None."""
    import mlflow

    run_id = client.get_model_version(config.model_name, version).run_id
    folder = CONFIG_ARTIFACT.rpartition("/")[0]
    if not run_id or CONFIG_ARTIFACT not in {a.path for a in client.list_artifacts(run_id, folder)}:
        return None
    return mlflow.artifacts.load_dict(f"runs:/{run_id}/{CONFIG_ARTIFACT}")


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
    """Combine the base training set with reps' current labels, and split off the gate set."""
    notes: list[str] = []
    skipped: Counter[str] = Counter()
    heads = [h for h in HEADS if base.labels(h) is not None]
    base_ids = base.ids
    if not all(isinstance(i, str) for i in base_ids):
        base_ids = pd.Index(base_ids.astype(str), name=base_ids.name)
    rows, snapshot_of, usable = _usable_corrections(
        corrections, heads, set(base_ids), skipped, notes
    )
    rep = {h: rows[rows["field"] == h].set_index("lead_id")["new_label"].astype(str) for h in heads}
    corrected_ids = pd.Index(usable, dtype=object)
    new_ids = [i for i in usable if i not in set(base_ids)]
    X = _corrected_features(base, base_ids, snapshot_of, usable, new_ids, notes)
    labels, changed = _relabelled(base, X.index, rep)
    is_corrected = X.index.isin(corrected_ids)
    full = _corrected_table(base, base_ids, X, labels, is_corrected, new_ids)

    share = holdout_share if gate_share is None else gate_share
    gate_ids = _gate_ids(corrected_ids, share, holdout_share, min_gate_leads, notes)
    training, gate_set, keep = _split_gate(full, labels, rep, gate_ids)

    used = rows.copy()
    used["role"] = np.where(used["lead_id"].isin(set(gate_ids)), "gate", "training")
    used = used.drop(columns=["features"]).reset_index(drop=True)
    summary = _summary(
        corrections,
        used,
        heads,
        skipped=skipped,
        changed=changed,
        share=share,
        n_training=int(len(corrected_ids) - len(gate_ids)),
        n_gate=int(len(gate_ids)),
        n_new_leads=len(new_ids),
    )
    if not len(corrections):
        notes.insert(0, "no reps' corrections in the store: trained on the base data only")
    weights = np.where(is_corrected, float(correction_weight), 1.0)
    return RetrainSet(
        training=training,
        sample_weight=weights[keep],
        corrected=np.asarray(is_corrected)[keep],
        gate=gate_set,
        used=used,
        summary=summary,
        notes=tuple(notes),
    )


def _usable_corrections(
    corrections: pd.DataFrame,
    heads: list[str],
    in_base: set[str],
    skipped: Counter[str],
    notes: list[str],
) -> tuple[pd.DataFrame, dict[str, Any], list[str]]:
    """The corrections a retrain can use: (their rows, the newest reviewed snapshot per
    lead, the usable lead ids in order); the rest counted in ``skipped``."""
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
    lead_ids = list(dict.fromkeys(rows["lead_id"]))
    has_snapshot = np.fromiter(
        (isinstance(f, Mapping) and len(f) > 0 for f in rows["features"]),
        dtype=bool,
        count=len(rows),
    )
    with_features = rows.loc[has_snapshot]
    snapshot_of = with_features.groupby("lead_id", sort=False)["features"].last().to_dict()
    usable = [i for i in lead_ids if i in snapshot_of or i in in_base]
    if len(usable) < len(lead_ids):
        skipped["no feature snapshot and not in the base data"] += len(lead_ids) - len(usable)
    return rows[rows["lead_id"].isin(set(usable))], snapshot_of, usable


def _corrected_features(
    base: TrainingSet,
    base_ids: pd.Index,
    snapshot_of: Mapping[str, Any],
    usable: list[str],
    new_ids: list[str],
    notes: list[str],
) -> pd.DataFrame:
    """The base feature rows with each corrected lead's reviewed snapshot in place of its
    row (base leads without one keep theirs), new leads appended."""
    snap_ids = [i for i in usable if i in snapshot_of]
    X_base = base.X.set_axis(base_ids)
    snapshots = _snapshot_frame([snapshot_of[i] for i in snap_ids], snap_ids, X_base)
    partial = sum(1 for i in snap_ids if set(X_base.columns) - set(snapshot_of[i]))
    if partial:
        notes.append(
            f"{partial} snapshot(s) lack some of the base data's feature columns "
            "(made by a model with other inputs): those columns are missing values"
        )
    if snap_ids:
        X = pd.concat([X_base.drop(index=snap_ids, errors="ignore"), snapshots])
        for column in X_base.columns:
            if _numeric(X_base[column]) and not _numeric(X[column]):
                X[column] = pd.to_numeric(X[column], errors="coerce")
    else:
        X = X_base
    order = base_ids.append(pd.Index(new_ids, dtype=object)) if new_ids else base_ids
    return X.reindex(order.rename(base_ids.name))


def _relabelled(
    base: TrainingSet, ids: pd.Index, rep: Mapping[str, pd.Series]
) -> tuple[dict[str, pd.Series | None], dict[str, int]]:
    """Per head, the base labels with the reps' in their place (None for a head the base
    data has no labels of), and how many rep labels changed one."""
    labels: dict[str, pd.Series | None] = dict.fromkeys(HEADS)
    changed: dict[str, int] = {}
    for head in HEADS:
        y = _labels_of(base.labels(head), ids)
        if y is None:
            continue
        corrected = rep[head]
        before = y.reindex(corrected.index)
        changed[head] = int((before.astype(object).fillna("") != corrected).sum())
        y.loc[corrected.index] = corrected.to_numpy(dtype=object)
        y.name = head
        labels[head] = y
    return labels, changed


def _corrected_table(
    base: TrainingSet,
    base_ids: pd.Index,
    X: pd.DataFrame,
    labels: Mapping[str, pd.Series | None],
    is_corrected: np.ndarray,
    new_ids: list[str],
) -> TrainingSet:
    """The base training set with the corrected features and labels, its slices saying
    ``label_source`` = ``rep`` or ``marketing`` per lead."""
    ids = X.index
    leads = base.leads.set_axis(base_ids).reindex(ids)
    slices = base.slices.set_axis(base_ids).reindex(ids)
    for column in slices.columns:
        if column in X.columns and len(new_ids):
            slices.loc[new_ids, column] = X.loc[new_ids, column].to_numpy(dtype=object)
    slices["label_source"] = np.where(is_corrected, "rep", "marketing")
    return base.relabelled(labels, X=X, ids=ids, leads=leads, slices=slices)


def _gate_ids(
    corrected_ids: pd.Index,
    share: float,
    holdout_share: float,
    min_gate_leads: int,
    notes: list[str],
) -> pd.Index:
    """The corrected leads whose id hashes under the gate share (none when too few)."""
    gate_ids = corrected_ids[holdout_mask(corrected_ids, share)]
    if len(gate_ids) < min_gate_leads and len(corrected_ids) and share > 0:
        notes.append(
            f"only {len(gate_ids)} rep-verified lead(s) fall in the gate set (fewer than "
            f"{min_gate_leads}): no gate set is kept; every correction trains and the gate "
            "runs on the training holdout (reps' labels where they exist, marketing's elsewhere)"
        )
        return corrected_ids[:0]
    if share > holdout_share and len(gate_ids):
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
    return gate_ids


def _split_gate(
    full: TrainingSet,
    labels: Mapping[str, pd.Series | None],
    rep: Mapping[str, pd.Series],
    gate_ids: pd.Index,
) -> tuple[TrainingSet, TrainingSet | None, np.ndarray]:
    """(training set, gate set with the reps' labels only or None, which rows train)."""
    if not len(gate_ids):
        return full, None, np.ones(len(full.ids), dtype=bool)
    gate_rows = np.asarray(full.ids.isin(gate_ids))
    gate_set = full.subset(gate_rows)
    rep_labels = {
        h: None if labels[h] is None else _labels_of(rep[h], gate_set.ids).rename(h) for h in HEADS
    }
    gate_set = replace(gate_set, y_stage=rep_labels["stage"], y_persona=rep_labels["persona"])
    return full.subset(~gate_rows), gate_set, ~gate_rows


def _summary(
    corrections: pd.DataFrame,
    used: pd.DataFrame,
    heads: list[str],
    *,
    skipped: Counter[str],
    changed: dict[str, int],
    share: float,
    n_training: int,
    n_gate: int,
    n_new_leads: int,
) -> CorrectionSummary:
    """The :class:`CorrectionSummary` of the used rows and the counts given."""
    return CorrectionSummary(
        n_labels=int(len(corrections)),
        n_leads=int(corrections["lead_id"].nunique()) if len(corrections) else 0,
        n_training=n_training,
        n_gate=n_gate,
        n_new_leads=n_new_leads,
        n_changed=changed,
        skipped=dict(skipped),
        by_class={h: _counts(used.loc[used["field"] == h, "new_label"]) for h in heads},
        gate_by_class={
            h: _counts(used.loc[(used["field"] == h) & (used["role"] == "gate"), "new_label"])
            for h in heads
        },
        gate_share=float(share),
        by_rep=_counts(used["reviewer"]),
        by_reason=_counts(used["reason"]),
        by_kind=_counts(used["kind"]),
        by_source=_counts(used["source"]),
        correction_ids=tuple(int(i) for i in used["id"]),
    )


def _counts(values: pd.Series) -> dict[str, int]:
    """How many rows carry each value (a missing one as ``(none)``), by value."""
    counts = values.astype(object).where(values.notna(), "(none)").map(str).value_counts()
    return {str(k): int(v) for k, v in counts.sort_index().items()}


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
    frame = retrain_set.used.copy()
    if "created_at" in frame.columns:
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True).map(
            lambda t: None if pd.isna(t) else t.isoformat()
        )
    client.log_text(run_id, frame.to_csv(index=False), "corrections/used.csv")


def _log_trust(run_id: str, trust: Any) -> None:
    """Log every change of training labels' weights: per-rep factors and doubted marketing rows."""
    import mlflow

    metrics = {
        "retrain_marketing_downweighted": float(len(trust.marketing_downweighted)),
        "retrain_shared_rep_labels": float(trust.n_shared_leads),
    }
    mlflow.log_dict(trust.to_dict(), "corrections/label_trust.json", run_id=run_id)
    if trust.soft is not None:
        soft = trust.soft.to_dict()
        metrics["retrain_marketing_soft_relabelled"] = float(soft["n_rows_added"])
        mlflow.log_dict(soft, "corrections/marketing_soft_relabelled.json", run_id=run_id)
    mlflow.log_metrics(metrics, run_id=run_id)
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
    """Train a challenger on the base data plus reps' corrections, log it, gate it: the steps
    in order, each reported to ``progress`` (which is why it reads top to bottom here)."""
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
    logged = None if base_version is None else _logged_config(client, config, str(base_version))
    base_config = base_train_config(config, logged, base_version=base_version)

    report(f"reading {Path(base_config.leads_path).name} and building features", 0.05)
    base = load_training_table(base_config.leads_path, **base_config.table_args())

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
        sets = _gate_sets(config, base_config, base, retrain_set)
        gate_set = sets[0].name
        n_leads = sum(len(s.X) for s in sets)
        report(f"running the promotion gate on the {gate_set} set ({n_leads:,} leads)", 0.85)
        # The base run's gate settings, with this retrain's --force.
        gate_config = replace(base_config, force=config.force)
        decision, gate_metrics = run_gate_with(
            gate_config, trained.version, sets, trained.run_id, client=client
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


def _gate_sets(
    config: RetrainConfig, base_config: TrainConfig, base: TrainingSet, retrain_set: RetrainSet
) -> list[GateSet]:
    """The gate's sets: the rep-verified leads first and the training holdout as well, or
    the training holdout alone; the champion is scored on its own inputs from the base data."""

    training = retrain_set.training
    holdout = training.subset(holdout_mask(training.ids, base_config.holdout_share))
    holdout_set = gate_set(base_config, holdout, base.as_of)
    if retrain_set.gate is None:
        return [holdout_set]
    # The reps' labels decide first; below min_refuse_leads per head they are
    # reported but cannot refuse alone, and the training holdout is compared too.
    name, min_refuse = "rep-verified", config.min_refuse_leads
    first = gate_set(base_config, retrain_set.gate, base.as_of, name=name, min_refuse=min_refuse)
    return [first, holdout_set]
