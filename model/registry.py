"""Small MLflow registry helpers shared by training and serving.

They take everything as arguments (no environment reads) and use aliases
(``champion``, ``challenger``), never the deprecated stages.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from model.package import LeadReadinessModel

__all__ = [
    "EXPERIMENT_NAME",
    "alias_version",
    "configure",
    "load_model",
    "resolve_uri",
    "set_alias",
]

#: The experiment training runs go to.
EXPERIMENT_NAME = "leadready"
_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)$")
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")


def configure(tracking_uri: str, artifact_root: str | Path | None = None) -> str | None:
    """Point MLflow tracking and registry at ``tracking_uri``.

    For a local SQLite tracking URI with an ``artifact_root``, also make sure the
    experiment ``leadready`` exists with its artifacts under ``artifact_root`` (so
    nothing lands in the working directory's ``./mlruns``) and make it the active one.

    Parameters
    ----------
    tracking_uri : str
        ``sqlite:///…``, ``http(s)://…`` (a tracking server), ``databricks``…
    artifact_root : str or Path, optional
        Folder for the artifacts of a local tracking store.

    Returns
    -------
    str or None
        The ``leadready`` experiment id when it was ensured, else None.
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    if not tracking_uri.startswith("sqlite:") or artifact_root is None:
        return None
    client = _client()
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    if experiment is None:
        root = Path(artifact_root).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        experiment_id = client.create_experiment(
            EXPERIMENT_NAME, artifact_location=(root / EXPERIMENT_NAME).as_uri()
        )
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def _client():
    """One MLflow client per tracking/registry URI pair, made on first use.

    Building a client opens MLflow's stores (for a SQLite URI: its SQLAlchemy
    models and a schema check, about a second); a command makes one and reuses it.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    key = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    client = _CLIENTS.get(key)
    if client is None:
        client = _CLIENTS[key] = MlflowClient(tracking_uri=key[0], registry_uri=key[1])
    return client


#: The clients made by :func:`_client`, by (tracking URI, registry URI).
_CLIENTS: dict[tuple[str, str], object] = {}


def alias_version(model_name: str, alias: str) -> str | None:
    """The version number the alias points at, or None (no such model or alias)."""
    from mlflow.exceptions import MlflowException

    try:
        version = _client().get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise
    return str(version.version)


def set_alias(model_name: str, alias: str, version: str | int) -> None:
    """Point ``alias`` of ``model_name`` at ``version`` (moving it if it was set)."""
    _client().set_registered_model_alias(model_name, alias, str(version))


def resolve_uri(uri: str) -> tuple[str, str | None]:
    """Pin ``models:/name@alias`` to ``models:/name/<version>``.

    Returns
    -------
    (str, str or None)
        The URI to load and its registry version (None for run or path URIs).

    Raises
    ------
    LookupError
        The alias is not set.
    """
    match = _ALIAS_URI.match(uri)
    if match:
        version = alias_version(match["name"], match["alias"])
        if version is None:
            raise LookupError(f"no version of model {match['name']!r} has alias {match['alias']!r}")
        return f"models:/{match['name']}/{version}", version
    match = _VERSION_URI.match(uri)
    if match:
        return uri, match["version"]
    return uri, None


def load_model(uri: str) -> tuple[LeadReadinessModel, str | None]:
    """Load a leadready model from the registry, a run or a path.

    Parameters
    ----------
    uri : str
        ``models:/name@alias``, ``models:/name/3``, ``runs:/…/model`` or a path.

    Returns
    -------
    (LeadReadinessModel, str or None)
        The model and its registry version (None when not loaded from the registry).
        An alias is resolved once, so the model and the version always match.

    Raises
    ------
    LookupError
        The alias is not set.
    """
    import mlflow.pyfunc

    from model.pyfunc import unwrap

    pinned, version = resolve_uri(uri)
    # suppress_warnings=True skips MLflow's dependency-mismatch check (the model's pip
    # requirements against this environment, ~0.7 s a load) and its Python-version
    # warning: a leadready model is run by the leadready that logged it, installed from
    # the same lock (requirements.lock). Nothing that fails is hidden by it.
    return unwrap(mlflow.pyfunc.load_model(pinned, suppress_warnings=True)), version
