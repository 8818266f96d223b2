"""Every DuckDB table the sink writes, by name."""

from __future__ import annotations

from sinks.chain_rows import DEAD_LETTERS, OUTBOUND, SEND_RESULTS, SESSIONS, TURNS
from sinks.rows import BASE_TABLES, TableSpec

TABLES: dict[str, TableSpec] = {
    t.name: t for t in (*BASE_TABLES, TURNS, SESSIONS, OUTBOUND, SEND_RESULTS, DEAD_LETTERS)
}
