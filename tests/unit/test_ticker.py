"""Debounce ticks: the schedule and the tick encoding."""

from __future__ import annotations

from datetime import UTC, datetime

from processors.ticker import RETICK_S, Ticker, tick_time, tick_value
from schemas.codec import encode
from tests.support.events import message


def test_a_tick_carries_the_time_it_was_made() -> None:
    at = datetime(2026, 11, 26, 12, 0, 1, 500000, tzinfo=UTC)
    assert tick_time(tick_value(at.timestamp())) == at


def test_a_message_is_never_taken_for_a_tick() -> None:
    assert tick_time(encode(message(1))) is None
    assert tick_time(b"") is None
    assert tick_time(None) is None


def test_due_users_are_ticked_and_retried_until_forgotten() -> None:
    ticker = Ticker()
    ticker.schedule("a", 10.0)
    ticker.schedule("b", 20.0)
    assert ticker.take_due(15.0) == ["a"]
    assert ticker.take_due(15.0 + RETICK_S / 2) == []  # not again at once
    assert ticker.take_due(15.0 + RETICK_S) == ["a"]  # a lost tick is sent again
    ticker.forget("a")
    assert ticker.take_due(100.0) == ["b"]


def test_adopt_keeps_an_existing_schedule() -> None:
    ticker = Ticker()
    ticker.schedule("a", 5.0)
    ticker.adopt("a", 1.0)
    ticker.adopt("b", 1.0)
    assert ticker.due == {"a": 5.0, "b": 1.0}


def test_a_tick_is_never_earlier_than_the_time_it_was_made() -> None:
    # A tick sent the instant a deadline falls must close that turn: a tick value
    # rounded down to the millisecond would read as "not yet" and wait RETICK_S more.
    for at in (1_764_550_000.0004, 1_764_550_000.1234567, 1_764_550_000.9999, 5.0):
        tick = tick_time(tick_value(at))
        assert tick is not None
        assert tick >= datetime.fromtimestamp(at, UTC)
