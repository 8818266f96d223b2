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
        self._of_outcome: dict[str, tuple[Counter, Histogram]] = {}
        self._published_to: dict[str, Counter] = {}
        self.published = Counter(
            "zapstream_events_published_total",
            "Events acknowledged by the broker, by topic",
            ["topic"],
            registry=self.registry,
        )

    # The labelled children, looked up once: `labels()` costs a lock and a key build
    # on every call, and the webhook calls these on every request.
    def of_outcome(self, outcome: str) -> tuple[Counter, Histogram]:
        pair = self._of_outcome.get(outcome)
        if pair is None:
            pair = (self.requests.labels(outcome), self.latency.labels(outcome))
            self._of_outcome[outcome] = pair
        return pair

    def published_to(self, topic: str) -> Counter:
        child = self._published_to.get(topic)
        if child is None:
            child = self._published_to[topic] = self.published.labels(topic)
        return child
