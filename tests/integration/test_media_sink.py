"""The `media` table on a real DuckDB file: one row per media id, the latest report."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from processors.media.jobs import MediaJob, media_event
from schemas.codec import encode
from schemas.media import MediaStatus
from sinks.loader import Loader
from tests.integration.test_duckdb_sink import TOPICS, batch

SHA = "ab" * 32
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
JOB = MediaJob("77", "wamid.1", "5511987654321", "1", "image", "image/jpeg", None, None)


@pytest.fixture
def loader(tmp_path: Path) -> Iterator[Loader]:
    s = Loader(tmp_path / "z.duckdb")
    s.open()
    yield s
    s.close()


def report(status: MediaStatus, minutes: int, attempts: int) -> tuple[str, bytes]:
    event = media_event(
        JOB,
        status,
        at=T0 + timedelta(minutes=minutes),
        size_bytes=10,
        sha256=SHA if status == "stored" else None,
        reason=None if status == "stored" else "boom",
        attempts=attempts,
    )
    return TOPICS.media, encode(event)


def row(loader: Loader) -> list[tuple[object, ...]]:
    return loader.query("SELECT status, path, attempts FROM media WHERE media_id = '77'").rows


def test_a_re_report_of_stored_bytes_keeps_the_downloads_row_in_either_order(
    loader: Loader,
) -> None:
    loader.load(batch(report("stored", 1, 0), report("stored", 1, 2)))
    assert row(loader) == [("stored", f"ab/{SHA}", 2)]
    loader.load(batch(report("stored", 1, 0)))
    assert row(loader) == [("stored", f"ab/{SHA}", 2)]


def test_a_failed_media_stored_later_becomes_stored(loader: Loader) -> None:
    loader.load(batch(report("failed", 1, 5)))
    assert row(loader) == [("failed", None, 5)]
    loader.load(batch(report("stored", 9, 1)))
    assert row(loader) == [("stored", f"ab/{SHA}", 1)]
