"""Reps' current labels: per lead and field, the newest correction, if it is a rep's."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from data.store import Store

__all__ = ["CURRENT_COLUMNS", "current_corrections"]

#: Columns of :func:`current_corrections`.
CURRENT_COLUMNS: tuple[str, ...] = (
    "id",
    "lead_id",
    "field",
    "new_label",
    "old_label",
    "kind",
    "reviewer",
    "reason",
    "source",
    "created_at",
    "prediction_id",
    "model_version",
    "features",
)


def current_corrections(store: Store) -> pd.DataFrame:
    """Every current rep label: per lead and field, the newest correction, if a rep's."""
    frame = store.corrections_frame(with_features=True)
    if frame.empty:
        return pd.DataFrame(columns=list(CURRENT_COLUMNS))
    frame = frame.sort_values("id", kind="stable")
    latest = frame.groupby(["lead_id", "field"], sort=False).tail(1)
    current = latest[latest["is_rep_label"].astype(bool)]
    current = current[current["new_label"].notna()]
    return current[list(CURRENT_COLUMNS)].reset_index(drop=True)
