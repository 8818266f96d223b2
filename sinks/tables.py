"""Every DuckDB table the sink writes: columns, key, JSON columns, how a key is merged.

Each table has a key that makes loading idempotent: a redelivered event makes the same
key and adds nothing (`INSERT OR IGNORE`; within one batch the first row of a key is
kept). A table with `latest_by` holds snapshots instead: of the rows of one key, the
one greatest by those columns wins (NULL counts as oldest; on a tie the later one),
whichever order they arrive in, in one batch or across batches.

A column added here is added to an existing DuckDB file when the sink starts
(`sinks.migrate`); every column but the key's is nullable.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class TableSpec:
    name: str
    schema: pa.Schema
    key: tuple[str, ...]
    json_columns: tuple[str, ...] = ()
    latest_by: tuple[str, ...] = ()
    """Snapshots: the row of a key greatest by these columns wins (upsert)."""
    duck_types: tuple[tuple[str, str], ...] = ()
    """(column, DuckDB type) where the type is not the Arrow type's (`sinks.migrate`):
    e.g. a fixed-size `FLOAT[384]` filled from an Arrow list of float32."""

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)


def _spec(name: str, columns: list[tuple[str, pa.DataType]], **kw: tuple[str, ...]) -> TableSpec:
    return TableSpec(name, pa.schema(columns), **kw)  # type: ignore[arg-type]


MESSAGES = _spec(
    "messages",
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
    ],
    key=("message_id",),
    json_columns=("referral", "raw"),
)

STATUSES = _spec(
    "statuses",
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
    ],
    key=("wamid", "status"),
    json_columns=("raw",),
)

UNRECOGNIZED = _spec(
    "unrecognized_webhooks",
    [
        ("event_id", pa.string()),
        ("reason", pa.string()),
        ("field", pa.string()),
        ("received_at", TS),
        ("raw", pa.string()),
    ],
    key=("event_id",),
    json_columns=("raw",),
)

TURNS = _spec(
    "turns",
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
        ("session", pa.string()),
    ],
    key=("turn_id",),
    json_columns=("message_ids", "actions", "dropped", "session"),
)

SESSIONS = _spec(
    "sessions",
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
    ],
    key=("user_id",),
    latest_by=("updated_at", "turn_count"),
)

OUTBOUND = _spec(
    "outbound_messages",
    [
        ("outbound_id", pa.string()),
        ("user_id", pa.string()),
        ("turn_id", pa.string()),
        ("priority", pa.string()),
        ("kind", pa.string()),
        ("reply_to", pa.string()),
        ("payload", pa.string()),
        ("created_at", TS),
    ],
    key=("outbound_id",),
    json_columns=("payload",),
)

SEND_RESULTS = _spec(
    "send_results",
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
    ],
    key=("outbound_id", "outcome"),
)

DEAD_LETTERS = _spec(
    "dead_letters",
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
    ],
    key=("outbound_id",),
    json_columns=("message",),
)

PROCESSING_DEAD_LETTERS = _spec(
    "processing_dead_letters",
    [
        ("stage", pa.string()),
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("user_id", pa.string()),
        ("error_type", pa.string()),
        ("reason", pa.string()),
        ("retryable", pa.bool_()),
        ("attempts", pa.int32()),
        ("value", pa.string()),
        ("value_b64", pa.string()),
        ("failed_at", TS),
    ],
    key=("stage", "topic", "partition", "offset"),
)

DEFAULT_EMBEDDING_DIM = 384  # all-MiniLM-L6-v2, the packaged default model


def embeddings_spec(dim: int = DEFAULT_EMBEDDING_DIM) -> TableSpec:
    """One vector per message (`schemas.embeddings.EmbeddingComputed`). `vector` is a
    fixed-size `FLOAT[dim]`, dim taken from EMBEDDING_MODEL when the table is created
    (`sinks.service`); a vector of another size is refused by DuckDB and lands in
    `sink_dead_letters` with the reason. `at` is the message's time."""
    return TableSpec(
        "embeddings",
        pa.schema(
            [
                ("message_id", pa.string()),
                ("user_id", pa.string()),
                ("model", pa.string()),
                ("dim", pa.int32()),
                ("vector", pa.list_(pa.float32())),
                ("text", pa.string()),
                ("at", TS),
                ("embedded_at", TS),
            ]
        ),
        key=("message_id",),
        duck_types=(("vector", f"FLOAT[{dim}]"),),
    )


EMBEDDINGS = embeddings_spec()

