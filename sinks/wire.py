"""msgspec mirrors of the events the sink reads: the fast first decode.

A mirror has the fields of its pydantic model (`schemas.*`, same names, same required
ones) with strict types, so it accepts a subset of what the model accepts, never
more, and gives the same values where it accepts. Whatever a mirror refuses (an old
schema_version, a number where a model would coerce, a timestamp msgspec cannot
read) is decoded again by `schemas.codec.decode`, which upgrades, coerces or rejects
exactly as everywhere else (`sinks.routes.Route.decode`). `tests/unit/test_sink_wire.py`
holds the mirrors to their models.

msgspec decodes about 2-3x faster than pydantic here and builds no model objects.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

NonNegative = Annotated[int, msgspec.Meta(ge=0)]

# msgspec rounds a timestamp's fraction past 6 digits, pydantic truncates it: such
# values (rare; our encoder never writes them) take the pydantic path.
LONG_FRACTION = re.compile(rb":\d\d\.\d{7}")


class Wire(msgspec.Struct, kw_only=True, gc=False):
    """gc=False: the garbage collector does not track these short-lived, acyclic
    objects (measured: a third off the decode, which allocates a lot)."""


class Event(Wire, kw_only=True):
    schema_version: Literal[1] = 1


# --- schemas.events -------------------------------------------------------------------


class MediaRef(Wire, kw_only=True):
    id: str | None = None
    mime_type: str | None = None
    sha256: str | None = None
    caption: str | None = None
    filename: str | None = None
    url: str | None = None
    voice: bool | None = None
    animated: bool | None = None


class MessageContext(Wire, kw_only=True):
    message_id: str | None = None
    from_: str | None = msgspec.field(default=None, name="from")
    from_by_name: str | None = msgspec.field(default=None, name="from_")
    """The model also takes its field name (populate_by_name): checked the same way."""
    forwarded: bool = False
    frequently_forwarded: bool = False
    referred_product: dict[str, Any] | None = None


class InteractiveReply(Wire, kw_only=True):
    kind: str
    id: str | None = None
    title: str | None = None
    description: str | None = None
    response_json: str | None = None


class Location(Wire, kw_only=True):
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None
    url: str | None = None


class Reaction(Wire, kw_only=True):
    message_id: str
    emoji: str | None = None


class ApiErrorInfo(Wire, kw_only=True):
    code: int | None = None
    title: str | None = None
    message: str | None = None
    details: str | None = None


class MessageReceived(Event, kw_only=True):
    message_id: str
    user_id: str
    wa_id: str | None = None
    bsuid: str | None = None
    parent_bsuid: str | None = None
    username: str | None = None
    profile_name: str | None = None
    identity_key_hash: str | None = None
    group_id: str | None = None
    phone_number_id: str
    display_phone_number: str | None = None
    waba_id: str | None = None
    type: str
    sent_at: datetime
    received_at: datetime
    text: str | None = None
    media: MediaRef | None = None
    location: Location | None = None
    contacts: list[dict[str, Any]] | None = None
    reply: InteractiveReply | None = None
    reaction: Reaction | None = None
    context: MessageContext | None = None
    referral: dict[str, Any] | None = None
    order: dict[str, Any] | None = None
    system: dict[str, Any] | None = None
    errors: list[ApiErrorInfo] = msgspec.field(default_factory=list)
    raw: dict[str, Any]


class StatusReceived(Event, kw_only=True):
    wamid: str
    status: str
    user_id: str
    recipient_id: str | None = None
    bsuid: str | None = None
    parent_bsuid: str | None = None
    username: str | None = None
    phone_number_id: str
    display_phone_number: str | None = None
    waba_id: str | None = None
    status_at: datetime
    received_at: datetime
    conversation_id: str | None = None
    conversation_origin: str | None = None
    conversation_expires_at: datetime | None = None
    pricing_category: str | None = None
    pricing_model: str | None = None
    pricing_type: str | None = None
    billable: bool | None = None
    biz_opaque_callback_data: str | None = None
    errors: list[ApiErrorInfo] = msgspec.field(default_factory=list)
    raw: dict[str, Any]


class WebhookUnrecognized(Event, kw_only=True):
    event_id: str
    reason: str
    field: str | None = None
    received_at: datetime
    raw: Any


# --- schemas.conversation --------------------------------------------------------------


class Session(Event, kw_only=True):
    user_id: str
    wa_id: str | None = None
    bsuid: str | None = None
    phone_number_id: str | None = None
    first_inbound_at: datetime | None = None
    last_inbound_at: datetime | None = None
    turn_count: int = 0
    last_intent: str | None = None
    consecutive_fallbacks: int = 0
    handoff_active: bool = False
    handoff_since: datetime | None = None
    handoff_id: str | None = None
    opted_out: bool = False
    language: str | None = None
    last_turn_id: str | None = None
    updated_at: datetime | None = None


class TurnDecided(Event, kw_only=True):
    turn_id: str
    user_id: str
    wa_id: str | None = None
    bsuid: str | None = None
    phone_number_id: str | None = None
    message_ids: list[str] = msgspec.field(default_factory=list)
    intent: str
    actions: list[dict[str, Any]]
    dropped: list[dict[str, Any]] = msgspec.field(default_factory=list)
    session: Session
    decided_at: datetime
    engine: str
    latency_ms: float


# --- schemas.outbound -------------------------------------------------------------------


class OutboundMessage(Event, kw_only=True):
    outbound_id: str
    user_id: str
    to: str
    phone_number_id: str
    priority: Literal["high", "low"] = "high"
    kind: Literal["text", "interactive", "template", "media", "mark_read"]
    payload: dict[str, Any] = msgspec.field(default_factory=dict)
    reply_to: str | None = None
    turn_id: str
    created_at: datetime
    not_after: datetime | None = None
    attempt: NonNegative = 0
    replay: str | None = None


class SendResult(Event, kw_only=True):
    outbound_id: str
    user_id: str
    turn_id: str | None = None
    wamid: str | None = None
    outcome: Literal["sent", "dead_lettered", "skipped_duplicate", "refused"]
    attempts: NonNegative
    status_code: int | None = None
    error_code: int | None = None
    error_reason: str | None = None
    latency_ms: float | None = None
    sent_at: datetime


class DeadLetter(Event, kw_only=True):
    outbound_id: str
    user_id: str
    reason: str
    error_code: int | None = None
    status_code: int | None = None
    retryable: bool
    attempts: NonNegative = 0
    message: dict[str, Any]
    failed_at: datetime


# --- schemas.processing -------------------------------------------------------------------


class ProcessingDeadLetter(Event, kw_only=True):
    stage: str
    topic: str
    partition: int
    offset: int
    user_id: str | None = None
    error_type: str
    reason: str
    retryable: bool
    attempts: NonNegative = 1
    value_b64: str
    failed_at: datetime


# --- schemas.embeddings -------------------------------------------------------------------


class EmbeddingComputed(Event, kw_only=True):
    message_id: str
    user_id: str
    model: str
    dim: int
    vector_b64: str
    text: str
    at: datetime
    embedded_at: datetime


# --- schemas.handoff --------------------------------------------------------------------


class HandoffEvent(Event, kw_only=True):
    event_id: str
    event: Literal[
        "opened", "notified", "renotified", "agent_reply", "released", "expired", "notify_failed"
    ]
    handoff_id: str | None = None
    user_id: str
    at: datetime
    wa_id: str | None = None
    bsuid: str | None = None
    phone_number_id: str | None = None
    reason: str | None = None
    source: Literal["engine", "agent"] | None = None
    turn_id: str | None = None
    text: str | None = None
    outbound_id: str | None = None
    attempts: int | None = None
    opened_at: datetime | None = None


# --- schemas.reengagement -------------------------------------------------------------


class Reengagement(Event, kw_only=True):
    event: Literal["sent", "returned"]
    reengagement_id: str
    user_id: str
    quiet_since: datetime
    sent_at: datetime
    kind: Literal["text", "template"]
    outbound_id: str
    returned_at: datetime | None = None


# --- schemas.replay -------------------------------------------------------------------


class ReplayDecided(Event, kw_only=True):
    run_id: str
    turn_id: str
    user_id: str
    engine: str
    engine_version: str
    intent: str
    actions: list[dict[str, Any]]
    dropped: list[dict[str, Any]] = msgspec.field(default_factory=list)
    message_ids: list[str] = msgspec.field(default_factory=list)
    original_intent: str | None = None
    decided_at: datetime


class ReplayRunFinished(Event, kw_only=True):
    run_id: str
    started_at: datetime
    finished_at: datetime
    engine: str
    engine_version: str
    topic: str
    selection: dict[str, Any]
    events: int
    turns: int
    changed: int | None = None


# --- schemas.media -------------------------------------------------------------------------


class MediaFetched(Event, kw_only=True):
    media_id: str
    message_id: str
    user_id: str
    phone_number_id: str | None = None
    media_type: str
    status: Literal["stored", "refused", "failed"]
    mime_type: str | None = None
    size_bytes: NonNegative | None = None
    sha256: str | None = None
    path: str | None = None
    filename: str | None = None
    reason: str | None = None
    attempts: NonNegative = 0
    fetched_at: datetime
