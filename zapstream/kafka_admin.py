"""Topic creation at start-up: every topic explicitly, with its partition count."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Protocol

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from zapstream.run_sync import run_sync

log = logging.getLogger(__name__)


class TopicToCreate(Protocol):
    """A topic to create (`schemas.topics.TopicSpec` is one): named here by shape, so
    that this shared module does not import the layer above it."""

    @property
    def name(self) -> str: ...

    @property
    def partitions(self) -> int: ...

    @property
    def compacted(self) -> bool: ...


async def ensure_topics(
    bootstrap: str, specs: Sequence[TopicToCreate], replication_factor: int = 1
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        if not missing:
            return []
        new = [
            NewTopic(
                name=s.name,
                num_partitions=s.partitions,
                replication_factor=replication_factor,
                topic_configs={"cleanup.policy": "compact"} if s.compacted else {},
            )
            for s in missing
        ]
        with contextlib.suppress(TopicAlreadyExistsError):  # another process won the race
            await admin.create_topics(new)
        # Apache Kafka answers CreateTopics before every broker knows the topic: wait
        # until metadata lists them, so that the first produce does not time out.
        names = {s.name for s in missing}
        for _ in range(100):
            if names <= set(await admin.list_topics()):
                break
            await asyncio.sleep(0.1)
        log.info("created topics", extra={"topics": sorted(names)})
        return [s.name for s in missing]
    finally:
        await admin.close()


def ensure_topics_sync(
    bootstrap: str, specs: Sequence[TopicToCreate], replication_factor: int = 1
) -> list[str]:
    return run_sync(ensure_topics(bootstrap, specs, replication_factor))
