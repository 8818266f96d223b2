"""TABLE_STORE=memory (`processors.table_stores`) without a broker: which offsets the
store reports to Faust's recovery, and what it does when it cannot read a changelog.
Its bulk reads are exercised on real brokers in tests/integration/test_table_stores.py."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from faust.types import TP

from processors.app import create_faust_app
from processors.table_stores import MemoryStore
from processors.tables import raw_table
from zapstream.settings import Settings


@pytest.fixture
def table(tmp_path: Any) -> Any:
    # nothing listens on port 1: every read of the changelog fails at once
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        kafka_bootstrap_servers="127.0.0.1:1",
        table_store="memory",
        data_dir=tmp_path,
        broker_session_timeout_s=2.0,
    )
    app = create_faust_app(settings, app_id="zs-store", web_port=1, tables=True)
    return raw_table(app, "users", 2)


def tp(table: Any, partition: int) -> TP:
    return TP(table.changelog_topic.get_topic_name(), partition)


def test_the_worker_s_memory_tables_use_this_store(table: Any) -> None:
    assert isinstance(table.data, MemoryStore)


async def test_a_changelog_it_cannot_read_is_left_to_faust_s_recovery(
    table: Any, caplog: pytest.LogCaptureFixture
) -> None:
    store = table.data
    with caplog.at_level(logging.WARNING, logger="processors.table_stores"):
        await store.on_rebalance({tp(table, 0)}, set(), {tp(table, 0)}, 1)
    assert store.persisted_offset(tp(table, 0)) is None  # Faust reads it from the start
    assert "Faust's recovery reads them instead" in caplog.text


def test_offsets_are_tracked_only_for_partitions_held_from_their_start(table: Any) -> None:
    store = table.data
    store._applied[tp(table, 0)] = 4  # as a bulk load leaves it
    store.set_persisted_offset(tp(table, 0), 9)
    store.set_persisted_offset(tp(table, 0), 6)  # an older acknowledgement: ignored
    store.set_persisted_offset(tp(table, 1), 3)  # never loaded: stays unknown
    assert store.persisted_offset(tp(table, 0)) == 9
    assert store.persisted_offset(tp(table, 1)) is None


async def test_recovery_completed_forgets_the_partitions_no_longer_active(table: Any) -> None:
    store = table.data
    store._applied.update({tp(table, 0): 4, tp(table, 1): 7})
    await store.on_recovery_completed({tp(table, 0)}, set())
    assert store.persisted_offset(tp(table, 0)) == 4
    assert store.persisted_offset(tp(table, 1)) is None
