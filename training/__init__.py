"""Training layer: training sets, fitting, evaluation, MLflow logging, the gate, retraining.
Lazy package: public names are importable from here and each is imported from its module on
first use (PEP 562 ``__getattr__`` over ``_EXPORTS``), so ``import training.score``
(``leadready score``) does not pay for scikit-learn's metrics or MLflow."""

import sys
import types
from importlib import import_module
from typing import Any

#: Public names per module that defines them.
_MODULES: dict[str, tuple[str, ...]] = {
    "dataset": ("TrainingSet", "holdout_mask", "load_training_table", "normalize_labels"),
    "evaluate": ("baselines", "evaluate_heads", "evaluate_on_table", "flatten_metrics", "plots"),
    "promote": ("GateDecision", "gate", "promote", "rollback", "run_gate"),
    "score": ("ScoreSummary", "score_table"),
    "train": ("TrainConfig", "TrainResult", "fit_lead_model", "train", "train_on"),
}
#: Public name → module that defines it.
_EXPORTS = {name: f"training.{module}" for module, names in _MODULES.items() for name in names}

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
