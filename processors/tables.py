"""The worker's Faust tables: raw byte values in a small envelope, with expiry.

Every value is `b"<expires at> <partition> <due> " + payload`:
- `expires at` (epoch seconds): after it the entry is removed by the `Sweeper`,
  whether or not its user ever comes back;
- `partition`: the changelog partition the entry was written to (the partition of the
  event that wrote it), so the sweeper can write the tombstone to the right partition
  without an event in hand;
- `due` (epoch seconds, 0 for none): when a timer must look at the entry again (the
  debounce deadline of a user's open burst), so the schedule can be rebuilt after a
  rebalance from the headers alone, without decoding a million payloads.

Values are bytes, not dicts: a million users' state costs what its JSON costs
(see README, "State and memory"), and nothing is copied per message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, NamedTuple

from faust.streams import current_event

log = logging.getLogger(__name__)


class Envelope(NamedTuple):
    expires_at: float
    partition: int
    due: float
    payload: bytes


def wrap(expires_at: float, partition: int, payload: bytes, due: float = 0.0) -> bytes:
    return b"%d %d %.3f %s" % (int(expires_at) + 1, partition, due, payload)


def unwrap(value: bytes) -> Envelope:
    expires, partition, due, payload = value.split(b" ", 3)
    return Envelope(float(expires), int(partition), float(due), payload)


def header(value: bytes) -> tuple[float, int, float]:
    """expires_at, partition, due: without copying the payload."""
    first = value.index(b" ")
    second = value.index(b" ", first + 1)
    third = value.index(b" ", second + 1)
    return float(value[:first]), int(value[first + 1 : second]), float(value[second + 1 : third])


def raw_table(app: Any, name: str, partitions: int) -> Any:
    """A Faust table with str keys and raw byte values (the envelope above): Faust
    serializes `value_type=bytes` as raw bytes."""
    return app.Table(name, default=None, partitions=partitions, key_type=str, value_type=bytes)


async def durable_set(table: Any, key: str, value: Any) -> None:
    """`table[key] = value`, returning only once the changelog record is acknowledged.

    A plain assignment queues the changelog write; this one waits for it, for state
    that must be stored *before* an effect it guards (the intent to send a message)."""
    event = current_event()
    if event is None:
        raise RuntimeError("tables can only change while an event is being handled")
    table.data[key] = value  # the local store, without a second changelog write
    await table.send_changelog(event.message.partition, key, value)


class Sweeper:
    """Removes expired entries from a table, a chunk at a time.

    An entry of a partition this worker owns is removed with a changelog tombstone (so
    its removal survives a restart and reaches the partition's next owner); an expired
    entry of a partition it no longer owns is only dropped from memory."""

    def __init__(
        self, table: Any, owned: Callable[[], set[int]], *, chunk: int = 10_000
    ) -> None:
        self.table = table
        self.owned = owned
        self.chunk = chunk

    async def sweep(self, now: float) -> int:
        removed = 0
        data = self.table.data
        owned = self.owned()
        for n, key in enumerate(list(data.keys()), 1):
            if n % self.chunk == 0:
                await asyncio.sleep(0)  # let the agents run between chunks
            value = data.get(key)
            if value is None:
                continue
            expires, partition, _ = header(value)
            if expires > now:
                continue
            del data[key]
            if partition in owned:
                self.table.send_changelog(partition, key, None)
            removed += 1
        if removed:
            log.info("expired %d entries of table %s", removed, self.table.name)
        return removed
