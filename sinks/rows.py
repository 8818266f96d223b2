"""Pure: events to Arrow tables, one per DuckDB table. No DuckDB here.

Each table has a key (`TABLES[name].key`) that makes loading idempotent: a
redelivered event produces the same key and is ignored on insert.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from schemas.events import MessageReceived, StatusReceived, WebhookUnrecognized

TS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class TableSpec:
    name: str
    schema: pa.Schema
    key: tuple[str, ...]
    json_columns: tuple[str, ...] = ()
    upsert: bool = False
    """Replace the row of an existing key (snapshots) instead of ignoring the new one."""


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


MESSAGES = TableSpec(
    "messages",
    pa.schema(
        [
            ("message_id", pa.string()),
            ("user_id", pa.string()),
            ("wa_id", pa.string()),
            ("bsuid", pa.string()),
            ("phone_number_id", pa.string()),
            ("type", pa.string()),
            ("text", pa.string()),
            ("sent_at", TS),
            ("received_at", TS),
            ("profile_name", pa.string()),
            ("media_id", pa.string()),
            ("reply_id", pa.string()),
            ("context_message_id", pa.string()),
            ("referral", pa.string()),
            ("raw", pa.string()),
        ]
    ),
    key=("message_id",),
    json_columns=("referral", "raw"),
)

STATUSES = TableSpec(
    "statuses",
    pa.schema(
        [
            ("wamid", pa.string()),
            ("status", pa.string()),
            ("user_id", pa.string()),
            ("recipient_id", pa.string()),
            ("phone_number_id", pa.string()),
            ("status_at", TS),
            ("received_at", TS),
            ("conversation_id", pa.string()),
            ("pricing_category", pa.string()),
            ("billable", pa.bool_()),
            ("error_code", pa.int64()),
            ("error_title", pa.string()),
            ("raw", pa.string()),
        ]
    ),
    key=("wamid", "status"),
    json_columns=("raw",),
)

UNRECOGNIZED = TableSpec(
    "unrecognized_webhooks",
    pa.schema(
        [
            ("event_id", pa.string()),
            ("reason", pa.string()),
            ("field", pa.string()),
            ("received_at", TS),
            ("raw", pa.string()),
        ]
    ),
    key=("event_id",),
    json_columns=("raw",),
)

REJECTED = TableSpec(
    "rejected_events",
    pa.schema(
        [
            ("topic", pa.string()),
            ("partition", pa.int32()),
            ("offset", pa.int64()),
            ("reason", pa.string()),
            ("value", pa.string()),
        ]
    ),
    key=("topic", "partition", "offset"),
)

BASE_TABLES = (MESSAGES, STATUSES, UNRECOGNIZED, REJECTED)


def message_row(m: MessageReceived) -> dict[str, Any]:
    return {
        "message_id": m.message_id,
        "user_id": m.user_id,
        "wa_id": m.wa_id,
        "bsuid": m.bsuid,
        "phone_number_id": m.phone_number_id,
        "type": m.type,
        "text": m.text,
        "sent_at": m.sent_at,
        "received_at": m.received_at,
        "profile_name": m.profile_name,
        "media_id": m.media.id if m.media else None,
        "reply_id": m.reply.id if m.reply else None,
        "context_message_id": m.context.message_id if m.context else None,
        "referral": _json(m.referral),
        "raw": _json(m.raw),
    }


def status_row(s: StatusReceived) -> dict[str, Any]:
    first_error = s.errors[0] if s.errors else None
    return {
        "wamid": s.wamid,
        "status": s.status,
        "user_id": s.user_id,
        "recipient_id": s.recipient_id,
        "phone_number_id": s.phone_number_id,
        "status_at": s.status_at,
        "received_at": s.received_at,
        "conversation_id": s.conversation_id,
        "pricing_category": s.pricing_category,
        "billable": s.billable,
        "error_code": first_error.code if first_error else None,
        "error_title": first_error.title if first_error else None,
        "raw": _json(s.raw),
    }


def unrecognized_row(u: WebhookUnrecognized) -> dict[str, Any]:
    return {
        "event_id": u.event_id,
        "reason": u.reason,
        "field": u.field,
        "received_at": u.received_at,
        "raw": _json(u.raw),
    }


def to_arrow(spec: TableSpec, rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Rows to an Arrow table, one row per key within the batch: the first for
    insert-only tables (redeliveries), the last for upsert tables (newest snapshot)."""
    by_key: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        k = tuple(row[c] for c in spec.key)
        if spec.upsert or k not in by_key:
            by_key[k] = row
    unique = list(by_key.values())
    # Column by column: several times faster than Table.from_pylist on dicts.
    columns = [pa.array([row[f.name] for row in unique], type=f.type) for f in spec.schema]
    return pa.Table.from_arrays(columns, schema=spec.schema)


RowFn = Callable[[Any], dict[str, Any]]


def rows_by_table(items: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for table, row in items:
        grouped.setdefault(table, []).append(row)
    return grouped
