"""The sink's HTTP port (SINK_WEB_PORT): `/ready`, `/query`, `/export` and `/metrics`.

`/ready` is 200 once partitions are assigned and no rebalance is under way (the
supervisor waits for it). `/query` runs read-only SQL through the writer's file
(`zapstream db` uses it while the sink holds the file): on a thread, on a cursor of
its own, so neither a long query nor a long load holds up the other or the loop.
`/export` (POST {"sql": ...}) runs one the same way and streams the rows as Arrow IPC
(`zapstream export` writes them to Parquet), batch by batch, typed as DuckDB has them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pyarrow as pa
from aiohttp import web
from prometheus_client import CollectorRegistry

from sinks.loader import ArrowResult, Loader
from zapstream.errors import InvalidPayload
from zapstream.metrics import CONTENT_TYPE, exposition


def web_app(
    loader: Loader,
    ready: Callable[[], tuple[bool, int]],
    metrics: CollectorRegistry | None = None,
) -> web.Application:
    """`ready()` gives (ready, partitions assigned); `metrics` is served at `/metrics`."""

    async def get_ready(request: web.Request) -> web.Response:
        ok, partitions = ready()
        return web.json_response({"ready": ok, "partitions": partitions}, status=200 if ok else 503)

    async def run_query(sql: str) -> web.Response:
        try:
            result = await asyncio.to_thread(loader.query, sql)
        except InvalidPayload as exc:
            return web.json_response({"error": exc.reason}, status=400)
        except Exception as exc:  # a bad query is the caller's error, never the sink's
            return web.json_response({"error": str(exc)}, status=400)
        rows = [[_jsonable(v) for v in r] for r in result.rows]
        return web.json_response({"columns": result.columns, "rows": rows})

    async def get_query(request: web.Request) -> web.Response:
        return await run_query(request.query.get("sql", ""))

    async def post_query(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return web.json_response({"error": 'the body must be JSON: {"sql": ...}'}, status=400)
        return await run_query(str(body.get("sql", "")) if isinstance(body, dict) else "")

    async def post_export(request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return web.json_response({"error": 'the body must be JSON: {"sql": ...}'}, status=400)
        sql = str(body.get("sql", "")) if isinstance(body, dict) else ""
        try:
            result = await asyncio.to_thread(loader.query_arrow, sql)
        except InvalidPayload as exc:
            return web.json_response({"error": exc.reason}, status=400)
        except Exception as exc:  # a bad query is the caller's error, never the sink's
            return web.json_response({"error": str(exc)}, status=400)
        try:
            return await _stream_arrow(request, result)
        finally:
            await asyncio.to_thread(result.close)

    async def get_metrics(request: web.Request) -> web.Response:
        body = exposition(metrics) if metrics is not None else b""
        # a header, not content_type=: aiohttp refuses a charset in that argument
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/ready", get_ready)
    app.router.add_get("/query", get_query)
    app.router.add_post("/query", post_query)
    app.router.add_post("/export", post_export)
    return app


ARROW_STREAM = "application/vnd.apache.arrow.stream"


class _Chunks:
    """A write-only file object that keeps what pyarrow writes until it is taken."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.closed = False

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


async def _stream_arrow(request: web.Request, result: ArrowResult) -> web.StreamResponse:
    """The batches as one Arrow IPC stream; each is read and encoded on a thread."""
    chunks = _Chunks()
    writer = pa.ipc.new_stream(pa.PythonFile(chunks, mode="w"), result.reader.schema)
    resp = web.StreamResponse(headers={"Content-Type": ARROW_STREAM})
    await resp.prepare(request)

    done = False

    def next_part() -> bytes | None:
        nonlocal done
        if done:
            return None
        try:
            batch = result.reader.read_next_batch()
        except StopIteration:
            writer.close()  # the end-of-stream marker
            done = True
            return chunks.take()
        writer.write_batch(batch)
        return chunks.take()

    await resp.write(chunks.take())  # the schema
    while (part := await asyncio.to_thread(next_part)) is not None:
        await resp.write(part)
    await resp.write_eof()
    return resp


async def start_web(app: web.Application, port: int, host: str = "127.0.0.1") -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
