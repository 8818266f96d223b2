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

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

TICK_PREFIX = b'{"zapstream_tick":'
RETICK_S = 2.0  # a tick that got lost (or raced a rebalance) is sent again after this


@dataclass
class Ticker:
    due: dict[str, float] = field(default_factory=dict)
    """user → epoch seconds when a tick should be sent."""

    def schedule(self, user: str, deadline: float) -> None:
        self.due[user] = deadline

    def forget(self, user: str) -> None:
        self.due.pop(user, None)

    def clear(self) -> None:
        self.due.clear()

    def adopt(self, user: str, deadline: float) -> None:
        """Schedule a user found in the pending table, unless already scheduled."""
        self.due.setdefault(user, deadline)

    def take_due(self, now: float) -> list[str]:
        """Users whose tick is due; each is rescheduled RETICK_S later until forgotten."""
        ready = [u for u, t in self.due.items() if t <= now]
        for user in ready:
            self.due[user] = now + RETICK_S
        return ready


def tick_value(at: float) -> bytes:
    """The value of a tick made at epoch second `at` (not a MessageReceived), in whole
    milliseconds rounded *up*: a tick sent the instant a deadline falls must not read
    as earlier than the deadline (it would close nothing and wait RETICK_S more)."""
    return TICK_PREFIX + json.dumps(math.ceil(at * 1000) / 1000).encode() + b"}"


def tick_time(value: bytes | None) -> datetime | None:
    """When the tick was made, or None when `value` is not a tick."""
    if not value or not value.startswith(TICK_PREFIX):
        return None
    return datetime.fromtimestamp(float(json.loads(value)["zapstream_tick"]), UTC)
