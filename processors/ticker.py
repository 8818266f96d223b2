"""Debounce deadlines → tick events, so that turns close inside the stream loop.

Faust tables may only change while an event of their partition is being handled,
so a timer cannot close a pending turn itself. Instead it produces a tick (keyed by
the user, on a topic co-partitioned with the inbound one) when a user's deadline
passes; the intake agent handles the tick like a message, in order, and closes the
turn there. Duplicate or early ticks are harmless (`debounce.on_tick` is a no-op
then). The schedule lives in memory and is rebuilt from the pending table after a
restart or a rebalance (`adopt`), so no buffered turn is forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RETICK_S = 2.0  # a tick that got lost (or raced a rebalance) is sent again after this


@dataclass
class Ticker:
    due: dict[str, float] = field(default_factory=dict)
    """user → epoch seconds when a tick should be sent."""

    def schedule(self, user: str, deadline: float) -> None:
        self.due[user] = deadline

    def forget(self, user: str) -> None:
        self.due.pop(user, None)

    def adopt(self, user: str, deadline: float) -> None:
        """Schedule a user found in the pending table, unless already scheduled."""
        self.due.setdefault(user, deadline)

    def take_due(self, now: float) -> list[str]:
        """Users whose tick is due; each is rescheduled RETICK_S later until forgotten."""
        ready = [u for u, t in self.due.items() if t <= now]
        for user in ready:
            self.due[user] = now + RETICK_S
        return ready
