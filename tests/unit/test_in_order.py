"""Agents take each partition's records in offset order (processors.in_order)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from faust.types.tuples import TP

from processors.in_order import MAX_REREADS, InOrder, verdict

PARTITION = TP("zapstream.turns.v1", 3)


def test_the_verdict_on_each_offset() -> None:
    assert verdict(None, 17) == "take"  # nothing committed yet: the first that comes
    assert verdict(40, 40) == "take"
    assert verdict(40, 39) == "repeat"  # already taken: a re-read brought it again
    assert verdict(40, 41) == "gap"  # 40 was lost on the way: do not answer 41 first


class FakeConsumer:
    def __init__(self, committed: int | None) -> None:
        self._committed_offset = {PARTITION: committed}
        self.released: list[int] = []
        self.seeks: list[int] = []

    def release(self, message: Any) -> None:
        self.released.append(message.offset)

    async def seek(self, tp: Any, offset: int) -> None:
        self.seeks.append(offset)


def event(offset: int, generation: int = 1) -> Any:
    return SimpleNamespace(
        message=SimpleNamespace(tp=PARTITION, offset=offset, generation_id=generation)
    )


async def taken(guard: InOrder, *offsets: int, generation: int = 1) -> list[int]:
    return [o for o in offsets if await guard.admit(event(o, generation))]


async def test_a_lost_record_is_read_again_before_the_ones_after_it_are_handled() -> None:
    consumer = FakeConsumer(committed=40)
    guard = InOrder(SimpleNamespace(consumer=consumer))
    assert await taken(guard, 41, 42) == []  # 40 never arrived
    assert consumer.released == [41, 42]
    assert consumer.seeks == [40]  # once, not once per record
    assert await taken(guard, 40, 41, 42) == [40, 41, 42]  # the re-read, in order


async def test_repeats_of_a_re_read_are_released_not_handled_twice() -> None:
    consumer = FakeConsumer(committed=10)
    guard = InOrder(SimpleNamespace(consumer=consumer))
    assert await taken(guard, 10, 11, 12) == [10, 11, 12]
    assert await taken(guard, 11, 12, 13) == [13]
    assert consumer.released == [11, 12]


async def test_a_new_generation_starts_again_from_the_committed_offset() -> None:
    consumer = FakeConsumer(committed=10)
    guard = InOrder(SimpleNamespace(consumer=consumer))
    assert await taken(guard, 10, 11, 12) == [10, 11, 12]
    consumer._committed_offset[PARTITION] = 11  # 11 and 12 were not committed
    assert await taken(guard, 11, 12, generation=2) == [11, 12]


async def test_a_gap_that_stays_after_several_re_reads_is_accepted(monkeypatch: Any) -> None:
    import processors.in_order as in_order

    monkeypatch.setattr(in_order, "REREAD_EVERY_S", 0.0)
    consumer = FakeConsumer(committed=5)
    guard = InOrder(SimpleNamespace(consumer=consumer))
    for _ in range(MAX_REREADS):
        assert await taken(guard, 7) == []
    assert await taken(guard, 7, 8) == [7, 8]
    assert consumer.seeks == [5] * MAX_REREADS
