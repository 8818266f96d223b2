from __future__ import annotations

import pytest

from processors.rate_limit import RecipientPacer, TokenBucket


def test_a_full_bucket_grants_its_burst_then_asks_to_wait():
    bucket = TokenBucket(rate_per_s=10, burst=3)
    assert [bucket.try_take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.try_take(100.0) == pytest.approx(0.1)


def test_a_bucket_refills_at_its_rate_up_to_the_burst():
    bucket = TokenBucket(rate_per_s=10, burst=2)
    bucket.try_take(0.0)
    bucket.try_take(0.0)
    assert bucket.try_take(0.05) == pytest.approx(0.05)  # half a token so far
    assert bucket.try_take(0.1) == 0.0
    bucket.try_take(1000.0)
    assert bucket.tokens <= 2


def test_a_bucket_paces_one_second_of_traffic_at_its_rate():
    bucket = TokenBucket(rate_per_s=80, burst=10)
    granted = sum(1 for i in range(10_000) if bucket.try_take(i / 10_000) == 0.0)
    assert 80 + 10 - 1 <= granted <= 80 + 10 + 1


def test_a_clock_stepping_back_mints_no_tokens():
    bucket = TokenBucket(rate_per_s=1, burst=1)
    assert bucket.try_take(10.0) == 0.0
    assert bucket.try_take(5.0) > 0  # earlier instant: still empty
    assert bucket.try_take(10.5) == pytest.approx(0.5)


def test_a_paused_bucket_grants_nothing_until_the_pause_ends():
    bucket = TokenBucket(rate_per_s=100, burst=50)
    bucket.pause(0.0, 2.0)
    assert bucket.try_take(1.0) == pytest.approx(1.0)
    assert bucket.try_take(2.5) == 0.0
    assert bucket.tokens < 50  # restarts gently, not with a full burst


def test_a_bucket_refuses_impossible_requests():
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(rate_per_s=0, burst=1)
    with pytest.raises(ValueError, match="cannot take"):
        TokenBucket(rate_per_s=1, burst=2).try_take(0.0, n=3)


def test_a_recipient_gets_one_message_per_interval():
    pacer = RecipientPacer(min_interval_s=6.0, backoff=10.0)
    assert pacer.try_take("a", 0.0) == 0.0
    assert pacer.try_take("a", 1.0) == pytest.approx(5.0)
    assert pacer.try_take("a", 6.0) == 0.0


def test_pacing_one_recipient_never_slows_another():
    pacer = RecipientPacer(min_interval_s=6.0, backoff=10.0)
    pacer.try_take("a", 0.0)
    pacer.penalize("a", 0.0)
    assert pacer.try_take("b", 0.0) == 0.0
    assert pacer.wait_time("a", 0.0) == pytest.approx(10.0)


def test_wait_time_changes_nothing():
    pacer = RecipientPacer(min_interval_s=1.0, backoff=1.0)
    assert pacer.wait_time("a", 0.0) == 0.0
    assert len(pacer) == 0
    assert pacer.try_take("a", 0.0) == 0.0


def test_consecutive_penalties_double_up_to_the_cap():
    pacer = RecipientPacer(min_interval_s=0.0, backoff=5.0, max_backoff=30.0)
    pauses = [pacer.penalize("a", float(t)) for t in range(5)]
    assert pauses == [5.0, 10.0, 20.0, 30.0, 30.0]


def test_a_penalty_never_goes_below_the_delay_given():
    pacer = RecipientPacer(min_interval_s=0.0, backoff=1.0)
    assert pacer.penalize("a", 0.0, delay=42.0) == 42.0
    assert pacer.wait_time("a", 0.0) == pytest.approx(42.0)


def test_a_success_starts_the_doubling_over():
    pacer = RecipientPacer(min_interval_s=0.0, backoff=5.0)
    pacer.penalize("a", 0.0)
    pacer.penalize("a", 0.0)
    pacer.record_success("a")
    assert pacer.penalize("a", 100.0) == 5.0


def test_a_penalty_long_past_is_forgotten():
    pacer = RecipientPacer(min_interval_s=0.0, backoff=5.0, max_backoff=60.0)
    pacer.penalize("a", 0.0)
    pacer.penalize("a", 0.0)
    assert pacer.penalize("a", 10_000.0) == 5.0


def test_memory_is_bounded_by_max_entries_least_recently_used_first():
    pacer = RecipientPacer(min_interval_s=6.0, backoff=10.0, max_entries=100)
    for i in range(1_000):
        pacer.try_take(f"user{i}", 0.0)
    assert len(pacer) == 100
    assert pacer.wait_time("user999", 0.0) > 0  # the most recent are kept
    assert pacer.wait_time("user0", 0.0) == 0.0  # the oldest went first


def test_idle_recipients_are_dropped_as_the_clock_passes():
    pacer = RecipientPacer(min_interval_s=6.0, backoff=10.0, max_backoff=60.0)
    for i in range(500):
        pacer.try_take(f"user{i}", 0.0)
    pacer.try_take("late", 1_000.0)
    assert len(pacer) == 1


def test_a_pacer_refuses_nonsense_settings():
    with pytest.raises(ValueError, match="RecipientPacer"):
        RecipientPacer(min_interval_s=1.0, backoff=10.0, max_backoff=5.0)
