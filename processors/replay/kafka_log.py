"""The inbound topic read directly: no consumer group, nothing committed, big fetches.

`KafkaLog` answers what `selection.resolve` asks (partitions, bounds, the timestamp of
the record at an offset) and reads offset ranges in bulk. Works the same on Tansu and
Apache Kafka: the end of a partition is found by reading to it (Tansu's `end_offsets`
answers the last batch's base offset + 1, not the end), and timestamps come from the
records themselves (Tansu's offsets-for-times is unusable).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from processors.replay.selection import OffsetRange, UnknownTopic
from zapstream.errors import BrokerUnavailable
from zapstream.settings import Settings

PROBE_WAIT_S = 1.0
"""How long one timestamp probe waits for its record before it counts as absent."""
END_QUIET_S = 0.3
"""Reading towards the ends stops at the first fetch that brings nothing for this long."""
READ_STALL_S = 30.0
"""A bulk read that gets nothing for this long while records are due gives up."""


class KafkaLog:
    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self._consumer: AIOKafkaConsumer | None = None
        self._begins: dict[int, int] = {}
        self._ends: dict[int, int] = {}

    async def __aenter__(self) -> KafkaLog:
        bootstrap = self.settings.require_bootstrap()
        await self._check_topic(bootstrap)
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            client_id=f"{self.settings.kafka_client_id}-replay",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=16 * 1024 * 1024,
            request_timeout_ms=self.settings.kafka_request_timeout_ms,
        )
        try:
            await self._consumer.start()
        except Exception as exc:
            raise BrokerUnavailable(str(exc) or type(exc).__name__, address=bootstrap) from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is None:
            return
        try:
            await self._consumer.stop()
        except asyncio.CancelledError:
            # aiokafka's stop of a consumer that never had an assignment cancels its
            # own reset task and lets the CancelledError out: not ours to pass on.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise

    async def _check_topic(self, bootstrap: str) -> None:
        """Unknown topics are refused before a consumer asks for them (Tansu would
        create them on the spot)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        try:
            await admin.start()
            topics = set(await admin.list_topics())
        except Exception as exc:
            raise BrokerUnavailable(str(exc) or type(exc).__name__, address=bootstrap) from exc
        finally:
            with contextlib.suppress(Exception):  # never mask the error above
                await admin.close()
        if self.topic not in topics:
            raise UnknownTopic(f"topic {self.topic} does not exist on {bootstrap}")

    @property
    def consumer(self) -> AIOKafkaConsumer:
        assert self._consumer is not None, "use `async with KafkaLog(...)`"
        return self._consumer

    async def partitions(self) -> list[int]:
        # the metadata of every topic: a consumer without a subscription tracks none
        cluster = await self.consumer._client.fetch_all_metadata()
        parts = cluster.partitions_for_topic(self.topic)
        if not parts:
            raise UnknownTopic(f"topic {self.topic} has no partitions")
        return sorted(parts)

    async def bounds(self, partition: int) -> tuple[int, int]:
        if not self._begins:
            await self._find_bounds()
        return self._begins[partition], self._ends[partition]

    async def _find_bounds(self) -> None:
        """Log start and end of every partition, the ends read to: from just before the
        broker's answer to the last record (Tansu's answer may stop at the last batch's
        base offset). All partitions at once, so one quiet fetch ends the search."""
        consumer = self.consumer
        tps = [TopicPartition(self.topic, p) for p in await self.partitions()]
        begins = await consumer.beginning_offsets(tps)
        hints = await consumer.end_offsets(tps)
        ends = {tp: max(begins[tp], hints[tp]) for tp in tps}
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, max(begins[tp], hints[tp] - 1))
        # The first fetch of a partition brings its last record batch(es): the end as it
        # is now. Later records (a live topic keeps growing) are not part of the slice.
        pending = {tp for tp in tps if hints[tp] > begins[tp]}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=int(END_QUIET_S * 1000))
            if not batch:
                break  # nothing at or after the broker's answer: that is the end
            for tp, records in batch.items():
                if records:
                    ends[tp] = max(ends[tp], records[-1].offset + 1)
                    pending.discard(tp)
                    consumer.pause(tp)
        consumer.resume(*tps)
        self._begins = {tp.partition: begins[tp] for tp in tps}
        self._ends = {tp.partition: ends[tp] for tp in tps}

    async def timestamp_at(self, partition: int, offset: int) -> tuple[int, int] | None:
        tp = TopicPartition(self.topic, partition)
        end = self._ends.get(partition)
        if end is not None and offset >= end:
            return None
        consumer = self.consumer
        consumer.assign([tp])
        consumer.seek(tp, offset)
        batch = await consumer.getmany(tp, timeout_ms=int(PROBE_WAIT_S * 1000), max_records=1)
        records = batch.get(tp, [])
        if not records:
            return None
        return records[0].offset, records[0].timestamp

    async def read(
        self, ranges: Sequence[OffsetRange], max_records: int = 20_000
    ) -> AsyncIterator[list[Any]]:
        """Every record of the ranges, in batches; offset order within a partition."""
        consumer = self.consumer
        todo = {TopicPartition(self.topic, r.partition): r for r in ranges if r.end is not None}
        consumer.assign(list(todo))
        for tp, r in todo.items():
            consumer.seek(tp, r.start)
        last_progress = time.monotonic()
        while todo:
            fetched = await consumer.getmany(*todo, timeout_ms=500, max_records=max_records)
            out: list[Any] = []
            for tp, records in fetched.items():
                wanted = todo.get(tp)
                if wanted is None:
                    continue
                end = wanted.end or 0
                if records and records[-1].offset >= end - 1:
                    out.extend(rec for rec in records if rec.offset < end)
                    del todo[tp]
                    consumer.pause(tp)
                else:
                    out.extend(records)
            if out:
                last_progress = time.monotonic()
                yield out
            elif todo and time.monotonic() - last_progress > READ_STALL_S:
                missing = ", ".join(str(tp.partition) for tp in todo)
                raise BrokerUnavailable(
                    f"no records for {READ_STALL_S:.0f} s on partitions {missing}"
                )
            for tp in list(todo):  # a range whose last offsets have no record (a gap)
                position = await consumer.position(tp)
                if position >= (todo[tp].end or 0):
                    del todo[tp]
