"""The settings left to the broker: TABLE_STORE=auto picks the worker's table store,
and an unset CONSUMER_FETCH_IDLE_WAIT_MS the idle fetch wait, from the broker asked."""

from __future__ import annotations

import pytest

from zapstream.broker_defaults import resolve_broker_defaults
from zapstream.brokers.embedded import EmbeddedBroker
from zapstream.settings import IDLE_WAIT_MS, Settings


def test_auto_is_rocksdb_and_a_long_idle_wait_on_apache_kafka_memory_and_short_on_tansu(
    broker: EmbeddedBroker, broker_kind: str
) -> None:
    settings = Settings(kafka_bootstrap_servers=broker.bootstrap_servers, table_store="auto")
    resolved = resolve_broker_defaults(settings)
    assert resolved.table_store == ("rocksdb" if broker_kind == "kafka" else "memory")
    assert resolved.consumer_fetch_idle_wait_ms == IDLE_WAIT_MS[broker_kind]
    assert resolved.fetch_idle_wait_ms == IDLE_WAIT_MS[broker_kind]
    # a process without tables (the embedder) leaves the store setting as it was
    no_tables = resolve_broker_defaults(settings, tables=False)
    assert no_tables.table_store == "auto"
    assert no_tables.consumer_fetch_idle_wait_ms == IDLE_WAIT_MS[broker_kind]


@pytest.mark.parametrize("store", ["rocksdb", "memory"])
def test_explicit_settings_are_kept_without_asking_the_broker(store: str) -> None:
    # Nothing listens on port 1: asking the broker would fail or answer "not Kafka".
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:1", table_store=store, consumer_fetch_idle_wait_ms=750
    )
    resolved = resolve_broker_defaults(settings)
    assert resolved.table_store == store
    assert resolved.consumer_fetch_idle_wait_ms == 750


def test_an_unresolved_idle_wait_reads_as_tansus() -> None:
    settings = Settings(_env_file=None)
    assert settings.consumer_fetch_idle_wait_ms is None
    assert settings.fetch_idle_wait_ms == IDLE_WAIT_MS["tansu"]
