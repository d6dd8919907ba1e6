"""The champion resolved once: a registry model kept on local disk for commands."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pickle
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

if TYPE_CHECKING:
    from model.package import LeadReadinessModel

__all__ = [
    "SERVED",
    "CacheEntry",
    "keep",
    "keep_served",
    "load_cached",
    "load_copy",
    "load_served",
    "recall",
    "registry_stamp",
    "remember",
]

_logger = logging.getLogger(__name__)

#: Format of an entry file; an entry of another format is ignored.
FORMAT = 1
#: Model copies not named by any entry are removed once this old (seconds).
_STALE_SECONDS = 3600

CacheEntry = dict[str, Any]


def _sqlite_file(uri: str) -> Path | None:
    """The file of a ``sqlite:///…`` URI (None for any other URI or an in-memory one)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = unquote(uri[len("sqlite:///") :].split("?", 1)[0])
    if not path or path == ":memory:":
        return None
    return Path(path).resolve()


def registry_stamp(registry_uri: str) -> list[Any] | None:
    """What the registry file is now (None when the registry is not a SQLite file)."""
    path = _sqlite_file(registry_uri)
    if path is None:
        return None
    stamp: list[Any] = []
    for suffix in ("", "-wal", "-journal"):
        try:
            st = os.stat(f"{path}{suffix}")
        except FileNotFoundError:
            if not suffix:
                return None
            stamp.append([suffix, None])
            continue
        stamp.append([suffix, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns])
    return stamp


#: File times come from a coarse clock (a few ms): a write in the same tick as the
#: one a stamp saw could leave the stamp unchanged. A stamp is trusted only when
#: the registry file's last write is at least this much older than the stamp.
SETTLED_NS = 100_000_000


def settled(stamp: list[Any], taken_ns: int) -> bool:
    """Whether a stamp taken at ``taken_ns`` (``time.time_ns()``) can be trusted."""
    times = [part[3] for part in stamp if len(part) > 3 and part[3] is not None]
    return bool(times) and taken_ns - max(times) >= SETTLED_NS


def _entry_path(cache_dir: Path, registry_uri: str, key: str, prefix: str = "") -> Path:
    """The entry file of a model URI (no prefix) or of a kept value (``value-``)."""
    digest = hashlib.sha256(f"{registry_uri}\n{key}".encode()).hexdigest()[:24]
    return cache_dir / f"{prefix}{digest}.json"


def _write_entry(target: Path, registry_uri: str, stamp: list[Any], **fields: Any) -> None:
    """Write a cache entry at ``target`` atomically (a reader sees the old or the new one)."""
    entry = {"format": FORMAT, "registry_uri": registry_uri, "stamp": stamp, **fields}
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
    tmp.write_text(json.dumps(entry))
    os.replace(tmp, target)


def load_cached(
    cache_dir: Path, registry_uri: str, uri: str, *, explanations: bool = True
) -> tuple[LeadReadinessModel, str] | None:
    """The model ``uri`` resolved to when the registry was last stamped, if it still is."""
    entry = _fresh_entry(_entry_path(cache_dir, registry_uri, uri), registry_uri, uri=uri)
    if entry is None:
        return None
    if not explanations and entry.get("compiled") is not None:
        served = _load_served(cache_dir / entry["copy"], entry["compiled"], entry.get("served"))
        if served is not None:
            return served, str(entry["version"])
    try:
        model = _load_copy(
            cache_dir / entry["copy"], entry["lead_model"], entry.get("compiled"), explanations
        )
    except Exception as exc:  # any doubt: MLflow resolves it, and copies it again
        _logger.warning("cached copy of %s not used (%s); resolving through MLflow", uri, exc)
        copy = entry.get("copy")
        if isinstance(copy, str) and copy and "/" not in copy and not copy.startswith("."):
            shutil.rmtree(cache_dir / copy, ignore_errors=True)
        return None
    return model, str(entry["version"])


def _load_copy(
    folder: Path, lead_model: str, compiled: str | None, explanations: bool = True
) -> LeadReadinessModel:
    """As ``LeadReadinessPyfunc.load_context``: the pickle, then ``prepare``."""
    with open(folder / lead_model, "rb") as fh:
        model = pickle.load(fh)
    status = model.prepare(
        None if compiled is None else str(folder / compiled), explanations=explanations
    )
    if compiled is not None and any(s != "compiled" for s in status.values()):
        _logger.warning("compiled trees not used for every head: %s", status)
    return model


#: The served copy's file (``model.served``) kept beside a copy logged without one.
SERVED = "served_model.pkl"


def keep_served(folder: Path, model: LeadReadinessModel) -> bool:
    """Write the served copy of ``model`` (loaded from the kept copy ``folder``) beside
    it, when every head scores with compiled trees and the model was logged without
    one; whether the folder has one now."""
    from model.pyfunc import COMPILED_KEY, SERVED_KEY
    from model.served import served_copy

    if (folder / SERVED).is_file():  # the folder holds one version's artifacts only
        return True
    try:
        artifacts = _pyfunc_artifacts(folder)
        if SERVED_KEY in artifacts:
            return True
        compiled = artifacts.get(COMPILED_KEY)
        if compiled is None or model.engine != "compiled":
            return False
        served = served_copy(model, folder / compiled)
        if served is None:
            return False
        tmp = folder / f".{SERVED}.{uuid.uuid4().hex}"
        with open(tmp, "wb") as fh:
            pickle.dump(served, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, folder / SERVED)
    except (OSError, KeyError, ValueError, pickle.PicklingError) as exc:
        _logger.warning("no served copy kept for %s (%s)", folder.name, exc)
        return False
    return True


