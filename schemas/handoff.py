"""Handoff lifecycle events: a conversation handed to a human and back.

All ride `{prefix}.handoffs.v1`, keyed by user, in that user's order:

    opened ─▶ notified ─▶ (renotified) ─▶ agent_reply* ─▶ released | expired
                └─▶ notify_failed (the helpdesk kept refusing: dead-lettered)

`handoff_id` is derived from where the handoff opened (the turn, or the control
record's offset), so a replay after a crash makes the same id; `event_id` is derived
from it (or from the reply's outbound id), so the sink loads each event once. The
sink keeps every event (`handoff_events`) and shows one row per handoff (`handoffs`).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import ClassVar, Literal

from schemas.events import Event

HandoffEventKind = Literal[
    "opened", "notified", "renotified", "agent_reply", "released", "expired", "notify_failed"
]
HandoffSource = Literal["engine", "agent"]


def handoff_id_for(user_id: str, opened_by: str) -> str:
    """The id of the handoff of `user_id` opened by `opened_by` (a turn id, or
    `control:<partition>:<offset>`): the same input always makes the same id."""
    digest = hashlib.sha256(f"{user_id}\x1f{opened_by}".encode()).hexdigest()
    return f"hnd_{digest[:24]}"


def event_id_for(handoff_id: str | None, event: str, detail: str = "") -> str:
    return f"{handoff_id or '-'}:{event}{':' + detail if detail else ''}"


class HandoffEvent(Event):
    """One step of a handoff's life (see the module docstring)."""

    KIND: ClassVar[str] = "handoff_event"
    schema_version: Literal[1] = 1
    event_id: str
    """Deterministic (`event_id_for`): a redelivered or replayed event loads once."""
    event: HandoffEventKind
    handoff_id: str | None = None
    """None only for an agent's reply made while no handoff was known to the API: the
    sink attributes it to the user's handoff open at that time."""
    user_id: str
    at: datetime
    wa_id: str | None = None
    bsuid: str | None = None
    phone_number_id: str | None = None
    reason: str | None = None
    """opened: why (the engine's reason, or the agent's); released: who ended it;
    notify_failed: the helpdesk's last answer."""
    source: HandoffSource | None = None
    """opened only: who asked for the human."""
    turn_id: str | None = None
    text: str | None = None
    """opened: what the user wrote in the turn that asked for a human (cut to 1000)."""
    outbound_id: str | None = None
    """agent_reply: the message sent for the agent."""
    attempts: int | None = None
    """notified / renotified / notify_failed: posts made."""
    opened_at: datetime | None = None
    """The handoff's opening time, on every event that knows it."""

    @property
    def key(self) -> str:
        return self.user_id
