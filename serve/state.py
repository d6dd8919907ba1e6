"""The long-lived objects of one app, kept in ``app.extensions["leadready"]``.

Blueprints (the API here, the review UI elsewhere) reach the store, the model
holder, the prediction writer and the metrics through :func:`get_state`,
never through module globals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app

from serve.auth import ApiKeyAuth
from serve.errors import ApiError
from serve.holder import LoadedModel, ModelHolder
from serve.labels import LabelBook
from serve.metrics import Metrics
from serve.scoring import Prepared, prediction_rows
from serve.writer import PredictionWriter, WriterFull

__all__ = ["EXTENSION", "ServeState", "get_state"]

#: The key of this state in ``app.extensions``.
EXTENSION = "leadready"
#: Seconds a client is told to wait when the writer's backlog is full.
WRITER_RETRY_AFTER = "2"


@dataclass
class ServeState:
    """Everything one app keeps between requests.

    The store, the model holder, this app's metrics, the API-key checks, the prediction writer
    (None when recording is off), the last loaded model's label sets (on disk, read while none
    is loaded) and ``suggestion_set(store, correction_id)``.
    """

    store: Any
    holder: ModelHolder
    metrics: Metrics
    auth: ApiKeyAuth
    writer: PredictionWriter | None = None
    labels: LabelBook | None = None
    suggestion_set: Callable[[Any, int], Any] | None = None
    openapi: dict[str, Any] | None = field(default=None, repr=False)

    def record(
        self,
        prepared: list[Prepared],
        results: list[dict[str, Any]],
        loaded: LoadedModel,
        *,
        source: str,
        observed: list[dict[str, Any]] | None = None,
    ) -> None:
        """Queue predictions (and the leads' profiles and events) for the store.

        ``observed`` lists the predictions to count in the metrics when they
        are more than the recorded ones (``/invocations`` rows without a lead id).
        """
        if self.writer is not None and prepared:
            try:
                self.writer.submit(
                    leads=[p.lead for p in prepared if p.lead is not None],
                    events=[e for p in prepared for e in p.events],
                    predictions=prediction_rows(
                        prepared,
                        results,
                        model_name=loaded.name,
                        model_version=loaded.version,
                        source=source,
                    ),
                )
            except WriterFull as exc:
                # Refused before answering: the client retries; nothing acknowledged is lost.
                if exc.too_large:
                    raise ApiError(
                        413, f"Too much to record in one request: {exc}; send fewer leads or events"
                    ) from None
                raise ApiError(
                    503,
                    f"The store is behind ({exc}); retry shortly",
                    None,
                    headers={"Retry-After": WRITER_RETRY_AFTER},
                ) from None
        self.metrics.observe_predictions(results if observed is None else observed)

    def close(self, timeout: float = 10.0) -> bool:
        """Flush the writer and stop the model poller (clean shutdown)."""
        ok = self.writer.close(timeout) if self.writer is not None else True
        self.holder.stop(timeout=1.0)
        return ok


def get_state(app: Flask | None = None) -> ServeState:
    """The :class:`ServeState` of ``app`` (default: the current app)."""
    target = app if app is not None else current_app
    return target.extensions[EXTENSION]
