"""Broker down: the webhook answers 503 (Meta retries); broker back: the retry lands."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from ingest.samples import new_wamid
from schemas.codec import decode
from schemas.events import MessageReceived
from schemas.topics import Topics
from tests.support.stack import Stack
from zapstream.brokers.tansu import TansuBroker
from zapstream.settings import Settings

pytestmark = pytest.mark.e2e


async def read_inbound(
    bootstrap: str, topic: str, want: str, timeout: float = 20
) -> list[MessageReceived]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    found: list[MessageReceived] = []
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not found:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                found += [
                    e for r in records if (e := decode(MessageReceived, r.value)).message_id == want
                ]
    finally:
        await consumer.stop()
    return found


async def test_tansu_down_answers_503_and_the_retried_webhook_lands_after_it_is_back(
    tmp_path: Path,
) -> None:
    broker = TansuBroker(tmp_path / "broker")
    bootstrap = broker.start()
    stack = Stack(tmp_path / "stack", bootstrap=bootstrap, PUBLISH_TIMEOUT_S="2")
    try:
        stack.start()
        assert stack.post_text("before").status_code == 200
        broker.stop()

        wamid = new_wamid()
        started = time.monotonic()
        resp = stack.post_text("during the outage", message_id=wamid)
        assert resp.status_code == 503
        assert resp.json()["error"] == "broker_unavailable"
        # answered after PUBLISH_TIMEOUT_S, not left hanging until the client gives up
        # (30 s): a generous bound a loaded machine cannot miss by accident
        assert time.monotonic() - started < 25
        assert stack.post_text("still down", message_id=wamid).status_code == 503

        broker = TansuBroker(tmp_path / "broker", port=broker.port)
        broker.start()
        deadline = time.monotonic() + 30
        while (code := stack.post_text("during the outage", message_id=wamid).status_code) != 200:
            assert code == 503
            assert time.monotonic() < deadline, stack.output()
            time.sleep(0.3)
        topic = Topics.from_settings(Settings()).inbound
        landed = await read_inbound(bootstrap, topic, wamid)
        # At least once: the producer may also deliver the copy it was still holding
        # when it answered 503. Copies share the message id, so dedupe drops them.
        assert landed
        assert {e.text for e in landed} == {"during the outage"}
        rows = stack.wait_for_rows(
            f"SELECT count(*) FROM messages WHERE message_id = '{wamid}' HAVING count(*) > 0",
            1,
            timeout=30,
        )
        assert rows == [(1,)]  # and the sink, reconnected, stored it exactly once
    finally:
        stack.stop()
        broker.stop()
