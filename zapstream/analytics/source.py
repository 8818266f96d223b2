"""Where analytics reads DuckDB from, without breaking the single-writer rule.

DuckDB lets one process write a file and no other process open it meanwhile, not
even read-only. So a `Reader` either asks the running sink (`POST /query` on
SINK_WEB_PORT: the sink runs the SELECT on a cursor of its own connection), or, when
no sink runs, opens the file read-only for as long as one report takes and closes
it at once (a sink starting meanwhile would find the file held and exit; the
supervisor starts it again).

`prefer_sink`: the webhook API (a long-running process beside the sink) asks the sink
first and opens the file only when the sink does not answer; the CLI opens the file
first and falls back to the sink when the file is held, as `zapstream db` does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import duckdb

from zapstream.db_query import QueryFailed, SinkUnreachable, through_sink
from zapstream.settings import Settings

Rows = tuple[list[str], list[tuple[Any, ...]]]


class Reader:
    """Runs read-only SQL on one path (the sink or the file) chosen at the first query."""

    def __init__(self, settings: Settings, *, prefer_sink: bool = False) -> None:
        self.settings = settings
        self.prefer_sink = prefer_sink
        self._con: duckdb.DuckDBPyConnection | None = None
        self._via_sink: bool | None = None

    @property
    def via_sink(self) -> bool:
        return bool(self._via_sink)

    def query(self, sql: str) -> Rows:
        if self._via_sink is None:
            self._choose()
        if self._via_sink:
            return through_sink(self.settings, sql)
        return self._on_file(sql)

    def _choose(self) -> None:
        path = self.settings.resolved_duckdb_path
        if not path.exists():
            raise QueryFailed(f"no DuckDB file at {path} yet (has the sink run?)")
        if self.prefer_sink:
            try:
                through_sink(self.settings, "SELECT 1")
                self._via_sink = True
                return
            except SinkUnreachable:
                pass
        try:
            self._con = duckdb.connect(str(path), read_only=True)
            self._via_sink = False
        except duckdb.IOException:  # a sink holds the file
            self._via_sink = True

    def _on_file(self, sql: str) -> Rows:
        assert self._con is not None
        try:
            rel = self._con.execute(sql)
            return [d[0] for d in rel.description or []], rel.fetchall()
        except duckdb.Error as exc:
            raise QueryFailed(f"query failed: {exc}") from exc

    @property
    def connection(self) -> duckdb.DuckDBPyConnection | None:
        """The read-only connection when reading the file directly (None through the sink)."""
        return self._con

    def open_directly(self) -> bool:
        """Choose now; True when the file itself is open (read-only) in this process."""
        if self._via_sink is None:
            self._choose()
        return not self._via_sink

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


@contextlib.contextmanager
def reader(settings: Settings, *, prefer_sink: bool = False) -> Iterator[Reader]:
    r = Reader(settings, prefer_sink=prefer_sink)
    try:
        yield r
    finally:
        r.close()


def existing_tables(query: Any) -> set[str]:
    """Tables and views of the file (`query` runs SQL and returns (columns, rows))."""
    _, rows = query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
    )
    return {str(r[0]) for r in rows}
