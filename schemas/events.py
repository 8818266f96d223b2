"""Versioned event records: what flows between ingest, processors and sinks.

One encoding everywhere: UTF-8 JSON of these pydantic models (`encode`/`decode` in
`schemas.codec`). Rules (see STYLE.md): each record carries `schema_version`; an
additive change (a new optional field with a default) keeps the version; a breaking
change is a new version plus an upgrade function in `schemas.codec`; fields are never
renamed or reused. Unknown fields are ignored on decode so old readers survive new
writers; every record keeps the raw Cloud API JSON it came from.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field

from schemas.codec import decode
from zapstream.errors import InvalidPayload


class Event(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    KIND: ClassVar[str] = "event"

    schema_version: int = 1

    @property
    def key(self) -> str | None:
        """The Kafka key: the user, so one user's events keep their order."""
        return None


class MediaRef(BaseModel):
    """A media object of an inbound message (fetch it with GET /{id} on the Graph API)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    id: str | None = None
    mime_type: str | None = None
    sha256: str | None = None
    caption: str | None = None
    filename: str | None = None
    url: str | None = None
    voice: bool | None = None
    animated: bool | None = None


class MessageContext(BaseModel):
    """`context`: the message this one replies to, or forwarding / product context."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)
    message_id: str | None = None
    from_: str | None = Field(default=None, alias="from")
    forwarded: bool = False
    frequently_forwarded: bool = False
    referred_product: dict[str, Any] | None = None


class InteractiveReply(BaseModel):
    """The user's choice: an interactive button/list reply, a template quick-reply button,
    or a flow (nfm) reply whose answers are in `response_json`."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    kind: str
    id: str | None = None
    title: str | None = None
    description: str | None = None
    response_json: str | None = None


class Location(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None
    url: str | None = None


class Reaction(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    message_id: str
    emoji: str | None = None
    """None (or empty) when the user removed the reaction."""


class ApiErrorInfo(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    code: int | None = None
    title: str | None = None
    message: str | None = None
    details: str | None = None


class MessageReceived(Event):
    """One inbound message from a WhatsApp user (webhook field `messages`)."""

    KIND: ClassVar[str] = "message_received"
    schema_version: Literal[1] = 1
    message_id: str
    user_id: str
    """The partition key: `wa_id` when Meta gives the phone number, else the BSUID."""
    wa_id: str | None = None
    bsuid: str | None = None
    """Business-scoped user id (`user_id` in Cloud API payloads)."""
    parent_bsuid: str | None = None
    """Parent BSUID (`from_parent_user_id`), only when parent BSUIDs are enabled."""
    username: str | None = None
    profile_name: str | None = None
    identity_key_hash: str | None = None
    """`contacts[].identity_key_hash`, only when the identity change check is enabled."""
    group_id: str | None = None
    """Set when the message was sent in a group chat (`from` is then the participant)."""
    phone_number_id: str
    display_phone_number: str | None = None
    waba_id: str | None = None
    type: str
    sent_at: datetime
    """The user's send time (Meta's `timestamp`)."""
    received_at: datetime
    """When our webhook accepted it."""
    text: str | None = None
    """Text body, caption, interactive title, reaction emoji... whatever reads as text."""
    media: MediaRef | None = None
    location: Location | None = None
    contacts: list[dict[str, Any]] | None = None
    reply: InteractiveReply | None = None
    reaction: Reaction | None = None
    context: MessageContext | None = None
    referral: dict[str, Any] | None = None
    order: dict[str, Any] | None = None
    system: dict[str, Any] | None = None
    errors: list[ApiErrorInfo] = Field(default_factory=list)
    raw: dict[str, Any]
    """The message item exactly as Meta sent it (unknown types live on here)."""

    @property
    def key(self) -> str:
        return self.user_id


class StatusReceived(Event):
    """A delivery status of one of our outbound messages (webhook `statuses`)."""

    KIND: ClassVar[str] = "status_received"
    schema_version: Literal[1] = 1
    wamid: str
    """The id the Graph API returned when we sent the message."""
    status: str
    """sent | delivered | read | failed | deleted | played (kept verbatim if new)."""
    user_id: str
    recipient_id: str | None = None
    bsuid: str | None = None
    parent_bsuid: str | None = None
    """Parent BSUID (`recipient_parent_user_id` or `contacts[].parent_user_id`)."""
    username: str | None = None
    """`contacts[].profile.username`: only on delivered/read, and only if the user has one."""
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
    """`pricing.type` (per-message pricing): regular | free_customer_service | free_entry_point."""
    billable: bool | None = None
    biz_opaque_callback_data: str | None = None
    errors: list[ApiErrorInfo] = Field(default_factory=list)
    raw: dict[str, Any]

    @property
    def key(self) -> str:
        return self.user_id

    @property
    def event_id(self) -> str:
        """Unique per (message, status): the sink's idempotency key."""
        return f"{self.wamid}:{self.status}"


class WebhookUnrecognized(Event):
    """A correctly signed body, or part of one, of a shape we do not understand.

    Kept raw on its own topic, never dropped, so it can be replayed once the parser
    learns it."""

    KIND: ClassVar[str] = "webhook_unrecognized"
    schema_version: Literal[1] = 1
    event_id: str
    """sha256 of the raw item: redelivery of the same body makes the same id."""
    reason: str
    field: str | None = None
    received_at: datetime
    raw: Any


class _StatusIds(msgspec.Struct):
    schema_version: int = 1
    wamid: str | None = None
    biz_opaque_callback_data: str | None = None


_STATUS_IDS = msgspec.json.Decoder(_StatusIds)
_STATUS_VERSION = StatusReceived.model_fields["schema_version"].default


def status_ids(data: bytes) -> tuple[str | None, str]:
    """(`biz_opaque_callback_data`, `wamid`) of a `StatusReceived` record, without
    building the model: an in-doubt send's lookup (`processors.status_scan`) reads
    every status since the send and needs only these two.
    Another schema version goes through `decode`. InvalidPayload if it is no status."""
    try:
        ids = _STATUS_IDS.decode(data)
    except msgspec.DecodeError as exc:
        raise InvalidPayload(f"{StatusReceived.KIND}: {exc}") from exc
    if ids.schema_version != _STATUS_VERSION or ids.wamid is None:
        status = decode(StatusReceived, data)  # upgrades, or says what is wrong
        return status.biz_opaque_callback_data, status.wamid
    return ids.biz_opaque_callback_data, ids.wamid
