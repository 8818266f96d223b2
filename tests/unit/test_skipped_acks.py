"""Faust's stream skips (and acks) events fetched before a rebalance; such an ack must
not count as "done", or the offset is committed and the message lost. Exercised on a
real `_Consumer` (not started: no broker is needed to count acks)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from faust.types.tuples import TP, ConsumerMessage

from processors.faust_transport import FastFetchApp, mark_received

TOPIC = "zapstream.messages.inbound.v1"
PARTITION = TP(TOPIC, 0)


@pytest.fixture
def app() -> Any:
    app: Any = FastFetchApp(
        id="t", broker="kafka://127.0.0.1:1", store="memory://", autodiscover=False
    )
    app.topics._acking_topics.add(TOPIC)  # as when an agent subscribes with acks
    app.consumer._committed_offset[PARTITION] = 40
    app.consumer._sought_generation = app.consumer_generation_id  # recovery's seek done
    app.flow_control.resume()
    return app


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


def test_an_ack_repeated_after_a_seek_back_does_not_block_the_commit(app: Any) -> None:
    consumer = app.consumer
    consumer._acked[PARTITION] = [38, 39, 40, 41]  # 38, 39: committed before, acked again
    consumer._acked_index[PARTITION] = {38, 39, 40, 41}
    assert consumer._new_offset(PARTITION) == 42


def test_offsets_that_hold_no_record_do_not_block_the_commit(app: Any) -> None:
    consumer = app.consumer
    consumer._accept_gap(PARTITION, 40, 43)  # 40..42 do not exist
    assert consumer.ack(received(app, message(app, 43)))
    assert consumer._new_offset(PARTITION) == 44


def test_nothing_is_committed_before_the_generation_s_seek_to_committed_is_done(
    app: Any,
) -> None:
    consumer = app.consumer
    app.consumer_generation_id += 1  # a rebalance: the committed offsets are re-read
    consumer._committed_offset.pop(PARTITION)  # a restarted worker knows none yet
    consumer._acked[PARTITION] = [45, 46]  # taken before the seek, from where it stood
    consumer._acked_index[PARTITION] = {45, 46}
    assert consumer._new_offset(PARTITION) is None  # 40..44 may be unhandled
    consumer._committed_offset[PARTITION] = 45
    consumer._sought_generation = app.consumer_generation_id
    assert consumer._new_offset(PARTITION) == 47


async def test_the_seek_to_committed_marks_its_generation_and_supersedes_pending_rereads(
    app: Any,
) -> None:
    consumer = app.consumer
    other = TP(TOPIC, 1)
    app.consumer_generation_id += 1
    consumer._redeliver.update({PARTITION: 47, other: 3})
    consumer.assignment = lambda: {PARTITION, other}

    async def seek_to_committed() -> dict[TP, int | None]:
        return {PARTITION: 44, other: None}  # `other` has no committed offset: not sought

    consumer.seek_to_committed = seek_to_committed
    await consumer.perform_seek()
    assert consumer._sought_generation == app.consumer_generation_id
    assert consumer._committed_offset[PARTITION] == 44
    assert consumer._read_offset.next[PARTITION] == 44
    # records fetched during the seek are read again from the committed offset (47
    # would have jumped past 44..46); `other`, with nothing committed, from its start
    assert consumer._redeliver == {PARTITION: 44, other: 0}


async def test_a_partition_with_nothing_committed_is_read_again_from_its_start_after_the_seek(
    app: Any,
) -> None:
    """aiokafka's seek to committed leaves a partition with no committed offset (or
    offset 0) where its fetch position is. Records fetched there before the seek and
    never handed to an agent (Faust's fetch loop drops the rest of a batch when the
    flow stops or the generation changes) were skipped for good: after a worker
    SIGKILL on Tansu, the restarted worker never read the `opened` event of a new
    partition of the handoffs topic (tests/e2e/test_handoff.py)."""
    consumer = app.consumer
    fresh, zero = TP("zapstream.handoffs.v1", 3), TP("zapstream.handoffs.v1", 4)
    app.consumer_generation_id += 1
    consumer.assignment = lambda: {PARTITION, fresh, zero}

    async def seek_to_committed() -> dict[TP, int | None]:
        return {PARTITION: 44, fresh: None, zero: 0}

    consumer.seek_to_committed = seek_to_committed
    await consumer.perform_seek()
    assert consumer._redeliver == {PARTITION: 44, fresh: 0, zero: 0}


async def test_a_seek_cut_short_by_another_rebalance_does_not_mark_the_new_generation(
    app: Any,
) -> None:
    consumer = app.consumer
    before = consumer._sought_generation
    consumer.assignment = lambda: {PARTITION}

    async def seek_to_committed() -> dict[TP, int | None]:
        app.consumer_generation_id += 1  # the group rebalanced meanwhile
        return {PARTITION: 44}

    consumer.seek_to_committed = seek_to_committed
    await consumer.perform_seek()
    assert consumer._sought_generation == before != app.consumer_generation_id


async def test_a_seek_supersedes_a_pending_reread_of_that_partition(app: Any) -> None:
    consumer = app.consumer
    sought: list[tuple[TP, int]] = []

    async def _seek(tp: TP, offset: int) -> None:
        sought.append((tp, offset))

    consumer._seek = _seek
    consumer._redeliver[PARTITION] = 50
    await consumer.seek(PARTITION, 42)
    assert sought == [(PARTITION, 42)]
    assert PARTITION not in consumer._redeliver
    assert consumer._read_offset.next[PARTITION] == 42


def two_agents(app: Any) -> None:
    """Two agents' channels on the topic (converse and media-pick read the inbound)."""
    app.topics._tp_index[PARTITION].update({object(), object()})


def delivered(app: Any, offset: int) -> ConsumerMessage:
    m = message(app, offset)
    m.incref(2)  # as the conductor does: one reference per channel
    return m


def test_an_event_one_of_two_agents_skipped_in_a_rebalance_is_not_done(app: Any) -> None:
    two_agents(app)
    m = delivered(app, 40)
    received(app, m)  # the first agent got it, handled it and acked it
    assert not m.ack(app.consumer)
    app.flow_control.suspend()  # the second agent's stream skips it and acks it
    assert not m.ack(app.consumer)
    assert m.acked  # released
    assert app.consumer._acked[PARTITION] == []  # read again: the second agent gets it


def test_an_event_both_agents_received_counts_even_when_acked_during_a_rebalance(
    app: Any,
) -> None:
    two_agents(app)
    m = delivered(app, 40)
    received(app, m)
    received(app, m)
    assert not m.ack(app.consumer)
    app.flow_control.suspend()
    assert m.ack(app.consumer)
    assert app.consumer._acked[PARTITION] == [40]
