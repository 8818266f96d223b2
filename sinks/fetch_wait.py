"""A fetch wait that follows the traffic: short under load, long when idle.

The embedded Tansu broker holds every fetch for the whole `fetch_max_wait_ms`, data
or not (Apache Kafka answers as soon as data arrives). With the project's 10 ms wait
an idle sink sends ~100 fetches a second, each carrying every partition of every
topic it reads, and burns CPU for nothing. So the wait is the short one
(`CONSUMER_FETCH_MAX_WAIT_MS`) only while fetches come back full (a backlog), and
`CONSUMER_FETCH_IDLE_WAIT_MS` otherwise (unset: 500 ms on Tansu, 2,000 on Apache
Kafka, asked of the broker at start). The workers switch after a second without
records; the sink switches sooner, at any trickle, since it batches for
`SINK_FLUSH_MS` anyway: on Tansu a trickle lands up to the idle wait later, on Apache
Kafka not later at all.

aiokafka reads the wait from its fetcher each time it builds a fetch request and has
no public setter; `aiokafka>=0.11,<0.15` is pinned and a missing attribute only logs.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("zapstream.sink")

BUSY_RECORDS = 100
"""A getmany that returns this many records (or fills the batch) means a backlog."""


class FetchWait:
    def __init__(self, consumer: Any, *, busy_ms: int, idle_ms: int) -> None:
        self.busy_ms = busy_ms
        self.idle_ms = idle_ms
        self._fetcher = getattr(consumer, "_fetcher", None)
        if self._fetcher is None or not hasattr(self._fetcher, "_fetch_max_wait_ms"):
            log.warning("this aiokafka has no adjustable fetch wait: keeping %d ms", busy_ms)
            self._fetcher = None
        self.current = busy_ms
        self._set(idle_ms)

    def observe(self, records: int, *, full: bool = False) -> None:
        """After a getmany that returned `records` (`full`: as many as were asked)."""
        self._set(self.busy_ms if full or records >= BUSY_RECORDS else self.idle_ms)

    def _set(self, wait_ms: int) -> None:
        if wait_ms != self.current and self._fetcher is not None:
            self._fetcher._fetch_max_wait_ms = wait_ms
            self.current = wait_ms

    def __repr__(self) -> str:
        return str(self.current)
