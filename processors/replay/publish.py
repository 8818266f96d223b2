"""An aiokafka producer for the replay's own topics (and no other)."""

from __future__ import annotations

import asyncio
from typing import Any

from schemas.topics import Topics, TopicSpec
from zapstream.settings import Settings

SEND_WINDOW = 10_000
"""Records in flight before the replay waits for their acknowledgements."""


class Publisher:
    """Acknowledgements are awaited in windows, not one round trip per record. Only
    the replay topics can be written: a replay publishes nothing anyone acts on."""

    def __init__(self, producer: Any, allowed: set[str]) -> None:
        self.producer = producer
        self.allowed = allowed
        self.pending: list[asyncio.Future[Any]] = []

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
        self.pending.append(await self.producer.send(topic, value=value, key=key.encode()))
        if len(self.pending) >= SEND_WINDOW:
            await self.drain()

    async def drain(self) -> None:
        pending, self.pending = self.pending, []
        if pending:
            await asyncio.gather(*pending)

    async def stop(self) -> None:
        await self.producer.stop()
