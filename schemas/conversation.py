"""Versioned records of the conversation chain: turns, sessions and decisions.

    MessageReceived* --debounce--> Turn --engine--> TurnDecided (+ actions routed)
                                    |                   ^
                                    +---- Session ------+   (a table keyed by user_id)

Same rules as `schemas.events`: explicit `schema_version`, additive changes keep it,
unknown fields are ignored on decode, nothing is renamed or reused. All are keyed by
`user_id` so one user's turns, session and decisions stay on one partition, in order.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field

from schemas.events import Event, MessageReceived

CloseReason = Literal["quiet", "max_wait", "max_messages", "immediate"]


class Turn(Event):
    """The messages a user sent in one go, answered once (closed by `processors.debounce`)."""

    KIND: ClassVar[str] = "turn"
    schema_version: Literal[1] = 1
    turn_id: str
    """Derived from the message ids only: re-closing the same messages makes the same id."""
    user_id: str
    wa_id: str | None = None
    bsuid: str | None = None
    phone_number_id: str
    """The business number the user wrote to: the one that must answer."""
    messages: list[MessageReceived]
    """In the user's order (see `processors.debounce.user_order`)."""
    opened_at: datetime
    closed_at: datetime
    close_reason: CloseReason

    @property
    def key(self) -> str:
        return self.user_id

    @property
    def message_ids(self) -> list[str]:
        return [m.message_id for m in self.messages]

    @property
    def last_message(self) -> MessageReceived:
        return self.messages[-1]

    @property
    def last_sent_at(self) -> datetime:
        """The latest user send time: where the 24-hour window restarts."""
        return max(m.sent_at for m in self.messages)

    @property
    def texts(self) -> list[str]:
        """What reads as text (bodies, captions, button titles), reactions left out."""
        return [m.text for m in self.messages if m.text and m.type != "reaction"]


class Session(Event):
    """What we remember about one user between turns (a Faust table value)."""

    KIND: ClassVar[str] = "session"
    schema_version: Literal[1] = 1
    user_id: str
    wa_id: str | None = None
    bsuid: str | None = None
    phone_number_id: str | None = None
    first_inbound_at: datetime | None = None
    last_inbound_at: datetime | None = None
    """The user's latest send time: free-form replies are allowed for 24 h after it."""
    turn_count: int = 0
    last_intent: str | None = None
    consecutive_fallbacks: int = 0
    handoff_active: bool = False
    handoff_since: datetime | None = None
    """When the bot went quiet for a human; lets a forgotten handoff expire."""
    handoff_id: str | None = None
    """The open handoff (`schemas.handoff.handoff_id_for`); None while none is open."""
    opted_out: bool = False
    language: str | None = None
    last_turn_id: str | None = None
    updated_at: datetime | None = None

    @property
    def key(self) -> str:
        return self.user_id

    @classmethod
    def new(cls, user_id: str, **fields: Any) -> Session:
        return cls(user_id=user_id, **fields)

    def updated(self, **changes: Any) -> Session:
        """A copy with `changes` applied, validated (model_copy alone would not validate)."""
        return type(self).model_validate({**self.model_dump(), **changes})


class TurnDecided(Event):
    """One engine decision, for the sink: what was asked, what we answered, how fast."""

    KIND: ClassVar[str] = "turn_decided"
    schema_version: Literal[1] = 1
    turn_id: str
    user_id: str
    wa_id: str | None = None
    bsuid: str | None = None
    phone_number_id: str | None = None
    message_ids: list[str] = Field(default_factory=list)
    intent: str
    actions: list[dict[str, Any]]
    """`processors.actions.action_to_dict` of each action, in order."""
    dropped: list[dict[str, Any]] = Field(default_factory=list)
    """Actions a policy removed (24-hour window, opt-out), each with its `reason`."""
    session: Session
    """The session after the turn."""
    decided_at: datetime
    engine: str
    latency_ms: float
    """From the turn's first message reaching our webhook to the decision."""

    @property
    def key(self) -> str:
        return self.user_id
