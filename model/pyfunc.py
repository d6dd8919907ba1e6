"""The MLflow pyfunc wrapper of ``LeadReadinessModel`` and the helper that logs it.
Design notes: ``docs/design/model.md``."""

from __future__ import annotations

import concurrent.futures
import logging
import pickle
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import mlflow.pyfunc
import pandas as pd
from mlflow.models import infer_signature
from mlflow.models.signature import ModelSignature
from mlflow.types import ColSpec, Schema
from mlflow.types.schema import AnyType

from model import compiled
from model.package import LeadReadinessModel
from model.served import served_copy

if TYPE_CHECKING:
    from mlflow.models.model import ModelInfo

__all__ = [
    "ARTIFACT_KEY",
    "COMPILED_KEY",
    "SERVED_KEY",
    "LeadReadinessPyfunc",
    "log_model",
    "signature_for",
    "unwrap",
]

_logger = logging.getLogger(__name__)

#: Name of the pickled LeadReadinessModel among the pyfunc's artifacts.
ARTIFACT_KEY = "lead_model"
#: Name of the folder of compiled trees among the pyfunc's artifacts (optional).
COMPILED_KEY = "compiled"
#: Name of the served copy (``model.served``) among the pyfunc's artifacts (optional: only
#: with compiled trees); commands that score without reasons load it instead.
SERVED_KEY = "served"
_REQUIREMENTS = ("mlflow", "lightgbm", "scikit-learn", "scipy", "numpy", "pandas", "pydantic")


class LeadReadinessPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc around a pickled :class:`~model.package.LeadReadinessModel`."""

    def __init__(self) -> None:
        self.lead_model: LeadReadinessModel | None = None

    def load_context(self, context: Any) -> None:
        """Load the pickled model artifact and prepare it (once per loaded pyfunc)."""
        with open(context.artifacts[ARTIFACT_KEY], "rb") as fh:
            lead_model = pickle.load(fh)
        status = lead_model.prepare(context.artifacts.get(COMPILED_KEY))
        if any(s != "compiled" for s in status.values()) and COMPILED_KEY in context.artifacts:
            _logger.warning("compiled trees not used for every head: %s", status)
        self.lead_model = lead_model

    # MLflow 3 reads the hint on ``model_input``: ``pd.DataFrame`` is one it leaves alone
    # (no conversion of its own); without a hint, or with ``list[...]``, it would warn
    # or convert. The signature's schema already turns JSON records into a DataFrame.
    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Score feature rows."""
        if self.lead_model is None:
            raise RuntimeError("the model artifact is not loaded (load_context was not called)")
        params = params or {}
        frame = _as_frame(model_input)
        return self.lead_model.predict_frame(
            frame,
            reasons=bool(params.get("reasons", False)),
            top_k=int(params.get("top_k", 3)),
        )


def _as_frame(model_input: Any) -> pd.DataFrame:
    if isinstance(model_input, pd.DataFrame):
        return model_input
    if isinstance(model_input, Mapping):
        return pd.DataFrame([dict(model_input)])
    if isinstance(model_input, list) and all(isinstance(r, Mapping) for r in model_input):
        return pd.DataFrame([dict(r) for r in model_input])
    raise TypeError(
        f"expected a DataFrame, a dict or a list of dicts, got {type(model_input).__name__}"
    )


def signature_for(lead_model: LeadReadinessModel, input_example: pd.DataFrame) -> ModelSignature:
    """The signature logged with the model (see the module docstring)."""
    output = lead_model.predict_frame(input_example, reasons=True)
    # Only the outputs and params are inferred: the inputs are declared below (any
    # type, optional), so inferring them would only print MLflow's integer hint.
    inferred = infer_signature(None, output, params={"reasons": False, "top_k": 3})
    inputs = Schema([ColSpec(AnyType(), name, required=False) for name in lead_model.input_columns])
    outputs = Schema(
        [
            ColSpec(spec.type, spec.name, required=not spec.name.endswith("_reasons"))
            for spec in inferred.outputs.inputs
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs, params=inferred.params)


def _pip_requirements(extra: tuple[str, ...] = ()) -> list[str]:
    versions = compiled.installed_versions((*_REQUIREMENTS, *extra))
    return [dist if version is None else f"{dist}=={version}" for dist, version in versions.items()]


class Precompiled:
    """The heads' trees compiled in a background thread while a run logs the rest."""

    def __init__(self, lead_model: LeadReadinessModel, rows: pd.DataFrame) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="leadready-compiled-")
        self._folder = Path(self._tmp.name) / COMPILED_KEY
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="compile-trees")
        self._job = pool.submit(_compile, lead_model, self._folder, rows)
        pool.shutdown(wait=False)

    def folder(self) -> Path | None:
        """The compiled folder once ready (waits), or None when it cannot be used."""
        return self._folder if self._job.result() else None

    def close(self) -> None:
        """Wait for the compilation and remove its folder."""
        concurrent.futures.wait([self._job])
        self._tmp.cleanup()


