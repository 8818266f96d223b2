"""Kafka → DuckDB: a plain aiokafka consumer feeding the writer thread in batches.

The event loop only fetches, batches and commits. A batch (`SINK_BATCH_SIZE` records,
or whatever arrived within `SINK_FLUSH_MS` of its first record) is decoded to Arrow
on a decoder thread and loaded on the one writer thread, in order; while one batch
loads, the next is decoded and the one after is fetched. The loop stays free for
heartbeats, `/ready` and `/query` however long a load takes.

Offsets: auto-commit is off. A batch's offsets are committed only after DuckDB has
committed its transaction, so no offset moves past a row that is not stored; loads are
idempotent (keys), so what is read again after a crash adds nothing. A transient
DuckDB failure is retried with backoff (the batch waits, and so does everything
behind it); rows DuckDB refuses for good are dead-lettered by the loader and the
batch commits. On a rebalance the loads under way finish and commit first, and what
was fetched but not loaded for the revoked partitions is dropped (the next owner
reads it from the committed offset).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from sinks.batch import decode_batch
from sinks.fetch_wait import FetchWait
from sinks.loader import Loader, LoadReport
from sinks.metrics import SinkMetrics
from sinks.routes import Route
from zapstream.errors import RetryableError
from zapstream.metrics import PartitionLag, aiokafka_lag
from zapstream.settings import Settings

log = logging.getLogger("zapstream.sink")

MAX_BATCHES_IN_FLIGHT = 2  # one loading, one decoding
IDLE_POLL_MS = 200  # how long one getmany waits when nothing is pending
BACKOFF_START_S, BACKOFF_MAX_S = 0.1, 5.0
SINK_FETCH_MIN_BYTES = 64 * 1024


def consumer_kwargs(settings: Settings) -> dict[str, Any]:
    """The project's consumer settings (as the workers'), for the sink's group."""
    session_ms = int(settings.broker_session_timeout_s * 1000)
    return {
        "bootstrap_servers": settings.require_bootstrap(),
        "client_id": f"{settings.kafka_client_id}-sink",
        "group_id": f"{settings.app_id}-sink",
        "group_instance_id": settings.consumer_group_instance_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "fetch_max_wait_ms": settings.consumer_fetch_max_wait_ms,
        # The sink batches for SINK_FLUSH_MS anyway: let Apache Kafka gather this much
        # (or wait the fetch wait) instead of answering each fetch with a few records
        # (measured: the sink spent 9-10 ms of CPU per message on Kafka, 3-4 on Tansu).
        "fetch_min_bytes": SINK_FETCH_MIN_BYTES,
        "session_timeout_ms": session_ms,
        "heartbeat_interval_ms": int(settings.broker_heartbeat_interval_s * 1000),
        "rebalance_timeout_ms": int(settings.broker_rebalance_timeout_s * 1000),
        "request_timeout_ms": max(2 * session_ms, 30_000),
        "max_poll_records": settings.sink_batch_size,
        "metadata_max_age_ms": settings.consumer_metadata_max_age_ms,
    }


@dataclass
class Pending:
    """Records fetched and not yet handed to a batch, and the offsets they reach."""

    records: list[Any] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    since: float | None = None

    def add(self, fetched: Mapping[TopicPartition, list[Any]]) -> int:
        n = 0
        for tp, records in fetched.items():
            if records:
                self.records.extend(records)
                self.offsets[tp] = records[-1].offset + 1
                n += len(records)
        if n and self.since is None:
            self.since = time.monotonic()
        return n

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        gone = set(partitions)
        self.records = [r for r in self.records if TopicPartition(r.topic, r.partition) not in gone]
        self.offsets = {tp: o for tp, o in self.offsets.items() if tp not in gone}
        if not self.records:
            self.since = None

    def due_in(self, flush_s: float) -> float:
        """Seconds until this batch is due (0: now); `flush_s` when empty."""
        if self.since is None:
            return flush_s
        return max(0.0, self.since + flush_s - time.monotonic())


