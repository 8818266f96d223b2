"""Per-user order with cross-user concurrency; failed work retried, then dead-lettered;
offsets that never pass unfinished work.

Faust's agent `concurrency=N` runs N copies of the agent that take events from one
stream in any order: one user's turns could run out of order, and table writes race.
`KeyedLanes` instead runs one task per event, chained per key: a task first waits
for the previous task of the same key, so a user's events are handled strictly in
order while other users' events run meanwhile (a slow engine call delays only its
own user). Each task is created while its event is Faust's current event, so table
writes inside it go to the right changelog partition. (The design follows Confluent's
Parallel Consumer in key-ordered mode: ordered per key, commits of the completed
prefix only, no heuristics.)

A handler that raises is retried with exponential backoff and jitter (tenacity) while
the user's later events wait; a `PermanentError`, or an error still there after
`HANDLER_MAX_ATTEMPTS` / `HANDLER_MAX_ELAPSED_S`, sends the event with its reason to
the dead-letter callback, which is itself retried until it succeeds. Only then is the
event done.

Offsets: an event is acknowledged only when it *and every earlier event of its
partition* are done (handled or dead-lettered): the contiguous finished prefix.
Acking each event as soon as its own task finished would let Faust commit past an
unfinished one and lose it on a crash (measured; see shared/README.md).

`cancel_all()` stops every unfinished task without acknowledging it (`release` is
called instead): a rebalance revokes the partitions, and their new owner reads those
events again from the committed offset. Nothing else is ever read again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from processors.metrics import StageMetrics
from zapstream.errors import PermanentError

log = logging.getLogger(__name__)

DeadLetter = Callable[[Any, BaseException, int], Awaitable[None]]
"""(token, the last error, attempts made) -> store the event in the dead-letter topic."""


@dataclass(frozen=True)
class RetryPlan:
    max_attempts: int = 6
    max_elapsed_s: float = 60.0
    base_s: float = 0.2
    cap_s: float = 10.0


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, Exception) and not isinstance(exc, PermanentError)


@dataclass
class _Slot:
    token: Any
    done: bool = False
    task: asyncio.Task[None] | None = None


@dataclass
class KeyedLanes:
    ack: Callable[[Any], Awaitable[Any]]
    """Called with each token (the Faust event), in partition order, once it is safe."""
    max_in_flight: int = 1000
    dead_letter: DeadLetter | None = None
    """None: a handler that keeps failing is retried for ever (the partition waits)."""
    release: Callable[[Any], None] = lambda token: None
    """Called with each token whose task was cancelled (`cancel_all`) or that was not
    admitted (`current`): not done."""
    current: Callable[[Any], bool] = lambda token: True
    """Is this token still to be handled? False for an event of a consumer generation
    that a rebalance ended: after `cancel_all` it must not run ahead of its user's
    cancelled events (it is read again, in order, after the rebalance)."""
    retry: RetryPlan = field(default_factory=RetryPlan)
    name: str = "lanes"
    _tails: dict[Hashable, asyncio.Task[None]] = field(default_factory=dict)
    _slots: dict[Hashable, deque[_Slot]] = field(default_factory=dict)
    _sem: asyncio.Semaphore | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _metrics: StageMetrics = field(init=False)
    _retrying: AsyncRetrying = field(init=False)

    def __post_init__(self) -> None:
        self._sem = asyncio.Semaphore(self.max_in_flight)
        self._metrics = StageMetrics(self.name)
        plan = self.retry
        self._retrying = AsyncRetrying(
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(plan.max_attempts) | stop_after_delay(plan.max_elapsed_s),
            wait=wait_exponential_jitter(multiplier=plan.base_s, max=plan.cap_s),
            before_sleep=self._log_retry,
            reraise=True,
        )
        """Copied per failed event (a copy holds that event's attempts)."""

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
        if not self.current(token):
            self._sem.release()
            self.release(token)
            return
        slot = _Slot(token)
        self._slots.setdefault(partition, deque()).append(slot)
        previous = self._tails.get(key)
        task = asyncio.create_task(self._run(key, partition, slot, previous, handler))
        slot.task = task
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
                # wait, not shield: a cancelled predecessor must not raise here
                await asyncio.wait([previous])
            await self._handle(key, slot.token, handler)
        finally:
            if self._tails.get(key) is asyncio.current_task():
                del self._tails[key]
            assert self._sem is not None
            self._sem.release()
        slot.done = True
        await self._ack_prefix(partition)

    async def _handle(
        self, key: Hashable, token: Any, handler: Callable[[], Awaitable[None]]
    ) -> None:
        attempts = 1
        metrics = self._metrics
        started = time.perf_counter()
        try:
            # The first attempt runs directly: tenacity's loop costs ~50-60 us per
            # event even when nothing fails (measured on the 2-core machine), and
            # nearly every event succeeds at once. After a failure tenacity decides
            # everything, that first attempt included (retryable? wait, stop, log).
            first: Exception | None = None
            try:
                await handler()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                first = exc
            if first is not None:
                async for attempt in self._retrying.copy():
                    with attempt:
                        attempts = attempt.retry_state.attempt_number
                        if attempts == 1:
                            raise first
                        await handler()
            metrics.handled.inc()
            metrics.latency.observe(time.perf_counter() - started)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self.dead_letter is None:
                raise
            metrics.dead_lettered.inc()
            log.error(
                "%s: event failed after %d attempt(s), dead-lettered: %s: %s",
                self.name,
                attempts,
                type(exc).__name__,
                exc,
            )
            await self._dead_letter(token, exc, attempts)
            metrics.latency.observe(time.perf_counter() - started)

    async def _dead_letter(self, token: Any, exc: BaseException, attempts: int) -> None:
        assert self.dead_letter is not None
        async for attempt in AsyncRetrying(
            wait=wait_exponential_jitter(multiplier=self.retry.base_s, max=self.retry.cap_s),
            before_sleep=self._log_retry,
        ):
            with attempt:
                await self.dead_letter(token, exc, attempts)

    def _log_retry(self, state: RetryCallState) -> None:
        self._metrics.retries.inc()
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "%s: attempt %d failed (%s: %s); retrying in %.2fs",
            self.name,
            state.attempt_number,
            type(exc).__name__,
            exc,
            state.upcoming_sleep,
        )

    async def _ack_prefix(self, partition: Hashable) -> None:
        slots = self._slots.get(partition)
        while slots and slots[0].done:
            await self.ack(slots.popleft().token)

    def cancel_all(self) -> int:
        """Cancel every unfinished task; their tokens are released, never acked. Returns
        how many were cancelled."""
        cancelled = 0
        for slots in self._slots.values():
            for slot in slots:
                if not slot.done and slot.task is not None and not slot.task.done():
                    slot.task.cancel()
                    self.release(slot.token)
                    cancelled += 1
        self._slots.clear()
        self._tails.clear()
        return cancelled

    async def drain(self) -> None:
        """Wait for every scheduled handler (used on shutdown and in tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
