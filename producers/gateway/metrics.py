"""What the gateway exports on its own /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "greenq_gateway_requests",
            "HTTP requests by route, method and status code.",
            ["route", "method", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "greenq_gateway_request_seconds",
            "Time the gateway took to answer, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS_S,
            registry=registry,
        )
        self.callbacks = Counter(
            "greenq_gateway_callbacks",
            "Completion callbacks by outcome: attempts (sent, retried, gave_up, refused), and ones dropped unsent "
            "because their record expired before their job finished (expired).",
            ["outcome"],
            registry=registry,
        )
        self.event_streams = Gauge(
            "greenq_gateway_event_streams",
            "Open GET /v1/jobs/{id}/events streams in this gateway process, all tenants together.",
            registry=registry,
        )
