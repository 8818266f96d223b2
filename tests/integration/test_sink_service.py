"""`zapstream sink` on a real broker: a free event loop, dead letters, latest sessions."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from schemas.codec import encode
from schemas.topics import Topics, all_topic_specs
from tests.support.events import decided, message, send_result
from tests.support.sink_process import SinkProcess, committed, marker, produce
from zapstream.kafka_admin import ensure_topics
from zapstream.settings import IDLE_WAIT_MS, Settings

pytestmark = pytest.mark.broker

USER = b"5511987654321"


async def wait_for_file(path: Path, timeout: float = 60) -> None:
    for _ in range(int(timeout / 0.1)):
        if path.exists():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path} never appeared")


async def test_the_sink_answers_ready_and_queries_while_a_load_is_held(
    broker_settings: Settings, tmp_path: Path
) -> None:
    settings = broker_settings
    await ensure_topics(settings.require_bootstrap(), all_topic_specs(settings))
    gate = marker(tmp_path / "gate")
    sink = SinkProcess(
        settings, argv=["-m", "tests.support.flaky_sink", "--block-while", str(gate)]
    ).start()
    try:
        topic = Topics.from_settings(settings).inbound
        await produce(settings, topic, [(USER, encode(message(i))) for i in range(5)])
        await wait_for_file(gate.with_suffix(".loading"))  # a load is running, and held
        for later in (5, 10):  # more batches queue up behind it (backpressure)
            await asyncio.sleep(0.5)
            await produce(settings, topic, [(USER, encode(message(later + i))) for i in range(5)])
        await asyncio.sleep(0.5)

        # The load holds its thread, not the event loop: the sink still answers.
        ready = httpx.get(f"{sink.url}/ready", timeout=10)
        assert ready.status_code == 200, ready.text
        assert sink.query("SELECT count(*) FROM messages") == [(0,)]

        gate.unlink()
        sink.wait_for("SELECT count(*) FROM messages", [(15,)])
    finally:
        sink.stop()


async def test_a_rebalance_during_a_held_load_loses_nothing_and_commits_everything(
    broker_settings: Settings, tmp_path: Path
) -> None:
    settings = broker_settings
    await ensure_topics(settings.require_bootstrap(), all_topic_specs(settings))
    gate = marker(tmp_path / "gate")
    sink = SinkProcess(
        settings, argv=["-m", "tests.support.flaky_sink", "--block-while", str(gate)]
    ).start()
    topic = Topics.from_settings(settings).inbound
    group = f"{settings.app_id}-sink"
    users = [f"55119{i:08d}".encode() for i in range(8)]  # spread over the partitions
    try:
        await produce(settings, topic, [(users[i % 8], encode(message(i))) for i in range(10)])
        await wait_for_file(gate.with_suffix(".loading"))
        await produce(settings, topic, [(users[i % 8], encode(message(i))) for i in range(10, 20)])

        # Another member joins the sink's group while a load is held: the sink must let
        # its loads finish and commit before it gives partitions up.
        other = AIOKafkaConsumer(
            bootstrap_servers=settings.require_bootstrap(),
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=4000,
            heartbeat_interval_ms=300,
        )
        await other.start()
        other.subscribe([topic])  # (with topics in the constructor, start() awaits the join)
        joined = asyncio.create_task(other.getmany(timeout_ms=15_000))
        await asyncio.sleep(1.0)
        gate.unlink()
        await joined
        await other.stop()  # it leaves; the sink takes every partition back

        sink.wait_for("SELECT count(*) FROM messages", [(20,)])
        for _ in range(300):
            if await committed(settings, group, topic) == 20:
                break
            await asyncio.sleep(0.2)
        assert await committed(settings, group, topic) == 20
    finally:
        sink.stop()


async def test_a_permanently_bad_event_is_dead_lettered_and_the_rest_loads(
    broker_settings: Settings,
) -> None:
    settings = broker_settings
    await ensure_topics(settings.require_bootstrap(), all_topic_specs(settings))
    topic = Topics.from_settings(settings).send_results
    sink = SinkProcess(settings).start()
    try:
        # attempts = 2**31 is a valid SendResult, but the column is an INTEGER: that row
        # can never be loaded, however often it is tried.
        bad = send_result(1, attempts=2**31)
        await produce(
            settings,
            topic,
            [(USER, encode(send_result(0))), (USER, encode(bad)), (USER, encode(send_result(2)))],
        )
        sink.wait_for(
            "SELECT outbound_id FROM send_results ORDER BY 1", [("out_000000",), ("out_000002",)]
        )
        dead = sink.query('SELECT topic, "offset", table_name, value FROM sink_dead_letters')
        assert dead == [(topic, 1, "send_results", encode(bad).decode())]
        reason = sink.query("SELECT reason FROM sink_dead_letters")[0][0]
        assert "too large" in reason

        await produce(settings, topic, [(USER, encode(send_result(3)))])  # later batches go on
        sink.wait_for("SELECT count(*) FROM send_results", [(3,)])
        group = f"{settings.app_id}-sink"
        for _ in range(300):
            if await committed(settings, group, topic) == 4:
                break
            await asyncio.sleep(0.2)
        assert await committed(settings, group, topic) == 4
    finally:
        sink.stop()


async def test_sessions_keep_the_latest_snapshot_whatever_order_they_arrive_in(
    broker_settings: Settings,
) -> None:
    settings = broker_settings
    await ensure_topics(settings.require_bootstrap(), all_topic_specs(settings))
    topic = Topics.from_settings(settings).decisions
    t0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    user = USER.decode()

    def snap(turn: str, minutes: int) -> tuple[bytes, bytes]:
        at = t0 + timedelta(minutes=minutes)
        return USER, encode(decided(turn, user=user, updated_at=at, turn_count=minutes))

    sink = SinkProcess(settings).start()
    try:
        session = f"SELECT last_turn_id, turn_count FROM sessions WHERE user_id = '{user}'"
        await produce(settings, topic, [snap("t2", 2), snap("t1", 1)])  # newer first
        sink.wait_for("SELECT count(*) FROM turns", [(2,)])
        assert sink.query(session) == [("t2", 2)]

        await produce(settings, topic, [snap("t0", 0)])  # an older one, in a later batch
        sink.wait_for("SELECT count(*) FROM turns", [(3,)])
        assert sink.query(session) == [("t2", 2)]

        await produce(settings, topic, [snap("t3", 3)])
        sink.wait_for(session, [("t3", 3)])
    finally:
        sink.stop()


async def test_sigusr1_prints_the_sinks_state_per_partition(
    broker_settings: Settings, tmp_path: Path, broker_kind: str
) -> None:
    settings = broker_settings
    await ensure_topics(settings.require_bootstrap(), all_topic_specs(settings))
    err = tmp_path / "sink.err"
    sink = SinkProcess(settings, stderr=err).start()
    try:
        topic = Topics.from_settings(settings).inbound
        await produce(settings, topic, [(USER, encode(message(1)))])
        sink.wait_for("SELECT count(*) FROM messages", [(1,)])
        assert sink.proc is not None
        sink.proc.send_signal(signal.SIGUSR1)
        for _ in range(100):
            if "loaded_to=" in err.read_text():
                break
            await asyncio.sleep(0.1)
        state = err.read_text()
        assert "--- sink ---" in state
        assert f"{topic}[" in state
        assert "loaded_to=" in state
        # idle again: the broker's own idle wait (Apache Kafka's is long, it costs nothing)
        assert f"fetch_wait_ms={IDLE_WAIT_MS[broker_kind]}" in state
        assert sink.query("SELECT count(*) FROM messages") == [(1,)]  # still serving
    finally:
        sink.stop()
