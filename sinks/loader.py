"""The single DuckDB writer: one transaction per batch, bad rows set aside.

DuckDB allows one writing process per file (other processes cannot even open it
read-only meanwhile), so exactly one sink process owns the file; `open` refuses with
`SinkBusy` when another holds it. Reads go through the writer (`query`, on a cursor,
from any thread).

`load` runs on the sink's one writer thread. Every batch is one transaction: all its
tables land together or not at all, as Arrow tables, never row by row. A failure is
classified:
- transient (I/O, memory, a conflicting transaction): `SinkStorageUnavailable`, the
  caller retries the same batch with backoff;
- permanent for some rows (a conversion or constraint error, a value Arrow cannot
  hold): the records behind them are found by bisection (trial inserts, rolled back),
  written to `sink_dead_letters` with the reason, and the rest of the batch is loaded
  in the same transaction as the dead letters;
- anything else (a missing table, an internal DuckDB error) is a bug or a broken
  file: it propagates and stops the sink.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from sinks.batch import SEQ, Decoded, to_arrow
from sinks.migrate import keep_file_array_sizes, migrate
from sinks.tables import REJECTED, SINK_DEAD_LETTERS, TABLES, TableSpec
from zapstream.errors import InvalidPayload, RowNotLoadable, SinkBusy, SinkStorageUnavailable

log = logging.getLogger("zapstream.sink")

TRANSIENT: tuple[type[BaseException], ...] = (
    duckdb.OperationalError,  # I/O, out of memory, transaction conflicts
    duckdb.InterruptException,
    OSError,
    MemoryError,
)
ROW_ERRORS: tuple[type[BaseException], ...] = (
    duckdb.DataError,  # conversion, out of range, type mismatch
    duckdb.IntegrityError,  # constraints
    duckdb.InvalidInputException,  # e.g. malformed JSON text
    pa.ArrowException,
    ArithmeticError,  # OverflowError from Arrow
    ValueError,
    TypeError,
)
MAX_ISOLATION_ROUNDS = 3

READ_ONLY_STATEMENTS = {
    duckdb.StatementType.SELECT,
    duckdb.StatementType.EXPLAIN,
    duckdb.StatementType.PRAGMA,
}


@dataclass
class LoadReport:
    inserted: dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    dead_lettered: int = 0


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


@dataclass
class ArrowResult:
    """Record batches of one query; `close()` once read (it holds a cursor)."""

    reader: pa.RecordBatchReader
    cursor: duckdb.DuckDBPyConnection

    def close(self) -> None:
        self.cursor.close()


def classify(exc: Exception, table: str) -> Exception:
    """The typed error for a failed insert into `table` (or `exc` itself: fatal)."""
    if isinstance(exc, TRANSIENT):
        return SinkStorageUnavailable(f"{table}: {type(exc).__name__}: {exc}")
    if isinstance(exc, ROW_ERRORS):
        return RowNotLoadable(table, f"{type(exc).__name__}: {exc}")
    return exc


def insert_sql(spec: TableSpec, view: str) -> str:
    """One statement per table and batch. Insert-only tables arrive with one row per
    key (`TableRows.add`); snapshots keep the latest row of each key of the batch,
    then merge with the file, where the latest wins again."""
    cols = ", ".join(f'"{c}"' for c in spec.columns)
    key = ", ".join(f'"{c}"' for c in spec.key)
    if not spec.latest_by:
        return f'INSERT OR IGNORE INTO "{spec.name}" ({cols}) SELECT {cols} FROM {view}'

    latest = ", ".join(f'"{c}" DESC NULLS LAST' for c in spec.latest_by)
    updates = [f'"{c}" = excluded."{c}"' for c in spec.columns if c not in spec.key]
    updates.append("loaded_at = now()")
    return (
        f'INSERT INTO "{spec.name}" AS cur ({cols}) SELECT {cols} FROM {view} '
        f'QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY {latest}, "{SEQ}" DESC) = 1 '
        f"ON CONFLICT ({key}) DO UPDATE SET {', '.join(updates)} "
        f"WHERE {_newer_or_same(spec.latest_by)}"
    )


def _newer_or_same(columns: tuple[str, ...]) -> str:
    """excluded >= cur, compared column by column, NULL oldest."""
    terms: list[list[str]] = []
    same: list[str] = []
    for c in columns:
        new, old = f'excluded."{c}"', f'cur."{c}"'
        terms.append([*same, f"({new} IS NOT NULL AND ({old} IS NULL OR {new} > {old}))"])
        same.append(f"{new} IS NOT DISTINCT FROM {old}")
    terms.append(same)
    return " OR ".join("(" + " AND ".join(t) + ")" for t in terms)


@dataclass
class Loader:
    path: Path
    tables: Mapping[str, TableSpec] = field(default_factory=lambda: dict(TABLES))
    _con: duckdb.DuckDBPyConnection | None = None
    _reader: duckdb.DuckDBPyConnection | None = None
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
        self.tables = {s.name: s for s in keep_file_array_sizes(self._con, self.tables.values())}
        migrate(self._con, self.tables.values())
        self._reader = self._con.cursor()

    def close(self) -> None:
        for con in (self._reader, self._con):
            if con is not None:
                con.close()
        self._con = self._reader = None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise SinkBusy("the sink's DuckDB file is not open")
        return self._con

    # --- writing (the writer thread) ------------------------------------------------

    def load(self, decoded: Decoded) -> LoadReport:
        """Load a decoded batch in one transaction (see the module's docstring)."""
        with self._lock:
            bad: dict[int, RowNotLoadable] = {}
            rounds = 0
            while True:
                try:
                    return self._write(decoded, bad)
                except RowNotLoadable as failure:
                    rounds += 1
                    if rounds > MAX_ISOLATION_ROUNDS or failure.table not in decoded.tables:
                        raise
                    log.warning("batch refused, isolating the bad rows: %s", failure)
                    rest = [s for s in decoded.sources() if s not in bad]
                    found = self._isolate(decoded, rest, failure)
                    if not found:
                        raise
                    bad.update(found)

    def _write(self, decoded: Decoded, bad: Mapping[int, RowNotLoadable]) -> LoadReport:
        report = LoadReport(rejected=len(decoded.rejected), dead_lettered=len(bad))
        con = self.con
        _execute(con, "BEGIN TRANSACTION")
        try:
            for name, rows in decoded.tables.items():
                if rows.rows:
                    report.inserted[name] = self._insert(
                        con, name, partial(rows.arrow, exclude=bad)
                    )
            if decoded.rejected:
                self._insert(con, REJECTED.name, partial(to_arrow, REJECTED, decoded.rejected))
            if bad:
                dead = _dead_letter_rows(decoded, bad)
                self._insert(
                    con, SINK_DEAD_LETTERS.name, partial(to_arrow, SINK_DEAD_LETTERS, dead)
                )
            _execute(con, "COMMIT")
        except BaseException:
            _rollback(con)
            raise
        for i, failure in bad.items():
            rec = decoded.records[i]
            log.error(
                "event dead-lettered",
                extra={
                    "topic": rec.topic,
                    "partition": rec.partition,
                    "offset": rec.offset,
                    "table": failure.table,
                    "reason": failure.reason[:200],
                },
            )
        return report

    def _insert(
        self, con: duckdb.DuckDBPyConnection, name: str, build: Callable[[], pa.Table]
    ) -> int:
        """Insert the Arrow table `build()` makes; failures come out typed."""
        view = f"_batch_{name}"
        try:
            table = build()
            if not table.num_rows:
                return 0
            con.register(view, table)
            try:
                row = con.execute(insert_sql(self.tables[name], view)).fetchone()
            finally:
                # fails in an aborted transaction; the rollback drops the view then
                with contextlib.suppress(duckdb.Error):
                    con.unregister(view)
        except Exception as exc:
            typed = classify(exc, name)
            if typed is exc:
                raise
            raise typed from exc
        return int(row[0]) if row else 0

    def _isolate(
        self, decoded: Decoded, sources: list[int], failure: RowNotLoadable | None
    ) -> dict[int, RowNotLoadable]:
        """The records among `sources` whose rows fail on their own, by bisection;
        `failure` is what loading all of `sources` gave, when known."""
        if failure is None:
            failure = self._trial(decoded, sources)
        if failure is None or not sources:
            return {}
        if len(sources) == 1:
            return {sources[0]: failure}
        mid = len(sources) // 2
        return {
            **self._isolate(decoded, sources[:mid], None),
            **self._isolate(decoded, sources[mid:], None),
        }

    def _trial(self, decoded: Decoded, sources: Collection[int]) -> RowNotLoadable | None:
        """Insert the rows of `sources` and roll back: the permanent failure, if any."""
        keep = set(sources)
        con = self.con
        _execute(con, "BEGIN TRANSACTION")
        try:
            for name, rows in decoded.tables.items():
                self._insert(con, name, partial(rows.arrow, include=keep))
        except RowNotLoadable as failure:
            return failure
        finally:
            _rollback(con)
        return None

    # --- reading (any thread) -----------------------------------------------------------

    def _read_cursor(self, sql: str) -> duckdb.DuckDBPyConnection:
        """A cursor of its own for `sql`, once `sql` is known to be read-only."""
        if self._reader is None:
            raise SinkBusy("the sink's DuckDB file is not open")
        cursor = self._reader.cursor()  # one per query: queries may run side by side
        try:
            statements = cursor.extract_statements(sql)
            if not statements or any(s.type not in READ_ONLY_STATEMENTS for s in statements):
                raise InvalidPayload("only SELECT, EXPLAIN and PRAGMA statements are allowed here")
        except BaseException:
            cursor.close()
            raise
        return cursor

    def query(self, sql: str) -> QueryResult:
        """Run read-only SQL on a cursor of its own (never waits for a load)."""
        cursor = self._read_cursor(sql)
        try:
            rel = cursor.execute(sql)
            columns = [d[0] for d in rel.description or []]
            return QueryResult(columns, rel.fetchall())
        finally:
            cursor.close()

    def query_arrow(self, sql: str, batch_rows: int = 65_536) -> ArrowResult:
        """Read-only SQL as Arrow record batches, on a cursor of its own (`/export`)."""
        cursor = self._read_cursor(sql)
        try:
            rel = cursor.sql(sql)
            to_reader = getattr(rel, "to_arrow_reader", None) or rel.fetch_arrow_reader
            return ArrowResult(to_reader(batch_rows), cursor)
        except BaseException:
            cursor.close()
            raise


def _dead_letter_rows(decoded: Decoded, bad: Mapping[int, RowNotLoadable]) -> list[tuple[Any, ...]]:
    now = datetime.now(UTC)
    rows = []
    for i, failure in sorted(bad.items()):
        rec = decoded.records[i]
        value = (rec.value or b"").decode("utf-8", "replace")
        rows.append(
            (rec.topic, rec.partition, rec.offset, failure.table, failure.reason[:2000], value, now)
        )
    return rows


def _execute(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """BEGIN or COMMIT, failures typed like an insert's."""
    try:
        con.execute(sql)
    except Exception as exc:
        typed = classify(exc, sql.split()[0].lower())
        if typed is exc:
            raise
        raise typed from exc


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.execute("ROLLBACK")
    except duckdb.Error as exc:  # nothing to roll back, or the connection is gone
        log.debug("rollback: %s", exc)
