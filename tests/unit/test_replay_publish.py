"""The replay's publisher: its own topics only; records a busy broker failed are sent again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import RequestTimedOutError, TopicAuthorizationFailedError

from processors.replay.publish import Publisher
from zapstream.errors import BrokerUnavailable


class FakeProducer:
    """Fails the first `fail` sends with `error`, acknowledges the rest."""

    def __init__(self, fail: int, error: Exception) -> None:
        self.fail = fail
        self.error = error
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[Any]:
        self.sent.append((topic, key, value))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.fail > 0:
            self.fail -= 1
            future.set_exception(self.error)
        else:
            future.set_result(None)
        return future


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    async def instant(_: float) -> None:
        return None

    monkeypatch.setattr(asyncio, "sleep", instant)


async def test_records_a_busy_broker_timed_out_are_sent_again() -> None:
    producer = FakeProducer(2, RequestTimedOutError())
    pub = Publisher(producer, {"r"})
    for i in range(3):
        await pub.send("r", f"u{i}", f"v{i}".encode())
    await pub.drain()
    assert [v for _, _, v in producer.sent] == [b"v0", b"v1", b"v2", b"v0", b"v1"]
    assert pub.pending == []


async def test_a_permanent_refusal_or_endless_timeouts_end_the_replay() -> None:
    pub = Publisher(FakeProducer(1, TopicAuthorizationFailedError()), {"r"})
    await pub.send("r", "u", b"v")
    with pytest.raises(BrokerUnavailable, match="not acknowledged"):
        await pub.drain()
    stuck = Publisher(FakeProducer(100, RequestTimedOutError()), {"r"})
    await stuck.send("r", "u", b"v")
    with pytest.raises(BrokerUnavailable):
        await stuck.drain()


async def test_only_the_replay_topics_can_be_written() -> None:
    pub = Publisher(FakeProducer(0, RequestTimedOutError()), {"zapstream.replay.decisions.v1"})
    with pytest.raises(ValueError, match="own topics only"):
        await pub.send("zapstream.outbound.high.v1", "u", b"v")
