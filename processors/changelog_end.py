"""The true end of a partition, for table recovery.

Faust recovers a table by reading its changelog up to the end offsets the broker
reports (its "highwaters"). Tansu reports the end of a partition as the base offset of
the partition's *last record batch* plus one, not the last offset plus one (measured:
twelve records produced in one batch, end offset 1; see shared/README.md). The
worker's producer batches whatever waits for the same partition, so under load the
last few state writes of a partition often share a batch, and recovery stopped before
them: a user's state came back older than the inbound offsets already committed, and
the messages in between were lost from the user's open burst.

`true_ends` reads the records at `end - 1` of each partition: a broker that reports
the base of the last batch then returns that whole batch, whose last offset is the
true end minus one. On a broker whose end offsets are right (Apache Kafka) the read
returns the one record at `end - 1` and changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 5.0


async def true_ends(
    consumer: Any, ends: Mapping[Any, int], *, timeout_s: float = PROBE_TIMEOUT_S
) -> dict[Any, int]:
    """`ends` (partition → end offset as the broker reported it), each raised to one past
    the last record found at or after `end - 1`. `consumer`: a started aiokafka consumer
    without a group, used for nothing else (it is assigned these partitions). A
    partition that returns nothing within `timeout_s` keeps the broker's end: no worse
    than before, and logged."""
    result = dict(ends)
    probe = {tp: end for tp, end in ends.items() if end}
    if not probe:
        return result
    consumer.assign(list(probe))
    for tp, end in probe.items():
        consumer.seek(tp, end - 1)
    pending = set(probe)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while pending and loop.time() < deadline:
        batches = await consumer.getmany(*pending, timeout_ms=200)
        for tp, records in batches.items():
            if records:
                result[tp] = max(probe[tp], records[-1].offset + 1)
                pending.discard(tp)
    if pending:
        log.warning(
            "could not read the last records of %d changelog partition(s); recovering "
            "them up to the end offsets the broker reported",
            len(pending),
        )
    raised = {tp: (probe[tp], result[tp]) for tp in probe if result[tp] != probe[tp]}
    if raised:
        log.info(
            "changelog end offsets past the broker's (last batch): %s",
            ", ".join(f"{tp.topic}[{tp.partition}] {a}→{b}" for tp, (a, b) in raised.items()),
        )
    return result
