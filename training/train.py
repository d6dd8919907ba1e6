"""Train a lead-readiness model on a lead table, log it to MLflow, register it, gate it.
Design notes: ``docs/design/training.md``."""

from __future__ import annotations

import functools
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from data.coltypes import parse_types
from data.values import utc_now
from training.dataset import DEFAULT_SLICE_COLUMNS, TrainingSet, holdout_mask, load_training_table
from training.evaluate import HEADS, evaluate_with_baselines, flatten_metrics, plots
from training.noise import LabelNoiseResult, clean_labels, noise_metrics
from training.procedure import procedure_metrics, procedure_report, procedure_table
from training.promote import CHALLENGER, GateSet, inputs_from_table, move_alias, run_gate

if TYPE_CHECKING:
    from rich.console import Console

    from model.classifier import HeadClassifier
    from model.package import LeadReadinessModel
    from training.promote import GateDecision

__all__ = [
    "CONFIG_ARTIFACT",
    "TrainConfig",
    "TrainResult",
    "fit_lead_model",
    "gate_set",
    "request_stop",
    "run_gate_with",
    "train",
    "train_on",
]

#: Training rows the compiled trees are checked against (at logging and at every load).
COMPILE_CHECK_ROWS = 256
#: Run artifact holding :meth:`TrainConfig.to_dict`, read back by a retrain.
CONFIG_ARTIFACT = "training/config.json"


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs. Frozen: use ``dataclasses.replace`` to vary it."""

    leads_path: Path
    tracking_uri: str
    artifact_root: Path | None = None
    events_path: Path | None = None
    id_col: str = "lead_id"
    stage_col: str | None = None
    persona_col: str | None = None
    exclude: tuple[str, ...] = ()
    as_of: datetime | None = None
    slice_cols: tuple[str, ...] = DEFAULT_SLICE_COLUMNS
    holdout_share: float = 0.2
    seed: int = 0
    max_rows: int | None = None
    n_estimators: int = 200
    learning_rate: float = 0.1
    num_leaves: int = 15
    num_threads: int = 1
    label_noise: Literal["none", "prune", "reweight"] = "reweight"
    cv_folds: int = 3
    decision: Literal["argmax", "macro_f1"] = "macro_f1"
    family: Literal["auto", "lightgbm", "linear", "blend"] = "auto"
    sales_ready: tuple[str, ...] | None = None
    #: Stop at the first input line that cannot be read (``--strict``).
    strict: bool = False
    #: Where the rejected lines of the inputs are written, when there are any.
    rejected_report: Path | None = None
    #: Column kinds forced by the user: ``"Annual Revenue=number,Close Date=date"``.
    types: str | None = None
    #: Columns kept as features although they look personal or leaky.
    allow_columns: tuple[str, ...] = ()
    sales_threshold: float = 0.5
    review_margin: float = 0.1
    min_confidence: float = 0.4
    nurture_personas: tuple[str, ...] = ("non_buyer",)
    model_name: str = "lead-readiness"
    gate: bool = True
    f1_tolerance: float = 0.01
    recall_margin: float = 0.05
    actor: str = "leadready train"
    run_name: str | None = None
    compile: bool = True
    force: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The settings as JSON values, logged as :data:`CONFIG_ARTIFACT`."""
        return _config_adapter().dump_python(self, mode="json")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Settings back from :meth:`to_dict` (pydantic converts and checks the types)."""
        return _config_adapter().validate_python(dict(values))

    def params(self) -> dict[str, Any]:
        """The settings as MLflow parameters (text values, None as empty), for the UI."""
        out = {}
        for key, value in asdict(self).items():
            if isinstance(value, tuple):
                value = ",".join(map(str, value))
            out[key] = "" if value is None else str(value)
        return out

    def table_args(self) -> dict[str, Any]:
        """The :func:`~training.dataset.load_training_table` arguments that name the data."""
        data = ("events_path", "id_col", "stage_col", "persona_col", "exclude", "as_of")
        return {key: getattr(self, key) for key in (*data, "slice_cols")}


@functools.cache
def _config_adapter() -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(TrainConfig)


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    run_id: str
    version: str
    model_uri: str
    metrics: dict[str, float]
    evaluation: dict[str, Any]
    baselines: dict[str, Any]
    gate: GateDecision | None
    n_train: int
    n_holdout: int
    timings: dict[str, float] = field(default_factory=dict)

    def macro_f1(self, head: str, which: str = "model") -> float | None:
        """Holdout macro-F1 of a head for ``"model"``, ``"logreg"`` or ``"majority"``."""
        source = self.evaluation if which == "model" else self.baselines.get(which, {})
        value = source.get(head, {}).get("macro_f1")
        return None if value is None else float(value)


def _compile_rows(X: Any) -> Any:
    """A fixed sample of training rows to check the compiled trees on."""
    n = min(COMPILE_CHECK_ROWS, len(X))
    return X.sample(n, random_state=0) if n < len(X) else X


class _Steps:
    """Rich progress output for the steps of a run (silent without a console)."""

    def __init__(self, console: Console | None) -> None:
        self.console = console
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, key: str, text: str) -> Iterator[None]:
        start = time.perf_counter()
        with nullcontext() if self.console is None else self.console.status(f"{text}…"):
            yield
        took = time.perf_counter() - start
        self.timings[key] = took
        if self.console is not None:
            self.console.print(f"[green]✓[/green] {text} [dim]({took:.1f} s)[/dim]")


def _routing(config: TrainConfig) -> Any:
    from model.routing import RoutingConfig

    return RoutingConfig(
        sales_ready_stages=config.sales_ready,
        sales_threshold=config.sales_threshold,
        review_margin=config.review_margin,
        min_confidence=config.min_confidence,
        nurture_personas=config.nurture_personas,
    )


def fit_lead_model(
    train_set: TrainingSet,
    config: TrainConfig,
    *,
    feature_config: Any | None = None,
    sample_weight: Sequence[float] | None = None,
    metadata: dict[str, Any] | None = None,
    trusted: Sequence[bool] | None = None,
) -> LeadReadinessModel:
    """Fit the two-head classifier on a training set and package it."""
    from model.classifier import TwoHeadClassifier
    from model.features import FeatureConfig
    from model.package import LeadReadinessModel

    labels = {h: train_set.labels(h) for h in HEADS}
    labels = {h: None if y is None else y.to_numpy(dtype=object) for h, y in labels.items()}
    weight = None if sample_weight is None else np.asarray(sample_weight, dtype=float)
    noise = clean_labels(
        train_set.X,
        labels,
        config.label_noise,
        num_threads=config.num_threads,
        seed=config.seed,
        trusted=trusted,
    )
    classifier = TwoHeadClassifier(
        stage_estimator=_head_classifier(config), persona_estimator=_head_classifier(config)
    )
    if config.label_noise == "reweight":
        X, y_stage, y_persona, weight = _per_head_rows(train_set.X, noise, weight)
    else:
        X, y_stage, y_persona = train_set.X, noise.y["stage"], noise.y["persona"]
    classifier.fit(X, y_stage=y_stage, y_persona=y_persona, sample_weight=weight)
    metadata = dict(metadata or {})
    if config.label_noise != "none":
        metadata["label_noise"] = {
            "mode": noise.mode,
            "flagged": noise.flagged,
            "seconds": round(noise.seconds, 3),
        }
    return LeadReadinessModel(
        classifier,
        input_columns=list(train_set.X.columns),
        feature_config=feature_config if feature_config is not None else FeatureConfig(),
        routing=_routing(config),
        metadata=metadata,
    )


def _head_classifier(config: TrainConfig) -> HeadClassifier:
    """One head as the settings ask for it."""
    from model.classifier import HeadClassifier

    same = ("n_estimators", "learning_rate", "num_leaves", "num_threads", "cv_folds", "decision")
    return HeadClassifier(
        random_state=config.seed, family=config.family, **{k: getattr(config, k) for k in same}
    )


def _per_head_rows(
    X: Any, noise: LabelNoiseResult, weight: np.ndarray | None
) -> tuple[Any, np.ndarray | None, np.ndarray | None, np.ndarray]:
    """The rows stacked once per head, so each head gets its own row weights."""
    import pandas as pd

    n = len(X)
    base = np.ones(n) if weight is None else weight
    present = [h for h in ("stage", "persona") if noise.y[h] is not None]
    ys: dict[str, list[np.ndarray]] = {h: [] for h in present}
    for h in present:
        for other in present:
            ys[other].append(noise.y[h] if other == h else np.full(n, None, dtype=object))
    y = {h: np.concatenate(ys[h]) for h in present}
    weights = np.concatenate([base * noise.weights[h] for h in present])
    return pd.concat([X] * len(present), axis=0), y.get("stage"), y.get("persona"), weights


def train(
    config: TrainConfig, *, console: Console | None = None, notices: Console | None = None
) -> TrainResult:
    """Read the lead table named in ``config`` and run :func:`train_on` on it."""
    steps = _Steps(console)
    with steps.step(
        "read_features_s", f"reading {Path(config.leads_path).name} and building features"
    ):
        training_set = load_training_table(
            config.leads_path,
            **config.table_args(),
            max_rows=config.max_rows,
            seed=config.seed,
            strict=config.strict,
            types=parse_types(config.types),
            allow_columns=config.allow_columns,
        )
    from training.input_report import print_training_input

    notices = notices if notices is not None else console
    try:
        config, training_set = _with_sales_ready(config, training_set)
    finally:  # what was read and inferred is said, before a stop too
        if notices is not None:
            print_training_input(notices, training_set, config.rejected_report)
    sample = training_set.sample
    if sample is not None and sample.sampled and notices is not None:
        notices.print(f"[yellow]{sample.describe(training_set.name)} (--max-rows)")
    return train_on(training_set, config, console=console, _steps=steps)


def _with_sales_ready(config: TrainConfig, ts: TrainingSet) -> tuple[TrainConfig, TrainingSet]:
    """Infer the sales-ready stages when not given, or stop naming the labels and the flag
    (readiness is never left undefined without a word)."""
    if config.sales_ready is not None or ts.y_stage is None:
        return config, ts
    from data.labels import infer_stage_order
    from model.routing import infer_sales_ready

    classes = sorted(str(c) for c in ts.y_stage.dropna().unique())
    ready = infer_sales_ready(classes)
    if ready:
        sentence = f"sales-ready stages inferred: {', '.join(ready)}; --sales-ready overrides"
        found: tuple[Any, str] | None = (tuple(ready), sentence)
    else:
        found = infer_stage_order(classes)
    if found is None:
        raise ValueError(
            f"{ts.name}: cannot tell which stage labels are sales-ready "
            f"(labels: {', '.join(classes)}); name them with --sales-ready A,B"
        )
    ready, sentence = found
    return replace(config, sales_ready=ready), replace(ts, inferred=(*ts.inferred, sentence))


def _labelled_counts(ts: TrainingSet) -> dict[str, int]:
    return {h: int(ts.labels(h).notna().sum()) for h in HEADS if ts.labels(h) is not None}


def train_on(
    training_set: TrainingSet,
    config: TrainConfig,
    *,
    console: Console | None = None,
    sample_weight: Sequence[float] | None = None,
    extra_params: dict[str, Any] | None = None,
    trusted: Sequence[bool] | None = None,
    _steps: _Steps | None = None,
) -> TrainResult:
    """Split, fit, evaluate, log, register and gate a training set: the steps in order, each
    timed by ``_Steps`` (which is why it reads top to bottom here; each step is a helper)."""
    import mlflow

    from model.pyfunc import Precompiled, log_model
    from model.registry import EXPERIMENT_NAME, configure, tag_task

    steps = _steps if _steps is not None else _Steps(console)
    mask = _holdout(training_set, config)
    train_set, holdout = training_set.subset(~mask), training_set.subset(mask)
    counts = _labelled_counts(train_set)
    heads_text = " and ".join(f"{h} ({n:,} labelled)" for h, n in counts.items())
    with steps.step("fit_s", f"fitting the {heads_text} head{'s' if len(counts) > 1 else ''}"):
        lead_model = fit_lead_model(
            train_set,
            config,
            sample_weight=None
            if sample_weight is None
            else np.asarray(sample_weight, float)[~mask],
            trusted=None if trusted is None else np.asarray(trusted, dtype=bool)[~mask],
            metadata=_model_metadata(training_set, config),
        )
    with steps.step("evaluate_s", f"evaluating on {len(holdout):,} held-out leads with baselines"):
        evaluation, base = evaluate_with_baselines(lead_model, train_set, holdout, seed=config.seed)
    procedure = procedure_report(lead_model)
    if console is not None:
        console.print(procedure_table(procedure))
    metrics = _metrics(lead_model, training_set, evaluation, base, procedure)

    with steps.step("log_s", "logging to MLflow and registering"):
        # The trees compile (LLVM, GIL released) while the run logs everything else.
        precompiled = (
            Precompiled(lead_model, _compile_rows(train_set.X)) if config.compile else None
        )
        experiment_id = configure(config.tracking_uri, config.artifact_root)
        if experiment_id is None:
            mlflow.set_experiment(EXPERIMENT_NAME)
        run_name = config.run_name or f"train {training_set.name} {utc_now():%Y-%m-%d}"
        with _tracked_run(run_name) as run:
            run_id = run.info.run_id
            params = _run_params(config, training_set, train_set, holdout, lead_model, counts)
            params.update({k: str(v) for k, v in (extra_params or {}).items()})
            _log_run(config, params, metrics, training_set, train_set, holdout)
            _log_results(lead_model, evaluation, base, procedure, training_set)
            info = log_model(
                lead_model,
                name="model",
                registered_model_name=config.model_name,
                input_example=holdout.X.head(5),
                precompiled=precompiled,
            )
            version = str(info.registered_model_version)
            if precompiled is not None:
                precompiled.close()
        tag_task(config.model_name, version, lead_model.task)
        why = f"trained in run {run_id} on {training_set.name}"
        move_alias(config.model_name, CHALLENGER, version, by=config.actor, why=why)

    decision = None
    if config.gate:
        with steps.step("gate_s", "running the promotion gate on the holdout"):
            # The champion is scored on its own inputs from the lead table.
            holdout_set = gate_set(config, holdout, training_set.as_of, max_rows=config.max_rows)
            decision, _ = run_gate_with(
                config, version, [holdout_set], run_id, challenger=lead_model
            )
    mlflow.log_metrics({f"time_{k}": v for k, v in steps.timings.items()}, run_id=run_id)
    return TrainResult(
        run_id=run_id,
        version=version,
        model_uri=f"models:/{config.model_name}/{version}",
        metrics=metrics,
        evaluation=evaluation,
        baselines=base,
        gate=decision,
        n_train=len(train_set),
        n_holdout=len(holdout),
        timings=dict(steps.timings),
    )


def _holdout(training_set: TrainingSet, config: TrainConfig) -> np.ndarray:
    """The hash holdout's rows; refuses a holdout without labels of a head."""
    mask = holdout_mask(training_set.ids, config.holdout_share)
    holdout = training_set.subset(mask)
    for head, n in _labelled_counts(holdout).items():
        if n == 0:
            raise ValueError(
                f"{training_set.name}: no {head} labels among the {len(holdout)} held-out "
                f"leads (holdout share {config.holdout_share}); label more leads or raise the share"
            )
    return mask


