"""`make_broker`: the embedded broker `BROKER` names."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from zapstream.brokers.embedded import EmbeddedBroker
from zapstream.brokers.kafka import KafkaBroker
from zapstream.brokers.tansu import TansuBroker
from zapstream.errors import ConfigurationError


def make_broker(
    kind: str, data_dir: Path, kafka_version: str | None = None, avoid: Collection[int] = ()
) -> EmbeddedBroker:
    """`avoid`: ports promised to the stack's own servers, which bind after the broker."""
    if kind == "tansu":
        return TansuBroker(data_dir / "logs", avoid=avoid)
    if kind == "kafka":
        return KafkaBroker(data_dir, version=kafka_version, avoid=avoid)
    raise ConfigurationError(f"BROKER must be 'tansu' or 'kafka', not {kind!r}")
