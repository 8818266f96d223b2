"""Prometheus metrics of the webhook, on a registry per app (tests build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector


class IngestMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self.requests = Counter(
            "zapstream_webhook_requests_total",
            "Webhook POSTs by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "zapstream_webhook_latency_seconds",
            "Time from request to answer, broker acknowledgement included",
            ["outcome"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.published = Counter(
            "zapstream_events_published_total",
            "Events acknowledged by the broker, by topic",
            ["topic"],
            registry=self.registry,
        )
