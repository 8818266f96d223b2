"""What the processes' Prometheus endpoints share: bucket sets, a cached labelled
counter for hot paths, and consumer lag computed at scrape time.

Each process kind keeps its own series on its own `CollectorRegistry` (not
prometheus_client's global one): `ingest/metrics.py` (webhook API),
`processors/metrics.py` (worker), `sinks/metrics.py` (sink). The README's "Metrics"
section lists every series with its labels.

Labels stay bounded: topics, stages, outcomes, Graph error codes, table names; never a
user id, message id or phone number.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("zapstream.metrics")

# No `*_created` sample beside every counter and histogram: Prometheus does not use
# them and they double the page. (A process-wide switch of prometheus_client, read
# at each scrape.)
disable_created_metrics()  # type: ignore[no-untyped-call]

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
"""Seconds, 1 ms to 1 min: engine calls, Graph calls, stage handling, DuckDB loads."""

SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 5000, 10000)
"""Items per batch: embedding calls, sink batches."""

CONTENT_TYPE = CONTENT_TYPE_LATEST

PartitionLag = tuple[str, int, int]
"""(topic, partition, records behind)."""


def exposition(registry: CollectorRegistry) -> bytes:
    """The text format Prometheus scrapes (`CONTENT_TYPE`)."""
    return generate_latest(registry)


class PerLabel:
    """`counter.labels(value).inc(n)` for a counter with one label, the child looked up
    once per value: on a per-event path `labels()` validates and locks every call."""

    def __init__(self, counter: Counter) -> None:
        self._counter = counter
        self._children: dict[str, Any] = {}

    def inc(self, value: str, amount: float = 1) -> None:
        child = self._children.get(value)
        if child is None:
            child = self._children[value] = self._counter.labels(value)
        child.inc(amount)


def partition_lag(
    partitions: Iterable[Any],
    highwater: Callable[[Any], int | None],
    position: Callable[[Any], int | None],
) -> list[PartitionLag]:
    """Records behind per partition: the broker's high watermark (from the last fetch
    answer) minus the consumer's position (the next offset it hands to the process).
    Partitions without either number yet (nothing fetched) are left out; a negative
    difference (the position is read after a newer fetch than the highwater) is 0."""
    found: list[PartitionLag] = []
    for tp in partitions:
        high, pos = highwater(tp), position(tp)
        if high is None or pos is None:
            continue
        found.append((tp.topic, tp.partition, max(0, int(high) - int(pos))))
    return sorted(found)


def aiokafka_lag(consumer: Any, partitions: Iterable[Any]) -> list[PartitionLag]:
    """`partition_lag` from an `AIOKafkaConsumer`'s own bookkeeping (the highwater of
    the last fetch answer, the fetch position): no request to the broker. A partition
    that a rebalance just took away is left out."""

    def state(tp: Any) -> Any:
        try:
            return consumer._subscription.subscription.assignment.state_value(tp)
        except (AttributeError, KeyError, TypeError):
            return None

    def highwater(tp: Any) -> int | None:
        found = state(tp)
        return None if found is None else found.highwater

    def position(tp: Any) -> int | None:
        found = state(tp)
        return found.position if found is not None and found.has_valid_position else None

    return partition_lag(partitions, highwater, position)


class LagCollector(Collector):
    """`zapstream_consumer_lag{topic,partition}`, read from the consumer at scrape time:
    nothing runs between scrapes. A source that fails (a rebalance under way, the
    consumer not started) gives no samples for that scrape, never a failed scrape."""

    NAME = "zapstream_consumer_lag"
    DOC = "Records in the partition not yet read by this process (highwater - position)"

    def __init__(self, source: Callable[[], Iterable[PartitionLag]] | None = None) -> None:
        self.source = source

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.NAME, self.DOC, labels=["topic", "partition"])

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.NAME, self.DOC, labels=["topic", "partition"])
        if self.source is not None:
            try:
                for topic, partition, lag in self.source():
                    family.add_metric([topic, str(partition)], lag)
            except Exception as exc:  # a diagnostic must not fail the scrape
                log.debug("consumer lag not available: %r", exc)
        yield family
