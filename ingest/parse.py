"""Cloud API webhook body -> normalized events. Pure: no clock, I/O or settings.

`parse_webhook` never raises. Whatever it cannot turn into a `MessageReceived` or a
`StatusReceived` becomes one `WebhookUnrecognized` holding the smallest raw item that
failed (the body, an entry, a change or a single message/status), so a bad item never
takes its well-formed neighbours down with it and nothing is dropped.

User identity: `user_id` (the partition key) is the phone number (`wa_id`) when Meta
gives it, else the business-scoped user id (BSUID). Field names, from Meta's guide
(developers.facebook.com/documentation/business-messaging/whatsapp/business-scoped-user-ids)
and its messages/status webhook references: `contacts[].user_id` / `.parent_user_id` /
`.profile.username`, `messages[].from_user_id` / `.from_parent_user_id` (`from` may be
absent), `statuses[].recipient_user_id` (`recipient_id` may be absent). Statuses also
carry `contacts`, except failed ones.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import ValidationError

from schemas.events import (
    ApiErrorInfo,
    InteractiveReply,
    Location,
    MediaRef,
    MessageContext,
    MessageReceived,
    Reaction,
    StatusReceived,
    WebhookUnrecognized,
)

WABA_OBJECT = "whatsapp_business_account"
MESSAGES_FIELD = "messages"

Json = dict[str, Any]
E = TypeVar("E", MessageReceived, StatusReceived)


@dataclass(frozen=True, slots=True)
class ParsedWebhook:
    """One body's events, each list in the order Meta sent the items."""

    messages: list[MessageReceived] = field(default_factory=list)
    statuses: list[StatusReceived] = field(default_factory=list)
    unrecognized: list[WebhookUnrecognized] = field(default_factory=list)


def parse_webhook(payload: object, received_at: datetime) -> ParsedWebhook:
    out = _Collector(received_at)
    if not isinstance(payload, dict):
        out.reject(payload, "body is not a JSON object", None)
    elif payload.get("object") != WABA_OBJECT:
        out.reject(payload, f"object is {_brief(payload.get('object'))}, not {WABA_OBJECT}", None)
    elif not isinstance(entries := payload.get("entry"), list):
        out.reject(payload, "entry is not a list", None)
    else:
        for entry in entries:
            _parse_entry(entry, out)
    return out.result


