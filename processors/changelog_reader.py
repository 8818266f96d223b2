"""Reading changelog partitions in bulk, with a plain aiokafka consumer.

Faust recovers a table through its stream machinery: every changelog record becomes a
Faust event, passes the conductor and the recovery's buffers, and the recovery checks
after each one whether it is done. That costs ~65 µs of CPU per record on the fast
2-core machine (py-spy: `Recovery.need_recovery`, `active_remaining`, the serializer
registry, `ensure_future`/`wait_for` per event) and made a first start with one
million users (two million records) take minutes. Read here, in batches of thousands
straight from aiokafka's fetcher, the same records cost a few µs each
(`bench/state_bench.py`).

`read_to_end` only moves records: what they mean is the caller's
(`processors.table_stores`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka

from processors.changelog_end import true_ends

log = logging.getLogger(__name__)

BATCH_RECORDS = 20_000
FETCH_MAX_BYTES = 64 * 1024 * 1024
PARTITION_FETCH_MAX_BYTES = 16 * 1024 * 1024
STALL_S = 30.0
"""Give up when no record came for this long while some partition is short of its end."""


class ChangelogStalled(Exception):
    """The broker stopped returning records before every partition reached its end."""

    def __init__(self, short: Mapping[Any, tuple[int, int]], stall_s: float) -> None:
        self.short = dict(short)
        parts = ", ".join(
            f"{tp.topic}[{tp.partition}] at {at} of {end}" for tp, (at, end) in short.items()
        )
        super().__init__(f"no records for {stall_s:.0f}s before the end: {parts}")


def changelog_consumer(app: Any, purpose: str, **options: Any) -> aiokafka.AIOKafkaConsumer:
    """A group-less consumer of the app's cluster (its address, client id and
    credentials), for reading changelogs directly. Not started."""
    conf = app.conf
    transport = app.transport
    return aiokafka.AIOKafkaConsumer(
        client_id=f"{conf.broker_client_id}-{purpose}",
        bootstrap_servers=faust_aiokafka.server_list(transport.url, transport.default_port),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=int(conf.broker_request_timeout * 1000.0),
        **faust_aiokafka.credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context),
        **options,
    )


async def read_to_end(
    consumer: Any,
    partitions: list[Any],
    apply: Callable[[Any, list[Any]], None],
    *,
    starts: Mapping[Any, int] | None = None,
    batch: int = BATCH_RECORDS,
    stall_s: float = STALL_S,
) -> dict[Any, int]:
    """Read each partition from `starts[tp]` (default: its first record) to its true end
    (`true_ends`) and hand the records to `apply(tp, records)` in offset order, a batch
    at a time. Returns, per partition, the last offset read (its end minus one; -1 for
    an empty partition).

    `consumer`: a started group-less consumer used for nothing else. Raises
    `ChangelogStalled` when the broker returns nothing for `stall_s` while a partition
    is short of its end; what was applied until then stays applied."""
    ends = await true_ends(consumer, await consumer.end_offsets(partitions))
    first = await consumer.beginning_offsets(partitions)
    begin = {tp: max(first.get(tp) or 0, (starts or {}).get(tp, 0)) for tp in partitions}
    done = {tp: end - 1 for tp, end in ends.items() if end <= begin[tp]}
    todo = {tp: end for tp, end in ends.items() if tp not in done}
    if not todo:
        return done
    consumer.assign(list(todo))
    for tp in todo:
        consumer.seek(tp, begin[tp])
    loop = asyncio.get_running_loop()
    last_record_at = loop.time()
    read: dict[Any, int] = {}
    while todo:
        batches = await consumer.getmany(*todo, timeout_ms=200, max_records=batch)
        now = loop.time()
        if any(batches.values()):
            last_record_at = now
        for tp, records in batches.items():
            if records:
                apply(tp, records)
                read[tp] = records[-1].offset
        for tp, end in list(todo.items()):
            # the position passes offsets that hold no record (compacted away)
            if read.get(tp, -1) + 1 >= end or await consumer.position(tp) >= end:
                done[tp] = end - 1
                del todo[tp]
        if todo and now - last_record_at > stall_s:
            short = {tp: (read.get(tp, -1) + 1, end) for tp, end in todo.items()}
            raise ChangelogStalled(short, stall_s)
        await asyncio.sleep(0)  # let heartbeats and timers run between batches
    return done
