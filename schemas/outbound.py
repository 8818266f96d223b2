"""Outbound records: what the sender consumes (`OutboundMessage`) and what it reports
(`SendResult`, `DeadLetter`).

Same rules as `schemas.events`: explicit `schema_version`, additive changes keep the
version, unknown fields are ignored on decode, fields are never renamed or reused.

`outbound_id` is derived from the turn a message answers (`outbound_id_for`), never
random: a redelivered turn produces the same id, so the sender can drop the repeat
(`skipped_duplicate`) instead of messaging the user twice.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field

from schemas.events import Event

OutboundKind = Literal["text", "interactive", "template", "media", "mark_read"]
SendOutcomeKind = Literal["sent", "dead_lettered", "skipped_duplicate", "refused"]


def outbound_id_for(turn_id: str, index: int = 0) -> str:
    """The idempotency key of the `index`-th message answering `turn_id`."""
    digest = hashlib.sha256(f"{turn_id}\x1f{index}".encode()).hexdigest()
    return f"out_{digest[:32]}"


class OutboundMessage(Event):
    """One message to send through the Graph API (or one mark-as-read)."""

    KIND: ClassVar[str] = "outbound_message"
    schema_version: Literal[1] = 1
    outbound_id: str
    """Deterministic id from the turn (`outbound_id_for`): the idempotency key."""
    user_id: str
    """The partition key (wa_id or BSUID), like the inbound topics."""
    to: str
    """The recipient: a wa_id (phone number) or a business-scoped user id (BSUID)."""
    phone_number_id: str
    """Our business number that sends it."""
    priority: Literal["high", "low"] = "high"
    """high: replies inside a live conversation; low: bulk/notifications, sent after."""
    kind: OutboundKind
    payload: dict[str, Any] = Field(default_factory=dict)
    """The Graph body fields for the kind, e.g. {"text": {"body": "hi"}},
    {"interactive": {...}}, {"template": {...}}, {"image": {"id": ...}};
    mark_read: {"message_id": ..., "typing_indicator": {"type": "text"}} (optional)."""
    reply_to: str | None = None
    """The inbound wamid this answers (sent as `context.message_id`; for mark_read
    the message to mark when the payload names none)."""
    turn_id: str
    created_at: datetime
    not_after: datetime | None = None
    """Past this instant the reply is stale: the sender drops it rather than send."""
    attempt: int = Field(default=0, ge=0)
    """Attempts already made (0 before the first send)."""
    replay: str | None = None
    """The replay run that made it (`zapstream replay`), None for live messages. The
    sender refuses every marked message (`ReplayRefused`): a replay never messages anyone."""

    @property
    def key(self) -> str:
        return self.user_id

    def is_stale(self, now: datetime) -> bool:
        return self.not_after is not None and now > self.not_after

    def next_attempt(self) -> OutboundMessage:
        """The copy to requeue after a failed attempt."""
        return self.model_copy(update={"attempt": self.attempt + 1})


class SendResult(Event):
    """What happened to one `OutboundMessage`, for the sink and for dedupe."""

    KIND: ClassVar[str] = "send_result"
    schema_version: Literal[1] = 1
    outbound_id: str
    user_id: str
    turn_id: str | None = None
    wamid: str | None = None
    """The Graph API message id (None for mark_read, failures and duplicates)."""
    outcome: SendOutcomeKind
    attempts: int = Field(ge=0)
    status_code: int | None = None
    error_code: int | None = None
    error_reason: str | None = None
    latency_ms: float | None = None
    """The last attempt's round trip to the Graph API."""
    sent_at: datetime
    """When the outcome was decided (the send, the dead-letter or the skip)."""

    @property
    def key(self) -> str:
        return self.user_id


class DeadLetter(Event):
    """A message given up on, kept whole so that it can be inspected and replayed."""

    KIND: ClassVar[str] = "dead_letter"
    schema_version: Literal[1] = 1
    outbound_id: str
    user_id: str
    reason: str
    error_code: int | None = None
    status_code: int | None = None
    retryable: bool
    """True when it was given up on for time or attempts, not for its content:
    replaying it later may succeed."""
    attempts: int = Field(default=0, ge=0)
    message: dict[str, Any]
    """The `OutboundMessage` as JSON (`model_dump(mode="json")`)."""
    failed_at: datetime

    @property
    def key(self) -> str:
        return self.user_id

    @classmethod
    def of(
        cls,
        message: OutboundMessage,
        *,
        reason: str,
        failed_at: datetime,
        retryable: bool,
        error_code: int | None = None,
        status_code: int | None = None,
    ) -> DeadLetter:
        return cls(
            outbound_id=message.outbound_id,
            user_id=message.user_id,
            reason=reason,
            error_code=error_code,
            status_code=status_code,
            retryable=retryable,
            attempts=message.attempt,
            message=message.model_dump(mode="json"),
            failed_at=failed_at,
        )

    def original(self) -> OutboundMessage:
        return OutboundMessage.model_validate(self.message)