def _model_metadata(training_set: TrainingSet, config: TrainConfig) -> dict[str, Any]:
    """What the packaged model records about the data it was trained on."""
    return {
        "id_col": training_set.id_col,
        "label_columns": {"stage": training_set.stage_col, "persona": training_set.persona_col},
        "exclude": list(training_set.exclude),
        "as_of": None if training_set.as_of is None else str(training_set.as_of),
        "source": training_set.source,
        "events": config.events_path is not None,
    }


def _metrics(
    lead_model: Any,
    training_set: TrainingSet,
    evaluation: dict[str, Any],
    base: dict[str, Any],
    procedure: dict[str, Any],
) -> dict[str, float]:
    """The run's metrics; the model's own (and the table's column types) go into its metadata."""
    metrics = flatten_metrics(evaluation)
    metrics.update(procedure_metrics(procedure))
    for name, result in base.items():
        metrics.update(flatten_metrics(result, infix=f"baseline_{name}"))
    lead_model.metadata["metrics"] = {
        k: v for k, v in metrics.items() if "slice__" not in k and "baseline" not in k
    }
    column_types = {
        c["name"]: c["spec"] for c in training_set.input_report.get("columns", []) if c["spec"]
    }
    if column_types:  # read by training.score so a scored table is typed as this one was
        lead_model.metadata["column_types"] = column_types
    if training_set.input_report.get("title_column"):
        lead_model.metadata["title_column"] = training_set.input_report["title_column"]
    noise_info = lead_model.metadata.get("label_noise")
    if noise_info:  # the label-noise step's flagged rows per head and class, and its time
        seconds = float(noise_info.get("seconds", 0.0))
        metrics.update(noise_metrics(noise_info.get("flagged", {}), seconds))
    return metrics


