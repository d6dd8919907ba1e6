"""Prometheus metrics of the scoring API, correct under several gunicorn workers.

Design notes: ``docs/design/serving.md``.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

__all__ = ["LATENCY_BUCKETS", "AlignmentCollector", "Metrics", "init_app"]

#: Request latency buckets (seconds), by decade: fine below 10 ms, where the API should answer.
LATENCY_BUCKETS: tuple[float, ...] = (
    *(0.0005, 0.001, 0.0025, 0.005, 0.0075),
    *(0.01, 0.025, 0.05),
    *(0.1, 0.25, 0.5),
    *(1.0, 2.5, 5.0, 10.0),
)

#: The model's heads, each counted per predicted class.
_HEADS = ("stage", "persona")


class AlignmentCollector:
    """Reps' agreement and feature drift from the store at scrape time (cached ``ttl`` s)."""

    _DOCS = {
        "override_rate": "Share of leads reviewed in the last 30 days where a rep changed a label.",
        "reviews": "Reps' reviews in effect in the last 30 days.",
        "agreement_rate": "Share of reps' reviews (30 days) that agree with the model, per head.",
        "feature_psi": "PSI of recent scored leads' features vs the champion's first week (top 5).",
    }

    def __init__(self, store_of: Callable[[], Any], ttl: float = 300.0) -> None:
        self._store_of, self._ttl = store_of, ttl
        self._lock = threading.Lock()
        self._values: dict[str, float] = {}
        self._at = float("-inf")

    def describe(self) -> list[GaugeMetricFamily]:
        """Names only: registering the collector never reads the store."""
        return [GaugeMetricFamily(f"leadready_{k}", doc) for k, doc in self._DOCS.items()]

    def expire(self) -> None:
        """Forget the cached figures: the next scrape reads the store again."""
        with self._lock:
            self._at = float("-inf")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauges, recomputed at most every ``ttl`` seconds."""
        from data.alignment import alignment_gauges

        with self._lock:
            if time.monotonic() - self._at >= self._ttl:
                self._values = alignment_gauges(self._store_of())
                self._at = time.monotonic()
            values = dict(self._values)
        for k in ("override_rate", "reviews"):
            if k in values:
                yield GaugeMetricFamily(f"leadready_{k}", self._DOCS[k], value=values[k])
        by_name = {
            name: GaugeMetricFamily(f"leadready_{name}", self._DOCS[name], labels=[label])
            for name, label in (("agreement_rate", "head"), ("feature_psi", "feature"))
        }
        for key, value in values.items():
            name, _, label = key.partition(":")
            if name in by_name and label:
                by_name[name].add_metric([label], value)
        yield from by_name.values()


@dataclass
class Metrics:
    """The metrics one app exports, registered in ``registry``."""

    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )
    multiproc_dir: str | None = None
    alignment: AlignmentCollector | None = None

    def add_alignment(self, store_of: Callable[[], Any]) -> None:
        """Export the alignment gauges (override rate, agreement, PSI) from the store."""
        self.alignment = AlignmentCollector(store_of)
        if not self.multiproc_dir:
            self.registry.register(self.alignment)

    def __post_init__(self) -> None:
        """Declare every metric of the app (long: one flat list, one declaration each)."""
        counter = partial(Counter, registry=self.registry)
        gauge = partial(Gauge, registry=self.registry)
        self.requests = counter(
            "leadready_http_requests",
            "HTTP requests answered, per endpoint, method and status.",
            ["endpoint", "method", "status"],
        )
        self.latency = Histogram(
            "leadready_http_request_duration_seconds",
            "Time from request start to response, per endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = counter(
            "leadready_predictions",
            "Predictions made, per head (stage, persona) and predicted class.",
            ["head", "label"],
        )
        self.routes = counter(
            "leadready_routes", "Predictions per route (sales, nurture).", ["route"]
        )
        self.model_info = gauge(
            "leadready_model_info",
            "1 for the model version a worker serves (max over live workers).",
            ["name", "version"],
            multiprocess_mode="livemax",
        )
        self.model_version = gauge(
            "leadready_model_version",
            "The numeric model version each worker serves.",
            ["name"],
            multiprocess_mode="liveall",
        )
        self.model_loads = counter(
            "leadready_model_loads", "Model versions loaded and swapped in.", ["name", "version"]
        )
        self.model_load_failures = counter(
            "leadready_model_load_failures",
            "Failed model loads or alias look-ups (the old model stays in service).",
            ["name"],
        )
        self.model_task_refusals = counter(
            "leadready_model_task_refusals",
            "Versions not swapped in because they do another task than the served model.",
            ["name", "version"],
        )
        self.auth_failures = counter(
            "leadready_auth_failures",
            "Rejected API requests, per reason (missing, invalid, revoked, forbidden).",
            ["reason"],
        )
        self.writer_rows = counter(
            "leadready_writer_rows",
            "Rows the background writer stored, per kind (predictions, leads, events).",
            ["kind"],
        )
        self.writer_failures = counter(
            "leadready_writer_failures", "Failed store writes of the background writer (retried)."
        )
        self.writer_dropped = counter(
            "leadready_writer_dropped_rows",
            "Rows the store refused for their content (isolated, logged, not retried); "
            "rows are never dropped for room: a full writer answers 503 instead.",
        )
        self.writer_pending = gauge(
            "leadready_writer_pending_rows",
            "Rows waiting in the background writer's queue.",
            multiprocess_mode="livesum",
        )

    def observe_request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def observe_predictions(self, outputs: list[Mapping[str, Any]]) -> None:
        """Count predicted classes and routes of scored leads.

        Counted per distinct label first: one ``inc`` per label and request, not
        per lead (each is a write to a shared file in multiprocess mode).
        """
        classes = collections.Counter(
            (head, str(out[head]["label"])) for out in outputs for head in _HEADS if out.get(head)
        )
        routes = collections.Counter(str(o["route"]) for o in outputs if o.get("route") is not None)
        for (head, label), n in classes.items():
            self.predictions.labels(head, label).inc(n)
        for route_name, n in routes.items():
            self.routes.labels(route_name).inc(n)

    def set_model(self, name: str, version: str, previous: str | None) -> None:
        """Export the model version now served (and clear the previous one)."""
        if previous is not None and previous != version:
            self.model_info.labels(name, previous).set(0)
        self.model_info.labels(name, version).set(1)
        try:
            self.model_version.labels(name).set(float(version))
        except ValueError:
            self.model_version.labels(name).set(-1)
        self.model_loads.labels(name, version).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text of this process, or of all workers in multiprocess mode."""
        if self.multiproc_dir:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiproc_dir)
            if self.alignment is not None:
                registry.register(self.alignment)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def init_app(app: Flask, metrics: Metrics) -> None:
    """Time and count every request of ``app`` into ``metrics``."""

    @app.before_request
    def _start_timer() -> None:
        g.leadready_t0 = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        t0 = g.pop("leadready_t0", None)
        if t0 is not None:
            seconds, endpoint = time.perf_counter() - t0, request.endpoint or "unmatched"
            metrics.observe_request(endpoint, request.method, response.status_code, seconds)
        return response
