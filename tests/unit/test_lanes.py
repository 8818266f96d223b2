"""KeyedLanes: per-key order, cross-key concurrency, contiguous acks."""

from __future__ import annotations

import asyncio
import functools

from processors.lanes import KeyedLanes


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


async def test_a_failing_handler_does_not_stall_its_user() -> None:
    ran: list[str] = []

    async def ack(token: str) -> None:
        return None

    lanes = KeyedLanes(ack)

    async def boom() -> None:
        raise RuntimeError("bug")

    async def after() -> None:
        ran.append("after")

    await lanes.submit("u", 0, 1, boom)
    await lanes.submit("u", 0, 2, after)
    await lanes.drain()
    assert ran == ["after"]


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