def _run_params(
    config: TrainConfig,
    training_set: TrainingSet,
    train_set: TrainingSet,
    holdout: TrainingSet,
    lead_model: Any,
    counts: dict[str, int],
) -> dict[str, str]:
    """The run's MLflow parameters: the settings and what the data held."""
    params = config.params()
    params.update(
        {
            "n_leads": str(len(training_set)),
            "n_train": str(len(train_set)),
            "n_holdout": str(len(holdout)),
            "n_features": str(training_set.X.shape[1]),
            "as_of": "" if training_set.as_of is None else str(training_set.as_of),
            "rejected_rows": str(len(training_set.rejected)),
            "rejected_events": str(len(training_set.rejected_events)),
        }
    )
    if training_set.sample is not None:
        params["rows_in_file"] = str(training_set.sample.n_rows)
        params["sampled"] = str(training_set.sample.sampled)
    for head in HEADS:
        if head in lead_model.labels:
            params[f"{head}_labels"] = ",".join(lead_model.labels[head])
            params[f"{head}_n_train_labelled"] = str(counts.get(head, 0))
    return params


def _log_run(
    config: TrainConfig,
    params: dict[str, str],
    metrics: dict[str, float],
    training_set: TrainingSet,
    train_set: TrainingSet,
    holdout: TrainingSet,
) -> None:
    """Log the settings (parameters and :data:`CONFIG_ARTIFACT`), tags, datasets and metrics."""
    import mlflow

    mlflow.log_params(params)
    mlflow.log_dict(config.to_dict(), CONFIG_ARTIFACT)
    mlflow.set_tags({"leadready.data": training_set.name, "leadready.actor": config.actor})
    _log_datasets(training_set, train_set, holdout)
    mlflow.log_metrics(metrics)


