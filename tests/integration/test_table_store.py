"""TABLE_STORE=auto picks the worker's table store from the broker it talks to."""

from __future__ import annotations

import pytest

from zapstream.brokers.embedded import EmbeddedBroker
from zapstream.settings import Settings
from zapstream.supervisor.runners import resolve_table_store


def test_auto_is_rocksdb_on_apache_kafka_and_memory_on_tansu(
    broker: EmbeddedBroker, broker_kind: str
) -> None:
    settings = Settings(kafka_bootstrap_servers=broker.bootstrap_servers, table_store="auto")
    expected = "rocksdb" if broker_kind == "kafka" else "memory"
    assert resolve_table_store(settings) == expected


@pytest.mark.parametrize("store", ["rocksdb", "memory"])
def test_an_explicit_store_is_kept_without_asking_the_broker(store: str) -> None:
    settings = Settings(kafka_bootstrap_servers="127.0.0.1:1", table_store=store)
    assert resolve_table_store(settings) == store
