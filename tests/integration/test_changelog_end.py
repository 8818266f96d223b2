"""The true end of a partition whose last records went out in one batch
(`processors.changelog_end`), on a real broker: what table recovery reads up to."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from processors.changelog_end import true_ends
from schemas.topics import TopicSpec
from zapstream.kafka_admin import ensure_topics
from zapstream.settings import Settings

pytestmark = pytest.mark.broker

RECORDS = 12


@pytest.fixture
async def batched(broker_settings: Settings) -> tuple[TopicPartition, str]:
    """A one-partition topic holding RECORDS records sent as one batch."""
    topic = f"changelog-end-{uuid.uuid4().hex[:8]}"
    bootstrap = broker_settings.require_bootstrap()
    await ensure_topics(bootstrap, [TopicSpec(topic, 1)])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        # queued before the sender runs: they leave together, one batch
        futures = [await producer.send(topic, b"v%d" % i, partition=0) for i in range(RECORDS)]
        offsets = [m.offset for m in await asyncio.gather(*futures)]
    finally:
        await producer.stop()
    assert offsets == list(range(RECORDS))
    return TopicPartition(topic, 0), bootstrap


async def probe(bootstrap: str) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100
    )
    await consumer.start()
    return consumer


async def test_the_end_after_a_batched_write_is_one_past_its_last_record(
    batched: tuple[TopicPartition, str],
) -> None:
    tp, bootstrap = batched
    consumer = await probe(bootstrap)
    try:
        reported = (await consumer.end_offsets([tp]))[tp]
        # Tansu reports the last batch's base offset + 1 (here 1); Apache Kafka the end
        assert 1 <= reported <= RECORDS
        assert await true_ends(consumer, {tp: reported}) == {tp: RECORDS}
    finally:
        await consumer.stop()


async def test_an_empty_partition_and_one_that_returns_nothing_keep_the_reported_end(
    batched: tuple[TopicPartition, str],
) -> None:
    tp, bootstrap = batched
    empty = TopicPartition("never-written", 0)
    consumer = await probe(bootstrap)
    try:
        # an end past every record: nothing comes back within the wait, the end stays
        found = await true_ends(consumer, {tp: RECORDS + 5, empty: 0}, timeout_s=1.0)
        assert found == {tp: RECORDS + 5, empty: 0}
    finally:
        await consumer.stop()
