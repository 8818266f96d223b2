"""`make_broker`: the embedded broker `BROKER` names."""

from __future__ import annotations

from pathlib import Path

from zapstream.brokers.embedded import EmbeddedBroker
from zapstream.brokers.kafka import KafkaBroker
from zapstream.brokers.tansu import TansuBroker
from zapstream.errors import ConfigurationError


def make_broker(kind: str, data_dir: Path, kafka_version: str | None = None) -> EmbeddedBroker:
    if kind == "tansu":
        return TansuBroker(data_dir / "logs")
    if kind == "kafka":
        return KafkaBroker(data_dir, version=kafka_version)
    raise ConfigurationError(f"BROKER must be 'tansu' or 'kafka', not {kind!r}")
