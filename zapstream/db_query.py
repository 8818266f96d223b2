"""`zapstream db`: read the DuckDB file without fighting the writer's lock.

DuckDB lets no other process open a file that a writer holds, not even read-only.
So: open the file read-only when no sink runs; otherwise ask the running sink, which
runs the query on a cursor of its own connection (`GET /query` on SINK_WEB_PORT).
"""

from __future__ import annotations

from typing import Any

import duckdb
import httpx

from zapstream.errors import ZapstreamError
from zapstream.settings import Settings


class QueryFailed(ZapstreamError):
    pass


class SinkUnreachable(QueryFailed):
    """The file is locked (or was asked for through the sink) and the sink does not answer."""


def query(settings: Settings, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    path = settings.resolved_duckdb_path
    if not path.exists():
        raise QueryFailed(f"no DuckDB file at {path} yet (has the sink run?)")
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.IOException:
        return through_sink(settings, sql)
    try:
        rel = con.execute(sql)
        return [d[0] for d in rel.description or []], rel.fetchall()
    except duckdb.Error as exc:
        raise QueryFailed(f"query failed: {exc}") from exc
    finally:
        con.close()


def through_sink(settings: Settings, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    url = f"{settings.resolved_sink_url}/query"
    try:
        resp = httpx.post(url, json={"sql": sql}, timeout=30)
    except httpx.HTTPError as exc:
        raise SinkUnreachable(
            f"{settings.resolved_duckdb_path} is locked by a writer and the sink at {url} does not answer: {exc}"
        ) from exc
    try:
        doc = resp.json()
    except ValueError as exc:
        raise QueryFailed(f"the sink answered {resp.status_code}: {resp.text[:200]}") from exc
    if resp.status_code != 200:
        raise QueryFailed(f"query failed: {doc.get('error')}")
    return doc["columns"], [tuple(r) for r in doc["rows"]]


def format_table(columns: list[str], rows: list[tuple[Any, ...]], max_width: int = 48) -> str:
    def cell(v: Any) -> str:
        s = "NULL" if v is None else str(v)
        return s if len(s) <= max_width else s[: max_width - 1] + "…"

    cells = [[cell(v) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    sep = "-+-".join("-" * w for w in widths)
    body = [" | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([line, sep, *body, f"({len(rows)} rows)"])
