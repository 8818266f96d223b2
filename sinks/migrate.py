"""The DuckDB schema: tables from their specs, added columns, and the views.

Run once when the sink opens its file. A table that is missing is created; a column
a spec has and the file lacks is added (`ALTER TABLE ... ADD COLUMN`, nullable, so
old rows read NULL there). What cannot be done that way (a changed key or type) stops
the sink with a clear error instead of failing every load later.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace

import duckdb
import pyarrow as pa

from sinks.tables import TS, TableSpec
from zapstream.errors import ConfigurationError

log = logging.getLogger("zapstream.sink")

DUCK_TYPES: dict[pa.DataType, str] = {
    pa.string(): "VARCHAR",
    pa.bool_(): "BOOLEAN",
    pa.int64(): "BIGINT",
    pa.int32(): "INTEGER",
    pa.float64(): "DOUBLE",
    TS: "TIMESTAMP WITH TIME ZONE",
}


def column_type(spec: TableSpec, field: pa.Field) -> str:
    override = dict(spec.duck_types).get(field.name)
    if override is not None:
        return override
    return "JSON" if field.name in spec.json_columns else DUCK_TYPES[field.type]


def keep_file_array_sizes(
    con: duckdb.DuckDBPyConnection, specs: Iterable[TableSpec]
) -> list[TableSpec]:
    """A fixed-size array column (`FLOAT[384]`) keeps the size the file already has:
    another EMBEDDING_MODEL must not stop the whole sink. Its vectors of the other size
    are refused row by row (sink_dead_letters) and search says which model the table
    holds; a warning here says what to do."""
    out: list[TableSpec] = []
    for spec in specs:
        existing = _columns(con, spec.name) if spec.duck_types else {}
        types = []
        for column, want in spec.duck_types:
            have = existing.get(column)
            if have is not None and have != want and want.endswith("]") and have.endswith("]"):
                log.warning(
                    "%s.%s is %s in the file, %s for the configured model: keeping the file's; "
                    "vectors of the other size will be dead-lettered (move the table aside "
                    "to start afresh)",
                    spec.name,
                    column,
                    have,
                    want,
                )
                want = have
            types.append((column, want))
        out.append(replace(spec, duck_types=tuple(types)) if spec.duck_types else spec)
    return out


def table_ddl(spec: TableSpec) -> str:
    cols = []
    for f in spec.schema:
        null = " NOT NULL" if f.name in spec.key else ""
        cols.append(f'"{f.name}" {column_type(spec, f)}{null}')
    cols.append("loaded_at TIMESTAMPTZ DEFAULT now()")
    key = ", ".join(f'"{c}"' for c in spec.key)
    return f'CREATE TABLE IF NOT EXISTS "{spec.name}" ({", ".join(cols)}, PRIMARY KEY ({key}))'


def migrate(con: duckdb.DuckDBPyConnection, specs: Iterable[TableSpec]) -> list[str]:
    """Bring the file up to the specs; returns the columns added (`table.column`)."""
    added: list[str] = []
    con.execute("BEGIN TRANSACTION")
    try:
        for spec in specs:
            con.execute(table_ddl(spec))
            existing = _columns(con, spec.name)
            for f in spec.schema:
                want = column_type(spec, f)
                have = existing.get(f.name)
                if have is None:
                    if f.name in spec.key:
                        raise ConfigurationError(
                            f"table {spec.name} lacks key column {f.name}: a key cannot be "
                            "added to an existing table; move the file aside or migrate it"
                        )
                    con.execute(f'ALTER TABLE "{spec.name}" ADD COLUMN "{f.name}" {want}')
                    added.append(f"{spec.name}.{f.name}")
                elif have != want:
                    raise ConfigurationError(
                        f"column {spec.name}.{f.name} is {have} in the file but {want} in the "
                        "spec: change its type by hand (or add a new column)"
                    )
        for ddl in VIEWS:
            con.execute(ddl)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    if added:
        log.warning("DuckDB columns added", extra={"columns": added})
    return added


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'main' AND table_name = ?",
        [table],
    ).fetchall()
    return {str(name): str(kind) for name, kind in rows}


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

# One row per handoff (the contract of the `handoffs` table): each step's first time,
# and the outcome. An agent's reply counts for the handoff of its user open at that
# time (the API does not wait for the handoff's id to reach DuckDB).
HANDOFFS_VIEW = """
CREATE OR REPLACE VIEW handoffs AS
WITH h AS (
    SELECT handoff_id,
           any_value(user_id) AS user_id,
           any_value(reason) FILTER (WHERE event = 'opened') AS reason,
           any_value(source) FILTER (WHERE event = 'opened') AS source,
           coalesce(min(event_at) FILTER (WHERE event = 'opened'), min(opened_at)) AS opened_at,
           min(event_at) FILTER (WHERE event = 'notified') AS notified_at,
           min(event_at) FILTER (WHERE event = 'renotified') AS renotified_at,
           min(event_at) FILTER (WHERE event = 'released') AS released_at,
           min(event_at) FILTER (WHERE event = 'expired') AS expired_at,
           any_value(reason) FILTER (WHERE event = 'notify_failed') AS notify_error,
           count(*) FILTER (WHERE event = 'notify_failed') > 0 AS notify_failed
    FROM handoff_events WHERE handoff_id IS NOT NULL GROUP BY handoff_id
)
SELECT h.handoff_id, h.user_id, h.reason, h.source, h.opened_at, h.notified_at,
       h.renotified_at,
       (SELECT min(r.event_at) FROM handoff_events r
         WHERE r.event = 'agent_reply' AND r.user_id = h.user_id
           AND (r.handoff_id = h.handoff_id
                OR (r.handoff_id IS NULL AND r.event_at >= h.opened_at
                    AND r.event_at <= coalesce(h.released_at, h.expired_at, 'infinity'::TIMESTAMPTZ))))
         AS first_agent_reply_at,
       coalesce(h.released_at, h.expired_at) AS released_at,
       CASE WHEN h.released_at IS NOT NULL THEN 'released'
            WHEN h.expired_at IS NOT NULL THEN 'expired'
            WHEN h.notify_failed AND h.notified_at IS NULL THEN 'notify_failed'
            ELSE 'open' END AS outcome,
       h.notify_error
FROM h
"""

VIEWS: list[str] = [DELIVERY_VIEW, HANDOFFS_VIEW]
