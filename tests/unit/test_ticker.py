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


def test_next_at_is_the_earliest_live_deadline() -> None:
    ticker = Ticker()
    assert ticker.next_at() is None
    ticker.schedule("a", 30.0)
    ticker.schedule("b", 20.0)
    ticker.schedule("b", 40.0)  # b's burst grew: its 20.0 is stale
    assert ticker.next_at() == 30.0
    ticker.forget("a")
    assert ticker.next_at() == 40.0
    ticker.clear()
    assert ticker.next_at() is None


def test_a_deadline_before_every_other_wakes_the_sleeper_and_a_later_one_does_not() -> None:
    woken: list[float] = []
    ticker = Ticker()
    ticker.on_earlier = lambda: woken.append(ticker.next_at() or 0.0)
    ticker.schedule("a", 30.0)
    ticker.schedule("b", 40.0)
    ticker.schedule("c", 10.0)
    assert woken == [30.0, 10.0]


def test_a_user_scheduled_back_to_an_old_deadline_is_ticked_once() -> None:
    ticker = Ticker()
    ticker.schedule("a", 10.0)
    ticker.schedule("a", 12.0)
    ticker.schedule("a", 10.0)  # two live-looking entries (10.0, "a") in the heap
    assert ticker.take_due(11.0) == ["a"]
    assert ticker.next_at() == 11.0 + RETICK_S


def test_take_due_returns_users_in_deadline_order() -> None:
    ticker = Ticker()
    for user, at in [("c", 3.0), ("a", 1.0), ("d", 9.0), ("b", 2.0)]:
        ticker.schedule(user, at)
    assert ticker.take_due(5.0) == ["a", "b", "c"]
    assert ticker.due == {"a": 5.0 + RETICK_S, "b": 5.0 + RETICK_S, "c": 5.0 + RETICK_S, "d": 9.0}
