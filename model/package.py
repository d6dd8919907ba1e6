"""``LeadReadinessModel``: the one object pickled into the MLflow model.
Design notes: ``docs/design/model.md``."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from data.values import finite, utc_now
from model.compiled import attach_compiled
from model.reasons import explain_head
from model.routing import RoutingConfig, readiness, resolve_sales_ready, route
from model.served import HEADS
from model.task import ModelTask

if TYPE_CHECKING:
    import pandas as pd

    from model.classifier import HeadClassifier, TwoHeadClassifier
    from model.features import FeatureConfig

__all__ = ["CHUNK_ROWS", "SMALL_BATCH", "LeadReadinessModel"]

#: Inputs of at most this many rows are scored with one LightGBM thread.
SMALL_BATCH = 64
#: predict_frame scores larger frames in chunks of this many rows (bounds the memory of
#: the encoded matrix and of the per-class contributions behind reasons).
CHUNK_ROWS = 50_000


class LeadReadinessModel:
    """The packaged lead-readiness model."""

    format_version = 1

    def __init__(
        self,
        classifier: TwoHeadClassifier,
        *,
        input_columns: Sequence[str],
        feature_config: FeatureConfig | None = None,
        routing: RoutingConfig | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        heads = getattr(classifier, "heads_", None)
        if not heads:
            raise ValueError("the classifier is not fitted")
        self.classifier = classifier
        self.input_columns: list[str] = [str(c) for c in input_columns]
        if len(set(self.input_columns)) != len(self.input_columns):
            raise ValueError("input_columns lists a column twice")
        self.feature_config = feature_config
        self.routing = routing if routing is not None else RoutingConfig()
        self.labels: dict[str, tuple[str, ...]] = {
            h: tuple(str(c) for c in est.classes_) for h, est in heads.items()
        }
        stage = heads.get("stage")
        self.sales_ready_stages: tuple[str, ...] = (
            resolve_sales_ready(self.routing, self.labels["stage"]) if stage is not None else ()
        )
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.metadata.setdefault("trained_at", utc_now().isoformat(timespec="seconds"))
        self.metadata.setdefault("metrics", {})

    # ---- facts

    @property
    def heads(self) -> dict[str, HeadClassifier]:
        """The present heads, by name (``"stage"``, ``"persona"``)."""
        return {h: self.classifier.heads_[h] for h in HEADS if h in self.classifier.heads_}

    @property
    def stage_labels(self) -> tuple[str, ...] | None:
        """The stage head's labels, or None without a stage head."""
        return self.labels.get("stage")

    @property
    def persona_labels(self) -> tuple[str, ...] | None:
        """The persona head's labels, or None without a persona head."""
        return self.labels.get("persona")

    @property
    def task(self) -> ModelTask:
        """What this model is for: label sets, sales-ready stages, input columns and kinds."""
        kinds: dict[str, str] = {}
        for est in self.heads.values():
            encoder = getattr(est, "encoder_", None)
            for column, kind in (getattr(encoder, "kinds_", None) or {}).items():
                kinds.setdefault(str(column), str(kind))
        return ModelTask(
            labels={h: tuple(sorted(v)) for h, v in self.labels.items()},
            sales_ready=tuple(sorted(self.sales_ready_stages)),
            inputs={c: kinds.get(c, "unused") for c in self.input_columns},
        )

    def missing_columns(self, columns: Sequence[str]) -> list[str]:
        """Input columns absent from ``columns`` (they are scored as missing values)."""
        present = {str(c) for c in columns}
        return [c for c in self.input_columns if c not in present]

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description: labels, columns, routing, calibration, metadata."""
        return {
            "heads": {
                h: {
                    "labels": list(self.labels[h]),
                    "calibration": finite(est.calibration_),
                    "dropped_columns": dict(est.encoder_.dropped_columns_),
                }
                for h, est in self.heads.items()
            },
            "input_columns": list(self.input_columns),
            "task": self.task.to_dict(),
            "feature_config": None if self.feature_config is None else repr(self.feature_config),
            "routing": {
                **asdict(self.routing),
                "sales_ready_stages": list(self.sales_ready_stages),
                "nurture_personas": list(self.routing.nurture_personas),
            },
            "metadata": finite(self.metadata),
        }

    # ---- serving set-up

    def prepare(
        self, compiled_dir: str | Path | None = None, *, explanations: bool = True
    ) -> dict[str, str]:
        """Ready the model for scoring: native trees where verified, reason tables built."""
        if compiled_dir is None:
            status = {h: "lightgbm: no compiled artifact" for h in self.heads}
        else:
            try:
                status = attach_compiled(self, compiled_dir)
            except Exception as exc:  # a broken artifact must never stop serving
                for est in self.heads.values():
                    est.attach_compiled(None)
                status = {h: f"lightgbm: compiled code failed to load ({exc})" for h in self.heads}
        if explanations:
            for est in self.heads.values():
                est.prepare_explanations()
        self._routing_resolved()
        self.__dict__["_engine_status"] = dict(status)
        return status

    @property
    def engine(self) -> str:
        """``"compiled"`` when every head scores with native code, ``"lightgbm"`` when
        none does, ``"mixed"`` otherwise."""
        used = [est.uses_compiled for est in self.heads.values()]
        if used and all(used):
            return "compiled"
        return "mixed" if any(used) else "lightgbm"

    @property
    def engine_status(self) -> dict[str, str]:
        """Per head, why it scores with native code or LightGBM (after :meth:`prepare`)."""
        status = self.__dict__.get("_engine_status")
        if status is None:
            return {
                h: "compiled" if est.uses_compiled else "lightgbm: not prepared"
                for h, est in self.heads.items()
            }
        return dict(status)

    def __repr__(self) -> str:
        heads = ", ".join(f"{h}={list(labels)}" for h, labels in self.labels.items())
        return f"LeadReadinessModel({heads}, {len(self.input_columns)} input columns)"

    # ---- scoring core

    def _score(
        self,
        n: int,
        encode: Callable[[HeadClassifier], np.ndarray],
        text_values: Callable[[HeadClassifier], Mapping[str, Sequence[Any]]],
        *,
        reasons: bool,
        top_k: int,
        num_threads: int | None,
    ) -> dict[str, Any]:
        """Per head: proba, label index, confidence (and reasons); readiness and route."""
        result: dict[str, Any] = {}
        for head, est in self.heads.items():
            Z = encode(est)
            proba = est.predict_proba_encoded(Z, num_threads=num_threads)
            index = est.decide(proba)  # the head's decision rule (argmax or macro-F1 weights)
            part = {
                "proba": proba,
                "index": index,
                "confidence": proba[np.arange(n), index],
            }
            if reasons:
                part["reasons"] = explain_head(
                    est, Z, index, text_values(est), top_k=top_k, num_threads=num_threads
                )
            result[head] = part
        config = self._routing_resolved()
        stage, persona = result.get("stage"), result.get("persona")
        ready = None if stage is None else readiness(stage["proba"], self.labels["stage"], config)
        result["readiness"] = ready
        result["route"] = route(
            stage_proba=None if stage is None else stage["proba"],
            stage_classes=self.labels.get("stage"),
            persona=None
            if persona is None
            else np.asarray(self.labels["persona"], dtype=object)[persona["index"]],
            persona_confidence=None if persona is None else persona["confidence"],
            config=config,
            ready=ready,
        )
        return result

    def _routing_resolved(self) -> RoutingConfig:
        cached = self.__dict__.get("_resolved_routing")
        if cached is None:
            cached = replace(self.routing, sales_ready_stages=self.sales_ready_stages)
            self.__dict__["_resolved_routing"] = cached
        return cached

    # ---- batch

    def predict_frame(
        self,
        df: pd.DataFrame,
        *,
        reasons: bool = False,
        top_k: int = 3,
        num_threads: int | None = None,
    ) -> pd.DataFrame:
        """Score a feature table: in chunks of ``CHUNK_ROWS``, each scored by :meth:`_score` and
        laid out as the output columns (kept together: the layout is the output contract)."""
        import pandas as pd

        n = len(df)
        missing = self.missing_columns(df.columns)
        if n > CHUNK_ROWS:
            parts = [
                self.predict_frame(
                    df.iloc[i : i + CHUNK_ROWS],
                    reasons=reasons,
                    top_k=top_k,
                    num_threads=num_threads,
                )
                for i in range(0, n, CHUNK_ROWS)
            ]
            out = pd.concat(parts)
            out.attrs["missing_columns"] = missing
            return out
        if n == 0:
            out = pd.DataFrame(index=df.index, columns=self.output_columns(reasons=reasons))
            out.attrs["missing_columns"] = missing
            return out

        def text_values(est: HeadClassifier) -> dict[str, Sequence[Any]]:
            enc = est.encoder_
            return {
                c: df[c].to_numpy(dtype=object)
                for c in enc.columns_
                if enc.kinds_[c] == "text" and c in df.columns
            }

        scored = self._score(
            n,
            lambda est: est.encode(df),
            text_values,
            reasons=reasons,
            top_k=top_k,
            num_threads=_threads(num_threads, n),
        )
        columns: dict[str, Any] = {}
        for head, part in ((h, scored[h]) for h in HEADS if h in scored):
            labels = np.asarray(self.labels[head], dtype=object)
            columns[head] = labels[part["index"]]
            columns[f"{head}_confidence"] = part["confidence"]
            for j, label in enumerate(self.labels[head]):
                columns[f"{head}_proba__{label}"] = part["proba"][:, j]
        columns["readiness"] = (
            np.full(n, np.nan) if scored["readiness"] is None else scored["readiness"]
        )
        columns["route"] = scored["route"].astype(object)
        if reasons:
            for head in (h for h in HEADS if h in scored):
                columns[f"{head}_reasons"] = [json.dumps(r) for r in scored[head]["reasons"]]
        out = pd.DataFrame(columns, index=df.index)
        out.attrs["missing_columns"] = missing
        return out

    def output_columns(self, *, reasons: bool = False) -> list[str]:
        """The columns :meth:`predict_frame` returns, in order."""
        cols: list[str] = []
        for head in (h for h in HEADS if h in self.labels):
            cols += [head, f"{head}_confidence"]
            cols += [f"{head}_proba__{label}" for label in self.labels[head]]
        cols += ["readiness", "route"]
        if reasons:
            cols += [f"{h}_reasons" for h in HEADS if h in self.labels]
        return cols

    # ---- lean path

    def predict_records(
        self, records: Sequence[Mapping[str, Any]], *, reasons: bool = False, top_k: int = 3
    ) -> list[dict[str, Any]]:
        """Score feature rows given as plain dicts, without pandas."""
        n = len(records)
        if n == 0:
            return []
        threads = _threads(None, n)

        def text_values(est: HeadClassifier) -> dict[str, list[Any]]:
            enc = est.encoder_
            return {c: [r.get(c) for r in records] for c in enc.columns_ if enc.kinds_[c] == "text"}

        scored = self._score(
            n,
            lambda est: est.encode_records(records),
            text_values,
            reasons=reasons,
            top_k=top_k,
            num_threads=threads,
        )
        ready = scored["readiness"]
        routes = scored["route"]
        out: list[dict[str, Any]] = []
        for i in range(n):
            item: dict[str, Any] = {}
            for head in HEADS:
                part = scored.get(head)
                if part is None:
                    item[head] = None
                    continue
                labels = self.labels[head]
                proba = part["proba"][i]
                head_out: dict[str, Any] = {
                    "label": labels[int(part["index"][i])],
                    "confidence": float(part["confidence"][i]),
                    "probabilities": {lab: float(p) for lab, p in zip(labels, proba, strict=True)},
                }
                if reasons:
                    head_out["reasons"] = part["reasons"][i]
                item[head] = head_out
            item["readiness"] = None if ready is None else float(ready[i])
            item["route"] = str(routes[i])
            out.append(item)
        return out

    def predict_rows(
        self, records: Sequence[Mapping[str, Any]], *, reasons: bool = False, top_k: int = 3
    ) -> list[dict[str, Any]]:
        """:meth:`predict_frame`'s output rows as plain dicts, without pandas."""
        out: list[dict[str, Any]] = []
        present = [h for h in HEADS if h in self.labels]
        for item in self.predict_records(records, reasons=reasons, top_k=top_k):
            row: dict[str, Any] = {}
            for head in present:
                part = item[head]
                row[head] = part["label"]
                row[f"{head}_confidence"] = part["confidence"]
                for label, p in part["probabilities"].items():
                    row[f"{head}_proba__{label}"] = p
            row["readiness"] = math.nan if item["readiness"] is None else item["readiness"]
            row["route"] = item["route"]
            if reasons:
                for head in present:
                    row[f"{head}_reasons"] = json.dumps(item[head]["reasons"])
            out.append(row)
        return out

    # ---- features

    def features_from_profile(
        self,
        profile: Mapping[str, Any],
        events: Sequence[Mapping[str, Any]] | None = (),
        as_of: Any = None,
    ) -> dict[str, Any]:
        """The feature row of one lead, built with the training feature code."""
        meta = getattr(self, "metadata", None) or {}
        if meta.get("column_types") or meta.get("title_column"):
            # Read the CRM columns as training (and ``score``) read them.
            from data.coltypes import type_record

            profile = type_record(profile, meta.get("column_types"), meta.get("title_column"))
        if self.feature_config is None:
            if events:
                raise ValueError(
                    "this model was trained on a ready feature table, not on events: "
                    "send the feature row instead"
                )
            row = {k: v for k, v in profile.items() if k != "extra"}
            extra = profile.get("extra")
            if isinstance(extra, Mapping):
                for key, value in extra.items():
                    row.setdefault(key, value)
            return row
        from model.features import build_features_one

        return build_features_one(
            profile, list(events or ()), as_of=as_of, config=self.feature_config
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_resolved_routing", None)
        state.pop("_engine_status", None)
        return state


def _threads(num_threads: int | None, n: int) -> int | None:
    """Tree threads for ``n`` rows: as given, else one for small inputs, else the head's."""
    if num_threads is not None:
        return num_threads
    return 1 if n <= SMALL_BATCH else None
