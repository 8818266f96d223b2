"""The sink on a real broker: no offset is committed ahead of DuckDB."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from schemas.codec import encode
from schemas.topics import Topics, all_topic_specs
from tests.support.events import message
from tests.support.sink_process import SinkProcess, committed, marker, produce
from zapstream.kafka_admin import ensure_topics
from zapstream.settings import Settings

pytestmark = pytest.mark.broker


async def test_offsets_stay_behind_until_duckdb_has_committed_the_batch(
    broker_settings: Settings, tmp_path: Path
) -> None:
    settings = broker_settings
    await ensure_topics(settings.require_bootstrap(), all_topic_specs(settings))
    broken = marker(tmp_path / "duckdb-broken")
    sink = SinkProcess(
        settings, argv=["-m", "tests.support.flaky_sink", "--fail-while", str(broken)]
    ).start()
    group = f"{settings.app_id}-sink"
    topic = Topics.from_settings(settings).inbound
    try:
        await produce(
            settings, topic, [(f"55119{i % 4:08d}".encode(), encode(message(i))) for i in range(20)]
        )
        for _ in range(300):
            if broken.with_suffix(".failed").exists():
                break
            await asyncio.sleep(0.2)
        assert broken.with_suffix(".failed").exists(), "the sink never tried to load"
        await asyncio.sleep(2.0)  # several flush intervals pass while DuckDB keeps failing
        assert await committed(settings, group, topic) == 0
        assert sink.query("SELECT count(*) FROM messages") == [(0,)]

        broken.unlink()  # DuckDB is back: the same batch is loaded, then offsets move
        for _ in range(300):
            if await committed(settings, group, topic) >= 20:
                break
            await asyncio.sleep(0.2)
        assert await committed(settings, group, topic) == 20
        assert sink.query("SELECT count(*) FROM messages") == [(20,)]
    finally:
        sink.stop()


async def test_sigterm_commits_what_is_loaded_and_exits_cleanly(broker_settings: Settings) -> None:
    settings = broker_settings
    await ensure_topics(settings.require_bootstrap(), all_topic_specs(settings))
    topic = Topics.from_settings(settings).inbound
    group = f"{settings.app_id}-sink"
    sink = SinkProcess(settings).start()
    try:
        await produce(
            settings, topic, [(f"55119{i % 4:08d}".encode(), encode(message(i))) for i in range(12)]
        )
        sink.wait_for("SELECT count(*) FROM messages", [(12,)])
        assert sink.terminate_and_wait() == 0
        assert await committed(settings, group, topic) == 12
    finally:
        sink.stop()
