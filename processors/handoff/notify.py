"""Pure: the helpdesk notification, its signature, and the notifier's ledger.

A notification is `POST HELPDESK_WEBHOOK_URL` with a JSON body and

    X-Zapstream-Signature: sha256=<hex HMAC-SHA256(HELPDESK_SECRET, raw body)>
    X-Zapstream-Delivery:  <delivery id>   (the same for every retry of one notification)
    X-Zapstream-Event:     handoff.opened | handoff.renotify

The body of one delivery is the same bytes on every attempt and every redelivery
(keys sorted, no send time in it), so a receiver may dedupe on the delivery id.

The ledger (the worker table `notified`, keyed by handoff id, one entry per open
handoff) says how far the notifier got: `sending` is stored (and acknowledged)
before the first post, `notified` after it. A redelivered `opened` event finds
`notified` and posts nothing; one that finds `sending` (a crash mid-post) posts again
with the same delivery id, and so does one that finds `failed` (the event replayed
from its dead letter once the helpdesk is back). The entry's `due` is when to renotify.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal

import orjson

from schemas.handoff import HandoffEvent

SIGNATURE_HEADER = "X-Zapstream-Signature"
DELIVERY_HEADER = "X-Zapstream-Delivery"
EVENT_HEADER = "X-Zapstream-Event"

Kind = Literal["opened", "renotify"]
LedgerState = Literal[
    "open", "sending", "notified", "renotifying", "renotified", "failed", "closed"
]
"""`open`: a handoff with no helpdesk to notify (HELPDESK_WEBHOOK_URL unset); `closed`:
released or expired. Every other state is an open handoff too."""
STATES: tuple[str, ...] = (
    "open", "sending", "notified", "renotifying", "renotified", "failed", "closed"
)  # fmt: skip


def sign(secret: str, body: bytes) -> str:
    """The `X-Zapstream-Signature` value of `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_valid(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver checks (constant time). Receivers in other languages: the hex
    HMAC-SHA256 of the raw body bytes, keyed with the secret, after `sha256=`."""
    if not header or not secret:
        return False
    return hmac.compare_digest(header.encode(), sign(secret, body).encode())


def delivery_id(handoff_id: str, kind: Kind) -> str:
    return f"{handoff_id}.{kind}"


def notification_body(opened: HandoffEvent, kind: Kind) -> bytes:
    """The JSON posted for the `opened` event of a handoff (first time or renotify)."""
    doc = {
        "event": f"handoff.{kind}",
        "delivery_id": delivery_id(opened.handoff_id or "", kind),
        "handoff_id": opened.handoff_id,
        "user_id": opened.user_id,
        "wa_id": opened.wa_id,
        "bsuid": opened.bsuid,
        "phone_number_id": opened.phone_number_id,
        "reason": opened.reason,
        "source": opened.source,
        "turn_id": opened.turn_id,
        "text": opened.text,
        "opened_at": (opened.opened_at or opened.at).isoformat(),
    }
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def headers(secret: str, body: bytes, opened: HandoffEvent, kind: Kind) -> dict[str, str]:
    return {
        "content-type": "application/json",
        SIGNATURE_HEADER: sign(secret, body),
        DELIVERY_HEADER: delivery_id(opened.handoff_id or "", kind),
        EVENT_HEADER: f"handoff.{kind}",
    }


def classify(status: int) -> Literal["ok", "retry", "refused"]:
    """2xx taken; 408, 429 and 5xx worth another try; any other answer refused for good."""
    if 200 <= status < 300:
        return "ok"
    if status in (408, 429) or status >= 500:
        return "retry"
    return "refused"


def retry_after_s(value: str | None, cap: float) -> float | None:
    """A `Retry-After` header in seconds (its date form is not used), capped."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return min(max(seconds, 0.0), cap)


@dataclass(frozen=True)
class LedgerEntry:
    """The notifier's record of one handoff: how far it got, and the `opened` event
    (to build a renotification from, and the key of its user)."""

    state: LedgerState
    opened: HandoffEvent

    def encode(self) -> bytes:
        return self.state.encode() + b" " + self.opened.model_dump_json().encode()

    @classmethod
    def decode(cls, data: bytes) -> LedgerEntry:
        state, _, event = data.partition(b" ")
        if state.decode() not in STATES:
            raise ValueError(f"unknown ledger state {state!r}")
        return cls(state.decode(), HandoffEvent.model_validate_json(event))  # type: ignore[arg-type]


def should_post(state: LedgerState | None, kind: Kind) -> bool:
    """Whether the notifier posts for an `opened` event (kind "opened") or a renotify
    request, given the handoff's ledger state: never twice once the helpdesk took it,
    again after a crash mid-post (same delivery id) or a replay of a dead letter."""
    if kind == "opened":
        return state in (None, "sending", "failed")
    return state in ("notified", "renotifying")


def is_open(value_payload: bytes) -> bool:
    """Whether a ledger payload belongs to a handoff still open (read without decoding)."""
    return not value_payload.startswith(b"closed ")


def renotify_due(opened: HandoffEvent, renotify_s: float) -> float:
    """Epoch seconds when a still-open handoff is notified again (0: never)."""
    if renotify_s <= 0:
        return 0.0
    return (opened.opened_at or opened.at).timestamp() + renotify_s


def ledger_ttl_s(renotify_s: float, expire_s: float) -> float:
    """How long an entry is kept after its handoff opened: past the renotification and
    the handoff's own expiry (7 days when handoffs never expire), plus an hour."""
    return max(renotify_s, expire_s or 7 * 24 * 3600) + 3600