def load_served(folder: Path) -> LeadReadinessModel | None:
    """The served copy of the kept copy ``folder`` (logged with it, or kept beside it)
    on its compiled trees, or None when there is none that loads here."""
    from model.pyfunc import COMPILED_KEY, SERVED_KEY

    try:
        artifacts = _pyfunc_artifacts(folder)
    except (OSError, KeyError, ValueError):
        return None
    compiled = artifacts.get(COMPILED_KEY)
    if compiled is None:
        return None
    return _load_served(folder, compiled, artifacts.get(SERVED_KEY))


def _load_served(folder: Path, compiled: str, logged: str | None) -> LeadReadinessModel | None:
    """The served copy in ``folder`` (the ``logged`` artifact, else the kept file) on
    its compiled trees, or None (then the full copy is loaded: no served copy, or one
    whose trees do not load here)."""
    path = folder / (logged or SERVED)
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as fh:
            model = pickle.load(fh)
        status = model.prepare(str(folder / compiled), explanations=False)
    except Exception as exc:  # any doubt: the full copy serves
        _logger.warning("served copy of %s not used (%s)", folder.name, exc)
        return None
    return model if all(s == "compiled" for s in status.values()) else None


def load_copy(folder: Path, *, explanations: bool = True) -> LeadReadinessModel:
    """The full model of a kept copy (as MLflow's pyfunc loads it, without MLflow)."""
    from model.pyfunc import ARTIFACT_KEY, COMPILED_KEY

    artifacts = _pyfunc_artifacts(folder)
    return _load_copy(folder, artifacts[ARTIFACT_KEY], artifacts.get(COMPILED_KEY), explanations)


def _pyfunc_artifacts(folder: Path) -> dict[str, str]:
    """Artifact key → path (relative to ``folder``) from the copy's ``MLmodel`` file."""
    import yaml

    meta = yaml.safe_load((folder / "MLmodel").read_text())
    artifacts = meta["flavors"]["python_function"].get("artifacts") or {}
    return {key: str(spec["path"]) for key, spec in artifacts.items()}


def remember(
    cache_dir: Path,
    registry_uri: str,
    uri: str,
    version: str,
    stamp: list[Any],
    source_key: str,
    name: str,
    taken_ns: int | None = None,
) -> Path | None:
    """Copy version ``version``'s artifacts into the cache and record the resolution."""
    from mlflow.artifacts import download_artifacts

    from model.pyfunc import ARTIFACT_KEY, COMPILED_KEY, SERVED_KEY

    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    copy = f"{safe}-v{version}-{hashlib.sha256(source_key.encode()).hexdigest()[:16]}"
    folder = cache_dir / copy
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        if not (folder / "MLmodel").exists():
            partial = cache_dir / f".partial-{uuid.uuid4().hex}"
            download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(partial))
            try:
                partial.rename(folder)
            except OSError:  # another process made it meanwhile
                shutil.rmtree(partial, ignore_errors=True)
        artifacts = _pyfunc_artifacts(folder)
        if taken_ns is None or settled(stamp, taken_ns):
            _write_entry(
                _entry_path(cache_dir, registry_uri, uri),
                registry_uri,
                stamp,
                uri=uri,
                version=str(version),
                copy=copy,
                lead_model=artifacts[ARTIFACT_KEY],
                compiled=artifacts.get(COMPILED_KEY),
                served=artifacts.get(SERVED_KEY),
            )
        _prune(cache_dir)
    except (OSError, KeyError, ValueError) as exc:
        _logger.warning("could not cache %s version %s (%s)", uri, version, exc)
        return None
    return folder


def _prune(cache_dir: Path) -> None:
    """Remove copies no entry names once they are an hour old (a copy in use is named)."""
    named = set()
    for path in cache_dir.glob("[!v]*.json"):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            named.add(json.loads(path.read_text()).get("copy"))
    now = time.time()
    for folder in cache_dir.iterdir():
        if not folder.is_dir() or folder.name in named:
            continue
        with contextlib.suppress(OSError):
            if now - folder.stat().st_mtime > _STALE_SECONDS:
                shutil.rmtree(folder, ignore_errors=True)


def recall(cache_dir: Path, registry_uri: str, key: str) -> Any | None:
    """A value :func:`keep` stored under ``key``, if the registry is still as stamped then."""
    entry = _fresh_entry(_entry_path(cache_dir, registry_uri, key, "value-"), registry_uri, key=key)
    return None if entry is None else entry.get("value")


def _fresh_entry(path: Path, registry_uri: str, **expected: str) -> dict[str, Any] | None:
    """The cache entry at ``path`` when it is ours, for these keys, and the registry
    is still as stamped in it; None otherwise (unreadable, stale, or another's)."""
    stamp = registry_stamp(registry_uri)
    if stamp is None:
        return None
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("format") != FORMAT:
        return None
    wanted = {"registry_uri": registry_uri, "stamp": stamp, **expected}
    if any(entry.get(k) != v for k, v in wanted.items()):
        return None
    return entry


def keep(
    cache_dir: Path,
    registry_uri: str,
    key: str,
    stamp: list[Any],
    value: Any,
    taken_ns: int | None = None,
) -> None:
    """Store a JSON ``value`` read from the registry after ``stamp`` was taken
    (at ``taken_ns``: not stored when the stamp is not :func:`settled`)."""
    if taken_ns is not None and not settled(stamp, taken_ns):
        return
    target = _entry_path(cache_dir, registry_uri, key, "value-")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        _write_entry(target, registry_uri, stamp, key=key, value=value)
    except OSError as exc:
        _logger.warning("could not cache %s (%s)", key, exc)
