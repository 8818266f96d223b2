"""The fetch loop's notion of "the next offset to deliver" (processors.faust_transport)."""

from __future__ import annotations

from processors.faust_transport import ReadOffsets

TP = ("zapstream.messages.inbound.v1", 0)


def test_nothing_read_yet_takes_whatever_comes() -> None:
    offsets = ReadOffsets()
    assert offsets[TP] is None  # Faust's default
    assert offsets.next.get(TP) is None


def test_after_a_delivery_the_next_offset_is_one_past_it() -> None:
    offsets = ReadOffsets()
    offsets.delivered(TP, 10)
    assert offsets[TP] == 10  # Faust still reads its last delivered offset here
    assert offsets.next[TP] == 11


def test_a_seek_back_to_the_last_delivered_offset_delivers_it_again() -> None:
    # The record that was skipped before: 11 delivered but never acked, a rebalance
    # seeks back to the committed offset 11, and 11 must be delivered again.
    offsets = ReadOffsets()
    offsets.delivered(TP, 11)
    offsets[TP] = 11  # Faust's seek writes the offset sought to
    assert offsets.next[TP] == 11


def test_perform_seek_updates_every_partition_as_a_seek() -> None:
    other = ("zapstream.messages.inbound.v1", 1)
    offsets = ReadOffsets()
    offsets.delivered(TP, 40)
    offsets.delivered(other, 7)
    offsets.update({TP: 35, other: None})  # Faust's perform_seek: committed offsets
    assert offsets.next[TP] == 35
    assert other not in offsets.next  # nothing committed: take what comes


def test_a_revoked_partition_forgets_its_next_offset() -> None:
    offsets = ReadOffsets()
    offsets.delivered(TP, 3)
    offsets.pop(TP, None)
    assert TP not in offsets.next
    offsets.delivered(TP, 3)
    del offsets[TP]
    assert TP not in offsets.next
