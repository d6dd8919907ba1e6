"""What a model is for: its task signature, stored with the registered model.
Design notes: ``docs/design/model.md``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TASK_TAG", "ModelTask", "task_from_tags", "task_tags"]


#: Registry tag prefix of a version's task (``leadready.task.json`` holds all of it).
TASK_TAG = "leadready.task"
_HEADS = ("stage", "persona")


@dataclass(frozen=True)
class ModelTask:
    """Label sets, sales-ready stages and input contract of one model."""

    labels: dict[str, tuple[str, ...]]
    sales_ready: tuple[str, ...] = ()
    inputs: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return {
            "labels": {h: list(v) for h, v in self.labels.items()},
            "sales_ready": list(self.sales_ready),
            "inputs": dict(self.inputs),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelTask:
        """The inverse of :meth:`to_dict`."""
        return cls(
            labels={str(h): tuple(sorted(map(str, v))) for h, v in data.get("labels", {}).items()},
            sales_ready=tuple(sorted(map(str, data.get("sales_ready", ())))),
            inputs={str(k): str(v) for k, v in data.get("inputs", {}).items()},
        )

    def differences(self, other: ModelTask) -> list[str]:
        """What makes ``other`` (the new model) a different task than ``self``, in words."""
        out: list[str] = []
        for head in _HEADS:
            mine, theirs = self.labels.get(head), other.labels.get(head)
            if mine is None and theirs is not None:
                out.append(f"the new model has a {head} head, the current one has none")
            elif theirs is None and mine is not None:
                out.append(f"the new model has no {head} head (the current one does)")
            elif mine is not None and set(mine) != set(theirs):
                out.append(_label_difference(head, mine, theirs))
        if set(self.sales_ready) != set(other.sales_ready) and "stage" in self.labels:
            out.append(
                "sales-ready stages differ: "
                f"{_listed(self.sales_ready)} now, {_listed(other.sales_ready)} in the new model"
            )
        changed = [
            f"{c!r} {self.inputs[c]} → {other.inputs[c]}"
            for c in sorted(set(self.inputs) & set(other.inputs))
            if self.inputs[c] != other.inputs[c]
            and "unused" not in (self.inputs[c], other.inputs[c])
        ]
        if changed:
            out.append("input columns changed kind: " + ", ".join(changed[:10]))
        return out

    def input_changes(self, other: ModelTask) -> dict[str, list[str]]:
        """``{"added": [...], "removed": [...]}``: input columns of ``other`` vs ``self``."""
        return {
            "added": sorted(set(other.inputs) - set(self.inputs)),
            "removed": sorted(set(self.inputs) - set(other.inputs)),
        }

    def describe(self) -> str:
        """One line: heads with their labels, sales-ready stages, how many inputs."""
        heads = "; ".join(f"{h}: {', '.join(v)}" for h, v in self.labels.items())
        ready = f"; sales-ready: {', '.join(self.sales_ready)}" if self.sales_ready else ""
        return f"{heads}{ready}; {len(self.inputs)} input columns"


def _listed(values: tuple[str, ...] | list[str]) -> str:
    return ", ".join(values) if values else "none"


def _label_difference(head: str, mine: tuple[str, ...], theirs: tuple[str, ...]) -> str:
    gone = sorted(set(mine) - set(theirs))
    new = sorted(set(theirs) - set(mine))
    parts = []
    if new:
        parts.append(f"adds {_listed(new[:8])}{' …' if len(new) > 8 else ''}")
    if gone:
        parts.append(f"lacks {_listed(gone[:8])}{' …' if len(gone) > 8 else ''}")
    return f"{head} labels differ: the new model {' and '.join(parts)}"


def task_tags(task: ModelTask) -> dict[str, str]:
    """Registry tags of a version's task: the whole task as JSON, and readable summaries."""
    text = json.dumps(task.to_dict(), sort_keys=True)
    tags = {
        f"{TASK_TAG}.{head}_labels": ",".join(labels)[:4000] for head, labels in task.labels.items()
    }
    tags[f"{TASK_TAG}.sales_ready"] = ",".join(task.sales_ready)
    tags[f"{TASK_TAG}.n_inputs"] = str(len(task.inputs))
    pieces = [text[i : i + 4000] for i in range(0, len(text), 4000)] or [""]
    tags[f"{TASK_TAG}.json.parts"] = str(len(pieces))
    for i, piece in enumerate(pieces):
        tags[f"{TASK_TAG}.json.{i}"] = piece
    return tags


def task_from_tags(tags: Mapping[str, str]) -> ModelTask | None:
    """The task written by :func:`task_tags`, or None when the version has none."""
    try:
        parts = int(tags[f"{TASK_TAG}.json.parts"])
        text = "".join(tags[f"{TASK_TAG}.json.{i}"] for i in range(parts))
        return ModelTask.from_dict(json.loads(text))
    except (KeyError, ValueError):
        return None
