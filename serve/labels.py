"""The label sets of the served model, kept on disk so they are known before a model loads.

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["LabelBook"]

_log = logging.getLogger(__name__)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class LabelBook:
    """Label sets per registered model name, persisted as JSON files in ``folder``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def _path(self, model_name: str) -> Path:
        return self.folder / f"labels-{_UNSAFE.sub('_', model_name)}.json"

    def save(
        self, model_name: str, version: str, labels: Mapping[str, Sequence[str] | None]
    ) -> None:
        """Record the label sets of ``model_name`` version ``version`` (never raises)."""
        body = {
            "model_name": model_name,
            "version": str(version),
            "labels": {k: [str(x) for x in v] for k, v in labels.items() if v is not None},
        }
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".labels-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(body, out)
            os.replace(tmp, self._path(model_name))
        except OSError as exc:
            _log.error("could not record the label sets of %s: %s", model_name, exc)

    def load(self, model_name: str) -> dict[str, tuple[str, ...]] | None:
        """The last recorded label sets of ``model_name`` (field → labels), or None."""
        try:
            body = json.loads(self._path(model_name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        labels = body.get("labels") if isinstance(body, dict) else None
        if not isinstance(labels, dict):
            return None
        return {str(k): tuple(str(x) for x in v) for k, v in labels.items() if isinstance(v, list)}
