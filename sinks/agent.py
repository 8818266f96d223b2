"""The sink agent: topics → DuckDB in batches, offsets committed after the commit.

Faust's `stream.take(n, within=s)` acks a batch's events only when the loop body
returns, and acks them *also* when the body raises (its `finally`), so a failed
load must never escape the body: `load_until_stored` retries the same batch with
backoff until DuckDB commits. The stream waits meanwhile (backpressure), and no
offset moves past a row that is not stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import faust
import faust.web
import pyarrow as pa

from processors.faust_transport import mark_received
from processors.ticker import tick_time
from schemas.codec import decode
from schemas.conversation import TurnDecided
from schemas.events import MessageReceived, StatusReceived, WebhookUnrecognized
from schemas.outbound import DeadLetter, OutboundMessage, SendResult
from schemas.topics import Topics
from sinks.chain_rows import dead_letter_row, outbound_row, send_result_row, session_row, turn_row
from sinks.duckdb_sink import DuckDBSink
from sinks.rows import message_row, rows_by_table, status_row, to_arrow, unrecognized_row
from sinks.tables import TABLES
from zapstream.errors import InvalidPayload
from zapstream.settings import Settings

log = logging.getLogger("zapstream.sink")

Tagged = tuple[str, int, int, bytes]  # topic, partition, offset, value
RowMaker = Callable[[bytes], list[tuple[str, dict[str, Any]]]]
RowFn = Callable[[Any], dict[str, Any]]


def _maker(event_type: Any, *targets: tuple[str, RowFn]) -> RowMaker:
    def make(value: bytes) -> list[tuple[str, dict[str, Any]]]:
        event = decode(event_type, value)
        return [(table, row_fn(event)) for table, row_fn in targets]

    return make


def row_makers(topics: Topics) -> dict[str, RowMaker]:
    """topic → function(value bytes) → [(table, row), ...]."""
    outbound = _maker(OutboundMessage, ("outbound_messages", outbound_row))
    return {
        topics.inbound: _maker(MessageReceived, ("messages", message_row)),
        topics.statuses: _maker(StatusReceived, ("statuses", status_row)),
        topics.unrecognized: _maker(
            WebhookUnrecognized, ("unrecognized_webhooks", unrecognized_row)
        ),
        topics.decisions: _maker(TurnDecided, ("turns", turn_row), ("sessions", session_row)),
        topics.outbound_high: outbound,
        topics.outbound_low: outbound,
        topics.send_results: _maker(SendResult, ("send_results", send_result_row)),
        topics.dead_letters: _maker(DeadLetter, ("dead_letters", dead_letter_row)),
    }


def build_batch(items: list[Tagged], makers: dict[str, RowMaker]) -> dict[str, pa.Table]:
    """Decode a batch into Arrow tables; what does not decode goes to `rejected_events`
    with its reason (never dropped, never blocking the rest)."""
    pairs: list[tuple[str, dict[str, Any]]] = []
    for topic, partition, offset, value in items:
        if tick_time(value) is not None:
            continue  # a debounce tick shares the inbound topic; it is not a message
        try:
            pairs.extend(makers[topic](value))
        except (InvalidPayload, KeyError) as exc:
            log.error(
                "rejected event",
                extra={
                    "topic": topic,
                    "partition": partition,
                    "offset": offset,
                    "reason": str(exc)[:200],
                },
            )
            pairs.append(
                (
                    "rejected_events",
                    {
                        "topic": topic,
                        "partition": partition,
                        "offset": offset,
                        "reason": str(exc)[:2000],
                        "value": value.decode("utf-8", "replace"),
                    },
                )
            )
    return {name: to_arrow(TABLES[name], rows) for name, rows in rows_by_table(pairs).items()}


async def load_until_stored(
    sink: DuckDBSink, batch: dict[str, pa.Table], *, max_delay: float = 5.0
) -> dict[str, int]:
    delay = 0.1
    attempt = 1
    while True:
        try:
            return sink.load(batch)
        except Exception as exc:
            log.error("DuckDB load failed (attempt %d), retrying in %.1fs: %s", attempt, delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
            attempt += 1


def register_sink(app: faust.App, settings: Settings, sink: DuckDBSink) -> None:
    topics = Topics.from_settings(settings)
    makers = row_makers(topics)
    source = app.topic(*makers, value_serializer="raw", key_serializer="raw")

    @app.agent(source, name="duckdb-sink")
    async def sink_agent(stream: faust.StreamT[bytes]) -> None:
        def tag(value: bytes) -> Tagged:
            event = stream.current_event
            assert event is not None  # processors run for a current event
            mark_received(event)
            msg = event.message
            return (msg.topic, msg.partition, msg.offset, value)

        stream.add_processor(tag)  # type: ignore[misc]
        async for items in stream.take(
            settings.sink_batch_size, within=settings.sink_flush_ms / 1000
        ):
            started = time.perf_counter()
            batch = build_batch(list(items), makers)  # type: ignore[arg-type]
            inserted = await load_until_stored(sink, batch)
            log.info(
                "batch loaded",
                extra={
                    "events": len(items),
                    "inserted": inserted,
                    "ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )

    async def run_query(web: Any, sql: str) -> Any:
        try:
            result = await asyncio.to_thread(sink.query, sql)
        except InvalidPayload as exc:
            return web.json({"error": exc.reason}, status=400)
        except Exception as exc:  # a bad query is the caller's error, never the sink's
            return web.json({"error": str(exc)}, status=400)
        rows = [[_jsonable(v) for v in r] for r in result.rows]
        return web.json({"columns": result.columns, "rows": rows})

    @app.page("/ready")
    class ReadyView(faust.web.View):  # type: ignore[misc]
        """200 once the sink holds partitions and is not rebalancing: events flow."""

        async def get(self, request: Any) -> Any:
            assigned = app.consumer.assignment() if app.consumer else set()
            ready = bool(assigned) and not app.rebalancing
            return self.json(
                {"ready": ready, "partitions": len(assigned)}, status=200 if ready else 503
            )

    @app.page("/query")
    class QueryView(faust.web.View):  # type: ignore[misc]
        async def get(self, request: Any) -> Any:
            return await run_query(self, request.query.get("sql", ""))

        async def post(self, request: Any) -> Any:
            return await run_query(self, (await request.json()).get("sql", ""))


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
