"""Meta's status of an in-doubt send, looked up on the statuses topic when needed.

A send is in doubt after a crash between its durable `sending` ledger entry and its
`done` (`processors.agents`): Meta may have taken it. Every send carries our outbound
id in `biz_opaque_callback_data` and Meta echoes it in each status webhook, which the
webhook publishes to the statuses topic. So the sender asks `StatusScan.find` for the
outbound id: it reads the statuses topic from shortly before the `sending` entry was
written and answers the wamid as soon as a status with that id comes by, or None once
the wait (SEND_CONFIRM_WAIT_S) is over.

Why on demand rather than an agent that records every status in a table: statuses are
three records per reply, and in-doubt sends happen only after a crash. Reading each one
through a Faust agent and keeping a `confirmed` table cost the worker ~0.65 ms of CPU
per answered message at 200 msgs/s (`bench/chain_bench.py --status-webhooks on,off`:
3.94 against 3.29 ms), on the event loop that sets the stack's pace, plus a changelog
record per reply.

One consumer (no group, nothing committed) serves every waiter at once: the sends in
doubt after a crash are looked up together, from the earliest of their times.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from schemas.events import status_ids
from zapstream.settings import Settings

log = logging.getLogger("zapstream.worker")

CLOCK_MARGIN_S = 60.0
"""Read from this long before the `sending` entry: record timestamps come from the
webhook API's clock, the entry's time from the worker's."""
RETRY_S = 1.0


class StatusScan:
    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = topic
        self._waiters: dict[str, asyncio.Future[str]] = {}
        self._task: asyncio.Task[None] | None = None
        self._from: float | None = None
        """Epoch seconds the running scan started reading at."""

    async def find(self, outbound_id: str, since: float, wait_s: float) -> str | None:
        """The wamid of the first status for `outbound_id` published after `since`
        (epoch seconds; less CLOCK_MARGIN_S), or None if none comes within `wait_s`."""
        loop = asyncio.get_running_loop()
        future = self._waiters.get(outbound_id)
        if future is None:
            future = self._waiters[outbound_id] = loop.create_future()
        start = since - CLOCK_MARGIN_S
        if self._task is None or self._task.done() or self._from is None or start < self._from:
            self._restart(start if self._from is None else min(start, self._from))
        try:
            async with asyncio.timeout(wait_s):
                return await asyncio.shield(future)
        except TimeoutError:
            return None
        finally:
            if self._waiters.get(outbound_id) is future:
                del self._waiters[outbound_id]
            if not self._waiters:
                await self.aclose()

    async def aclose(self) -> None:
        task, self._task, self._from = self._task, None, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _restart(self, start: float) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._from = start
        self._task = asyncio.create_task(self._scan(start), name="status-scan")

    async def _scan(self, start: float) -> None:
        while True:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.settings.require_bootstrap(),
                client_id=f"{self.settings.kafka_client_id}-status-scan",
                group_id=None,
                enable_auto_commit=False,
                fetch_max_wait_ms=self.settings.consumer_fetch_max_wait_ms,
            )
            try:
                await consumer.start()
                await _seek_to_time(consumer, self.topic, self.settings.topic_partitions, start)
                while True:
                    batches = await consumer.getmany(timeout_ms=200)
                    for records in batches.values():
                        for record in records:
                            self._offer(record.value)
            except KafkaError as exc:
                log.warning("status scan: %s; trying again in %.0fs", exc, RETRY_S)
            except Exception:  # a bug must not leave the sends waiting without a word
                log.exception("status scan failed; trying again in %.0fs", RETRY_S)
            finally:
                await consumer.stop()
            await asyncio.sleep(RETRY_S)

    def _offer(self, value: bytes | None) -> None:
        if not value:
            return
        try:
            outbound_id, wamid = status_ids(value)
        except Exception:  # not a status we can read; the sink keeps it
            return
        future = self._waiters.get(outbound_id or "")
        if future is not None and not future.done():
            future.set_result(wamid)


async def _seek_to_time(
    consumer: AIOKafkaConsumer, topic: str, partitions: int, start: float
) -> None:
    """Every partition of `topic` (TOPIC_PARTITIONS of them, as every user-keyed
    topic), from the first record at or after `start`."""
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    # The end first: a record appended after this call is at or past it, so seeking
    # there when no record is as new as `start` still reads it.
    ends = await consumer.end_offsets(tps)
    found = await consumer.offsets_for_times({tp: int(start * 1000) for tp in tps})
    for tp in tps:
        hit = found.get(tp)
        # Apache Kafka answers None where no record is that new; Tansu (offset 0, -1)
        consumer.seek(tp, hit.offset if hit is not None and hit.timestamp >= 0 else ends[tp])
