"""Publishes parsed webhook events to Kafka and waits for the broker's acknowledgement.

The webhook answers 200 only after `publish` returns: every event of the request has
been acknowledged with acks=all. Anything else raises `BrokerUnavailable`, the app
answers 503, and Meta redelivers later (dedupe makes the redelivery harmless).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)
from pydantic import BaseModel

from schemas.codec import encode
from schemas.topics import Topics
from zapstream.errors import BrokerUnavailable
from zapstream.kafka_clients import detect_idempotence, idempotence_for, producer_kwargs
from zapstream.settings import Settings

log = logging.getLogger(__name__)

STUCK_PRODUCER_ERRORS = (
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    ProducerFenced,
)
"""The idempotent producer's id or sequence numbers no longer match the broker's (e.g.
batches lost when Apache Kafka restarted under load): every later send fails the same
way until a new producer, with a new producer id, replaces it (measured: the webhook
answered 503 for good after a Kafka restart)."""
STOP_OLD_PRODUCER_S = 5.0


@dataclass(frozen=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes


def to_outgoing(topic: str, event: BaseModel, key: str | None) -> Outgoing:
    return Outgoing(topic, key.encode() if key is not None else None, encode(event))


class Publisher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = Topics.from_settings(settings)
        self._producer: AIOKafkaProducer | None = None
        self._replacing = asyncio.Lock()
        self._stopping: set[asyncio.Task[None]] = set()  # stuck producers being stopped
        self.idempotent = False

    async def start(self) -> None:
        bootstrap = self.settings.require_bootstrap()
        supported = None
        if self.settings.idempotent_producer is None:
            supported = await detect_idempotence(bootstrap)
        self.idempotent = idempotence_for(self.settings, supported)
        self._producer = await self._new_producer()
        log.info(
            "publisher connected", extra={"bootstrap": bootstrap, "idempotent": self.idempotent}
        )

    async def _new_producer(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(**producer_kwargs(self.settings, idempotent=self.idempotent))
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        return producer

    async def _replace(self, stuck: AIOKafkaProducer, reason: str) -> None:
        """Swap a stuck producer for a new one (once, however many requests saw it
        fail); the old one is stopped in the background. If the broker refuses the
        new one, the old one stays and the next failure tries again."""
        async with self._replacing:
            if self._producer is not stuck:
                return  # another request replaced it already
            try:
                self._producer = await self._new_producer()
            except KafkaError as exc:
                log.warning("could not replace the stuck producer: %r", exc)
                return
        log.warning("producer replaced after %s", reason)
        task = asyncio.create_task(self._stop_quietly(stuck))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    @staticmethod
    async def _stop_quietly(producer: AIOKafkaProducer) -> None:
        # its requests were all answered 503 already: nothing to wait for
        with contextlib.suppress(TimeoutError, KafkaError):
            await asyncio.wait_for(producer.stop(), STOP_OLD_PRODUCER_S)

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        if self._stopping:
            await asyncio.gather(*self._stopping)

    async def publish(self, items: Sequence[Outgoing]) -> None:
        """Send all items and wait for every acknowledgement, within PUBLISH_TIMEOUT_S."""
        if not items:
            return
        producer = self._producer
        if producer is None:
            raise BrokerUnavailable("publisher not started")
        try:
            async with asyncio.timeout(self.settings.publish_timeout_s):  # no task, unlike wait_for
                await self._send_all(producer, items)
        except TimeoutError as exc:
            raise BrokerUnavailable(
                f"no acknowledgement within {self.settings.publish_timeout_s}s",
                topic=items[0].topic,
                address=self.settings.kafka_bootstrap_servers,
            ) from exc
        except KafkaError as exc:
            if isinstance(exc, STUCK_PRODUCER_ERRORS):
                await self._replace(producer, type(exc).__name__)
            raise BrokerUnavailable(
                type(exc).__name__,
                topic=items[0].topic,
                address=self.settings.kafka_bootstrap_servers,
            ) from exc

    @staticmethod
    async def _send_all(producer: AIOKafkaProducer, items: Sequence[Outgoing]) -> None:
        # Enqueue everything first (keeps per-key order: one producer, one partition per
        # key, sends in call order), then wait for all the acknowledgements together.
        futures = [await producer.send(i.topic, i.value, key=i.key) for i in items]
        await asyncio.gather(*futures)