# Every handoff lifecycle event (schemas.handoff), once each; the view `handoffs`
# (sinks.migrate) folds them into one row per handoff. Events of one handoff come from
# three places (the user's lane, the notifier, the admin API) in any order, so a
# snapshot upsert would lose columns: folding keeps each step's first time.
HANDOFF_EVENTS = _spec(
    "handoff_events",
    [
        ("event_id", pa.string()),
        ("event", pa.string()),
        ("handoff_id", pa.string()),
        ("user_id", pa.string()),
        ("event_at", TS),
        ("reason", pa.string()),
        ("source", pa.string()),
        ("turn_id", pa.string()),
        ("outbound_id", pa.string()),
        ("attempts", pa.int32()),
        ("opened_at", TS),
    ],
    key=("event_id",),
)

# Re-engagements (processors.reengage): one row per quiet period re-engaged. The
# `returned` event carries the whole row with returned_at set, and wins the upsert.
REENGAGEMENTS = _spec(
    "reengagements",
    [
        ("reengagement_id", pa.string()),
        ("user_id", pa.string()),
        ("quiet_since", TS),
        ("sent_at", TS),
        ("kind", pa.string()),
        ("outbound_id", pa.string()),
        ("returned_at", TS),
    ],
    key=("reengagement_id",),
    latest_by=("returned_at",),
)

# Replays (`zapstream replay`): decisions the current engine makes over a slice of
# history, never sent; keyed by (run, turn) so the same replay twice adds nothing.
REPLAY_DECISIONS = _spec(
    "replay_decisions",
    [
        ("run_id", pa.string()),
        ("turn_id", pa.string()),
        ("user_id", pa.string()),
        ("engine", pa.string()),
        ("engine_version", pa.string()),
        ("intent", pa.string()),
        ("actions", pa.string()),
        ("dropped", pa.string()),
        ("message_ids", pa.string()),
        ("original_intent", pa.string()),
        ("decided_at", TS),
    ],
    key=("run_id", "turn_id"),
    json_columns=("actions", "dropped", "message_ids"),
)

REPLAY_RUNS = _spec(
    "replay_runs",
    [
        ("run_id", pa.string()),
        ("started_at", TS),
        ("finished_at", TS),
        ("engine", pa.string()),
        ("engine_version", pa.string()),
        ("topic", pa.string()),
        ("selection", pa.string()),
        ("events", pa.int64()),
        ("turns", pa.int64()),
        ("changed", pa.int64()),
    ],
    key=("run_id",),
    json_columns=("selection",),
)

# One row per inbound media id: the latest report of the media agent wins (a
# `failed` media stored on a later delivery becomes `stored`). A re-report of a stored
# file (a redelivered webhook) carries the file's own time and 0 attempts, so the
# report of the download itself stays, in whatever order they arrive. `path` is
# relative to MEDIA_DIR.
MEDIA = _spec(
    "media",
    [
        ("media_id", pa.string()),
        ("message_id", pa.string()),
        ("user_id", pa.string()),
        ("mime_type", pa.string()),
        ("size_bytes", pa.int64()),
        ("sha256", pa.string()),
        ("path", pa.string()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("fetched_at", TS),
        ("media_type", pa.string()),
        ("filename", pa.string()),
        ("attempts", pa.int32()),
    ],
    key=("media_id",),
    latest_by=("fetched_at", "attempts"),
)

# The sink's own bookkeeping: events it could not decode, and events it decoded but
# DuckDB refused for good (a conversion or constraint error), each with the reason
# and the raw value, so nothing is lost and nothing stalls the sink.
REJECTED = _spec(
    "rejected_events",
    [
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("reason", pa.string()),
        ("value", pa.string()),
    ],
    key=("topic", "partition", "offset"),
)

SINK_DEAD_LETTERS = _spec(
    "sink_dead_letters",
    [
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("table_name", pa.string()),
        ("reason", pa.string()),
        ("value", pa.string()),
        ("failed_at", TS),
    ],
    key=("topic", "partition", "offset"),
)

TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in (
        MESSAGES,
        STATUSES,
        UNRECOGNIZED,
        REJECTED,
        TURNS,
        SESSIONS,
        OUTBOUND,
        SEND_RESULTS,
        DEAD_LETTERS,
        PROCESSING_DEAD_LETTERS,
        HANDOFF_EVENTS,
        REENGAGEMENTS,
        SINK_DEAD_LETTERS,
        EMBEDDINGS,
        REPLAY_DECISIONS,
        REPLAY_RUNS,
        MEDIA,
    )
}
