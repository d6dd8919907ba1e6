"""Native code for a model's trees (lleaves), kept beside the MLflow model."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from model.classifier import HeadClassifier


class LeadReadinessModel(Protocol):
    """What compiling needs of a packaged model (``model.package.LeadReadinessModel``):
    its heads by name. A protocol, so this module does not import the package
    module that imports it."""

    heads: Mapping[str, HeadClassifier]


__all__ = [
    "FORMAT",
    "MANIFEST",
    "TOLERANCE",
    "CompiledForest",
    "attach_compiled",
    "available",
    "compile_head",
    "compile_model",
    "installed_versions",
    "host_cpu",
]

#: Version of the artifact layout.
FORMAT = 1
#: The manifest's file name inside the artifact folder.
MANIFEST = "compiled.json"
#: Largest difference to LightGBM's raw scores accepted on the check rows.
TOLERANCE = 1e-9
#: Rows at or above which a multi-threaded call splits the rows over threads.
_THREADED_ROWS = 10_000


def available() -> bool:
    """Whether lleaves (and llvmlite) can be imported here."""
    try:
        import lleaves  # noqa: F401
    except ImportError:
        return False
    return True


def installed_versions(
    dists: tuple[str, ...] = ("lleaves", "llvmlite", "lightgbm"),
) -> dict[str, str | None]:
    """Installed version of each distribution (None when it is not installed)."""
    out: dict[str, str | None] = {}
    for dist in dists:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def host_cpu() -> dict[str, str]:
    """LLVM's name and feature string of this machine's CPU."""
    import llvmlite.binding as llvm

    return {"name": llvm.get_host_cpu_name(), "features": llvm.get_host_cpu_features().flatten()}


class CompiledForest:
    """One booster compiled to native code: raw scores like ``booster.predict(raw_score=True)``."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.n_features = int(model.num_feature())

    @classmethod
    def load(cls, directory: Path, name: str) -> CompiledForest:
        """The trees of ``directory/<name>.txt`` compiled (LLVM's object file cached as
        ``<name>.o`` there)."""
        import lleaves

        model = lleaves.Model(model_file=str(directory / f"{name}.txt"))
        model.compile(cache=str(directory / f"{name}.o"), raw_score=True)
        return cls(model)

    def predict_raw(self, Z: np.ndarray, num_threads: int = 1) -> np.ndarray:
        """Raw scores, shape (n_rows,) for one model per iteration, else (n_rows, n_classes)."""
        Z = np.ascontiguousarray(Z, dtype=np.float64)
        jobs = max(1, int(num_threads)) if len(Z) >= _THREADED_ROWS else 1
        return self.model.predict(Z, n_jobs=jobs)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def compile_head(booster: Any, directory: Path, name: str) -> CompiledForest:
    """Compile one booster to ``directory/<name>.o`` (with its ``<name>.txt``)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.txt").write_text(booster.model_to_string())
    return CompiledForest.load(directory, name)


def compile_model(
    lead_model: LeadReadinessModel, directory: Path | str, *, check_rows: pd.DataFrame
) -> dict[str, Any]:
    """Compile every head of ``lead_model`` into ``directory`` and write the manifest."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    checks: dict[str, np.ndarray] = {}
    heads: dict[str, Any] = {}

    # LLVM compiles each head with the GIL released (llvmlite's ctypes calls), so
    # the heads are compiled side by side, one thread each; checked in order below.
    def timed_compile(item: tuple[str, Any]) -> tuple[Any, float]:
        name, est = item
        start = time.perf_counter()
        return compile_head(est.booster_, directory, name), time.perf_counter() - start

    heads_in_order = list(lead_model.heads.items())
    with concurrent.futures.ThreadPoolExecutor(max(1, len(heads_in_order))) as pool:
        compiled = list(pool.map(timed_compile, heads_in_order))
    for (name, est), (forest, compile_s) in zip(heads_in_order, compiled, strict=True):
        start = time.perf_counter() - compile_s
        Z = np.ascontiguousarray(est.encode(check_rows), dtype=np.float64)
        expected = _lightgbm_raw(est, Z)
        got = forest.predict_raw(Z)
        diff = _max_diff(got, expected)
        if not diff <= TOLERANCE:
            raise ValueError(f"{name} head: compiled scores differ from LightGBM's by {diff:g}")
        checks[f"{name}__Z"] = Z
        checks[f"{name}__raw"] = expected
        heads[name] = {
            "model_sha256": _digest((directory / f"{name}.txt").read_text()),
            "num_trees": int(est.booster_.num_trees()),
            "compile_seconds": round(time.perf_counter() - start, 1),
            "check_max_diff": diff,
        }
    np.savez(directory / "check.npz", **checks)
    manifest = {
        "format": FORMAT,
        "versions": installed_versions(),
        "cpu": host_cpu(),
        "check_rows": len(check_rows),
        "heads": heads,
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _lightgbm_raw(est: HeadClassifier, Z: np.ndarray) -> np.ndarray:
    return np.asarray(est.booster_.predict(Z, raw_score=True, num_threads=1), dtype=np.float64)


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a - b), initial=0.0))


def attach_compiled(lead_model: LeadReadinessModel, directory: Path | str) -> dict[str, str]:
    """Switch each head of ``lead_model`` to its compiled code, where it is verified equal."""
    directory = Path(directory)
    heads = lead_model.heads
    status = {name: "lightgbm: no compiled code for this head" for name in heads}
    refusal = _refusal(directory)
    if refusal is not None:
        return {name: f"lightgbm: {refusal}" for name in heads}
    manifest = json.loads((directory / MANIFEST).read_text())
    with np.load(directory / "check.npz") as checks:
        for name, est in heads.items():
            entry: Mapping[str, Any] | None = manifest["heads"].get(name)
            if entry is None:
                continue
            # A served head (model.served) has no booster: the digest it was made with,
            # and LightGBM's scores recorded when the trees were compiled, stand for it.
            booster = getattr(est, "booster_", None)
            digest = est.model_sha256_ if booster is None else _digest(booster.model_to_string())
            if digest != entry["model_sha256"]:
                status[name] = "lightgbm: the compiled booster is not this model's"
                continue
            forest = CompiledForest.load(directory, name)
            Z = checks[f"{name}__Z"]
            recorded = checks[f"{name}__raw"]
            expected = recorded if booster is None else _lightgbm_raw(est, Z)
            diff = max(_max_diff(forest.predict_raw(Z), expected), _max_diff(expected, recorded))
            if not diff <= TOLERANCE:
                status[name] = f"lightgbm: compiled scores differ by {diff:g} on the check rows"
                continue
            est.attach_compiled(forest.predict_raw)
            status[name] = "compiled"
    return status


def _refusal(directory: Path) -> str | None:
    """Why the folder's code must not be loaded here, or None when it may."""
    if not (directory / MANIFEST).is_file():
        return f"no {MANIFEST} in {directory}"
    if not available():
        return "lleaves is not installed"
    manifest = json.loads((directory / MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        return f"artifact format {manifest.get('format')!r}, this code reads {FORMAT}"
    built, here = manifest.get("versions", {}), installed_versions()
    for dist in ("lleaves", "llvmlite"):
        if built.get(dist) != here[dist]:
            return f"compiled with {dist} {built.get(dist)}, this process has {here[dist]}"
    if manifest.get("cpu") != host_cpu():
        return "compiled for another CPU"
    return None
