"""Training layer: training sets, fitting, evaluation, MLflow logging, the gate, retraining.
Lazy package: public names are importable from here and each is imported from its module on
first use (PEP 562 ``__getattr__`` over ``_EXPORTS``), so ``import training.score``
(``leadready score``) does not pay for scikit-learn's metrics or MLflow."""

import sys
import types
from importlib import import_module
from typing import Any

#: Public name → module that defines it.
_EXPORTS: dict[str, str] = {
    "TrainingSet": "training.dataset",
    "holdout_mask": "training.dataset",
    "load_training_table": "training.dataset",
    "normalize_labels": "training.dataset",
    "baselines": "training.evaluate",
    "evaluate_heads": "training.evaluate",
    "evaluate_on_table": "training.evaluate",
    "flatten_metrics": "training.evaluate",
    "plots": "training.evaluate",
    "GateDecision": "training.promote",
    "gate": "training.promote",
    "promote": "training.promote",
    "rollback": "training.promote",
    "run_gate": "training.promote",
    "ScoreSummary": "training.score",
    "score_table": "training.score",
    "TrainConfig": "training.train",
    "TrainResult": "training.train",
    "fit_lead_model": "training.train",
    "train": "training.train",
    "train_on": "training.train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'training' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


class _Package(types.ModuleType):
    """Keeps ``training.train`` and ``training.promote`` the functions they export, although
    importing a submodule binds the module of the same name on its package."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == value.__name__:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
