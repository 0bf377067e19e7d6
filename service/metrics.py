"""Prometheus metrics of one service instance, in its own registry (so several apps in one process, as in
tests, never collide). Gauges about the projection are refreshed when ``/metrics`` is scraped."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from events.log import AppendResult

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

log = logging.getLogger("service.metrics")

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "sessions_http_requests", "HTTP requests served", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "sessions_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.appends = Counter(
            "sessions_appends", "Appends to the log by outcome", ["command", "outcome"], registry=r
        )
        self.events = Counter("sessions_events_appended", "Events appended to the log", registry=r)
        self.read_timeouts = Counter(
            "sessions_read_model_behind", "Reads that gave up waiting for the read model", registry=r
        )
        self.lag_events = Gauge(
            "sessions_projector_lag_events",
            "Entries not yet applied, per partition",
            ["partition"],
            registry=r,
        )
        self.lag_seconds = Gauge(
            "sessions_projector_lag_seconds",
            "Age of the oldest entry not yet applied, per partition",
            ["partition"],
            registry=r,
        )
        self.dead_letters = Gauge("sessions_dead_letters", "Dead letters not yet retried", registry=r)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def observe_appends(self, command: str, results: Iterable[AppendResult]) -> None:
        for r in results:
            outcome = "duplicate" if r.duplicate else ("appended" if r.appended else "noop")
            self.appends.labels(command, outcome).inc()
            if r.appended:
                self.events.inc(len(r.event_ids) or 1)

    def observe_refusal(self, command: str) -> None:
        self.appends.labels(command, "refused").inc()

    def set_lag(self, partition: int, events: int, seconds: float) -> None:
        self.lag_events.labels(str(partition)).set(events)
        self.lag_seconds.labels(str(partition)).set(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
