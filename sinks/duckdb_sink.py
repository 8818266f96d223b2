"""The single DuckDB writer.

DuckDB allows one writing process per file (other processes cannot even open it
read-only meanwhile), so exactly one sink process owns the file: `zapstream sink`.
Processing workers scale out; the sink does not. Reads go through the writer
(`query`, served by the sink's HTTP port) or, when no sink runs, straight to the file.

Every batch is one transaction: all its tables land together or not at all, and a
batch is loaded as Arrow tables (`INSERT OR IGNORE ... BY NAME SELECT * FROM arrow`),
never row by row. Keys make the load idempotent: redelivered events add nothing.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from sinks.chain_rows import DELIVERY_VIEW
from sinks.rows import TableSpec
from sinks.tables import TABLES
from zapstream.errors import InvalidPayload, SinkBusy

log = logging.getLogger(__name__)

_DUCK_TYPES = {
    pa.string(): "VARCHAR",
    pa.bool_(): "BOOLEAN",
    pa.int64(): "BIGINT",
    pa.int32(): "INTEGER",
    pa.float64(): "DOUBLE",
    pa.timestamp("us", tz="UTC"): "TIMESTAMPTZ",
}

READ_ONLY_STATEMENTS = {
    duckdb.StatementType.SELECT,
    duckdb.StatementType.EXPLAIN,
    duckdb.StatementType.PRAGMA,
}


def table_ddl(spec: TableSpec) -> str:
    cols = []
    for f in spec.schema:
        duck = "JSON" if f.name in spec.json_columns else _DUCK_TYPES[f.type]
        null = " NOT NULL" if f.name in spec.key else ""
        cols.append(f'"{f.name}" {duck}{null}')
    cols.append("loaded_at TIMESTAMPTZ DEFAULT now()")
    key = ", ".join(f'"{c}"' for c in spec.key)
    return f"CREATE TABLE IF NOT EXISTS {spec.name} ({', '.join(cols)}, PRIMARY KEY ({key}))"


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


@dataclass
class DuckDBSink:
    path: Path
    tables: dict[str, TableSpec] = field(default_factory=lambda: dict(TABLES))
    _con: duckdb.DuckDBPyConnection | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(str(self.path))
        except duckdb.IOException as exc:
            raise SinkBusy(
                f"cannot open {self.path} for writing: another process holds it ({exc}). "
                "Exactly one `zapstream sink` may run per DuckDB file."
            ) from exc
        for spec in self.tables.values():
            self._con.execute(table_ddl(spec))
        for ddl in EXTRA_DDL:
            self._con.execute(ddl)

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise SinkBusy("sink is not open")
        return self._con

    def load(self, batch: dict[str, pa.Table]) -> dict[str, int]:
        """Load every table of the batch in one transaction; returns rows inserted."""
        inserted: dict[str, int] = {}
        with self._lock:
            con = self.con
            con.execute("BEGIN TRANSACTION")
            try:
                for name, table in batch.items():
                    if table.num_rows:
                        inserted[name] = self._insert(con, name, table)
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise
        return inserted

    def _insert(self, con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> int:
        if name not in self.tables:
            raise InvalidPayload(f"unknown sink table {name!r}")
        view = f"_batch_{name}"
        con.register(view, table)
        try:
            row = con.execute(
                f"INSERT OR IGNORE INTO {name} BY NAME SELECT * FROM {view}"
            ).fetchone()
        finally:
            con.unregister(view)
        return int(row[0]) if row else 0

    def query(self, sql: str) -> QueryResult:
        """Run read-only SQL on a cursor of the writer's connection (thread-safe)."""
        statements = self.con.extract_statements(sql)
        if not statements or any(s.type not in READ_ONLY_STATEMENTS for s in statements):
            raise InvalidPayload("only SELECT, EXPLAIN and PRAGMA statements are allowed here")
        cursor = self.con.cursor()
        try:
            rel = cursor.execute(sql)
            columns = [d[0] for d in rel.description or []]
            return QueryResult(columns, rel.fetchall())
        finally:
            cursor.close()


# Views over the base tables, for analytics.
EXTRA_DDL: list[str] = [DELIVERY_VIEW]
