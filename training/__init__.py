"""Training layer: training sets, fitting, evaluation, MLflow logging, the promotion gate.

``training`` may import ``data`` and ``model``, never ``serve``. MLflow is only
imported when a function that talks to it runs.

- :mod:`training.dataset` — any lead table → :class:`TrainingSet`; the hash holdout.
- :mod:`training.evaluate` — metrics per head, class and slice; baselines; plots.
- :mod:`training.train` — :class:`TrainConfig`, :func:`train`, :func:`train_on`.
- :mod:`training.promote` — :func:`gate`, :func:`run_gate`, :func:`promote`, :func:`rollback`.
- :mod:`training.score` — :func:`score_table`, batch scoring in chunks.
"""

from training.dataset import TrainingSet, holdout_mask, load_training_table, normalize_labels
from training.evaluate import baselines, evaluate_heads, evaluate_on_table, flatten_metrics, plots
from training.promote import GateDecision, gate, promote, rollback, run_gate
from training.score import ScoreSummary, score_table
from training.train import TrainConfig, TrainResult, fit_lead_model, train, train_on

__all__ = [
    "GateDecision",
    "ScoreSummary",
    "TrainConfig",
    "TrainResult",
    "TrainingSet",
    "baselines",
    "evaluate_heads",
    "evaluate_on_table",
    "fit_lead_model",
    "flatten_metrics",
    "gate",
    "holdout_mask",
    "load_training_table",
    "normalize_labels",
    "plots",
    "promote",
    "rollback",
    "run_gate",
    "score_table",
    "train",
    "train_on",
]
