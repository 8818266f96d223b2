"""An aiokafka producer for the replay's own topics (and no other)."""

from __future__ import annotations

import asyncio
from typing import Any

from schemas.topics import Topics, TopicSpec
from zapstream.errors import BrokerUnavailable
from zapstream.settings import Settings

SEND_WINDOW = 10_000
"""Records in flight before the replay waits for their acknowledgements."""
MAX_ATTEMPTS = 5
"""Sends of one record the broker keeps failing for a passing reason, then give up."""


class Publisher:
    """Acknowledgements are awaited in windows, not one round trip per record. Only
    the replay topics can be written: a replay publishes nothing anyone acts on."""

    def __init__(self, producer: Any, allowed: set[str]) -> None:
        self.producer = producer
        self.allowed = allowed
        self.pending: list[tuple[asyncio.Future[Any], str, str, bytes]] = []

    @classmethod
    async def start(cls, settings: Settings, topics: Topics) -> Publisher:
        from aiokafka import AIOKafkaProducer

        from zapstream.kafka_admin import ensure_topics
        from zapstream.kafka_clients import producer_kwargs

        bootstrap = settings.require_bootstrap()
        await ensure_topics(
            bootstrap,
            [
                TopicSpec(topics.replay_decisions, settings.topic_partitions),
                TopicSpec(topics.replay_runs, 1),
            ],
            settings.topic_replication_factor,
        )
        kwargs = producer_kwargs(settings, idempotent=False)
        kwargs.update(
            client_id=f"{settings.kafka_client_id}-replay", linger_ms=5, max_batch_size=512 * 1024
        )
        producer = AIOKafkaProducer(**kwargs)
        await producer.start()
        return cls(producer, {topics.replay_decisions, topics.replay_runs})

    async def send(self, topic: str, key: str, value: bytes) -> None:
        if topic not in self.allowed:
            raise ValueError(f"a replay publishes to its own topics only, not {topic}")
        future = await self.producer.send(topic, value=value, key=key.encode())
        self.pending.append((future, topic, key, value))
        if len(self.pending) >= SEND_WINDOW:
            await self.drain()

    async def drain(self) -> None:
        """Wait for every acknowledgement; records the broker failed for a passing
        reason (a timeout on a busy broker) are sent again: the same bytes, which the
        sink's keys make harmless if the first copy landed after all."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            pending, self.pending = self.pending, []
            results = await asyncio.gather(*(f for f, *_ in pending), return_exceptions=True)
            failed = [
                (item, r)
                for item, r in zip(pending, results, strict=True)
                if isinstance(r, BaseException)
            ]
            if not failed:
                return
            fatal = [r for _, r in failed if not getattr(r, "retriable", False)]
            if fatal or attempt == MAX_ATTEMPTS:
                error = (fatal or [failed[0][1]])[0]
                raise BrokerUnavailable(
                    f"{len(failed)} replay records not acknowledged: {error!r}"
                ) from error
            await asyncio.sleep(min(5.0, 0.5 * 2**attempt))
            for (_, topic, key, value), _ in failed:
                future = await self.producer.send(topic, value=value, key=key.encode())
                self.pending.append((future, topic, key, value))

    async def stop(self) -> None:
        await self.producer.stop()
