"""Debounce: a burst becomes one turn, in the user's order, with a deterministic id."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from processors.debounce import (
    DebounceConfig,
    Pending,
    next_deadline,
    on_message,
    on_tick,
    run,
    turn_id_for,
)
from schemas.events import MessageReceived

T0 = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)
CFG = DebounceConfig(quiet_ms=1500, max_ms=5000, max_messages=10)
ANA, BIA = "5511900000001", "5511900000002"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def msg(mid: str, text: str = "oi", *, user: str = ANA, sent: float = 0) -> MessageReceived:
    return MessageReceived(
        message_id=mid,
        user_id=user,
        wa_id=user,
        phone_number_id="100",
        type="text",
        sent_at=at(sent),
        received_at=at(sent),
        text=text,
        raw={},
    )


def test_burst_of_five_messages_becomes_one_turn_in_order():
    events: list[tuple[datetime, MessageReceived | None]] = [
        (at(i * 0.5), msg(f"m{i}", f"part {i}", sent=i * 0.5)) for i in range(5)
    ]
    events.append((at(10), None))  # a tick after the quiet window
    turns = run(events, CFG)
    assert len(turns) == 1
    assert turns[0].message_ids == ["m0", "m1", "m2", "m3", "m4"]
    assert turns[0].close_reason == "quiet"


def test_messages_are_ordered_by_send_time_then_arrival():
    # Meta retried "m_first" and it arrived last; m_b and m_c were sent in the same second.
    events = [
        (at(1.0), msg("m_b", sent=2)),
        (at(1.1), msg("m_c", sent=2)),
        (at(1.2), msg("m_first", sent=1)),
    ]
    (turn,) = run(events, CFG)
    assert turn.message_ids == ["m_first", "m_b", "m_c"]


def test_two_users_never_mix():
    events = []
    for i in range(4):
        events.append((at(i * 0.2), msg(f"ana{i}", user=ANA, sent=i * 0.2)))
        events.append((at(i * 0.2 + 0.1), msg(f"bia{i}", user=BIA, sent=i * 0.2)))
    turns = run(events, CFG)
    assert len(turns) == 2
    for turn in turns:
        assert {m.user_id for m in turn.messages} == {turn.user_id}
        assert len(turn.messages) == 4


def test_a_message_for_another_user_is_refused():
    pending, _ = on_message(None, msg("a", user=ANA), T0, CFG)
    with pytest.raises(ValueError, match="per user"):
        on_message(pending, msg("b", user=BIA), T0, CFG)


def test_quiet_zero_makes_every_message_its_own_turn_at_once():
    cfg = DebounceConfig(quiet_ms=0)
    pending, turn = on_message(None, msg("m1"), T0, cfg)
    assert pending is None
    assert turn is not None
    assert (turn.message_ids, turn.close_reason) == (["m1"], "immediate")


def test_max_wait_answers_a_user_who_never_pauses():
    # One message every second: never 1.5 s of quiet, so only max_ms can close the turn.
    pending = None
    closed = []
    for i in range(8):
        pending, turn = on_message(pending, msg(f"m{i}", sent=i), at(i), CFG)
        if turn:
            closed.append(turn)
    assert len(closed) == 1
    assert closed[0].close_reason == "max_wait"
    assert closed[0].message_ids == ["m0", "m1", "m2", "m3", "m4"]
    assert pending is not None
    assert [m.message_id for m in pending.messages] == ["m5", "m6", "m7"]


def test_max_wait_closes_on_a_tick():
    pending, _ = on_message(None, msg("m0"), at(0), CFG)
    for i in range(1, 5):
        pending, _ = on_message(pending, msg(f"m{i}", sent=i), at(i), CFG)
    assert on_tick(pending, at(4.9), CFG).turn is None
    pending, turn = on_tick(pending, at(5), CFG)
    assert pending is None
    assert turn is not None
    assert turn.close_reason == "max_wait"


def test_max_messages_closes_the_turn_at_once():
    cfg = DebounceConfig(max_messages=3)
    pending = None
    for i in range(3):
        pending, turn = on_message(pending, msg(f"m{i}"), at(i * 0.1), cfg)
    assert pending is None
    assert turn is not None
    assert (len(turn.messages), turn.close_reason) == (3, "max_messages")


def test_a_late_message_closes_the_overdue_turn_without_itself():
    # The timer never fired (a busy worker): the next message still cuts at the deadline.
    pending, _ = on_message(None, msg("m0"), at(0), CFG)
    pending, turn = on_message(pending, msg("m1", sent=30), at(30), CFG)
    assert turn is not None
    assert (turn.message_ids, turn.close_reason) == (["m0"], "quiet")
    assert pending is not None
    assert [m.message_id for m in pending.messages] == ["m1"]


def test_a_tick_before_the_deadline_keeps_the_turn_open():
    pending, _ = on_message(None, msg("m0"), at(0), CFG)
    assert on_tick(pending, at(1.4), CFG) == (pending, None)
    assert on_tick(None, at(1.4), CFG) == (None, None)


def test_next_deadline_is_the_earlier_of_quiet_and_max_wait():
    pending, _ = on_message(None, msg("m0"), at(0), CFG)
    assert next_deadline(pending, CFG) == at(1.5)
    for i in range(1, 5):
        pending, _ = on_message(pending, msg(f"m{i}"), at(i), CFG)
    assert next_deadline(pending, CFG) == at(5)  # first + max_ms, before last + quiet
    assert next_deadline(None, CFG) is None


def test_a_redelivered_message_in_the_buffer_is_ignored():
    pending, _ = on_message(None, msg("m0"), at(0), CFG)
    again, turn = on_message(pending, msg("m0"), at(0.5), CFG)
    assert (again, turn) == (pending, None)


def test_turn_ids_are_deterministic_whatever_the_arrival_order():
    a = run([(at(0), msg("x", sent=0)), (at(0.1), msg("y", sent=1))], CFG)
    b = run([(at(0), msg("y", sent=1)), (at(0.1), msg("x", sent=0))], CFG)
    assert a[0].turn_id == b[0].turn_id == turn_id_for(["x", "y"])
    assert turn_id_for(["x"]) != turn_id_for(["x", "y"])


def test_a_restart_that_closes_the_same_messages_again_makes_the_same_turn_id():
    pending, _ = on_message(None, msg("m0"), at(0), CFG)
    pending, _ = on_message(pending, msg("m1"), at(0.5), CFG)
    assert pending is not None
    restored = Pending.model_validate(pending.model_dump(mode="json"))  # the table's JSON
    first = on_tick(pending, at(3), CFG).turn
    second = on_tick(restored, at(9), CFG).turn
    assert first is not None
    assert second is not None
    assert first.turn_id == second.turn_id
