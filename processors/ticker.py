"""Debounce deadlines → tick events, so that turns close inside the stream loop.

Faust tables may only change while an event of their partition is being handled,
so a timer cannot close a pending turn itself. Instead it produces a tick — keyed by
the user, on the *inbound topic itself* — when a user's deadline passes; the intake
agent handles the tick like a message and closes the turn there. Because the tick
sits in the same partition, behind every message of that user already published, a
worker that lags behind never closes a turn while the rest of the burst is still
waiting in the topic; and the tick carries the time it was made, so a replay decides
the same way. Duplicate or early ticks are harmless (`debounce.on_tick` is a no-op
then). With debounce off nothing is ever scheduled: no tick record exists.

The schedule lives in memory. A rebalance clears it (the partitions may have moved to
another worker, whose ticker takes their users), and it is rebuilt from the `due`
field of the `users` table's entries of the partitions this worker owns (`adopt`), so
no buffered turn is forgotten and no worker ticks for users it does not own.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

TICK_PREFIX = b'{"zapstream_tick":'
RETICK_S = 2.0  # a tick that got lost (or raced a rebalance) is sent again after this


@dataclass
class Ticker:
    """The tick schedule: who is due when. `next_at()` says when the earliest tick is
    due, so the agent sleeps until exactly then instead of polling (a deadline is met
    to the millisecond, and an idle worker does not wake at all); `on_earlier` is
    called when a new deadline comes before every scheduled one (the sleeper wakes)."""

    due: dict[str, float] = field(default_factory=dict)
    """user → epoch seconds when a tick should be sent."""
    on_earlier: Callable[[], None] = lambda: None
    _heap: list[tuple[float, str]] = field(default_factory=list)
    """(deadline, user), earliest first; an entry whose deadline is no longer the
    user's in `due` is stale and dropped when it reaches the top. Entries are made by
    `schedule` calls and each leaves by its deadline, which is at most DEBOUNCE_MAX_MS
    (or RETICK_S) ahead: the heap holds one entry per state write of that window."""

    def schedule(self, user: str, deadline: float) -> None:
        if self.due.get(user) == deadline:
            return
        self.due[user] = deadline
        self._push(deadline, user)

    def forget(self, user: str) -> None:
        self.due.pop(user, None)

    def clear(self) -> None:
        self.due.clear()
        self._heap.clear()

    def adopt(self, user: str, deadline: float) -> None:
        """Schedule a user found in the pending table, unless already scheduled."""
        if user not in self.due:
            self.schedule(user, deadline)

    def next_at(self) -> float | None:
        """When the earliest tick is due (None: nothing scheduled)."""
        heap = self._heap
        while heap and self.due.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def take_due(self, now: float) -> list[str]:
        """Users whose tick is due; each is rescheduled RETICK_S later until forgotten."""
        ready: list[str] = []
        heap = self._heap
        while (at := self.next_at()) is not None and at <= now:
            _, user = heapq.heappop(heap)
            ready.append(user)
            self.due[user] = now + RETICK_S  # any other entry of the user is now stale
        for user in ready:
            heapq.heappush(heap, (now + RETICK_S, user))
        return ready

    def _push(self, deadline: float, user: str) -> None:
        earliest = self.next_at()
        heapq.heappush(self._heap, (deadline, user))
        if earliest is None or deadline < earliest:
            self.on_earlier()


def tick_value(at: float) -> bytes:
    """The value of a tick made at epoch second `at` (not a MessageReceived)."""
    return TICK_PREFIX + json.dumps(round(at, 3)).encode() + b"}"


def tick_time(value: bytes | None) -> datetime | None:
    """When the tick was made, or None when `value` is not a tick."""
    if not value or not value.startswith(TICK_PREFIX):
        return None
    return datetime.fromtimestamp(float(json.loads(value)["zapstream_tick"]), UTC)
