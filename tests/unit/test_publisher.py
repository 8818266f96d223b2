"""The webhook's publisher replaces an idempotent producer that the broker no longer
accepts (sequence numbers out of step after a broker restart), instead of answering
503 for good. The producers here are stand-ins: no broker is needed to decide what
happens after a send fails."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, KafkaError, OutOfOrderSequenceNumber

from ingest.publisher import Outgoing, Publisher
from zapstream.errors import BrokerUnavailable
from zapstream.settings import Settings

ITEM = Outgoing("zapstream.messages.inbound.v1", b"5511", b"{}")


class FakeProducer:
    def __init__(self, error: KafkaError | None) -> None:
        self.error = error
        self.sent = 0
        self.stopped = False

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> Any:
        if self.error is not None:
            raise self.error
        self.sent += 1

        async def ack() -> None:
            return None

        return ack()

    async def stop(self) -> None:
        self.stopped = True


def publisher(*producers: FakeProducer) -> tuple[Publisher, list[FakeProducer]]:
    pub = Publisher(Settings(_env_file=None))
    queue = list(producers)
    made: list[FakeProducer] = []

    async def new_producer() -> Any:
        made.append(queue.pop(0))
        return made[-1]

    pub._new_producer = new_producer  # type: ignore[method-assign]
    return pub, made


async def test_a_producer_out_of_sequence_is_replaced_and_the_next_webhook_lands() -> None:
    pub, made = publisher(FakeProducer(OutOfOrderSequenceNumber()), FakeProducer(None))
    pub._producer = await pub._new_producer()  # type: ignore[assignment]
    with pytest.raises(BrokerUnavailable, match="OutOfOrderSequenceNumber"):
        await pub.publish([ITEM])  # this webhook gets a 503, and Meta sends it again
    assert pub._producer is made[1]
    await pub.publish([ITEM])
    assert made[1].sent == 1
    await pub.stop()
    assert made[0].stopped  # the stuck one was stopped in the background


async def test_a_broker_that_is_merely_down_keeps_its_producer() -> None:
    pub, made = publisher(FakeProducer(KafkaConnectionError()), FakeProducer(None))
    pub._producer = await pub._new_producer()  # type: ignore[assignment]
    with pytest.raises(BrokerUnavailable):
        await pub.publish([ITEM])
    assert pub._producer is made[0]  # aiokafka reconnects by itself
    assert len(made) == 1
