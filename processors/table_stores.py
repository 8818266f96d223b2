"""The worker's table stores: Faust's memory and RocksDB stores, recovered in bulk.

Faust recovers a table by reading its changelog through its stream machinery, at ~65
µs of CPU per record on the fast 2-core machine (`processors.changelog_reader`): one
million users (two million changelog records) took 150–156 s there and 458 s on the slower
machine before a worker was ready. These stores read the changelog partitions they are
handed themselves, thousands of records a batch, and apply them with the store's own
`apply_changelog_batch`, so keys, values and tombstones mean exactly what they mean to
Faust; then they report the last offset applied as the partition's persisted offset,
and Faust's recovery reads only what came after (normally nothing).

Both are registered through Faust's `faust.stores` entry point (`pyproject.toml`) and
chosen by `TABLE_STORE` (`processors.app`):
- `zapstream-memory://` (`TABLE_STORE=memory`): Faust's memory store keeps no offsets,
  so each rebalance, even one that leaves the worker its partitions, replayed the whole
  changelog. This one loads a partition it does not hold in bulk and then follows the
  acknowledged changelog writes (`set_persisted_offset`, as Faust does for RocksDB), so
  a partition kept across a rebalance is recovered from there. A revoked partition is
  forgotten; its next assignment loads it anew.
- `zapstream-rocksdb://` (`TABLE_STORE=rocksdb`): Faust's RocksDB store already keeps
  each partition's offset in its database; this one reads what lies beyond it in bulk
  when the partition is assigned (everything, on a fresh folder).

If a bulk read fails (the broker stops answering), the store logs why and leaves those
partitions to Faust's own recovery, as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, NamedTuple, cast

from faust.stores import memory, rocksdb

from processors.changelog_reader import (
    FETCH_MAX_BYTES,
    PARTITION_FETCH_MAX_BYTES,
    changelog_consumer,
    read_to_end,
)

log = logging.getLogger(__name__)


class _Message(NamedTuple):
    """The part of a Faust message the stores' `apply_changelog_batch` read."""

    tp: Any
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None  # None: a tombstone


class _ChangelogEvent(NamedTuple):
    """The part of a Faust event the stores' `apply_changelog_batch` read."""

    key: Any
    value: Any
    message: _Message


async def bulk_load(
    store: Any, partitions: list[Any], starts: Mapping[Any, int] | None = None
) -> dict[Any, int] | None:
    """Read `partitions` of the store's changelog (from `starts[tp]`, default their
    first record) to their ends into the store. Returns the last offset read per
    partition, or None when the read failed (what was applied stays applied)."""
    table: Any = store.table
    app = store.app
    schema = table.changelog_topic.schema
    records_read = 0

    def apply(tp: Any, records: list[Any]) -> None:
        nonlocal records_read
        batch = [
            _ChangelogEvent(
                schema.loads_key(app, r),
                None if r.value is None else schema.loads_value(app, r),
                _Message(tp, r.partition, r.offset, r.key, r.value),
            )
            for r in records
        ]
        # what Faust's recovery calls: the table's key and value conversions, then this
        # store's `apply_changelog_batch`
        table.apply_changelog_batch(cast(Any, batch))
        records_read += len(batch)

    started = time.perf_counter()
    consumer = changelog_consumer(
        app,
        f"{table.name}-load",
        fetch_max_wait_ms=10,  # Tansu holds a fetch for the whole wait, data or not
        fetch_max_bytes=FETCH_MAX_BYTES,
        max_partition_fetch_bytes=PARTITION_FETCH_MAX_BYTES,
    )
    try:
        await consumer.start()
        try:
            read = await read_to_end(consumer, partitions, apply, starts=starts)
        finally:
            await consumer.stop()
    except Exception as exc:  # Faust's own recovery reads them instead, as before
        log.warning(
            "table %s: could not read %d changelog partition(s) in bulk (%s: %s); "
            "Faust's recovery reads them instead",
            table.name,
            len(partitions),
            type(exc).__name__,
            exc,
        )
        return None
    took = time.perf_counter() - started
    if records_read:
        log.info(
            "table %s: loaded %d changelog records of %d partition(s) in %.1fs (%.0f/s)",
            table.name,
            records_read,
            len(partitions),
            took,
            records_read / max(took, 1e-6),
        )
    return read


def _active_changelogs(store: Any, tps: Any) -> list[Any]:
    """The table's changelog partitions among `tps` that this worker serves actively."""
    topics = store.table.changelog_topic.topics
    standbys = store.app.assignor.assigned_standbys()
    return [tp for tp in tps if tp.topic in topics and tp not in standbys]


class MemoryStore(memory.Store[Any, Any]):
    def __post_init__(self) -> None:
        super().__post_init__()
        self._applied: dict[Any, int] = {}
        """Changelog partition → offset of the last record this store holds."""

    def persisted_offset(self, tp: Any) -> int | None:
        return self._applied.get(tp)

    def set_persisted_offset(self, tp: Any, offset: int) -> None:
        """Faust reports each acknowledged changelog write of this table. Only for a
        partition this store holds from its start: any other is loaded in full."""
        if tp in self._applied and offset > self._applied[tp]:
            self._applied[tp] = offset

    async def on_rebalance(
        self, assigned: Any, revoked: Any, newly_assigned: Any, generation_id: int = 0
    ) -> None:
        for tp in revoked:
            self._applied.pop(tp, None)
        missing = [tp for tp in _active_changelogs(self, assigned) if tp not in self._applied]
        if missing:
            self._applied.update(await bulk_load(self, missing) or {})

    async def on_recovery_completed(self, active_tps: Any, standby_tps: Any) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)
        for tp in [tp for tp in self._applied if tp not in active_tps]:
            del self._applied[tp]  # its keys were just dropped from memory


class RocksDBStore(rocksdb.Store):
    async def on_rebalance(
        self, assigned: Any, revoked: Any, newly_assigned: Any, generation_id: int = 0
    ) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        partitions = _active_changelogs(self, newly_assigned)  # their databases are open
        if not partitions:
            return
        starts = {}
        for tp in partitions:
            persisted = self.persisted_offset(tp)
            starts[tp] = 0 if persisted is None else persisted + 1
        if await bulk_load(self, partitions, starts) and self.use_rocksdict:
            # what the load wrote sits in memtables (64 MiB per partition database):
            # written out now, the worker's memory after a first start stays near what
            # a restart leaves (1M users: 1,003 -> 766 MiB, bench/state_bench.py). Faust's
            # store has no public flush: `_db_for_partition` is its own accessor of the
            # partition's open database.
            for tp in partitions:
                await asyncio.to_thread(self._db_for_partition(tp.partition).flush)
