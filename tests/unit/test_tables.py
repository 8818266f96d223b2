"""Table entries: the envelope, and expiry that runs without the user coming back."""

from __future__ import annotations

from typing import Any

from processors.tables import Sweeper, header, unwrap, wrap


def test_the_envelope_keeps_expiry_partition_due_and_payload() -> None:
    value = wrap(1000.4, 3, b'{"a": "b c"}', due=99.5)
    assert header(value) == (1001.0, 3, 99.5)
    assert unwrap(value).payload == b'{"a": "b c"}'
    assert unwrap(wrap(5, 0, b"")).payload == b""


class FakeTable:
    """The part of a Faust table the sweeper uses: its store and its changelog."""

    name = "seen"

    def __init__(self, data: dict[str, bytes]) -> None:
        self.data = data
        self.changelog: list[tuple[int, str, Any]] = []

    def send_changelog(self, partition: int, key: str, value: Any) -> None:
        self.changelog.append((partition, key, value))


async def test_expired_entries_are_removed_with_a_tombstone_only_on_owned_partitions() -> None:
    table = FakeTable(
        {
            "old-owned": wrap(100, 1, b"x"),
            "old-elsewhere": wrap(100, 2, b"x"),
            "fresh": wrap(10_000, 1, b"x"),
        }
    )
    removed = await Sweeper(table, lambda: {1}, chunk=1).sweep(now=500)
    assert removed == 2
    assert set(table.data) == {"fresh"}
    assert table.changelog == [(1, "old-owned", None)]


async def test_many_entries_are_swept_in_chunks() -> None:
    table = FakeTable({f"k{i}": wrap(100 if i % 2 else 10_000, 0, b"") for i in range(20_000)})
    assert await Sweeper(table, lambda: {0}).sweep(now=500) == 10_000
    assert len(table.data) == 10_000
