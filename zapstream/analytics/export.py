"""`zapstream export`: tables of the DuckDB file to Parquet, one file per table.

When no sink holds the file it is opened read-only and DuckDB writes the Parquet
itself (`COPY (SELECT …) TO … (FORMAT parquet)`). When the sink holds it, the sink
runs the SELECT on a cursor of its own and streams the rows as Arrow IPC
(`POST /export` on SINK_WEB_PORT); they are written here, batch by batch, with
pyarrow. Either way the only writer of the DuckDB file stays the sink. A file is
written under a temporary name and renamed when complete.

`--from/--to` filter on each table's time column (`TIME_COLUMNS`; `loaded_at`, the
time the sink loaded the row, for a table not listed there).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq

from zapstream.analytics.period import Period
from zapstream.analytics.source import Reader
from zapstream.db_query import QueryFailed, SinkUnreachable
from zapstream.errors import InvalidPayload

ARROW_STREAM = "application/vnd.apache.arrow.stream"

TIME_COLUMNS: dict[str, str] = {
    "messages": "received_at",
    "statuses": "status_at",
    "unrecognized_webhooks": "received_at",
    "turns": "decided_at",
    "sessions": "updated_at",
    "outbound_messages": "created_at",
    "send_results": "sent_at",
    "dead_letters": "failed_at",
    "processing_dead_letters": "failed_at",
    "sink_dead_letters": "failed_at",
    "handoffs": "opened_at",
    "reengagements": "sent_at",
    "media": "fetched_at",
    "embeddings": "at",
    "replay_decisions": "decided_at",
    "replay_runs": "started_at",
    "message_delivery": "created_at",
}
"""The column `--from/--to` filter on, per table (others: `loaded_at`)."""


class ExportFailed(InvalidPayload):
    """An unknown table, a table with no time column for --from/--to, a bad --out."""


@dataclass(frozen=True)
class Exported:
    table: str
    rows: int
    path: Path


def tables(reader: Reader, *, views: bool = False) -> list[str]:
    kinds = "('BASE TABLE', 'VIEW')" if views else "('BASE TABLE')"
    _, rows = reader.query(
        "SELECT table_name FROM information_schema.tables "
        f"WHERE table_schema = 'main' AND table_type IN {kinds} ORDER BY 1"
    )
    return [str(r[0]) for r in rows]


def select_sql(reader: Reader, table: str, period: Period | None) -> str:
    sql = f'SELECT * FROM "{table}"'
    if period is None:
        return sql
    _, rows = reader.query(
        "SELECT column_name FROM information_schema.columns "
        f"WHERE table_schema = 'main' AND table_name = '{table}'"
    )
    columns = {str(r[0]) for r in rows}
    column = TIME_COLUMNS.get(table, "loaded_at")
    if column not in columns:
        column = "loaded_at"
    if column not in columns:
        raise ExportFailed(f"table {table} has no time column: export it without --from/--to")
    lo, hi = period.sql_bounds()
    return f'{sql} WHERE "{column}" >= {lo} AND "{column}" < {hi}'


def export_table(reader: Reader, table: str, out: Path, period: Period | None) -> Exported:
    known = tables(reader, views=True)
    if table not in known:
        raise ExportFailed(f"no table {table!r} in the DuckDB file; tables: {', '.join(known)}")
    if out.is_dir():
        raise ExportFailed(f"--out {out} is a folder: give a file name (or use --all)")
    sql = select_sql(reader, table, period)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(f".{out.name}.part")
    try:
        rows = _copy_here(reader, sql, part) if reader.open_directly() else _copy_through_sink(reader, sql, part)
        os.replace(part, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
    return Exported(table, rows, out)


def export_all(reader: Reader, folder: Path, period: Period | None) -> list[Exported]:
    if folder.exists() and not folder.is_dir():
        raise ExportFailed(f"--out {folder} is a file: --all writes one file per table into a folder")
    folder.mkdir(parents=True, exist_ok=True)
    return [export_table(reader, t, folder / f"{t}.parquet", period) for t in tables(reader)]


def _copy_here(reader: Reader, sql: str, path: Path) -> int:
    con = reader.connection
    assert con is not None
    target = str(path).replace("'", "''")
    rows = con.execute(f"COPY ({sql}) TO '{target}' (FORMAT parquet)").fetchall()
    return int(rows[0][0]) if rows else 0


def _copy_through_sink(reader: Reader, sql: str, path: Path) -> int:
    url = f"{reader.settings.resolved_sink_url}/export"
    count = 0
    try:
        with httpx.stream("POST", url, json={"sql": sql}, timeout=httpx.Timeout(30, read=300)) as resp:
            if resp.status_code != 200:
                resp.read()
                raise QueryFailed(f"export failed: {_error_of(resp)}")
            source = pa.PythonFile(_ChunkReader(resp.iter_bytes()), mode="r")
            stream = pa.ipc.open_stream(source)
            with pq.ParquetWriter(str(path), stream.schema) as writer:
                for batch in stream:
                    writer.write_batch(batch)
                    count += batch.num_rows
    except httpx.HTTPError as exc:
        raise SinkUnreachable(f"the sink at {url} did not answer the export: {exc}") from exc
    except pa.ArrowInvalid as exc:
        raise QueryFailed(f"the sink's export stream broke off: {exc}") from exc
    return count


def _error_of(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("error"))
    except ValueError:
        return f"{resp.status_code} {resp.text[:200]}"


class _ChunkReader:
    """A read-only file object over an iterator of byte chunks (for pyarrow)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = bytearray()
        self.closed = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buf) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buf += chunk
        n = len(self._buf) if size < 0 else min(size, len(self._buf))
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def close(self) -> None:
        self.closed = True
