"""Replay selection: flags parse, the binary search finds time edges, ranges resolve."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from processors.replay.selection import (
    BadSelection,
    NotRetained,
    OffsetRange,
    Selection,
    first_at_or_after,
    parse_offsets,
    parse_time,
    resolve,
    total,
)

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_times_are_iso_or_relative_to_now() -> None:
    assert parse_time("2h", NOW) == NOW - timedelta(hours=2)
    assert parse_time("30m", NOW) == NOW - timedelta(minutes=30)
    assert parse_time("1d", NOW) == NOW - timedelta(days=1)
    assert parse_time("90s", NOW) == NOW - timedelta(seconds=90)
    assert parse_time("1.5h", NOW) == NOW - timedelta(minutes=90)
    assert parse_time("2026-11-30T10:00:00Z", NOW) == datetime(2026, 11, 30, 10, tzinfo=UTC)
    assert parse_time("2026-11-30T10:00:00.250+02:00", NOW) == datetime(
        2026, 11, 30, 8, 0, 0, 250000, tzinfo=UTC
    )
    assert parse_time("2026-11-30 10:00", NOW) == datetime(2026, 11, 30, 10, tzinfo=UTC)  # UTC
    for bad in ("yesterday", "2h ago", "-1h", "2026-13-01"):
        with pytest.raises(BadSelection):
            parse_time(bad, NOW)


def test_offset_ranges_are_half_open_and_may_run_to_the_end() -> None:
    assert parse_offsets("3:100-200") == OffsetRange(3, 100, 200)
    assert parse_offsets("3:100-") == OffsetRange(3, 100, None)
    assert parse_offsets("3") == OffsetRange(3, 0, None)
    assert parse_offsets(" 0:0-1 ") == OffsetRange(0, 0, 1)
    assert str(OffsetRange(3, 100, None)) == "3:100-"
    for bad in ("3:200-100", "x", "3:a-b", "-1:0-2", "3:10"):
        with pytest.raises(BadSelection):
            parse_offsets(bad)


def test_a_selection_refuses_an_empty_period_and_a_partition_named_twice() -> None:
    with pytest.raises(BadSelection):
        Selection("t", since=NOW, until=NOW)
    with pytest.raises(BadSelection):
        Selection("t", offsets=(OffsetRange(1, 0, 5), OffsetRange(1, 7, 9)))


class FakeLog:
    """Partitions of records with given timestamps (None: no record at that offset)."""

    def __init__(self, parts: dict[int, list[int | None]], begin: dict[int, int] | None = None):
        self.parts = parts
        self.begin = begin or {}
        self.reads = 0

    async def partitions(self) -> list[int]:
        return sorted(self.parts)

    async def bounds(self, partition: int) -> tuple[int, int]:
        return self.begin.get(partition, 0), len(self.parts[partition])

    async def timestamp_at(self, partition: int, offset: int) -> tuple[int, int] | None:
        self.reads += 1
        stamps = self.parts[partition]
        for o in range(max(offset, self.begin.get(partition, 0)), len(stamps)):
            ts = stamps[o]
            if ts is not None:
                return o, ts
        return None


async def search(stamps: list[int | None], target: int, lo: int = 0, hi: int | None = None) -> int:
    log = FakeLog({0: stamps})
    return await first_at_or_after(
        lo, len(stamps) if hi is None else hi, target, lambda o: log.timestamp_at(0, o)
    )


async def test_binary_search_finds_the_first_record_at_or_after_a_time() -> None:
    stamps: list[int | None] = [10, 20, 20, 20, 30, 40]
    assert await search(stamps, 5) == 0
    assert await search(stamps, 10) == 0
    assert await search(stamps, 11) == 1
    assert await search(stamps, 20) == 1  # the first of equal stamps
    assert await search(stamps, 21) == 4
    assert await search(stamps, 40) == 5
    assert await search(stamps, 41) == 6  # none: the end
    assert await search(stamps, 25, lo=2, hi=4) == 4  # bounded by hi
    assert await search([], 1) == 0


async def test_binary_search_steps_over_offsets_without_a_record() -> None:
    stamps: list[int | None] = [10, None, None, 20, None, 30, None]
    assert await search(stamps, 15) == 1  # reading from 1 yields the record at 3 first
    assert await search(stamps, 20) == 1
    assert await search(stamps, 21) == 4
    assert await search(stamps, 31) == 6


async def test_binary_search_reads_logarithmically_many_records() -> None:
    log = FakeLog({0: list(range(0, 2_000_000, 2))})
    found = await first_at_or_after(0, 1_000_000, 777_777, lambda o: log.timestamp_at(0, o))
    assert found == 388_889
    assert log.reads <= 21


async def test_resolve_intersects_time_and_offsets_with_from_included_and_to_excluded() -> None:
    log = FakeLog({0: [100, 200, 300, 400, 500], 1: [150, 250, 350], 2: []})
    at = lambda ms: datetime.fromtimestamp(ms / 1000, UTC)  # noqa: E731
    whole = await resolve(Selection("t"), log)
    assert whole == [OffsetRange(0, 0, 5), OffsetRange(1, 0, 3)]  # the empty partition dropped
    assert total(whole) == 8
    timed = await resolve(Selection("t", since=at(200), until=at(400)), log)
    assert timed == [OffsetRange(0, 1, 3), OffsetRange(1, 1, 3)]
    both = await resolve(
        Selection("t", since=at(200), offsets=(OffsetRange(0, 0, 3), OffsetRange(1, 2, None))),
        log,
    )
    assert both == [OffsetRange(0, 1, 3), OffsetRange(1, 2, 3)]
    assert await resolve(Selection("t", since=at(600)), log) == []
    with pytest.raises(BadSelection, match="no partition 7"):
        await resolve(Selection("t", offsets=(OffsetRange(7),)), log)


async def test_a_slice_before_the_log_start_is_not_retained() -> None:
    log = FakeLog({0: [100, 200, 300, 400]}, begin={0: 2})
    with pytest.raises(NotRetained, match="offset 1 is no longer retained"):
        await resolve(Selection("t", offsets=(OffsetRange(0, 1, 4),)), log)
    with pytest.raises(NotRetained, match="no longer retained"):
        await resolve(Selection("t", since=datetime.fromtimestamp(0.25, UTC)), log)
    # from the first retained record on is fine, as is a log that never lost anything
    ok = await resolve(Selection("t", since=datetime.fromtimestamp(0.3, UTC)), log)
    assert ok == [OffsetRange(0, 2, 4)]
    kept = FakeLog({0: [100, 200]})
    assert await resolve(Selection("t", since=datetime.fromtimestamp(0.01, UTC)), kept) == [
        OffsetRange(0, 0, 2)
    ]
