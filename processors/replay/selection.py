"""Which records a replay reads: pure parsing and resolution to offset ranges.

A slice is chosen by time (`--from`, `--to`), by offsets (`--offsets P:A-B`) or
both (they intersect), and narrowed by users (`--user`, repeatable). Boundaries:

* time: `from <= record timestamp < to` (from included, to excluded), by the Kafka
  record timestamp (the webhook's publish time), found per partition by a binary
  search over the records themselves (`first_at_or_after`): Tansu's offsets-for-times
  is unusable, and Kafka's answer is not needed.
* offsets: `P:A-B` is partition P from offset A (included) to B (excluded); `P:A-`
  runs to the end of the partition as it was when the replay started; `P` is the
  whole partition. Without `--offsets` every partition is read.

The end of a partition is taken once, at the start: records published during a
replay are not part of it. The binary search assumes record timestamps that do not
decrease along a partition (one producer per webhook process, CreateTime): a record
stamped out of order near a boundary may fall on either side of it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from zapstream.errors import PermanentError

RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
OFFSETS = re.compile(r"^\s*(\d+)\s*(?::\s*(\d+)\s*-\s*(\d*)\s*)?$")


class SelectionError(PermanentError):
    """The slice cannot be replayed as asked; `str()` is the message for the operator."""


class BadSelection(SelectionError):
    """A flag that does not parse, or contradicts another (a usage error)."""


class UnknownTopic(SelectionError):
    pass


class NotRetained(SelectionError):
    """Part of the slice was deleted by retention (before the log start offset)."""


class EmptySelection(SelectionError):
    pass


def parse_time(value: str, now: datetime) -> datetime:
    """An ISO 8601 instant (no zone: UTC) or a time ago: `90s`, `30m`, `2h`, `1d`, `1w`."""
    m = RELATIVE.match(value)
    if m:
        return now - timedelta(seconds=float(m.group(1)) * UNITS[m.group(2)])
    try:
        at = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadSelection(
            f"{value!r} is not a time: use ISO 8601 (2026-11-30T12:00:00Z) or 30m, 2h, 1d"
        ) from exc
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


@dataclass(frozen=True, order=True)
class OffsetRange:
    """Offsets [start, end) of one partition; `end` None: to the partition's end."""

    partition: int
    start: int = 0
    end: int | None = None

    def __str__(self) -> str:
        return f"{self.partition}:{self.start}-{'' if self.end is None else self.end}"


def parse_offsets(value: str) -> OffsetRange:
    """`P:A-B` (A included, B excluded), `P:A-` (to the end) or `P` (all of it)."""
    m = OFFSETS.match(value)
    if not m:
        raise BadSelection(f"{value!r} is not an offset range: use P:A-B, P:A- or P")
    partition = int(m.group(1))
    start = int(m.group(2)) if m.group(2) is not None else 0
    end = int(m.group(3)) if m.group(3) else None
    if end is not None and end < start:
        raise BadSelection(f"{value!r}: the end offset {end} is before the start {start}")
    return OffsetRange(partition, start, end)


@dataclass(frozen=True)
class Selection:
    topic: str
    since: datetime | None = None
    until: datetime | None = None
    offsets: tuple[OffsetRange, ...] = ()
    users: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.since and self.until and self.until <= self.since:
            raise BadSelection(
                f"--to {self.until.isoformat()} is not after --from {self.since.isoformat()}"
            )
        parts = [r.partition for r in self.offsets]
        if len(parts) != len(set(parts)):
            raise BadSelection("--offsets names a partition twice")

    def request(self) -> dict[str, Any]:
        """What was asked, as JSON (relative times already resolved)."""
        return {
            "from": self.since.isoformat() if self.since else None,
            "to": self.until.isoformat() if self.until else None,
            "offsets": [str(r) for r in sorted(self.offsets)],
            "users": sorted(set(self.users)),
        }


class Log(Protocol):
    """What resolving needs of the topic (`kafka_log.KafkaLog` on a broker, fakes in tests)."""

    async def partitions(self) -> list[int]: ...

    async def bounds(self, partition: int) -> tuple[int, int]:
        """(log start offset, end offset): the offsets [start, end) are readable."""
        ...

    async def timestamp_at(self, partition: int, offset: int) -> tuple[int, int] | None:
        """(offset, timestamp ms) of the first record at or after `offset`, or None."""
        ...


TimestampAt = Callable[[int], Awaitable[tuple[int, int] | None]]


async def first_at_or_after(lo: int, hi: int, target_ms: int, timestamp_at: TimestampAt) -> int:
    """The first offset in [lo, hi) whose record is stamped at or after `target_ms`,
    or `hi` if none is. Offsets without a record (compaction, transaction markers)
    count as part of the next record. O(log(hi - lo)) reads."""
    while lo < hi:
        mid = (lo + hi) // 2
        found = await timestamp_at(mid)
        if found is None or found[0] >= hi:
            hi = mid  # nothing in [mid, hi)
            continue
        offset, ts = found
        if ts >= target_ms:
            hi = mid  # the first record at or after mid qualifies: the answer is <= mid
        else:
            lo = offset + 1
    return lo


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


async def resolve(selection: Selection, log: Log) -> list[OffsetRange]:
    """The offset ranges (end always set, none empty) the selection reads, per partition.

    Raises `NotRetained` when an asked offset, or the start of an asked period, lies
    before a partition's log start offset (retention deleted it), `BadSelection` for a
    partition the topic lacks. An empty result is returned as is (the caller decides)."""
    partitions = await log.partitions()
    asked: Mapping[int, OffsetRange] = (
        {r.partition: r for r in selection.offsets}
        if selection.offsets
        else {p: OffsetRange(p) for p in partitions}
    )
    missing = sorted(set(asked) - set(partitions))
    if missing:
        raise BadSelection(
            f"{selection.topic} has partitions 0-{max(partitions)}; no partition {missing[0]}"
        )
    ranges: list[OffsetRange] = []
    for p in sorted(asked):
        begin, end = await log.bounds(p)
        want = asked[p]
        if selection.offsets and want.start < begin:
            raise NotRetained(
                f"partition {p}: offset {want.start} is no longer retained "
                f"(the log starts at {begin})"
            )
        start = max(want.start, begin)
        stop = end if want.end is None else min(want.end, end)
        if start >= stop:
            continue

        async def ts_at(offset: int, p: int = p) -> tuple[int, int] | None:
            return await log.timestamp_at(p, offset)

        if selection.since is not None:
            since_ms = _ms(selection.since)
            if begin > 0 and start == begin:
                first = await ts_at(begin)
                if first is not None and since_ms < first[1]:
                    earliest = datetime.fromtimestamp(first[1] / 1000, UTC).isoformat()
                    raise NotRetained(
                        f"partition {p}: records before {earliest} are no longer retained "
                        f"(the log starts at offset {begin}); --from {selection.since.isoformat()} "
                        "asks for some of them"
                    )
            start = await first_at_or_after(start, stop, since_ms, ts_at)
        if selection.until is not None and start < stop:
            stop = await first_at_or_after(start, stop, _ms(selection.until), ts_at)
        if start < stop:
            ranges.append(OffsetRange(p, start, stop))
    return ranges


def total(ranges: Sequence[OffsetRange]) -> int:
    """Records in the ranges (ticks and control records included)."""
    return sum((r.end or r.start) - r.start for r in ranges)
