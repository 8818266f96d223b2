"""Per-user order with cross-user concurrency, and offsets that never skip work.

Faust's agent `concurrency=N` runs N copies of the agent that take events from one
stream in any order: one user's turns could run out of order, and table writes race.
`KeyedLanes` instead runs one task per event, chained per key: a task first waits
for the previous task of the same key, so a user's events are handled strictly in
order while other users' events run meanwhile (a slow engine call delays only its
own user). Each task is created while its event is Faust's current event, so table
writes inside it go to the right changelog partition.

Offsets: an event is acknowledged only when it *and every earlier event of its
partition* are done (the contiguous finished prefix). Acking each event as soon as
its own task finished would let Faust commit past an unfinished one and lose it on
a crash (measured; see shared/README.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class _Slot:
    token: Any
    done: bool = False


@dataclass
class KeyedLanes:
    ack: Callable[[Any], Awaitable[Any]]
    """Called with each token (the Faust event), in partition order, once it is safe."""
    max_in_flight: int = 1000
    _tails: dict[Hashable, asyncio.Task[None]] = field(default_factory=dict)
    _slots: dict[Hashable, deque[_Slot]] = field(default_factory=dict)
    _sem: asyncio.Semaphore | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._sem = asyncio.Semaphore(self.max_in_flight)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def submit(
        self,
        key: Hashable,
        partition: Hashable,
        token: Any,
        handler: Callable[[], Awaitable[None]],
    ) -> None:
        """Schedule `handler` after the previous handler of `key`. Waits (backpressure)
        while `max_in_flight` handlers are unfinished."""
        assert self._sem is not None
        await self._sem.acquire()
        slot = _Slot(token)
        self._slots.setdefault(partition, deque()).append(slot)
        previous = self._tails.get(key)
        task = asyncio.create_task(self._run(key, partition, slot, previous, handler))
        self._tails[key] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self,
        key: Hashable,
        partition: Hashable,
        slot: _Slot,
        previous: asyncio.Task[None] | None,
        handler: Callable[[], Awaitable[None]],
    ) -> None:
        try:
            if previous is not None and not previous.done():
                # shield: cancelling this task must not cancel the user's previous one
                await asyncio.shield(previous)
            await handler()
        except asyncio.CancelledError:
            raise
        except Exception:
            # The handler decides what a failure means (retry, dead letter); reaching
            # here is a bug. Keep the lane moving: one bad event must not stall a user.
            log.exception("handler failed; event skipped", extra={"key": str(key)[:4] + "…"})
        finally:
            if self._tails.get(key) is asyncio.current_task():
                del self._tails[key]
            slot.done = True
            assert self._sem is not None
            self._sem.release()
        await self._ack_prefix(partition)

    async def _ack_prefix(self, partition: Hashable) -> None:
        slots = self._slots.get(partition)
        while slots and slots[0].done:
            await self.ack(slots.popleft().token)

    async def drain(self) -> None:
        """Wait for every scheduled handler (used on shutdown and in tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
