"""Pure: rows of the conversation chain's events (turns, sessions, outbound messages,
send results, dead letters). Same contract as `sinks.rows`."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from schemas.conversation import TurnDecided
from schemas.outbound import DeadLetter, OutboundMessage, SendResult
from sinks.rows import TS, TableSpec, _json

TURNS = TableSpec(
    "turns",
    pa.schema(
        [
            ("turn_id", pa.string()),
            ("user_id", pa.string()),
            ("wa_id", pa.string()),
            ("phone_number_id", pa.string()),
            ("intent", pa.string()),
            ("engine", pa.string()),
            ("message_count", pa.int32()),
            ("message_ids", pa.string()),
            ("actions", pa.string()),
            ("dropped", pa.string()),
            ("decided_at", TS),
            ("latency_ms", pa.float64()),
        ]
    ),
    key=("turn_id",),
    json_columns=("message_ids", "actions", "dropped"),
)

SESSIONS = TableSpec(
    "sessions",
    pa.schema(
        [
            ("user_id", pa.string()),
            ("wa_id", pa.string()),
            ("bsuid", pa.string()),
            ("first_inbound_at", TS),
            ("last_inbound_at", TS),
            ("turn_count", pa.int64()),
            ("last_intent", pa.string()),
            ("consecutive_fallbacks", pa.int64()),
            ("handoff_active", pa.bool_()),
            ("opted_out", pa.bool_()),
            ("language", pa.string()),
            ("last_turn_id", pa.string()),
            ("updated_at", TS),
        ]
    ),
    key=("user_id",),
    upsert=True,  # the latest snapshot wins: a user's decisions arrive in order
)

OUTBOUND = TableSpec(
    "outbound_messages",
    pa.schema(
        [
            ("outbound_id", pa.string()),
            ("user_id", pa.string()),
            ("turn_id", pa.string()),
            ("priority", pa.string()),
            ("kind", pa.string()),
            ("reply_to", pa.string()),
            ("payload", pa.string()),
            ("created_at", TS),
        ]
    ),
    key=("outbound_id",),
    json_columns=("payload",),
)

SEND_RESULTS = TableSpec(
    "send_results",
    pa.schema(
        [
            ("outbound_id", pa.string()),
            ("outcome", pa.string()),
            ("user_id", pa.string()),
            ("turn_id", pa.string()),
            ("wamid", pa.string()),
            ("attempts", pa.int32()),
            ("status_code", pa.int32()),
            ("error_code", pa.int64()),
            ("error_reason", pa.string()),
            ("latency_ms", pa.float64()),
            ("sent_at", TS),
        ]
    ),
    key=("outbound_id", "outcome"),
)

DEAD_LETTERS = TableSpec(
    "dead_letters",
    pa.schema(
        [
            ("outbound_id", pa.string()),
            ("user_id", pa.string()),
            ("reason", pa.string()),
            ("error_code", pa.int64()),
            ("status_code", pa.int32()),
            ("retryable", pa.bool_()),
            ("attempts", pa.int32()),
            ("message", pa.string()),
            ("failed_at", TS),
        ]
    ),
    key=("outbound_id",),
    json_columns=("message",),
)


def turn_row(t: TurnDecided) -> dict[str, Any]:
    return {
        "turn_id": t.turn_id,
        "user_id": t.user_id,
        "wa_id": t.wa_id,
        "phone_number_id": t.phone_number_id,
        "intent": t.intent,
        "engine": t.engine,
        "message_count": len(t.message_ids),
        "message_ids": _json(t.message_ids),
        "actions": _json(t.actions),
        "dropped": _json(t.dropped),
        "decided_at": t.decided_at,
        "latency_ms": t.latency_ms,
    }


def session_row(t: TurnDecided) -> dict[str, Any]:
    s = t.session
    return {
        "user_id": s.user_id,
        "wa_id": s.wa_id,
        "bsuid": s.bsuid,
        "first_inbound_at": s.first_inbound_at,
        "last_inbound_at": s.last_inbound_at,
        "turn_count": s.turn_count,
        "last_intent": s.last_intent,
        "consecutive_fallbacks": s.consecutive_fallbacks,
        "handoff_active": s.handoff_active,
        "opted_out": s.opted_out,
        "language": s.language,
        "last_turn_id": s.last_turn_id,
        "updated_at": s.updated_at,
    }


def outbound_row(m: OutboundMessage) -> dict[str, Any]:
    return {
        "outbound_id": m.outbound_id,
        "user_id": m.user_id,
        "turn_id": m.turn_id,
        "priority": m.priority,
        "kind": m.kind,
        "reply_to": m.reply_to,
        "payload": _json(m.payload),
        "created_at": m.created_at,
    }


def send_result_row(r: SendResult) -> dict[str, Any]:
    return {
        "outbound_id": r.outbound_id,
        "outcome": r.outcome,
        "user_id": r.user_id,
        "turn_id": r.turn_id,
        "wamid": r.wamid,
        "attempts": r.attempts,
        "status_code": r.status_code,
        "error_code": r.error_code,
        "error_reason": r.error_reason,
        "latency_ms": r.latency_ms,
        "sent_at": r.sent_at,
    }


def dead_letter_row(d: DeadLetter) -> dict[str, Any]:
    return {
        "outbound_id": d.outbound_id,
        "user_id": d.user_id,
        "reason": d.reason,
        "error_code": d.error_code,
        "status_code": d.status_code,
        "retryable": d.retryable,
        "attempts": d.attempts,
        "message": _json(d.message),
        "failed_at": d.failed_at,
    }


# Delivery state per outbound message: statuses arrive out of order and repeated, so
# the state is the furthest step seen (it only moves forward) and each step keeps the
# time it first happened.
DELIVERY_VIEW = """
CREATE OR REPLACE VIEW message_delivery AS
WITH steps AS (
    SELECT wamid,
           min(status_at) FILTER (WHERE status = 'sent') AS sent_at,
           min(status_at) FILTER (WHERE status = 'delivered') AS delivered_at,
           min(status_at) FILTER (WHERE status = 'read') AS read_at,
           min(status_at) FILTER (WHERE status = 'failed') AS failed_at,
           max(CASE status WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2 WHEN 'read' THEN 3
                           WHEN 'played' THEN 3 ELSE 0 END) AS step,
           bool_or(status = 'failed') AS failed,
           any_value(error_code) FILTER (WHERE status = 'failed') AS error_code
    FROM statuses GROUP BY wamid
)
SELECT o.outbound_id, o.user_id, o.turn_id, o.priority, o.kind, o.created_at,
       r.wamid, r.sent_at AS accepted_at, r.latency_ms AS api_latency_ms,
       s.sent_at, s.delivered_at, s.read_at, s.failed_at, s.error_code,
       CASE WHEN s.failed THEN 'failed'
            WHEN s.step = 3 THEN 'read' WHEN s.step = 2 THEN 'delivered'
            WHEN s.step = 1 THEN 'sent'
            WHEN r.outbound_id IS NOT NULL THEN 'accepted'
            WHEN d.outbound_id IS NOT NULL THEN 'dead_lettered'
            ELSE 'pending' END AS state
FROM outbound_messages o
LEFT JOIN send_results r ON r.outbound_id = o.outbound_id AND r.outcome = 'sent'
LEFT JOIN steps s ON s.wamid = r.wamid
LEFT JOIN dead_letters d ON d.outbound_id = o.outbound_id
"""