class _Reject(Exception):
    """An item that cannot become an event; the caller keeps it as `WebhookUnrecognized`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Collector:
    def __init__(self, received_at: datetime) -> None:
        self.received_at = received_at
        self.result = ParsedWebhook()
        self._seen: set[str] = set()

    def reject(self, raw: object, reason: str, field_name: str | None) -> None:
        event_id = fingerprint(raw)
        if event_id in self._seen:  # the same junk twice in one body is one record
            return
        self._seen.add(event_id)
        self.result.unrecognized.append(
            WebhookUnrecognized(
                event_id=event_id,
                reason=reason,
                field=field_name,
                received_at=self.received_at,
                raw=raw,
            )
        )


@dataclass(frozen=True, slots=True)
class _Change:
    """What every item of one `messages` change shares."""

    waba_id: str | None
    phone_number_id: str
    display_phone_number: str | None
    contacts: dict[str, Json]  # by wa_id and by BSUID: a body may carry several users
    received_at: datetime

    def contact(self, wa_id: str | None, bsuid: str | None) -> Json:
        found = self.contacts.get(wa_id) if wa_id else None
        if found is None and bsuid:
            found = self.contacts.get(bsuid)
        return found or {}


def _parse_entry(entry: object, out: _Collector) -> None:
    if not isinstance(entry, dict) or not isinstance(changes := entry.get("changes"), list):
        out.reject(entry, "entry has no changes list", None)
        return
    waba_id = _str(entry, "id")
    for change in changes:
        _parse_change(change, waba_id, out)


def _parse_change(change: object, waba_id: str | None, out: _Collector) -> None:
    if not isinstance(change, dict):
        out.reject(change, "change is not an object", None)
        return
    name = change.get("field")
    if name != MESSAGES_FIELD:
        out.reject(change, f"change field {_brief(name)} is not parsed", _str(change, "field"))
        return
    value = _obj(change, "value")
    metadata = _obj(value, "metadata")
    phone_number_id = _str(metadata, "phone_number_id")
    if phone_number_id is None:
        out.reject(change, "messages change has no value.metadata.phone_number_id", name)
        return
    if not (value.get("messages") or value.get("statuses") or value.get("errors")):
        out.reject(change, "messages change has no messages, statuses or errors", name)
        return
    ctx = _Change(
        waba_id=waba_id,
        phone_number_id=phone_number_id,
        display_phone_number=_str(metadata, "display_phone_number"),
        contacts=_contacts_index(value.get("contacts")),
        received_at=out.received_at,
    )
    _parse_items(value, "messages", ctx, out, _message, out.result.messages)
    _parse_items(value, "statuses", ctx, out, _status, out.result.statuses)
    if value.get("errors"):
        # Errors about the whole change (not one message): keep them with their phone number.
        out.reject({"metadata": metadata, "errors": value["errors"]}, "change-level errors", name)


def _parse_items(
    value: Json,
    key: str,
    ctx: _Change,
    out: _Collector,
    build: Callable[[object, _Change], E],
    into: list[E],
) -> None:
    items = value.get(key)
    if items is None:
        return
    if not isinstance(items, list):
        out.reject(items, f"value.{key} is not a list", MESSAGES_FIELD)
        return
    for item in items:
        try:
            into.append(build(item, ctx))
        except _Reject as exc:
            out.reject(item, exc.reason, MESSAGES_FIELD)
        except ValidationError as exc:  # last guard: a shape our helpers let through
            out.reject(
                item, f"invalid {key[:-1]}: {exc.error_count()} bad field(s)", MESSAGES_FIELD
            )


def _message(item: object, ctx: _Change) -> MessageReceived:
    if not isinstance(item, dict):
        raise _Reject("message is not an object")
    message_id, msg_type = _str(item, "id"), _str(item, "type")
    wa_id, bsuid = _str(item, "from"), _str(item, "from_user_id")
    sent_at = _epoch(item.get("timestamp"))
    if message_id is None:
        raise _Reject("message has no id")
    if msg_type is None:
        raise _Reject("message has no type")
    if sent_at is None:
        raise _Reject("message has no valid timestamp")
    contact = ctx.contact(wa_id, bsuid)
    wa_id = wa_id or _str(contact, "wa_id")
    bsuid = bsuid or _str(contact, "user_id")
    user_id = wa_id or bsuid
    if user_id is None:
        raise _Reject("message has no from or from_user_id")
    profile = _obj(contact, "profile")
    content = _CONTENT.get(msg_type, _unknown)(item, _obj(item, msg_type))
    return MessageReceived(
        message_id=message_id,
        user_id=user_id,
        wa_id=wa_id,
        bsuid=bsuid,
        parent_bsuid=_str(item, "from_parent_user_id") or _str(contact, "parent_user_id"),
        username=_str(profile, "username"),
        profile_name=_str(profile, "name"),
        identity_key_hash=_str(contact, "identity_key_hash"),
        group_id=_str(item, "group_id"),
        phone_number_id=ctx.phone_number_id,
        display_phone_number=ctx.display_phone_number,
        waba_id=ctx.waba_id,
        type=msg_type,
        sent_at=sent_at,
        received_at=ctx.received_at,
        text=content.text,
        media=content.media,
        location=content.location,
        contacts=content.contacts,
        reply=content.reply,
        reaction=content.reaction,
        context=_context(_obj(item, "context")),
        referral=_obj(item, "referral") or None,
        order=content.order,
        system=content.system,
        errors=_errors(item.get("errors")),
        raw=item,
    )


def _status(item: object, ctx: _Change) -> StatusReceived:
    if not isinstance(item, dict):
        raise _Reject("status is not an object")
    wamid, status = _str(item, "id"), _str(item, "status")
    status_at = _epoch(item.get("timestamp"))
    if wamid is None:
        raise _Reject("status has no id")
    if status is None:
        raise _Reject("status has no status")
    if status_at is None:
        raise _Reject("status has no valid timestamp")
    recipient_id, bsuid = _str(item, "recipient_id"), _str(item, "recipient_user_id")
    contact = ctx.contact(recipient_id, bsuid)
    recipient_id = recipient_id or _str(contact, "wa_id")
    bsuid = bsuid or _str(contact, "user_id")
    user_id = recipient_id or bsuid
    if user_id is None:  # failed statuses carry no contacts: the item is all we have
        raise _Reject("status has no recipient_id or recipient_user_id")
    conversation, pricing = _obj(item, "conversation"), _obj(item, "pricing")
    billable = pricing.get("billable")
    return StatusReceived(
        wamid=wamid,
        status=status,
        user_id=user_id,
        recipient_id=recipient_id,
        bsuid=bsuid,
        # Meta's pages spell the status field both ways; the contact has it as parent_user_id.
        parent_bsuid=_str(item, "recipient_parent_user_id")
        or _str(item, "parent_recipient_user_id")
        or _str(contact, "parent_user_id"),
        username=_str(_obj(contact, "profile"), "username"),
        phone_number_id=ctx.phone_number_id,
        display_phone_number=ctx.display_phone_number,
        waba_id=ctx.waba_id,
        status_at=status_at,
        received_at=ctx.received_at,
        conversation_id=_str(conversation, "id"),
        conversation_origin=_str(_obj(conversation, "origin"), "type"),
        conversation_expires_at=_epoch(conversation.get("expiration_timestamp")),
        pricing_category=_str(pricing, "category"),
        pricing_model=_str(pricing, "pricing_model"),
        pricing_type=_str(pricing, "type"),
        billable=billable if isinstance(billable, bool) else None,
        biz_opaque_callback_data=_str(item, "biz_opaque_callback_data"),
        errors=_errors(item.get("errors")),
        raw=item,
    )


@dataclass(frozen=True, slots=True)
class _Content:
    """The type-specific part of a message, with `text` as whatever reads as text."""

    text: str | None = None
    media: MediaRef | None = None
    location: Location | None = None
    contacts: list[dict[str, Any]] | None = None
    reply: InteractiveReply | None = None
    reaction: Reaction | None = None
    order: dict[str, Any] | None = None
    system: dict[str, Any] | None = None


def _text(item: Json, body: Json) -> _Content:
    return _Content(text=_str(body, "body"))


def _media(item: Json, body: Json) -> _Content:
    if not body:
        return _Content()
    voice, animated = body.get("voice"), body.get("animated")
    media = MediaRef(
        id=_str(body, "id"),
        mime_type=_str(body, "mime_type"),
        sha256=_str(body, "sha256"),
        caption=_str(body, "caption"),
        filename=_str(body, "filename"),
        url=_str(body, "url"),
        voice=voice if isinstance(voice, bool) else None,
        animated=animated if isinstance(animated, bool) else None,
    )
    return _Content(text=media.caption, media=media)


def _location(item: Json, body: Json) -> _Content:
    lat, lon = _float(body.get("latitude")), _float(body.get("longitude"))
    name, address = _str(body, "name"), _str(body, "address")
    if lat is None or lon is None:  # a pin without coordinates: keep the words, raw keeps the rest
        return _Content(text=name or address)
    location = Location(
        latitude=lat, longitude=lon, name=name, address=address, url=_str(body, "url")
    )
    return _Content(text=name or address, location=location)


def _contacts(item: Json, body: Json) -> _Content:
    cards = item.get("contacts")
    cards = [c for c in cards if isinstance(c, dict)] if isinstance(cards, list) else []
    names = [n for c in cards if (n := _str(_obj(c, "name"), "formatted_name"))]
    return _Content(text=", ".join(names) or None, contacts=cards or None)


def _interactive(item: Json, body: Json) -> _Content:
    kind = _str(body, "type")
    if kind is None:
        return _Content()
    # button_reply {id,title}, list_reply {id,title,description}, nfm_reply (flows)
    # {name,body,response_json}: one shape covers them and any newer reply type.
    choice = _obj(body, kind)
    reply = InteractiveReply(
        kind=kind,
        id=_str(choice, "id"),
        title=_str(choice, "title") or _str(choice, "name"),
        description=_str(choice, "description") or _str(choice, "body"),
        response_json=_str(choice, "response_json"),
    )
    text = _str(choice, "title") or _str(choice, "body")
    return _Content(text=text, reply=reply)


def _button(item: Json, body: Json) -> _Content:
    text = _str(body, "text")
    return _Content(
        text=text, reply=InteractiveReply(kind="button", id=_str(body, "payload"), title=text)
    )


def _reaction(item: Json, body: Json) -> _Content:
    target, emoji = _str(body, "message_id"), _str(body, "emoji")  # no emoji: reaction removed
    return _Content(
        text=emoji, reaction=Reaction(message_id=target, emoji=emoji) if target else None
    )


def _order(item: Json, body: Json) -> _Content:
    return _Content(text=_str(body, "text"), order=body or None)


def _system(item: Json, body: Json) -> _Content:
    return _Content(text=_str(body, "body"), system=body or None)


def _unknown(item: Json, body: Json) -> _Content:
    return _Content()  # unsupported / new types: `type` verbatim, `errors` and `raw` say the rest


_CONTENT: dict[str, Callable[[Json, Json], _Content]] = {
    "text": _text,
    "image": _media,
    "audio": _media,
    "video": _media,
    "document": _media,
    "sticker": _media,
    "location": _location,
    "contacts": _contacts,
    "interactive": _interactive,
    "button": _button,
    "reaction": _reaction,
    "order": _order,
    "system": _system,
}


def _context(ctx: Json) -> MessageContext | None:
    if not ctx:
        return None
    product = _obj(ctx, "referred_product")
    return MessageContext(
        message_id=_str(ctx, "id"),
        from_=_str(ctx, "from"),
        forwarded=ctx.get("forwarded") is True,
        frequently_forwarded=ctx.get("frequently_forwarded") is True,
        referred_product=product or None,
    )


def _errors(errors: object) -> list[ApiErrorInfo]:
    if not isinstance(errors, list):
        return []
    return [
        ApiErrorInfo(
            code=_int(e.get("code")),
            title=_str(e, "title"),
            message=_str(e, "message"),
            details=_str(_obj(e, "error_data"), "details") or _str(e, "details"),
        )
        for e in errors
        if isinstance(e, dict)
    ]


def _contacts_index(contacts: object) -> dict[str, Json]:
    index: dict[str, Json] = {}
    for contact in contacts if isinstance(contacts, list) else ():
        if isinstance(contact, dict):
            for key in ("wa_id", "user_id"):
                if ident := _str(contact, key):
                    index.setdefault(ident, contact)
    return index


def fingerprint(raw: object) -> str:
    """sha256 hex of the canonical JSON of `raw`: the same item always gets the same id."""
    try:
        canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):  # not JSON after all: still deterministic
        canonical = f"{type(raw).__name__}:{_brief(raw)}"
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


# Typed readers: a wrong JSON type reads as "absent" instead of failing validation later.


def _str(obj: Json, key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) and value else None


def _obj(obj: Json, key: str) -> Json:
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def _int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 19:
        return int(value)  # Graph error codes sometimes arrive as strings
    return None


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except (ValueError, OverflowError):
        return None


def _epoch(value: object) -> datetime | None:
    """Meta's epoch seconds (a string, sometimes a number) as an aware UTC datetime."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return datetime.fromtimestamp(int(value), tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None


def _brief(value: object) -> str:
    """A short repr for reasons: junk can be huge, or nested past the recursion limit."""
    try:
        text = repr(value)
    except RecursionError:
        return f"<deeply nested {type(value).__name__}>"
    return text if len(text) <= 60 else text[:57] + "..."