def _log_results(
    lead_model: Any,
    evaluation: dict[str, Any],
    base: dict[str, Any],
    procedure: dict[str, Any],
    training_set: TrainingSet,
) -> None:
    """Log the evaluation, model summary, procedure, input report and plots as artifacts."""
    import mlflow

    mlflow.log_dict(
        {"model": evaluation, **{f"baseline_{k}": v for k, v in base.items()}},
        "evaluation/holdout.json",
    )
    mlflow.log_dict(lead_model.summary(), "model_summary.json")
    mlflow.log_dict(procedure, "training/procedure.json")
    if training_set.input_report:
        mlflow.log_dict(
            {**training_set.input_report, "inferred": list(training_set.inferred)},
            "input_report.json",
        )
    with tempfile.TemporaryDirectory(prefix="leadready-plots-") as tmp:
        plots(evaluation, tmp, title="holdout")
        mlflow.log_artifacts(tmp, "plots")


def run_gate_with(
    config: TrainConfig, version: str, sets: list[GateSet], run_id: str, **options: Any
) -> tuple[GateDecision, dict[str, Any]]:
    """:func:`~training.promote.run_gate` with the settings' model name, gate thresholds,
    actor, ``force`` and seed (``options``: its ``challenger`` and ``client``)."""
    return run_gate(
        model_name=config.model_name,
        challenger_version=version,
        sets=sets,
        run_id=run_id,
        f1_tolerance=config.f1_tolerance,
        recall_margin=config.recall_margin,
        by=config.actor,
        force=config.force,
        seed=config.seed,
        **options,
    )


