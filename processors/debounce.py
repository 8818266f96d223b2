"""Debounce: gather a user's burst of messages into one turn, answered once.

People type "oi" / "tudo bem?" / "quero saber o horário" as three messages; answering
each would send three replies to half a question. A pure state machine per user:

    on_message(pending | None, msg, now, cfg) -> Step(pending | None, turn | None)
    on_tick(pending | None, now, cfg)         -> Step(pending | None, turn | None)

A pending turn closes when the user has been quiet for `quiet_ms` since their last
message, when `max_ms` have passed since the first one (a chatty user still gets an
answer), or when it holds `max_messages`. `quiet_ms = 0` turns debouncing off: every
message is its own turn at once.

Deadlines are checked on every message too, not only on ticks: if a tick was late (a
busy or restarted worker), a message arriving after the deadline closes the old turn
*without* itself and starts the next one. So with event times as `now` (the message's
`received_at`), the turns cut from a stream do not depend on when timers happened to fire.

`Pending` is a pydantic model: store `pending.model_dump(mode="json")` in a Faust table
keyed by user_id and read it back with `Pending.model_validate`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict

from schemas.conversation import CloseReason, Turn
from schemas.events import MessageReceived


@dataclass(frozen=True)
class DebounceConfig:
    quiet_ms: int = 1500
    max_ms: int = 5000
    max_messages: int = 10

    @property
    def immediate(self) -> bool:
        return self.quiet_ms <= 0 or self.max_messages <= 1


class Pending(BaseModel):
    """A turn still open. `messages` are in arrival order; the turn sorts them."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    schema_version: Literal[1] = 1
    user_id: str
    messages: tuple[MessageReceived, ...]
    first_at: datetime
    last_at: datetime


class Step(NamedTuple):
    pending: Pending | None
    turn: Turn | None


def user_order(messages: Iterable[MessageReceived]) -> list[MessageReceived]:
    """The order the user sent them in: by Meta's `timestamp` (`sent_at`), then arrival.

    Arrival order alone is not enough: Meta does not promise webhook order, and a failed
    delivery is retried later, so "oi" can arrive after "quero o horário". But the
    timestamp has one-second resolution, so messages sent in the same second tie; for
    those, arrival order is the best evidence left (a stable sort keeps it).
    """
    return sorted(messages, key=lambda m: m.sent_at)


def turn_id_for(message_ids: Iterable[str]) -> str:
    """A hash of the set of message ids: closing the same messages again (a restart, a
    replay, a second tick) makes the same id, which downstream dedupe relies on."""
    joined = "\n".join(sorted(set(message_ids)))
    return "turn-" + hashlib.sha256(joined.encode()).hexdigest()[:32]


def close(pending: Pending, now: datetime, reason: CloseReason) -> Turn:
    messages = user_order(pending.messages)
    latest = pending.messages[-1]  # newest identity fields win (a user may add a username)
    return Turn(
        turn_id=turn_id_for(m.message_id for m in messages),
        user_id=pending.user_id,
        wa_id=latest.wa_id or next((m.wa_id for m in messages if m.wa_id), None),
        bsuid=latest.bsuid or next((m.bsuid for m in messages if m.bsuid), None),
        phone_number_id=latest.phone_number_id,
        messages=messages,
        opened_at=pending.first_at,
        closed_at=max(now, pending.last_at),
        close_reason=reason,
    )


def next_deadline(pending: Pending | None, cfg: DebounceConfig) -> datetime | None:
    """When `on_tick` would close this pending turn (None: nothing pending)."""
    if pending is None:
        return None
    if cfg.immediate:
        return pending.last_at
    quiet = pending.last_at + timedelta(milliseconds=cfg.quiet_ms)
    if cfg.max_ms <= 0:
        return quiet
    return min(quiet, pending.first_at + timedelta(milliseconds=cfg.max_ms))


def due_reason(pending: Pending, now: datetime, cfg: DebounceConfig) -> CloseReason | None:
    """Why this pending turn must close at `now`, or None if it may stay open."""
    if cfg.immediate:
        return "immediate"
    if len(pending.messages) >= cfg.max_messages:
        return "max_messages"  # only after a config change lowered the limit
    deadline = next_deadline(pending, cfg)
    if deadline is None or now < deadline:
        return None
    # The deadline that came first names the reason, whenever we got to look.
    quiet = pending.last_at + timedelta(milliseconds=cfg.quiet_ms)
    return "quiet" if quiet <= deadline else "max_wait"


def _open(msg: MessageReceived, now: datetime) -> Pending:
    return Pending(user_id=msg.user_id, messages=(msg,), first_at=now, last_at=now)


def _append(pending: Pending, msg: MessageReceived, now: datetime) -> Pending:
    return Pending(
        user_id=pending.user_id,
        messages=(*pending.messages, msg),
        first_at=pending.first_at,
        last_at=max(now, pending.last_at),  # clocks of two webhook hosts may disagree
    )


def on_message(
    pending: Pending | None, msg: MessageReceived, now: datetime, cfg: DebounceConfig
) -> Step:
    """Add `msg` to the user's pending turn; return the new state and a turn if one closed."""
    if pending is not None and pending.user_id != msg.user_id:
        raise ValueError("debounce state is per user: key the table by user_id")
    if pending is not None and any(m.message_id == msg.message_id for m in pending.messages):
        return Step(pending, None)  # a redelivery already in the buffer
    if cfg.immediate:
        merged = _open(msg, now) if pending is None else _append(pending, msg, now)
        return Step(None, close(merged, now, "immediate"))
    if pending is not None and (reason := due_reason(pending, now, cfg)) is not None:
        return Step(_open(msg, now), close(pending, now, reason))
    grown = _open(msg, now) if pending is None else _append(pending, msg, now)
    if len(grown.messages) >= cfg.max_messages:
        return Step(None, close(grown, now, "max_messages"))
    return Step(grown, None)


def on_tick(pending: Pending | None, now: datetime, cfg: DebounceConfig) -> Step:
    """Close the pending turn if its deadline has passed; otherwise leave it as it is."""
    if pending is None:
        return Step(None, None)
    reason = due_reason(pending, now, cfg)
    if reason is None:
        return Step(pending, None)
    return Step(None, close(pending, now, reason))


def run(
    events: Sequence[tuple[datetime, MessageReceived | None]], cfg: DebounceConfig
) -> list[Turn]:
    """Replay (time, message-or-tick) events for any number of users; the turns closed.

    A reference driver for tests and benchmarks: what the agent plus its timer do, with
    one pending turn per user_id (users never share a buffer). A final tick far in the
    future flushes whatever is still open.
    """
    state: dict[str, Pending] = {}
    turns: list[Turn] = []

    def keep(user_id: str, step: Step) -> None:
        if step.pending is None:
            state.pop(user_id, None)
        else:
            state[user_id] = step.pending
        if step.turn is not None:
            turns.append(step.turn)

    for now, msg in events:
        if msg is not None:
            keep(msg.user_id, on_message(state.get(msg.user_id), msg, now, cfg))
        else:
            for user_id in sorted(state):
                keep(user_id, on_tick(state[user_id], now, cfg))
    if events:
        end = max(t for t, _ in events) + timedelta(days=1)
        for user_id in sorted(state):
            keep(user_id, on_tick(state[user_id], end, cfg))
    return turns
