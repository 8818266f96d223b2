"""Prometheus series of the sink, served at `GET /metrics` on SINK_WEB_PORT.

Counted per fetch and per batch, never per record: the sink's loop only fetches,
batches and commits (`sinks.consumer`). One registry per sink (tests run several in
one process); consumer lag is read from the consumer at each scrape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector

from zapstream.metrics import (
    LATENCY_BUCKETS,
    SIZE_BUCKETS,
    LagCollector,
    PartitionLag,
    PerLabel,
)


class SinkMetrics:
    def __init__(self, lag: Callable[[], Iterable[PartitionLag]] | None = None) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=registry)
        self.lag = LagCollector(lag)
        registry.register(self.lag)
        self._consumed = PerLabel(
            Counter(
                "zapstream_events_consumed_total",
                "Events fetched by the sink, by topic",
                ["topic"],
                registry=registry,
            )
        )
        self.batch_events = Histogram(
            "zapstream_sink_batch_events",
            "Events per DuckDB batch",
            buckets=SIZE_BUCKETS,
            registry=registry,
        )
        self.load_seconds = Histogram(
            "zapstream_sink_load_seconds",
            "One batch's DuckDB load (insert and commit), retries included",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "zapstream_sink_batch_seconds",
            "One batch from flush to offsets committed: decode, wait for the previous, load, commit",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._rows = PerLabel(
            Counter(
                "zapstream_sink_rows_total",
                "Rows inserted into DuckDB, by table (a replayed event adds none)",
                ["table"],
                registry=registry,
            )
        )
        self.rejected = Counter(
            "zapstream_sink_rejected_total",
            "Events that could not be decoded (kept in rejected_events)",
            registry=registry,
        )
        self.dead_lettered = Counter(
            "zapstream_sink_dead_lettered_total",
            "Rows DuckDB refused for good (dead-lettered by the loader)",
            registry=registry,
        )

    def fetched(self, records: Mapping[Any, list[Any]]) -> None:
        """One `getmany` answer: records per topic partition."""
        for tp, batch in records.items():
            if batch:
                self._consumed.inc(tp.topic, len(batch))

    def loaded(
        self,
        events: int,
        inserted: Mapping[str, int],
        rejected: int,
        dead_lettered: int,
        load_s: float,
        total_s: float,
    ) -> None:
        """One batch loaded and committed."""
        self.batch_events.observe(events)
        self.load_seconds.observe(load_s)
        self.batch_seconds.observe(total_s)
        for table, n in inserted.items():
            if n:
                self._rows.inc(table, n)
        if rejected:
            self.rejected.inc(rejected)
        if dead_lettered:
            self.dead_lettered.inc(dead_lettered)
