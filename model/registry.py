"""Small MLflow registry helpers shared by training and serving."""

from __future__ import annotations

import contextlib
import json
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.model_cache import keep_served, load_copy, load_served, registry_stamp, remember
from model.task import ModelTask, task_from_tags, task_tags

if TYPE_CHECKING:
    from model.package import LeadReadinessModel

__all__ = [
    "ALIAS_MOVE_TAG",
    "EXPERIMENT_NAME",
    "GATE_JSON_TAG",
    "GATE_SUMMARY_TAG",
    "alias_history",
    "alias_version",
    "configure",
    "load_model",
    "registry_client",
    "resolve_uri",
    "set_alias",
    "tag_task",
    "version_task",
    "versions_overview",
]

#: The experiment training runs go to.
EXPERIMENT_NAME = "leadready"
_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)$")
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")


def configure(tracking_uri: str, artifact_root: str | Path | None = None) -> str | None:
    """Point MLflow tracking and registry at ``tracking_uri``."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    if not tracking_uri.startswith("sqlite:") or artifact_root is None:
        return None
    client = registry_client()
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


def registry_client() -> Any:
    """One MLflow client per tracking/registry URI pair, made on first use."""
    import mlflow
    from mlflow.tracking import MlflowClient

    key = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    client = _CLIENTS.get(key)
    if client is None:
        client = _CLIENTS[key] = MlflowClient(tracking_uri=key[0], registry_uri=key[1])
    return client


#: The clients made by :func:`registry_client`, by (tracking URI, registry URI).
_CLIENTS: dict[tuple[str, str], object] = {}


def alias_version(model_name: str, alias: str) -> str | None:
    """The version number the alias points at, or None (no such model or alias)."""
    from mlflow.exceptions import MlflowException

    try:
        version = registry_client().get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise
    return str(version.version)


def set_alias(model_name: str, alias: str, version: str | int) -> None:
    """Point ``alias`` of ``model_name`` at ``version`` (moving it if it was set)."""
    registry_client().set_registered_model_alias(model_name, alias, str(version))


def tag_task(model_name: str, version: str | int, task: ModelTask) -> None:
    """Write a version's task (labels, sales-ready stages, inputs) as registry tags."""
    client = registry_client()
    for key, value in task_tags(task).items():
        client.set_model_version_tag(model_name, str(version), key, value)


def version_task(model_name: str, version: str | int) -> ModelTask | None:
    """A version's task from its registry tags (None when it was registered without them)."""
    tags = registry_client().get_model_version(model_name, str(version)).tags or {}
    return task_from_tags(tags)


def resolve_uri(uri: str) -> tuple[str, str | None]:
    """Pin ``models:/name@alias`` to ``models:/name/<version>``."""
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


def load_model(
    uri: str, cache_dir: Path | None = None, *, explanations: bool = True
) -> tuple[LeadReadinessModel, str | None]:
    """Load a leadready model from the registry, a run or a path (with ``cache_dir``, a
    registry version is copied there and loaded from the copy; ``explanations=False``
    leaves the reason tables to be built on first use)."""
    import mlflow.pyfunc

    from model.pyfunc import unwrap

    stamp = copy = None
    if cache_dir is not None:
        registry_uri = mlflow.get_registry_uri()
        # Taken before the alias is read: a move after it changes the file again.
        stamp = registry_stamp(registry_uri)
        taken_ns = time.time_ns()
    pinned, version = resolve_uri(uri)
    if stamp is not None and version is not None:
        name = pinned.split("/")[1]
        source = registry_client().get_model_version(name, version).source
        key = f"{registry_uri}\n{name}\n{version}\n{source}"
        copy = remember(Path(cache_dir), registry_uri, uri, version, stamp, key, name, taken_ns)
    if copy is not None:
        if not explanations:  # no scikit-learn, SciPy or LightGBM when it was logged with one
            served = load_served(copy)
            if served is not None:
                return served, version
        # The copy is loaded as the pyfunc's load_context loads it (pickle, then
        # prepare), without MLflow's model loading around it.
        model = load_copy(copy, explanations=explanations)
        keep_served(copy, model)  # the next command scores without sklearn or LightGBM
        return model, version
    # suppress_warnings=True skips MLflow's dependency-mismatch check (the model's pip
    # requirements against this environment, ~0.7 s a load) and its Python-version
    # warning: a leadready model is run by the leadready that logged it, installed from
    # the same lock (requirements.lock). Nothing that fails is hidden by it.
    return unwrap(mlflow.pyfunc.load_model(pinned, suppress_warnings=True)), version


#: Version tag prefix of alias-move records (one tag per move, JSON value).
ALIAS_MOVE_TAG = "leadready.alias_move"
#: Version tags of the gate's decision on a version: one line, and JSON.
GATE_SUMMARY_TAG = "leadready.gate"
GATE_JSON_TAG = "leadready.gate.json"


def _client_for(tracking_uri: str | None, client: Any | None) -> Any:
    if client is not None:
        return client
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def alias_history(
    model_name: str, *, tracking_uri: str | None = None, client: Any | None = None
) -> list[dict[str, Any]]:
    """Every recorded move of an alias of ``model_name``, oldest first."""
    client = _client_for(tracking_uri, client)
    moves = []
    for mv in client.search_model_versions(f"name = '{model_name}'"):
        for key, value in (mv.tags or {}).items():
            if not key.startswith(f"{ALIAS_MOVE_TAG}."):
                continue
            try:
                data = json.loads(value)
            except ValueError:
                continue
            data.setdefault("gate", None)
            data.setdefault("forced", False)
            moves.append(data)
    return sorted(moves, key=lambda m: str(m.get("at")))


def versions_overview(
    model_name: str, *, tracking_uri: str | None = None, client: Any | None = None
) -> list[dict[str, Any]]:
    """Registered versions, newest first: aliases, task, the gate's decision on it."""
    client = _client_for(tracking_uri, client)
    found = sorted(
        client.search_model_versions(f"name = '{model_name}'"),
        key=lambda v: int(v.version),
        reverse=True,
    )
    aliases: dict[str, list[str]] = {}
    if found:
        for alias, version in (client.get_registered_model(model_name).aliases or {}).items():
            aliases.setdefault(str(version), []).append(alias)
    out = []
    for mv in found:
        tags = dict(mv.tags or {})
        decision = None
        with contextlib.suppress(ValueError):
            decision = json.loads(tags[GATE_JSON_TAG]) if tags.get(GATE_JSON_TAG) else None
        out.append(
            {
                "version": str(mv.version),
                "aliases": sorted(
                    set(getattr(mv, "aliases", None) or []) | set(aliases.get(str(mv.version), []))
                ),
                "registered_at": int(mv.creation_timestamp or 0),
                "run_id": mv.run_id,
                "task": task_from_tags(tags),
                "gate": tags.get(GATE_SUMMARY_TAG),
                "gate_decision": decision,
            }
        )
    return out
