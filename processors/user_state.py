"""One user's whole state, and the pure intake step over it: dedupe → debounce.

The worker keeps **one record per user** (the Faust table `users`): the engine's
`Session`, the debounce buffer (`Pending`) and `applied`, the inbound record
(partition, offset) whose effect the record already holds. Every inbound record
(a message or a debounce tick) of a user changes that one record once, in one write:

    intake(state | None, record, origin, seen, cfg) -> Intake

A record at or before `applied` was already applied (the worker crashed after
storing the state and before committing the offset): it is skipped whole, so a
replay after a crash can neither re-open a burst that was already answered (a
different set of messages, a second reply) nor decide an older turn again on top of
a newer session. Anything after `applied` is applied as if for the first time, and
gives the same result it gave before the crash: debounce and the engine run on the
record's own time (`received_at`, a tick's time), never the wall clock, and turn and
outbound ids are derived from message ids.

Dedupe is keyed by message id (table `seen`, one small entry per message id, kept
`DEDUPE_HORIZON_S`): an entry names the record that first carried the id. The same
record read again is not a duplicate (its work may not be stored yet); another
record with the same id (Meta's redelivery) is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict

from processors import debounce
from schemas.conversation import Session, Turn
from schemas.events import MessageReceived
from schemas.reengagement import ReengageMark


class Origin(NamedTuple):
    """Where an inbound record sits: its partition and offset."""

    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.partition}:{self.offset}"


class UserState(BaseModel):
    """The value of the `users` table (JSON bytes), keyed by user id."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    schema_version: Literal[1] = 1
    session: Session | None = None
    pending: debounce.Pending | None = None
    applied: tuple[int, int] | None = None
    """(partition, offset) of the last inbound record applied to this state."""
    touched_at: float = 0.0
    """Epoch seconds of the last record applied (event time): drives expiry."""
    reengaged: ReengageMark | None = None
    """The last quiet period re-engaged (`processors.reengage`)."""

    def already_applied(self, origin: Origin) -> bool:
        if self.applied is None:
            return False
        partition, offset = self.applied
        # A user changes partition only if the partition count changes: then offsets of
        # the new partition say nothing about the old one.
        return partition == origin.partition and origin.offset <= offset

    def encode(self) -> bytes:
        return self.model_dump_json(exclude_defaults=True).encode()

    @classmethod
    def decode(cls, data: bytes | None) -> UserState | None:
        return None if data is None else cls.model_validate_json(data)


@dataclass(frozen=True)
class SeenEntry:
    """When a message id was first seen (epoch seconds) and by which record."""

    first_seen: float
    origin: str

    def encode(self) -> bytes:
        return f"{self.first_seen:.3f} {self.origin}".encode()

    @classmethod
    def decode(cls, data: bytes) -> SeenEntry:
        first, _, origin = data.decode().partition(" ")
        return cls(float(first), origin)


class Intake(NamedTuple):
    state: UserState | None
    """The state to store (None: store nothing, the record changed nothing)."""
    turn: Turn | None
    """A turn that closed: decide it, then store `state` with the decided session."""
    seen: SeenEntry | None
    """A new dedupe entry to store for the message (before the state)."""
    outcome: Literal["applied", "replayed", "duplicate", "tick"]
    now: datetime | None
    """The event time the step ran at (the engine decides at the same time)."""


def intake(
    state: UserState | None,
    record: MessageReceived | datetime,
    origin: Origin,
    seen: SeenEntry | None,
    cfg: debounce.DebounceConfig,
) -> Intake:
    """Apply one inbound record (a message, or a tick made at a `datetime`)."""
    if state is not None and state.already_applied(origin):
        return Intake(None, None, None, "replayed", None)
    current = state or UserState()
    new_seen: SeenEntry | None = None
    if isinstance(record, datetime):
        now = record
        step = debounce.on_tick(current.pending, now, cfg)
        outcome: Literal["applied", "tick"] = "tick"
    else:
        now = record.received_at
        if seen is not None and seen.origin != str(origin):
            return Intake(None, None, None, "duplicate", now)
        if seen is None:
            new_seen = SeenEntry(round(now.timestamp(), 3), str(origin))
        step = debounce.on_message(current.pending, record, now, cfg)
        outcome = "applied"
    if outcome == "tick" and step.turn is None and step.pending == current.pending:
        return Intake(None, None, None, "tick", now)  # an early or repeated tick
    touched = max(current.touched_at, now.timestamp())
    updated = current.model_copy(  # keeps what other features store in the state
        update={
            "pending": step.pending,
            "applied": (origin.partition, origin.offset),
            "touched_at": touched,
        }
    )
    return Intake(updated, step.turn, new_seen, outcome, now)


def with_session(state: UserState, session: Session) -> UserState:
    return state.model_copy(update={"session": session})
