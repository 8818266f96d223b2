"""Settings that depend on which broker a process talks to, when left to choose."""

from __future__ import annotations

import logging
from typing import Any

from zapstream.kafka_clients import detect_idempotence
from zapstream.run_sync import run_sync
from zapstream.settings import IDLE_WAIT_MS, Settings

log = logging.getLogger("zapstream")


def resolve_broker_defaults(settings: Settings, *, tables: bool = True) -> Settings:
    """The settings that depend on which broker this is, when left to choose: ask the
    broker once (Apache Kafka hands out producer ids, Tansu does not).

    TABLE_STORE=auto: RocksDB where the broker keeps the changelog for good and answers
    end offsets right (Apache Kafka), memory on Tansu. A local RocksDB folder whose
    stored changelog offsets a fresh Tansu does not have would stop Faust's recovery
    (ConsistencyError), and Tansu's end offsets are wrong when a producer batched
    records (see shared/README.md).

    CONSUMER_FETCH_IDLE_WAIT_MS unset: `IDLE_WAIT_MS` of the broker (Tansu holds every
    fetch for the whole wait; Apache Kafka answers as soon as data arrives).

    `tables=False`: a process without tables (the embedder, the sink) leaves TABLE_STORE
    alone."""
    update: dict[str, Any] = {}
    store_auto = tables and settings.table_store == "auto"
    if store_auto or settings.consumer_fetch_idle_wait_ms is None:
        kafka = run_sync(detect_idempotence(settings.require_bootstrap()))
        name = "Apache Kafka" if kafka else "Tansu"
        if store_auto:
            update["table_store"] = "rocksdb" if kafka else "memory"
            log.info("TABLE_STORE=auto: %s (%s)", update["table_store"], name)
        if settings.consumer_fetch_idle_wait_ms is None:
            update["consumer_fetch_idle_wait_ms"] = IDLE_WAIT_MS["kafka" if kafka else "tansu"]
            log.info(
                "CONSUMER_FETCH_IDLE_WAIT_MS: %d (%s)", update["consumer_fetch_idle_wait_ms"], name
            )
    return settings.model_copy(update=update) if update else settings
