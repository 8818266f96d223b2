"""Trips through the event loop per record: under load every trip costs a whole pass
over the worker's ready tasks, so work done once per record must not take one when it
has nothing to wait for. Exercised on a real `FastFetchApp` (not started: no broker).

- Faust's `App.maybe_start_producer` (called for every record sent, changelog writes
  included) yields three times per call even when the producer runs; the producer
  buffer that carries every table write drained one record per three trips
  (`FastFetchApp.maybe_start_producer`).
- The consumer's fetch loop hands a record to the conductor inline when the conductor
  has nothing to wait for (`_Consumer._delivers_at_once`); these tests hold that
  predicate to what Faust's conductor actually waits on, so an upgrade that adds a
  wait fails here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Generator
from typing import Any

import faust
import pytest
from faust.types.tuples import TP, ConsumerMessage

from processors.agents import raw_topic
from processors.faust_transport import FastFetchApp

TOPIC = "zapstream.statuses.v1"
PARTITION = TP(TOPIC, 0)
QUEUE_SIZE = 4


class Trips:
    """Runs an awaitable and counts the times it gave control back to the loop."""

    def __init__(self, awaitable: Awaitable[Any]) -> None:
        self.coro = awaitable.__await__()
        self.count = 0

    def __await__(self) -> Generator[Any, Any, Any]:
        sent: Any = None
        while True:
            try:
                yielded = self.coro.send(sent)
            except StopIteration as done:
                return done.value
            self.count += 1
            sent = yield yielded


async def trips(awaitable: Awaitable[Any]) -> tuple[int, Any]:
    counter = Trips(awaitable)
    result = await counter
    return counter.count, result


@pytest.fixture
def app() -> Any:
    app: Any = FastFetchApp(
        id="t",
        broker="kafka://127.0.0.1:1",
        store="memory://",
        autodiscover=False,
        stream_buffer_maxsize=QUEUE_SIZE,
    )
    app.flow_control.resume()
    return app


def started(app: Any) -> Any:
    """Mark the producer started, as `Worker` does once it is connected."""
    app.producer._started.set()
    return app.producer


async def test_a_started_producer_is_returned_without_a_trip_through_the_loop(app: Any) -> None:
    producer = started(app)
    ours, got = await trips(app.maybe_start_producer())
    assert ours == 0
    assert got is producer
    plain: Any = faust.App(id="u", broker="kafka://127.0.0.1:1", autodiscover=False)
    started(plain)
    upstream, got = await trips(plain.maybe_start_producer())
    assert got is plain.producer
    assert upstream >= 1, "Faust's own no longer yields: drop the override"


async def test_the_first_call_starts_the_producer_once_and_later_calls_stay_ours(
    app: Any,
) -> None:
    starts: list[int] = []

    async def start() -> None:
        starts.append(1)
        await asyncio.sleep(0.01)
        app.producer._started.set()

    app.producer.start = start
    got = await asyncio.gather(*(app.maybe_start_producer() for _ in range(5)))
    assert starts == [1]  # concurrent first calls share one start
    assert all(p is app.producer for p in got)
    assert "maybe_start_producer" not in vars(app)  # no instance attribute shadows ours
    assert (await trips(app.maybe_start_producer()))[0] == 0


async def test_a_changelog_record_reaches_the_producer_without_a_trip_through_the_loop(
    app: Any,
) -> None:
    """The buffer's path for a table write: `Topic.publish_message(wait=False)`."""
    started(app)
    sent: list[tuple[str, bytes | None]] = []

    async def send(topic: str, key: bytes | None, value: bytes | None, **_: Any) -> Any:
        sent.append((topic, value))
        return app.loop.create_future()

    app.producer.send = send
    topic = raw_topic(app, TOPIC)
    fut = topic.as_future_message(key=b"k", value=b"v", partition=0)
    count, _ = await trips(topic.publish_message(fut, wait=False))
    assert count == 0
    assert sent == [(TOPIC, b"v")]


def subscribe(app: Any) -> Any:
    """An agent's channel on PARTITION, as the conductor indexes it."""
    channel = raw_topic(app, TOPIC)
    app.topics._tp_index[PARTITION].add(channel)
    return channel


def record(app: Any, offset: int) -> ConsumerMessage:
    return ConsumerMessage(
        TOPIC, 0, offset, 0.0, 0, None, b"k", b"v", None,
        generation_id=app.consumer_generation_id,
    )  # fmt: skip


async def deliver(app: Any, channel: Any, offset: int) -> int:
    handler = app.topics._build_handler(PARTITION, {channel})
    count, _ = await trips(handler(record(app, offset)))
    return count


async def test_a_record_the_predicate_lets_through_is_delivered_without_a_trip(app: Any) -> None:
    channel = subscribe(app)
    for offset in range(3):
        assert app.consumer._delivers_at_once(PARTITION)
        assert await deliver(app, channel, offset) == 0
    assert channel.queue.qsize() == 3


async def test_a_full_agent_queue_is_waited_for(app: Any) -> None:
    channel = subscribe(app)
    for offset in range(QUEUE_SIZE):
        await deliver(app, channel, offset)
    assert channel.queue.full()
    assert not app.consumer._delivers_at_once(PARTITION)


async def test_a_suspended_flow_is_waited_for(app: Any) -> None:
    subscribe(app)
    app.flow_control.suspend()
    assert not app.consumer._delivers_at_once(PARTITION)


async def test_a_producer_buffer_over_its_limit_is_waited_for(app: Any) -> None:
    subscribe(app)
    buffer = app.producer.buffer
    for _ in range(buffer.max_messages):
        buffer.pending.put_nowait(object())
    assert app.consumer._delivers_at_once(PARTITION)  # at the limit: not waited for
    buffer.pending.put_nowait(object())
    assert not app.consumer._delivers_at_once(PARTITION)
