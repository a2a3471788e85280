"""Prometheus metrics: requests and latency per route, the model version served.

A pure ASGI middleware (no per-request task or body copy) labels each request with its route *template*
(``/users/{user_id}/recommendations``, not the user's id), so the label set stays bounded; requests that
match no route share the label ``unmatched``. Each app has its own registry, so two apps in one process
(tests) never mix their counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Latency buckets in seconds: sub-millisecond lookups up to multi-second outliers.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self, model_version: Callable[[], int | None]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "movierec_http_requests",
            "HTTP requests answered, by route and status",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "movierec_http_request_duration_seconds",
            "Time from request to the end of the response, by route",
            ("method", "route"),
            buckets=BUCKETS,
            registry=self.registry,
        )
        served = Gauge(
            "movierec_model_version",
            "Registered version of movierec-hybrid being served (0: none loaded)",
            registry=self.registry,
        )
        served.set_function(lambda: float(model_version() or 0))
        self.reloads = Counter(
            "movierec_model_reloads", "Champion models swapped in since start", registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            self.metrics.latency.labels(scope["method"], label).observe(time.perf_counter() - start)
            self.metrics.requests.labels(scope["method"], label, str(status)).inc()