def gate_set(
    config: TrainConfig,
    leads: TrainingSet,
    as_of: datetime | None,
    *,
    name: str = "training holdout",
    min_refuse: int = 0,
    max_rows: int | None = None,
) -> GateSet:
    """These leads as a gate set, the champion scored on its own inputs from the lead table
    ``config`` names (read as of ``as_of``, at most ``max_rows``)."""
    table = ("leads_path", "events_path", "id_col", "stage_col", "persona_col", "seed")
    table_args = {key: getattr(config, key) for key in table}
    inputs = inputs_from_table(fallback=leads.X, as_of=as_of, max_rows=max_rows, **table_args)
    return GateSet(name, leads.X, leads.y_stage, leads.y_persona, inputs, min_refuse)


@contextmanager
def _tracked_run(run_name: str | None) -> Iterator[Any]:
    """``mlflow.start_run`` whose run ends KILLED when Ctrl-C or a stop hits it."""
    import mlflow

    run = None
    _stop_requested.clear()  # one noted for an earlier run of this process is done with
    try:
        with _stops_deferred():
            run = mlflow.start_run(run_name=run_name)
        yield run
    except BaseException as exc:
        if run is not None:
            stopped = isinstance(exc, KeyboardInterrupt | SystemExit)
            mlflow.end_run("KILLED" if stopped else "FAILED")
        raise
    else:
        if _stop_requested:  # a stop whose exception Python had to drop (see request_stop)
            mlflow.end_run("KILLED")
            raise SystemExit(_stop_requested[-1])
        mlflow.end_run("FINISHED")


