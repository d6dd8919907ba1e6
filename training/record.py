"""Record batch predictions in the store, with their feature snapshots, as the API does.
Design notes: ``docs/design/training.md``."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from data.values import chunks, is_missing, plain, utc_now

if TYPE_CHECKING:
    from data.store import Store

__all__ = ["prediction_records", "record_scored_frame"]

#: The heads a scored frame may carry, in order.
_HEADS: tuple[str, ...] = ("stage", "persona")
#: Rows handed to ``Store.record_predictions`` at a time.
_CHUNK = 5000


def _value(value: Any) -> Any:
    """A JSON- and database-ready scalar: numpy → Python, NaN/NaT/NA → None, times → ISO text."""
    if is_missing(value):
        return None
    value = plain(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    if isinstance(value, pd.Timedelta):
        return value.total_seconds() / 86_400
    return value


def _margin(probabilities: dict[str, float]) -> float | None:
    """Top probability minus the runner-up (how clear-cut a prediction is)."""
    if not probabilities:
        return None
    top = sorted(probabilities.values(), reverse=True)
    return top[0] - (top[1] if len(top) > 1 else 0.0)


def _reasons(value: Any) -> Any:
    """A reasons cell (JSON text as written by ``predict_frame``) as a list, else None."""
    value = _value(value)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def prediction_records(
    features: pd.DataFrame,
    scored: pd.DataFrame,
    *,
    model_name: str,
    model_version: str,
    source: str = "batch",
    input_columns: Sequence[str] | None = None,
    created_at: datetime | None = None,
) -> list[dict[str, Any]]:
    """Rows for ``Store.record_predictions`` from a scored frame and its features."""
    if len(features) != len(scored):
        raise ValueError(f"{len(features)} feature rows but {len(scored)} scored rows")
    if not features.index.equals(scored.index) and not isinstance(scored.index, pd.RangeIndex):
        raise ValueError("the scored rows are not in the order of the feature rows")
    created_at = created_at or utc_now()
    columns = list(features.columns) if input_columns is None else [str(c) for c in input_columns]
    snapshot = features.reindex(columns=columns)
    snapshot_rows = snapshot.astype(object).to_numpy()
    ids = [str(i) for i in features.index]
    heads = [h for h in _HEADS if h in scored.columns]
    proba_cols = {
        h: [c for c in scored.columns if str(c).startswith(f"{h}_proba__")] for h in heads
    }
    classes = {h: [str(c)[len(f"{h}_proba__") :] for c in proba_cols[h]] for h in heads}
    proba_values = {h: scored[proba_cols[h]].to_numpy(dtype=float) for h in heads}
    records: list[dict[str, Any]] = []
    for i, lead_id in enumerate(ids):
        row: dict[str, Any] = {
            "lead_id": lead_id,
            "created_at": created_at,
            "model_name": model_name,
            "model_version": str(model_version),
            "source": source,
        }
        probabilities: dict[str, dict[str, float] | None] = dict.fromkeys(_HEADS)
        reasons: dict[str, Any] = {}
        for head in heads:
            probs = dict(zip(classes[head], proba_values[head][i].tolist(), strict=True))
            probabilities[head] = probs
            row[head] = _value(scored[head].iat[i])
            row[f"{head}_confidence"] = _value(scored[f"{head}_confidence"].iat[i])
            row[f"{head}_margin"] = _margin(probs)
            if f"{head}_reasons" in scored.columns:
                reasons[head] = _reasons(scored[f"{head}_reasons"].iat[i])
        row["probabilities"] = probabilities
        for name in ("readiness", "route"):
            if name in scored.columns:
                row[name] = _value(scored[name].iat[i])
        if reasons:
            row["reasons"] = reasons
        row["features"] = {
            name: _value(value) for name, value in zip(columns, snapshot_rows[i], strict=True)
        }
        records.append(row)
    return records


def record_scored_frame(
    store: Store,
    features_df: pd.DataFrame,
    scored_df: pd.DataFrame,
    model_name: str,
    model_version: str,
    source: str = "batch",
    *,
    leads: pd.DataFrame | None = None,
    id_col: str = "lead_id",
    input_columns: Sequence[str] | None = None,
    created_at: datetime | None = None,
) -> int:
    """Store a scored chunk: predictions with feature snapshots, and optionally the leads."""
    if leads is not None and len(leads):
        frame = leads.copy()
        if id_col != "lead_id":
            frame = frame.drop(columns=["lead_id"], errors="ignore").rename(
                columns={id_col: "lead_id"}
            )
        frame["lead_id"] = frame["lead_id"].astype(str)
        outputs = {c for c in scored_df.columns if c not in ("stage", "persona")}
        frame = frame.drop(columns=[c for c in frame.columns if c in outputs])
        store.upsert_leads(frame.to_dict("records"))
    records = prediction_records(
        features_df,
        scored_df,
        model_name=model_name,
        model_version=model_version,
        source=source,
        input_columns=input_columns,
        created_at=created_at,
    )
    for chunk in chunks(records, _CHUNK):
        store.record_predictions(chunk)
    return len(records)
