"""Model layer: features, two-head classifier, reasons, routing, packaged model, registry. Lazy
package: public names are importable from here and each is imported from its module on first
use (PEP 562 ``__getattr__`` over ``_EXPORTS``), so ``import model.features`` does not pay
for LightGBM or MLflow."""

from importlib import import_module
from typing import Any

#: Public name → module that defines it.
_EXPORTS: dict[str, str] = {
    "HeadClassifier": "model.classifier",
    "TableEncoder": "model.classifier",
    "TwoHeadClassifier": "model.classifier",
    "expected_calibration_error": "model.classifier",
    "normalize_labels": "model.classifier",
    "describe": "model.reasons",
    "explain_head": "model.reasons",
    "RoutingConfig": "model.routing",
    "infer_sales_ready": "model.routing",
    "readiness": "model.routing",
    "route": "model.routing",
    "LeadReadinessModel": "model.package",
    "LeadReadinessPyfunc": "model.pyfunc",
    "log_model": "model.pyfunc",
    "unwrap": "model.pyfunc",
    "alias_version": "model.registry",
    "configure": "model.registry",
    "load_model": "model.registry",
    "set_alias": "model.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'model' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
