"""The Graph API shapes the sandbox speaks: error bodies, request checks, status webhooks.

Pure (no I/O, no clock: `now` is passed in), so the shapes can be tested alone and
the sandbox app (`zapstream.sandbox.app`) stays about wiring. Bodies follow Meta's
documented forms: errors as `{"error": {message, type, code, error_data:
{messaging_product, details}, error_subcode?, fbtrace_id}}`, statuses as the
`messages` webhook with a `statuses` item (conversation and pricing on sent and
delivered, `recipient_user_id` instead of `recipient_id` for a BSUID send).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

VERSION = re.compile(r"v\d+\.\d+")
MEDIA_TYPES = ("image", "audio", "video", "document", "sticker")
# type -> keys its object must carry
REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "text": ("body",),
    "interactive": ("type", "action"),
    "template": ("name", "language"),
    "location": ("latitude", "longitude"),
    "reaction": ("message_id",),
    "contacts": (),
}


@dataclass(frozen=True, slots=True)
class CannedError:
    """One Graph error answer: HTTP status and the `error` object's fields."""

    status: int
    code: int
    message: str
    details: str | None = None
    type: str = "OAuthException"
    subcode: int | None = None

    def body(self, details: str | None = None) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.type, "code": self.code}
        if (details or self.details) is not None:
            error["error_data"] = {
                "messaging_product": "whatsapp",
                "details": details or self.details,
            }
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        error["fbtrace_id"] = "A" + secrets.token_urlsafe(16)
        return {"error": error}


BAD_TOKEN = CannedError(401, 190, "Invalid OAuth access token - Cannot parse access token")
UNKNOWN_PATH = CannedError(400, 2500, "Unknown path components")
UNKNOWN_PHONE_NUMBER = CannedError(
    400,
    100,
    "Unsupported post request. Object with the given ID does not exist, cannot be loaded "
    "due to missing permissions, or does not support this operation.",
    type="GraphMethodException",
    subcode=33,
)
INVALID_PARAMETER = CannedError(400, 100, "(#100) Invalid parameter")
UNKNOWN_OBJECT = CannedError(
    400,
    100,
    "Unsupported get request. Object with the given ID does not exist, cannot be loaded "
    "due to missing permissions, or does not support this operation.",
    type="GraphMethodException",
    subcode=33,
)
SERVER_ERROR = CannedError(500, 131000, "(#131000) Something went wrong", "Sandbox: injected")
THROTTLED = CannedError(
    429,
    130429,
    "(#130429) Rate limit hit",
    "Message failed to send because there were too many messages sent from this phone "
    "number in a short period of time",
    subcode=2494055,
)
PAIR_RATE = CannedError(
    400,
    131056,
    "(#131056) (Business Account, Consumer Account) pair rate limit hit",
    "Message failed to send because there were too many messages sent from this phone "
    "number to the same phone number in a short period of time",
)
UNDELIVERABLE = CannedError(
    400, 131026, "(#131026) Message undeliverable", "Message Undeliverable."
)
OUTSIDE_WINDOW = CannedError(
    400,
    131047,
    "(#131047) Re-engagement message",
    "Message failed to send because more than 24 hours have passed since the customer last "
    "replied to this number.",
)


def recipient_of(body: dict[str, Any]) -> tuple[str, bool]:
    """(recipient, is_bsuid): `to` wins over `recipient`, as on the Graph API."""
    if isinstance(body.get("to"), str) and body["to"]:
        return body["to"], False
    return str(body.get("recipient", "")), True


def shape_error(body: Any) -> str | None:
    """Why `body` is not a valid send request, in Graph's words (None: it is valid)."""
    if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
        return "The parameter messaging_product is required and must be 'whatsapp'."
    if not recipient_of(body)[0]:
        return "The parameter to is required."
    if body.get("recipient_type", "individual") != "individual":
        return "Param recipient_type must be 'individual'."
    type_ = body.get("type", "text")
    if type_ not in REQUIRED_KEYS and type_ not in MEDIA_TYPES:
        return f"Param type must be one of {sorted((*REQUIRED_KEYS, *MEDIA_TYPES))}."
    obj = body.get(type_)
    if type_ == "contacts":
        return None if isinstance(obj, list) and obj else "Param contacts is required."
    if not isinstance(obj, dict):
        return f"The parameter {type_} is required."
    if type_ in MEDIA_TYPES and not (obj.get("id") or obj.get("link")):
        return f"Param {type_} must have an id or a link."
    missing = [k for k in REQUIRED_KEYS.get(type_, ()) if obj.get(k) in (None, "")]
    if missing:
        return f"Param {type_}['{missing[0]}'] is required."
    context = body.get("context")
    if context is not None and not (isinstance(context, dict) and context.get("message_id")):
        return "Param context['message_id'] is required."
    return None


def status_payload(
    status: str,
    *,
    wamid: str,
    request: dict[str, Any],
    now: int,
    waba_id: str,
    phone_number_id: str,
    display_phone_number: str,
) -> dict[str, Any]:
    """The `messages` webhook Meta posts when a sent message changes `status`."""
    recipient, is_bsuid = recipient_of(request)
    is_template = request.get("type") == "template"
    item: dict[str, Any] = {"id": wamid, "status": status, "timestamp": str(now)}
    item["recipient_user_id" if is_bsuid else "recipient_id"] = recipient
    if status != "read":  # conversation and pricing come with sent and delivered
        category = "utility" if is_template else "service"
        conversation: dict[str, Any] = {
            "id": hashlib.sha256(f"{waba_id}:{recipient}".encode()).hexdigest()[:32],
            "origin": {"type": category},
        }
        if status == "sent":
            conversation["expiration_timestamp"] = str(now + 24 * 3600)
        item["conversation"] = conversation
        item["pricing"] = {
            "billable": is_template,
            "pricing_model": "PMP",
            "category": category,
            "type": "regular" if is_template else "free_customer_service",
        }
    if isinstance(request.get("biz_opaque_callback_data"), str):
        item["biz_opaque_callback_data"] = request["biz_opaque_callback_data"]
    value = {
        "messaging_product": "whatsapp",
        "metadata": {
            "display_phone_number": display_phone_number,
            "phone_number_id": phone_number_id,
        },
        "statuses": [item],
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "changes": [{"value": value, "field": "messages"}]}],
    }


def send_response(wamid: str, request: dict[str, Any]) -> dict[str, Any]:
    """Graph's answer to an accepted send (`user_id` instead of `wa_id` for a BSUID)."""
    recipient, is_bsuid = recipient_of(request)
    contact = {"input": recipient, ("user_id" if is_bsuid else "wa_id"): recipient}
    return {"messaging_product": "whatsapp", "contacts": [contact], "messages": [{"id": wamid}]}
