"""Pure: one event to one row (a tuple in its table's column order, `sinks.tables`).

Each function reads attributes only, so it takes the msgspec mirror (`sinks.wire`,
the fast path) and the pydantic model (`schemas.*`, the careful path) alike and
makes the same row from both. JSON columns hold the text `json.dumps(value,
ensure_ascii=False)` makes, as they always have.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import datetime
from json import encoder as _json_encoder
from typing import Any

import numpy as np

from sinks import wire

Row = tuple[Any, ...]
RowFn = Callable[[Any], Row]

# The C encoder json.dumps(value, ensure_ascii=False, default=str) builds on every
# call, built once (half the cost of a call). No circular check: decoded JSON has no
# cycles. `tests/unit/test_sink_rows.py` holds it to json.dumps.
_make_encoder = getattr(_json_encoder, "c_make_encoder", None)
_encode: Callable[[Any, int], Any] | None = (
    _make_encoder(None, str, _json_encoder.encode_basestring, None, ": ", ", ", False, False, True)
    if _make_encoder is not None
    else None
)


def json_text(value: Any) -> str | None:
    """`json.dumps(value, ensure_ascii=False, default=str)`; None stays NULL."""
    if value is None:
        return None
    if _encode is not None and isinstance(value, dict | list):
        return "".join(_encode(value, 0))
    return json.dumps(value, ensure_ascii=False, default=str)


def message_row(m: Any) -> Row:
    return (
        m.message_id,
        m.user_id,
        m.wa_id,
        m.bsuid,
        m.phone_number_id,
        m.type,
        m.text,
        m.sent_at,
        m.received_at,
        m.profile_name,
        m.media.id if m.media else None,
        m.reply.id if m.reply else None,
        m.context.message_id if m.context else None,
        json_text(m.referral),
        json_text(m.raw),
    )


def status_row(s: Any) -> Row:
    first_error = s.errors[0] if s.errors else None
    return (
        s.wamid,
        s.status,
        s.user_id,
        s.recipient_id,
        s.phone_number_id,
        s.status_at,
        s.received_at,
        s.conversation_id,
        s.pricing_category,
        s.billable,
        first_error.code if first_error else None,
        first_error.title if first_error else None,
        json_text(s.raw),
    )


def unrecognized_row(u: Any) -> Row:
    return (u.event_id, u.reason, u.field, u.received_at, json_text(u.raw))


SESSION_FIELDS: tuple[str, ...] = wire.Session.__struct_fields__
"""`schemas.conversation.Session`'s fields (its mirror's, which the tests hold to it),
as `turns.session` keeps them."""


def session_json(s: Any) -> str:
    """The session after a turn as JSON (`Session.model_validate_json` reads it back:
    `zapstream replay` starts each user from it)."""
    doc = {}
    for name in SESSION_FIELDS:
        value = getattr(s, name, None)
        doc[name] = value.isoformat() if isinstance(value, datetime) else value
    return "".join(_encode(doc, 0)) if _encode is not None else json.dumps(doc)


def turn_row(t: Any) -> Row:
    return (
        t.turn_id,
        t.user_id,
        t.wa_id,
        t.phone_number_id,
        t.intent,
        t.engine,
        len(t.message_ids),
        json_text(t.message_ids),
        json_text(t.actions),
        json_text(t.dropped),
        t.decided_at,
        t.latency_ms,
        session_json(t.session),
    )


def session_row(t: Any) -> Row:
    s = t.session
    return (
        s.user_id,
        s.wa_id,
        s.bsuid,
        s.first_inbound_at,
        s.last_inbound_at,
        s.turn_count,
        s.last_intent,
        s.consecutive_fallbacks,
        s.handoff_active,
        s.opted_out,
        s.language,
        s.last_turn_id,
        s.updated_at,
    )


def outbound_row(m: Any) -> Row:
    return (
        m.outbound_id,
        m.user_id,
        m.turn_id,
        m.priority,
        m.kind,
        m.reply_to,
        json_text(m.payload),
        m.created_at,
    )


def send_result_row(r: Any) -> Row:
    return (
        r.outbound_id,
        r.outcome,
        r.user_id,
        r.turn_id,
        r.wamid,
        r.attempts,
        r.status_code,
        r.error_code,
        r.error_reason,
        r.latency_ms,
        r.sent_at,
    )


def dead_letter_row(d: Any) -> Row:
    return (
        d.outbound_id,
        d.user_id,
        d.reason,
        d.error_code,
        d.status_code,
        d.retryable,
        d.attempts,
        json_text(d.message),
        d.failed_at,
    )


def processing_dead_letter_row(d: Any) -> Row:
    value = base64.b64decode(d.value_b64).decode("utf-8", "replace")
    return (
        d.stage,
        d.topic,
        d.partition,
        d.offset,
        d.user_id,
        d.error_type,
        d.reason,
        d.retryable,
        d.attempts,
        value,
        d.value_b64,
        d.failed_at,
    )


def embedding_row(e: Any) -> Row:
    """The vector as a list of floats (float32 values; Arrow makes a list of float32)."""
    vector = np.frombuffer(base64.b64decode(e.vector_b64, validate=True), dtype="<f4").tolist()
    return (e.message_id, e.user_id, e.model, e.dim, vector, e.text, e.at, e.embedded_at)


def handoff_event_row(e: Any) -> Row:
    return (
        e.event_id,
        e.event,
        e.handoff_id,
        e.user_id,
        e.at,
        e.reason,
        e.source,
        e.turn_id,
        e.outbound_id,
        e.attempts,
        e.opened_at,
    )


def reengagement_row(r: Any) -> Row:
    return (
        r.reengagement_id,
        r.user_id,
        r.quiet_since,
        r.sent_at,
        r.kind,
        r.outbound_id,
        r.returned_at,
    )


def replay_decision_row(d: Any) -> Row:
    return (
        d.run_id,
        d.turn_id,
        d.user_id,
        d.engine,
        d.engine_version,
        d.intent,
        json_text(d.actions),
        json_text(d.dropped),
        json_text(d.message_ids),
        d.original_intent,
        d.decided_at,
    )


def replay_run_row(r: Any) -> Row:
    return (
        r.run_id,
        r.started_at,
        r.finished_at,
        r.engine,
        r.engine_version,
        r.topic,
        json_text(r.selection),
        r.events,
        r.turns,
        r.changed,
    )


def media_row(m: Any) -> Row:
    return (
        m.media_id,
        m.message_id,
        m.user_id,
        m.mime_type,
        m.size_bytes,
        m.sha256,
        m.path,
        m.status,
        m.reason,
        m.fetched_at,
        m.media_type,
        m.filename,
        m.attempts,
    )
