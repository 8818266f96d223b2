"""Faust's stream skips (and acks) events fetched before a rebalance; such an ack must
not count as "done", or the offset is committed and the message lost. Exercised on a
real `_Consumer` (not started: no broker is needed to count acks)."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from faust.types.tuples import TP, ConsumerMessage

from processors.faust_transport import FastFetchApp, mark_received

TOPIC = "zapstream.messages.inbound.v1"
PARTITION = TP(TOPIC, 0)


@pytest.fixture
def app() -> Iterator[Any]:
    app = FastFetchApp(id="t", broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False)
    app.topics._acking_topics.add(TOPIC)  # as when an agent subscribes with acks
    app.consumer._committed_offset[PARTITION] = 40
    app.flow_control.resume()
    yield app


def message(app: Any, offset: int, generation: int | None = None) -> ConsumerMessage:
    gen = app.consumer_generation_id if generation is None else generation
    m = ConsumerMessage(TOPIC, 0, offset, 0.0, 0, None, b"k", b"v", None, generation_id=gen)
    app.consumer._unacked_messages.add(m)
    return m


def received(app: Any, m: ConsumerMessage) -> ConsumerMessage:
    mark_received(SimpleNamespace(app=app, message=m))
    return m


def test_an_event_acked_while_flowing_counts_as_done(app: Any) -> None:
    assert app.consumer.ack(received(app, message(app, 40)))
    assert app.consumer._acked[PARTITION] == [40]


def test_an_event_skipped_while_flow_is_suspended_is_released_but_not_done(app: Any) -> None:
    m = message(app, 41)
    app.flow_control.suspend()  # a rebalance began; the stream skips what it still holds
    assert not app.consumer.ack(m)
    assert m.acked  # released: shutdown and rebalances do not wait for it
    assert m not in app.consumer._unacked_messages
    assert app.consumer._acked[PARTITION] == []  # not committed past: it is read again


def test_an_event_of_an_older_generation_is_not_done(app: Any) -> None:
    app.consumer_generation_id = 7
    m = message(app, 41, generation=6)
    assert not app.consumer.ack(m)
    assert app.consumer._acked[PARTITION] == []


def test_an_event_an_agent_received_counts_even_when_acked_during_a_rebalance(app: Any) -> None:
    m = received(app, message(app, 40))
    app.flow_control.suspend()  # the rebalance waits for in-flight work to finish
    assert app.consumer.ack(m)
    assert app.consumer._acked[PARTITION] == [40]