def log_model(
    lead_model: LeadReadinessModel,
    *,
    name: str = "model",
    registered_model_name: str | None = None,
    input_example: pd.DataFrame | None = None,
    compile_rows: pd.DataFrame | None = None,
    precompiled: Precompiled | None = None,
) -> ModelInfo:
    """Log ``lead_model`` as an MLflow pyfunc in the active run (or a new one)."""
    if input_example is None:
        input_example = pd.DataFrame({c: [None] for c in lead_model.input_columns})
    with warnings.catch_warnings():
        # The signature declares every column optional and of any type, so MLflow's
        # hint that integer columns cannot hold missing values does not apply.
        warnings.filterwarnings("ignore", message=".*contains integer column")
        signature = signature_for(lead_model, input_example)
        with tempfile.TemporaryDirectory(prefix="leadready-model-") as tmp:
            path = Path(tmp) / f"{ARTIFACT_KEY}.pkl"
            with open(path, "wb") as fh:
                pickle.dump(lead_model, fh, protocol=pickle.HIGHEST_PROTOCOL)
            artifacts = {ARTIFACT_KEY: str(path)}
            if precompiled is not None:
                ready = precompiled.folder()
                if ready is not None:
                    artifacts[COMPILED_KEY] = str(ready)
            elif compile_rows is not None and len(compile_rows):
                folder = Path(tmp) / COMPILED_KEY
                if _compile(lead_model, folder, compile_rows):
                    artifacts[COMPILED_KEY] = str(folder)
            if COMPILED_KEY in artifacts:
                served = _served(
                    path, Path(artifacts[COMPILED_KEY]), Path(tmp) / "served_model.pkl"
                )
                if served is not None:
                    artifacts[SERVED_KEY] = str(served)
            return mlflow.pyfunc.log_model(
                name=name,
                python_model=LeadReadinessPyfunc(),
                artifacts=artifacts,
                signature=signature,
                input_example=input_example,
                registered_model_name=registered_model_name,
                pip_requirements=_pip_requirements(
                    ("lleaves", "llvmlite") if COMPILED_KEY in artifacts else ()
                ),
                metadata={"leadready_format": LeadReadinessModel.format_version},
            )


def _compile(lead_model: LeadReadinessModel, folder: Path, rows: pd.DataFrame) -> bool:
    """Compile the heads into ``folder``; False (with a warning) when it cannot be used."""
    if not compiled.available():
        _logger.warning("lleaves is not installed: the model is logged without compiled trees")
        return False
    try:
        compiled.compile_model(lead_model, folder, check_rows=rows)
    except Exception as exc:
        _logger.warning("compiling the trees failed, logged without them: %s", exc)
        return False
    return True


def _served(pickled: Path, compiled_dir: Path, out: Path) -> Path | None:
    """Write the served copy of the pickled model on its compiled trees to ``out``
    (None, with a warning, when it cannot be made: commands then load the full model)."""
    try:
        with open(pickled, "rb") as fh:
            model = pickle.load(fh)  # a copy: the model being logged is left as it is
        if any(s != "compiled" for s in model.prepare(compiled_dir, explanations=False).values()):
            return None
        served = served_copy(model, compiled_dir)
        if served is None:
            return None
        with open(out, "wb") as fh:
            pickle.dump(served, fh, protocol=pickle.HIGHEST_PROTOCOL)
    except (OSError, ValueError, pickle.PicklingError) as exc:
        _logger.warning("no served copy logged with the model: %s", exc)
        return None
    return out


def unwrap(pyfunc_model: Any) -> LeadReadinessModel:
    """The ``LeadReadinessModel`` inside a loaded pyfunc (``mlflow.pyfunc.load_model``)."""
    inner = pyfunc_model.unwrap_python_model()
    model = getattr(inner, "lead_model", None)
    if not isinstance(model, LeadReadinessModel):
        raise TypeError(f"not a leadready model: {type(inner).__name__}")
    return model
