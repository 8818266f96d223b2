"""The dashboard login's lockout (pure, the clock passed in)."""

from __future__ import annotations

import pytest

from ingest.login_throttle import LoginThrottle


def test_the_fifth_failure_in_the_window_locks_the_client_for_the_lock_time() -> None:
    t = LoginThrottle(max_failures=5, window_s=300, lock_s=900)
    assert [t.failed("a", 10.0 + i) for i in range(4)] == [0.0] * 4
    assert t.locked_for("a", 14.0) == 0.0
    assert t.failed("a", 14.0) == 900.0
    assert t.locked_for("a", 500.0) == 414.0
    assert t.locked_for("b", 500.0) == 0.0  # only that client
    assert t.locked_for("a", 914.0) == 0.0  # over by itself


def test_failures_spread_wider_than_the_window_never_lock() -> None:
    t = LoginThrottle(max_failures=3, window_s=60, lock_s=900)
    assert [t.failed("a", i * 31.0) for i in range(10)] == [0.0] * 10


def test_a_right_token_before_the_lock_forgets_the_failures() -> None:
    t = LoginThrottle(max_failures=3, window_s=60, lock_s=900)
    t.failed("a", 1.0)
    t.failed("a", 2.0)
    t.succeeded("a")
    assert t.failed("a", 3.0) == 0.0


def test_entries_expire_without_the_client_coming_back_and_stay_under_the_cap() -> None:
    t = LoginThrottle(max_failures=5, window_s=60, lock_s=120, max_clients=100)
    for i in range(1000):
        t.failed(f"10.0.{i // 256}.{i % 256}", float(i) / 100)
    assert len(t) == 100  # the cap: the least recently failed went first
    t.locked_for("someone", 10_000.0)
    assert len(t) == 0  # idle past the window: dropped as the clock passed
    for _ in range(5):
        t.failed("x", 20_000.0)
    t.locked_for("other", 20_100.0)
    assert t.locked_for("x", 20_100.0) == 20.0  # a lock outlives the window
    assert t.locked_for("other", 20_121.0) == 0.0
    assert len(t) == 0


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="positive limits"):
        LoginThrottle(max_failures=0)
