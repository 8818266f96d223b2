"""aiokafka client settings that suit both brokers.

Tansu has no InitProducerId, so the idempotent producer is off there; Apache Kafka
gets it (acks=all either way). `producer_kwargs` is the one place that decides.
"""

from __future__ import annotations

import logging
from typing import Any

from zapstream.settings import Settings


def idempotence_for(settings: Settings, broker_supports_idempotence: bool | None) -> bool:
    if settings.idempotent_producer is not None:
        return settings.idempotent_producer
    return bool(broker_supports_idempotence)


def producer_kwargs(settings: Settings, *, idempotent: bool) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.require_bootstrap(),
        "client_id": f"{settings.kafka_client_id}-ingest",
        "acks": "all",
        "enable_idempotence": idempotent,
        "linger_ms": settings.producer_linger_ms,
        "request_timeout_ms": settings.kafka_request_timeout_ms,
        "retry_backoff_ms": 100,
        "max_request_size": max(2 * settings.webhook_max_body_bytes, 1_048_576),
    }


async def detect_idempotence(bootstrap: str) -> bool:
    """Ask the broker whether it can hand out producer ids (Apache Kafka yes, Tansu no)."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, request_timeout_ms=5000
    )
    # The refusal is the answer we are asking for, not an error worth logging.
    quiet = logging.getLogger("aiokafka.producer.sender")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        await producer.start()  # InitProducerId happens here
        return True
    except Exception:
        return False
    finally:
        await producer.stop()
        quiet.setLevel(level)