#: Exit codes of stops asked for by a signal handler (``request_stop``).
_stop_requested: list[int] = []


def request_stop(code: int) -> None:
    """Note that the process was told to stop (call it from a signal handler, then raise)."""
    _stop_requested.append(int(code))


@contextmanager
def _stops_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the block, then deliver any that came (main thread only)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {
        signum: signal.signal(signum, lambda signum, frame: caught.append(signum))
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        for signum in caught:
            signal.raise_signal(signum)


def _log_datasets(full: TrainingSet, train_set: TrainingSet, holdout: TrainingSet) -> None:
    """Describe the training and holdout data with ``mlflow.data`` (schema, digest, source)."""
    import mlflow

    targets = "label_stage" if full.y_stage is not None else "label_persona"
    for part, context in ((train_set, "training"), (holdout, "holdout")):
        frame = part.label_frame().reset_index()
        with warnings.catch_warnings():
            # MLflow registers two equivalent sources for local paths and says so, and
            # hints that integer columns cannot hold missing values: neither is news
            # for a description of data that is already read.
            warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways")
            warnings.filterwarnings("ignore", message=".*contains integer column")
            dataset = mlflow.data.from_pandas(
                frame, source=full.source, targets=targets, name=f"{full.name} ({context})"
            )
            mlflow.log_input(dataset, context=context)  # infers the schema here
    mlflow.log_dict(
        {
            "source": full.source,
            "id_col": full.id_col,
            "stage_col": full.stage_col,
            "persona_col": full.persona_col,
            "exclude": list(full.exclude),
            "n_leads": len(full),
            "rejected": [str(e) for e in full.rejected[:100]],
            "rejected_events": [str(e) for e in full.rejected_events[:100]],
            "holdout_ids_sample": [str(i) for i in holdout.ids[:20]],
        },
        "data/description.json",
    )
