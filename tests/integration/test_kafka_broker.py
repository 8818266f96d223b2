"""The embedded Apache Kafka (KRaft): a real broker started by our own code, no mocks.

One broker serves the module (start-up costs seconds); each test uses its own topics.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from zapstream.brokers.embedded import BrokerStartError
from zapstream.brokers.jars import resolve_kafka_libs
from zapstream.brokers.java import java_available
from zapstream.brokers.kafka import KafkaBroker
from zapstream.kafka_probe import broker_answers
from zapstream.settings import Settings

VERSION: str = Settings.model_fields["kafka_version"].default


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"), version=VERSION)
    broker.start(timeout=90)
    try:
        yield broker
    finally:
        broker.stop()


async def create_topics(bootstrap: str, *topics: NewTopic) -> None:
    """Create, then wait until the broker serves them.

    In KRaft, CreateTopics answers once the controller has committed the topic; the
    broker's own metadata catches up a moment later, and until then DescribeConfigs
    says UNKNOWN_TOPIC_OR_PARTITION.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(list(topics))
        names = {t.name for t in topics}
        async with asyncio.timeout(15):
            while not names <= set(await admin.list_topics()):
                await asyncio.sleep(0.05)
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def consume_from_earliest(
    bootstrap: str, topic: str, count: int
) -> list[tuple[bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=unique("group"),
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    got: list[tuple[bytes, bytes]] = []
    try:
        async with asyncio.timeout(30):
            while len(got) < count:
                batches = await consumer.getmany(timeout_ms=500)
                for messages in batches.values():
                    got.extend((m.key or b"", m.value or b"") for m in messages)
    finally:
        await consumer.stop()
    return got


@pytest.mark.broker
def test_broker_answers_metadata_on_its_persisted_port(kafka: KafkaBroker) -> None:
    assert kafka.pid is not None
    assert process_exists(kafka.pid)
    assert broker_answers(kafka.bootstrap_servers)
    assert kafka.data_path is not None
    assert (kafka.data_path / "meta.properties").exists()
    assert f'"port": {kafka.port}' in (kafka.home / "broker.json").read_text()


@pytest.mark.broker
async def test_idempotent_producer_with_acks_all_round_trips_every_record(
    kafka: KafkaBroker,
) -> None:
    topic = unique("roundtrip")
    await create_topics(kafka.bootstrap_servers, NewTopic(topic, 1, 1))
    records = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(50)]

    await produce(kafka.bootstrap_servers, topic, records)

    assert await consume_from_earliest(kafka.bootstrap_servers, topic, 50) == records


@pytest.mark.broker
async def test_topics_are_created_with_the_requested_partition_counts(kafka: KafkaBroker) -> None:
    wanted = {unique("three"): 3, unique("eight"): 8}
    await create_topics(kafka.bootstrap_servers, *(NewTopic(t, n, 1) for t, n in wanted.items()))

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics(list(wanted))
    finally:
        await admin.close()

    assert {t["topic"]: len(t["partitions"]) for t in described} == wanted


@pytest.mark.broker
async def test_a_compacted_topic_reads_back_cleanup_policy_compact(kafka: KafkaBroker) -> None:
    topic = unique("compacted")
    await create_topics(
        kafka.bootstrap_servers,
        NewTopic(topic, 2, 1, topic_configs={"cleanup.policy": "compact"}),
    )

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        [response] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"cleanup.policy": None})]
        )
    finally:
        await admin.close()

    [(error_code, _message, _type, name, entries)] = response.resources
    assert (error_code, name) == (0, topic)
    assert {entry[0]: entry[1] for entry in entries}["cleanup.policy"] == "compact"


@pytest.mark.broker
async def test_records_survive_a_stop_and_start_of_the_same_broker(kafka: KafkaBroker) -> None:
    topic = unique("durable")
    await create_topics(kafka.bootstrap_servers, NewTopic(topic, 4, 1))
    records = [(f"user-{i % 7}".encode(), f"event-{i}".encode()) for i in range(40)]
    await produce(kafka.bootstrap_servers, topic, records)
    bootstrap, old_pid = kafka.bootstrap_servers, kafka.pid

    await asyncio.to_thread(kafka.stop)
    await asyncio.to_thread(kafka.start, 90)

    assert kafka.bootstrap_servers == bootstrap  # same port: clients need no new address
    assert kafka.pid != old_pid
    replayed = await consume_from_earliest(kafka.bootstrap_servers, topic, len(records))
    assert sorted(replayed) == sorted(records)
    for key in {k for k, _ in records}:  # order holds per key (one partition per key)
        assert [v for k, v in replayed if k == key] == [v for k, v in records if k == key]


@pytest.mark.broker
def test_stop_leaves_no_process_and_a_new_instance_reuses_cluster_id_and_ports(
    tmp_path: Path,
) -> None:
    broker = KafkaBroker(tmp_path, version=VERSION)
    broker.start(timeout=90)
    pid = broker.pid
    assert pid is not None
    broker.stop()

    assert not process_exists(pid)
    assert broker.pid is None
    again = KafkaBroker(tmp_path, version=VERSION)
    assert (again.cluster_id, again.bootstrap_servers) == (
        broker.cluster_id,
        broker.bootstrap_servers,
    )


def test_java_available_is_false_when_no_jvm_is_on_the_path() -> None:
    assert not java_available("no-such-java-binary")


def test_start_without_a_jvm_fails_with_a_clear_message(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path, version=VERSION, java="no-such-java-binary")

    with pytest.raises(BrokerStartError, match="no `no-such-java-binary` on PATH"):
        broker.start(timeout=5)
    assert broker.pid is None


def test_a_java_older_than_17_is_refused_with_its_version(tmp_path: Path) -> None:
    old_java = tmp_path / "java8"
    old_java.write_text("#!/bin/sh\necho 'openjdk version \"1.8.0_402\"' >&2\n")
    old_java.chmod(0o755)
    broker = KafkaBroker(tmp_path, version=VERSION, java=str(old_java))

    assert not java_available(str(old_java))
    with pytest.raises(BrokerStartError, match="is Java 8; Kafka needs Java 17"):
        broker.start(timeout=5)


def test_an_unknown_kafka_version_fails_with_mavens_own_message(tmp_path: Path) -> None:
    with pytest.raises(BrokerStartError, match=r"(?s)could not resolve Kafka 0\.0\.1.*\[ERROR\]"):
        resolve_kafka_libs("0.0.1", tmp_path)

    assert not (tmp_path / "kafka-0.0.1" / "libs").exists()  # no half folder left behind
