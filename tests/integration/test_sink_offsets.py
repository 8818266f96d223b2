"""The sink agent on a real broker: no offset is committed ahead of DuckDB."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.codec import encode
from schemas.topics import Topics, all_topic_specs
from tests.support.events import message
from zapstream.brokers.process import free_port, stop_process
from zapstream.kafka_admin import ensure_topics
from zapstream.settings import Settings

pytestmark = pytest.mark.broker


async def committed(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """Sum of the group's committed offsets on `topic` (a consumer that never joins)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        total = 0
        for p in range(partitions):
            offset = await consumer.committed(TopicPartition(topic, p))
            total += offset or 0
        return total
    finally:
        await consumer.stop()


def rows(port: int) -> int:
    resp = httpx.get(
        f"http://127.0.0.1:{port}/query",
        params={"sql": "SELECT count(*) FROM messages"},
        timeout=10,
    )
    return int(resp.json()["rows"][0][0])


async def test_offsets_stay_behind_until_duckdb_has_committed_the_batch(
    broker_settings: Settings, tmp_path: Path
) -> None:
    settings = broker_settings
    bootstrap = settings.require_bootstrap()
    await ensure_topics(bootstrap, all_topic_specs(settings))
    marker = tmp_path / "duckdb-broken"
    marker.touch()
    port = free_port()
    env = dict(
        os.environ,
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        TOPIC_PREFIX=settings.topic_prefix,
        APP_ID=settings.app_id,
        DATA_DIR=str(settings.data_dir),
        SINK_WEB_PORT=str(port),
        TOPIC_PARTITIONS=str(settings.topic_partitions),
        BROKER_SESSION_TIMEOUT_S="4",
        BROKER_HEARTBEAT_INTERVAL_S="0.3",
        BROKER_COMMIT_INTERVAL_S="0.3",
        SINK_FLUSH_MS="100",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.flaky_sink", str(marker)], env=env
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    group = f"{settings.app_id}-sink"
    try:
        topic = Topics.from_settings(settings).inbound
        for i in range(20):
            await producer.send_and_wait(
                topic, encode(message(i)), key=f"55119{i % 4:08d}".encode()
            )
        deadline = time.monotonic() + 60
        while not marker.with_suffix(".failed").exists():
            assert time.monotonic() < deadline, "the sink never tried to load"
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)  # several commit intervals pass while DuckDB keeps failing
        assert await committed(bootstrap, group, topic, settings.topic_partitions) == 0
        assert rows(port) == 0

        marker.unlink()  # DuckDB is back: the same batch is loaded, then offsets move
        deadline = time.monotonic() + 60
        while await committed(bootstrap, group, topic, settings.topic_partitions) < 20:
            assert time.monotonic() < deadline, "offsets never caught up"
            await asyncio.sleep(0.2)
        assert rows(port) == 20
    finally:
        await producer.stop()
        stop_process(proc, timeout=20)  # type: ignore[arg-type]
