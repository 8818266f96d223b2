"""KeyedLanes: per-key order, cross-key concurrency, contiguous acks."""

from __future__ import annotations

import asyncio
import functools

from processors.lanes import KeyedLanes, RetryPlan
from zapstream.errors import InvalidPayload


async def test_one_users_events_run_in_order_even_when_the_first_is_slow() -> None:
    acked: list[str] = []
    ran: list[str] = []

    async def ack(token: str) -> None:
        acked.append(token)

    lanes = KeyedLanes(ack)

    def handler(name: str, delay: float):
        async def run() -> None:
            await asyncio.sleep(delay)
            ran.append(name)

        return run

    await lanes.submit("alice", 0, "a1", handler("a1", 0.05))
    await lanes.submit("alice", 0, "a2", handler("a2", 0.0))
    await lanes.submit("alice", 0, "a3", handler("a3", 0.01))
    await lanes.drain()
    assert ran == ["a1", "a2", "a3"]
    assert acked == ["a1", "a2", "a3"]


async def test_a_slow_user_does_not_delay_other_users() -> None:
    ran: list[str] = []

    async def ack(token: str) -> None:
        return None

    lanes = KeyedLanes(ack)

    async def slow() -> None:
        await asyncio.sleep(0.3)
        ran.append("slow")

    async def fast(name: str) -> None:
        ran.append(name)

    await lanes.submit("slow-user", 0, "s", slow)
    for i in range(5):
        await lanes.submit(f"user{i}", 0, f"f{i}", functools.partial(fast, f"f{i}"))
    await asyncio.sleep(0.05)
    assert ran == ["f0", "f1", "f2", "f3", "f4"]
    await lanes.drain()
    assert ran[-1] == "slow"


async def test_offsets_are_acked_only_as_a_contiguous_finished_prefix() -> None:
    acked: list[str] = []

    async def ack(token: str) -> None:
        acked.append(token)

    lanes = KeyedLanes(ack)
    gate = asyncio.Event()

    async def blocked() -> None:
        await gate.wait()

    async def quick() -> None:
        return None

    await lanes.submit("u1", 0, "p0-o0", blocked)
    await lanes.submit("u2", 0, "p0-o1", quick)
    await lanes.submit("u3", 1, "p1-o0", quick)
    await asyncio.sleep(0.02)
    assert acked == ["p1-o0"]  # partition 0 waits for its first, unfinished event
    gate.set()
    await lanes.drain()
    assert acked == ["p1-o0", "p0-o0", "p0-o1"]


FAST = RetryPlan(max_attempts=4, max_elapsed_s=30, base_s=0.001, cap_s=0.002)


async def test_a_handler_that_fails_then_succeeds_is_retried_and_acked_once_done() -> None:
    acked: list[int] = []
    ran: list[str] = []
    calls = 0

    async def ack(token: int) -> None:
        acked.append(token)

    async def dead(token: int, exc: BaseException, attempts: int) -> None:
        raise AssertionError("must not be dead-lettered")

    lanes = KeyedLanes(ack, dead_letter=dead, retry=FAST)

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise TimeoutError("broker timeout while publishing")
        ran.append("flaky")

    async def after() -> None:
        ran.append("after")

    await lanes.submit("u", 0, 1, flaky)
    await lanes.submit("u", 0, 2, after)
    await lanes.drain()
    assert calls == 3
    assert ran == ["flaky", "after"]  # the user's next event waited for the retries
    assert acked == [1, 2]


async def test_an_event_that_keeps_failing_is_dead_lettered_with_its_reason_before_its_ack() -> None:
    order: list[str] = []
    letters: list[tuple[int, str, int]] = []

    async def ack(token: int) -> None:
        order.append(f"ack {token}")

    async def dead(token: int, exc: BaseException, attempts: int) -> None:
        letters.append((token, str(exc), attempts))
        order.append(f"dead {token}")

    lanes = KeyedLanes(ack, dead_letter=dead, retry=FAST)

    async def boom() -> None:
        raise RuntimeError("engine bug")

    async def after() -> None:
        order.append("after")

    await lanes.submit("u", 0, 1, boom)
    await lanes.submit("u", 0, 2, after)
    await lanes.drain()
    assert letters == [(1, "engine bug", 4)]
    assert order == ["dead 1", "ack 1", "after", "ack 2"]


async def test_a_permanent_error_is_dead_lettered_at_once() -> None:
    letters: list[int] = []

    async def ack(token: int) -> None:
        return None

    async def dead(token: int, exc: BaseException, attempts: int) -> None:
        letters.append(attempts)

    lanes = KeyedLanes(ack, dead_letter=dead, retry=FAST)

    async def bad() -> None:
        raise InvalidPayload("not JSON")

    await lanes.submit("u", 0, 1, bad)
    await lanes.drain()
    assert letters == [1]


async def test_no_ack_passes_an_event_whose_dead_letter_could_not_be_stored_yet() -> None:
    acked: list[int] = []
    tries = 0

    async def ack(token: int) -> None:
        acked.append(token)

    async def dead(token: int, exc: BaseException, attempts: int) -> None:
        nonlocal tries
        tries += 1
        if tries < 3:
            raise TimeoutError("dead-letter topic unreachable")

    lanes = KeyedLanes(ack, dead_letter=dead, retry=FAST)

    async def boom() -> None:
        raise InvalidPayload("bad")

    await lanes.submit("u", 0, 1, boom)
    await lanes.drain()
    assert tries == 3
    assert acked == [1]


async def test_cancel_all_stops_unfinished_work_and_releases_without_acking() -> None:
    acked: list[int] = []
    released: list[int] = []

    async def ack(token: int) -> None:
        acked.append(token)

    lanes = KeyedLanes(ack, release=released.append, retry=FAST)
    gate = asyncio.Event()

    async def held() -> None:
        await gate.wait()

    async def quick() -> None:
        return None

    await lanes.submit("u1", 0, 1, quick)
    await lanes.submit("u2", 0, 2, held)
    await lanes.submit("u2", 0, 3, quick)
    await asyncio.sleep(0.01)
    assert lanes.cancel_all() == 2
    await lanes.drain()
    assert acked == [1]
    assert sorted(released) == [2, 3]
    assert lanes.in_flight == 0


async def test_backpressure_bounds_the_handlers_in_flight() -> None:
    async def ack(token: int) -> None:
        return None

    lanes = KeyedLanes(ack, max_in_flight=3)
    gate = asyncio.Event()
    peak = 0

    async def held() -> None:
        nonlocal peak
        peak = max(peak, lanes.in_flight)
        await gate.wait()

    async def submit_all() -> None:
        for i in range(6):
            await lanes.submit(f"u{i}", 0, i, held)

    submitter = asyncio.create_task(submit_all())
    await asyncio.sleep(0.02)
    assert lanes.in_flight == 3
    gate.set()
    await submitter
    await lanes.drain()
    assert peak <= 3


async def test_an_event_of_an_ended_generation_is_released_not_run_ahead_of_its_user() -> None:
    # After a rebalance cancelled a user's unfinished events, an event of theirs that
    # the agent still held must not run (it would overtake the cancelled ones).
    ran: list[int] = []
    released: list[int] = []
    stale = {3}

    async def ack(token: int) -> None:
        return None

    lanes = KeyedLanes(
        ack, release=released.append, current=lambda token: token not in stale, retry=FAST
    )

    async def run(token: int) -> None:
        ran.append(token)

    for token in (1, 3, 4):
        await lanes.submit("u", 0, token, functools.partial(run, token))
    await lanes.drain()
    assert ran == [1, 4]
    assert released == [3]
    assert lanes.in_flight == 0