class SinkConsumer:
    def __init__(self, settings: Settings, loader: Loader, routes: Mapping[str, Route]) -> None:
        self.settings = settings
        self.loader = loader
        self.routes = routes
        self.topics = sorted(routes)
        self.consumer = AIOKafkaConsumer(**consumer_kwargs(settings))
        self.rebalancing = True
        self.assigned: frozenset[TopicPartition] = frozenset()
        self.loaded: dict[TopicPartition, int] = {}
        """Next offset per partition that DuckDB holds (for the state dump)."""
        self._pending = Pending()
        self._in_flight: deque[asyncio.Task[None]] = deque()
        self._to_commit: dict[TopicPartition, int] = {}
        self._stop = asyncio.Event()
        self._decoder = ThreadPoolExecutor(1, thread_name_prefix="sink-decode")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="duckdb-writer")
        self._fetch_wait: FetchWait | None = None
        self.metrics = SinkMetrics(self.lag)

    @property
    def ready(self) -> bool:
        """Partitions are assigned and no rebalance is under way: events flow."""
        return bool(self.assigned) and not self.rebalancing

    def stop(self) -> None:
        self._stop.set()

    # --- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        """Consume until `stop()`; then load and commit what was fetched, and leave."""
        if not await self._start():
            return
        try:
            while not self._stop.is_set():
                await self._step()
            self._flush()
            await self._finish_in_flight()
        finally:
            await self.consumer.stop()
            self._decoder.shutdown(wait=True)
            self._writer.shutdown(wait=True)

    async def _start(self) -> bool:
        delay = BACKOFF_START_S
        while not self._stop.is_set():
            try:
                await self.consumer.start()
                break
            except KafkaError as exc:
                log.warning("broker not reachable, retrying in %.1fs: %s", delay, exc)
                await self._sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
        else:
            return False
        self.consumer.subscribe(self.topics, listener=_Rebalance(self))
        self._fetch_wait = FetchWait(
            self.consumer,
            busy_ms=self.settings.consumer_fetch_max_wait_ms,
            idle_ms=max(
                self.settings.fetch_idle_wait_ms,
                self.settings.consumer_fetch_max_wait_ms,
            ),
        )
        return True

    async def _step(self) -> None:
        self._reap()
        started = self._flush_if_due()
        if not started and len(self._in_flight) >= MAX_BATCHES_IN_FLIGHT and self._due():
            # Backpressure: the next batch is ready but two are in flight. Wait for the
            # oldest (aiokafka keeps prefetching meanwhile, up to its buffer).
            await asyncio.wait([self._in_flight[0]])
            return
        pending = self._pending
        room = self.settings.sink_batch_size - len(pending.records)  # > 0: a full one is due
        due_in = pending.due_in(self.settings.sink_flush_ms / 1000)
        timeout_ms = int(due_in * 1000) if pending.records else IDLE_POLL_MS
        fetched = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=room)
        got = pending.add(fetched)
        self.metrics.fetched(fetched)
        if self._fetch_wait is not None:
            self._fetch_wait.observe(got, full=got >= room)
        self._flush_if_due()
        # getmany returns without yielding when records are buffered: let the loop run
        # the batches' callbacks, the web handlers and the signal handlers every time.
        await asyncio.sleep(0)

    def _due(self) -> bool:
        """The pending records make a batch: enough of them, or the first is old enough."""
        pending = self._pending
        return len(pending.records) >= self.settings.sink_batch_size or bool(
            pending.records and pending.due_in(self.settings.sink_flush_ms / 1000) == 0
        )

    def _flush_if_due(self) -> bool:
        """Start a batch if one is due and there is room; whether one was started."""
        if self._due() and len(self._in_flight) < MAX_BATCHES_IN_FLIGHT:
            self._flush()
            return True
        return False

    def _reap(self) -> None:
        """Drop finished batches; a batch that failed for good stops the sink."""
        while self._in_flight and self._in_flight[0].done():
            self._in_flight.popleft().result()

    def _flush(self) -> None:
        if not self._pending.records:
            return
        batch, self._pending = self._pending, Pending()
        previous = self._in_flight[-1] if self._in_flight else None
        self._in_flight.append(asyncio.create_task(self._process(batch, previous)))

    async def _process(self, batch: Pending, previous: asyncio.Task[None] | None) -> None:
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        decoded = await loop.run_in_executor(
            self._decoder, decode_batch, batch.records, self.routes, self.loader.tables
        )
        t1 = time.perf_counter()
        if previous is not None:
            await previous  # batches load and commit in order
        t2 = time.perf_counter()
        report = await self._retrying(
            lambda: loop.run_in_executor(self._writer, self.loader.load, decoded)
        )
        t3 = time.perf_counter()
        self.loaded.update(batch.offsets)
        self._to_commit.update(batch.offsets)
        await self._commit()
        done = time.perf_counter()
        self.metrics.loaded(
            len(batch.records),
            report.inserted,
            report.rejected,
            report.dead_lettered,
            load_s=t3 - t2,
            total_s=done - t0,
        )
        log.info(
            "batch loaded",
            extra={
                "events": len(batch.records),
                "inserted": report.inserted,
                "rejected": report.rejected,
                "dead_lettered": report.dead_lettered,
                "decode_ms": _ms(t1 - t0),
                "queued_ms": _ms(t2 - t1),
                "load_ms": _ms(t3 - t2),
                "commit_ms": _ms(done - t3),
            },
        )

    async def _retrying(self, attempt: Callable[[], Awaitable[LoadReport]]) -> LoadReport:
        """Retry what DuckDB may take later (backoff, until stopped); let the rest raise."""
        delay, tries = BACKOFF_START_S, 1
        while True:
            try:
                return await attempt()
            except RetryableError as exc:
                if self._stop.is_set():
                    raise
                log.error("DuckDB load failed (try %d), retrying in %.1fs: %s", tries, delay, exc)
            await self._sleep(delay)
            delay, tries = min(delay * 2, BACKOFF_MAX_S), tries + 1

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but wake up when the sink is told to stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _commit(self) -> None:
        assigned = self.consumer.assignment()
        offsets = {tp: o for tp, o in self._to_commit.items() if tp in assigned}
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except KafkaError as exc:
            # The rows are stored: at worst these events are read again and ignored.
            log.warning("offset commit failed (retried with the next batch): %r", exc)
            return
        for tp, offset in offsets.items():
            if self._to_commit.get(tp) == offset:
                del self._to_commit[tp]

    async def _finish_in_flight(self) -> None:
        while self._in_flight:
            await self._in_flight.popleft()

    # --- rebalances (called by aiokafka, inside getmany) -------------------------------------

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        self.rebalancing = True
        self._pending.forget(revoked)  # not loaded yet: the next owner reads them again
        if self._in_flight:  # loads under way finish and commit (a failure: see _reap)
            await asyncio.wait(list(self._in_flight))
        await self._commit()
        for tp in revoked:
            self._to_commit.pop(tp, None)
            self.loaded.pop(tp, None)

    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        self.assigned = frozenset(assigned)
        self.rebalancing = False
        log.info("partitions assigned", extra={"partitions": len(assigned)})

    # --- metrics and SIGUSR1 ---------------------------------------------------------------

    def lag(self) -> list[PartitionLag]:
        """Records behind per assigned partition (read at each `/metrics` scrape)."""
        return aiokafka_lag(self.consumer, self.consumer.assignment())

    def describe(self) -> str:
        lines = [
            f"ready={self.ready} pending={len(self._pending.records)} "
            f"batches_in_flight={len(self._in_flight)} fetch_wait_ms={self._fetch_wait}"
        ]
        for tp in sorted(self.assigned):
            position = _position(self.consumer, tp)
            lines.append(
                f"  {tp.topic}[{tp.partition}] loaded_to={self.loaded.get(tp)} "
                f"uncommitted={self._to_commit.get(tp)} position={position}"
            )
        return "\n".join(lines)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _position(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    """The fetch position, for the state dump only (aiokafka's own bookkeeping)."""
    try:
        state = consumer._subscription.subscription.assignment.state_value(tp)
        return int(state.position) if state.has_valid_position else None
    except (AttributeError, KeyError, TypeError):
        return None


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sink: SinkConsumer) -> None:
        self.sink = sink

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.sink.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.sink.on_assigned(assigned)
