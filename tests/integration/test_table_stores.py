"""The worker's table stores (`processors.table_stores`) on a real broker: changelog
partitions a store is handed are read in bulk, with the meaning Faust gives their
records (last write wins, a tombstone deletes), and the offset reached is what Faust's
recovery resumes from."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from faust.types import TP

from processors.app import create_faust_app
from processors.table_stores import MemoryStore, RocksDBStore
from processors.tables import raw_table
from schemas.topics import TopicSpec
from zapstream.kafka_admin import ensure_topics
from zapstream.settings import Settings

pytestmark = pytest.mark.broker

PARTITIONS = 2


def worker_table(settings: Settings, store: str) -> Any:
    """A worker's raw table with TABLE_STORE=`store`, its app not started (the store
    reads the changelog itself; nothing else of the app runs)."""
    settings = settings.model_copy(update={"table_store": store})
    app = create_faust_app(settings, app_id=settings.app_id, web_port=1, tables=True)
    return raw_table(app, "users", PARTITIONS)


@pytest.fixture
def table(broker_settings: Settings) -> Any:
    return worker_table(broker_settings, "memory")


async def write(table: Any, bootstrap: str, records: list[tuple[int, str, bytes | None]]) -> None:
    """(partition, key, value or None for a tombstone), serialized as Faust writes
    them, queued together so each partition's records leave in one batch (Tansu
    then reports the partition's end as that batch's base offset + 1)."""
    topic = table.changelog_topic
    app = table.app
    await ensure_topics(bootstrap, [TopicSpec(topic.get_topic_name(), PARTITIONS)])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        futures = [
            await producer.send(
                topic.get_topic_name(),
                None
                if value is None
                else app.serializers.dumps_value(
                    topic.value_type, value, serializer=topic.value_serializer
                ),
                key=app.serializers.dumps_key(topic.key_type, key, serializer=topic.key_serializer),
                partition=partition,
            )
            for partition, key, value in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def changelog(table: Any, partition: int) -> TP:
    return TP(table.changelog_topic.get_topic_name(), partition)


async def test_assigned_partitions_are_loaded_in_bulk_with_faust_s_meaning(
    table: Any, broker_settings: Settings
) -> None:
    await write(
        table,
        broker_settings.require_bootstrap(),
        [
            (0, "ana", b"1 0 0 first"),
            (0, "bia", b"1 0 0 kept"),
            (0, "ana", b"1 0 0 second"),  # last write wins
            (1, "caio", b"1 1 0 gone"),
            (1, "caio", None),  # tombstone
            (1, "duda", b"1 1 0 here"),
        ],
    )
    store = table.data
    assert isinstance(store, MemoryStore)
    assigned = {changelog(table, 0), changelog(table, 1), TP("some-source-topic", 0)}
    await store.on_rebalance(assigned, set(), assigned, 1)

    assert dict(store.data) == {"ana": b"1 0 0 second", "bia": b"1 0 0 kept", "duda": b"1 1 0 here"}
    # Faust's recovery resumes after the last offset the store holds: nothing left
    assert store.persisted_offset(changelog(table, 0)) == 2
    assert store.persisted_offset(changelog(table, 1)) == 2
    assert store.persisted_offset(TP("some-source-topic", 0)) is None


async def test_an_empty_partition_is_held_from_its_start(
    table: Any, broker_settings: Settings
) -> None:
    await write(table, broker_settings.require_bootstrap(), [(1, "ana", b"1 1 0 x")])
    store = table.data
    assigned = {changelog(table, 0), changelog(table, 1)}
    await store.on_rebalance(assigned, set(), assigned, 1)
    assert store.persisted_offset(changelog(table, 0)) == -1
    assert store.persisted_offset(changelog(table, 1)) == 0
    # a write acknowledged later moves the offset a kept partition is recovered from
    store.set_persisted_offset(changelog(table, 0), 7)
    assert store.persisted_offset(changelog(table, 0)) == 7


async def test_a_partition_kept_across_a_rebalance_is_not_read_again_and_a_revoked_one_is(
    table: Any, broker_settings: Settings
) -> None:
    await write(
        table, broker_settings.require_bootstrap(), [(0, "ana", b"1 0 0 a"), (1, "bia", b"1 1 0 b")]
    )
    store = table.data
    both = {changelog(table, 0), changelog(table, 1)}
    await store.on_rebalance(both, set(), both, 1)
    await write(
        table,
        broker_settings.require_bootstrap(),
        [(0, "ana", b"1 0 0 newer"), (1, "bia", b"1 1 0 newer")],
    )

    # partition 1 revoked, then given back: read again; partition 0 kept: Faust's
    # recovery reads its tail from the offset the store holds
    await store.on_rebalance({changelog(table, 0)}, {changelog(table, 1)}, set(), 2)
    assert store.persisted_offset(changelog(table, 1)) is None
    await store.on_rebalance(both, set(), {changelog(table, 1)}, 3)
    assert store.data["bia"] == b"1 1 0 newer"
    assert store.persisted_offset(changelog(table, 1)) == 1
    assert store.data["ana"] == b"1 0 0 a"
    assert store.persisted_offset(changelog(table, 0)) == 0


async def test_a_rocksdb_store_loads_what_lies_beyond_the_offset_it_keeps(
    broker_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    table = worker_table(broker_settings, "rocksdb")
    bootstrap = broker_settings.require_bootstrap()
    await write(
        table,
        bootstrap,
        [
            (0, "ana", b"1 0 0 a"),
            (0, "bia", b"1 0 0 b"),
            (1, "caio", b"1 1 0 c"),
            (1, "caio", None),
        ],
    )
    store = table.data
    assert isinstance(store, RocksDBStore)
    both = {changelog(table, 0), changelog(table, 1)}
    await store.on_rebalance(both, set(), both, 1)
    assert (store["ana"], store["bia"]) == (b"1 0 0 a", b"1 0 0 b")
    assert "caio" not in store
    assert store.persisted_offset(changelog(table, 0)) == 1
    assert store.persisted_offset(changelog(table, 1)) == 1

    # given up and given back (the databases closed and opened again, as at a
    # restart): only the record written since is read
    await write(table, bootstrap, [(0, "ana", b"1 0 0 newer")])
    await store.on_rebalance(set(), both, set(), 2)
    with caplog.at_level(logging.INFO, logger="processors.table_stores"):
        await store.on_rebalance(both, set(), both, 3)
    assert store["ana"] == b"1 0 0 newer"
    assert store.persisted_offset(changelog(table, 0)) == 2
    assert "loaded 1 changelog records" in caplog.text
