"""The webhook: Meta's verification handshake, signed POSTs, health and metrics.

POST /webhook answers:
- 200 once the broker has acknowledged every event of the body (acks=all);
- 401 bad or missing X-Hub-Signature-256; 413 body over the limit; 400 not JSON;
- 503 when the broker is down or slow: Meta retries for days, nothing is lost. The
  log says where and why (the address and e.g. "connection refused"), once when it
  starts and then every LOG_EVERY_S at most, not once per request.
A signed JSON body of a shape we do not know is kept raw on its own topic (200).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from ingest.dashboard import dashboard_router
from ingest.handoffs import handoffs_router
from ingest.metrics import IngestMetrics
from ingest.parse import ParsedWebhook, fingerprint, parse_webhook
from ingest.publisher import Outgoing, Publisher, to_outgoing
from ingest.search import search_router
from ingest.signature import verify_signature
from schemas.events import WebhookUnrecognized
from schemas.topics import Topics, all_topic_specs
from zapstream.errors import (
    BrokerUnavailable,
    ConfigurationError,
    InvalidPayload,
    InvalidSignature,
    PayloadTooLarge,
    ZapstreamError,
)
from zapstream.kafka_admin import ensure_topics
from zapstream.kafka_diagnosis import diagnose
from zapstream.kafka_probe import broker_answers
from zapstream.log_throttle import LogThrottle
from zapstream.metrics import CONTENT_TYPE, exposition
from zapstream.settings import Settings

log = logging.getLogger("zapstream.ingest")

LOG_EVERY_S = 15.0
"""A broker problem is logged when it starts, then at most this often per reason."""


def _error(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


async def read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def events_to_outgoing(parsed: ParsedWebhook, topics: Topics) -> list[Outgoing]:
    out = [to_outgoing(topics.inbound, m, m.key) for m in parsed.messages]
    out += [to_outgoing(topics.statuses, s, s.key) for s in parsed.statuses]
    out += [to_outgoing(topics.unrecognized, u, None) for u in parsed.unrecognized]
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_fast_json = msgspec.json.Decoder()


def load_json(body: bytes) -> Any:
    """msgspec first (about 3x faster than `json.loads` on a status webhook); what it
    refuses goes through the standard library, which decides as before: a UTF-8 BOM
    or UTF-16 body and lone surrogates are read, NaN and Infinity are not."""
    try:
        return _fast_json.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        pass
    try:
        return json.loads(body, parse_constant=_no_constants)
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        raise InvalidPayload(f"body is not JSON: {exc}") from exc


@functools.cache
def _accepted_body(events: int) -> bytes:
    return orjson.dumps({"status": "ok", "events": events})


def _accepted(events: int) -> Response:
    """The 200 answer for a body of `events` events (its JSON built once per count)."""
    return Response(_accepted_body(events), media_type="application/json")


def outgoing_for(payload: Any, body: bytes, topics: Topics) -> list[Outgoing]:
    """Events of a parsed body; a body whose events cannot be encoded (lone UTF-16
    surrogates survive json.loads) is kept whole, as text, on the unrecognized topic."""
    received_at = datetime.now(UTC)
    try:
        return events_to_outgoing(parse_webhook(payload, received_at), topics)
    except (ValueError, UnicodeError) as exc:
        raw = body.decode("utf-8", "replace")
        kept = WebhookUnrecognized(
            event_id=fingerprint(raw),
            reason=f"cannot encode events: {type(exc).__name__}",
            received_at=received_at,
            raw=raw.encode("utf-8", "backslashreplace").decode(),
        )
        return [to_outgoing(topics.unrecognized, kept, None)]


class _Connector:
    """Keeps the publisher usable. The API starts (and stays up) while the broker is
    down, answering 503 at once until it is back; after an outage it re-creates any
    missing topic before accepting again (a restarted Tansu has lost them all).

    A failed attempt is diagnosed (`zapstream.kafka_diagnosis`): `problem` holds the
    address and the real reason, logged rate-limited with the 503s it causes. A
    mistake (unknown host, refused TLS/SASL) ends the process at start (`run_api`);
    seen later, it is logged as an error and retried like an outage."""

    def __init__(self, settings: Settings, publisher: Publisher) -> None:
        self.settings = settings
        self.publisher = publisher
        self.connected = asyncio.Event()
        self.problem: ZapstreamError | None = None
        """Why the last connection attempt failed (None: connected, or not tried yet)."""
        self._throttle = LogThrottle(LOG_EVERY_S)
        self._task: asyncio.Task[None] | None = None
        self._started = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._connect_loop())

    def broker_failed(self) -> None:
        if self.connected.is_set():
            self.connected.clear()
            self._task = asyncio.create_task(self._connect_loop())

    async def _connect_loop(self) -> None:
        bootstrap = self.settings.require_bootstrap()
        specs = all_topic_specs(self.settings)
        delay = 0.2
        while True:
            try:
                await ensure_topics(bootstrap, specs, self.settings.topic_replication_factor)
                if not self._started:
                    await self.publisher.start()
                    self._started = True
                self.connected.set()
                self.problem = None
                log.info("broker reachable at %s; accepting webhooks", bootstrap)
                return
            except Exception as exc:
                if not self._started:
                    await self.publisher.stop()
                self.problem = await diagnose(bootstrap) or BrokerUnavailable(
                    f"{type(exc).__name__}: {exc}", address=bootstrap
                )
                self._log_problem()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _log_problem(self) -> None:
        held = self._throttle.ready(str(self.problem))
        if held is None:
            return
        level = logging.ERROR if isinstance(self.problem, ConfigurationError) else logging.WARNING
        more = f" ({held} more failed attempts since the last line)" if held else ""
        log.log(level, "%s; retrying, webhooks get 503 until it is back%s", self.problem, more)

    def log_503(self, exc: BrokerUnavailable) -> None:
        held = self._throttle.ready("503")
        if held is None:
            return
        # not connected: the last attempt's diagnosis says more than "not connected"
        cause = exc if self.problem is None or self.connected.is_set() else self.problem
        more = f" ({held} more 503s since the last line)" if held else ""
        log.warning("answering 503: %s%s", cause, more)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.publisher.stop()


class WebhookFastPath:
    """The ASGI app the server runs: POST /webhook goes straight to its handler, the
    same one the FastAPI route calls; everything else (the handshake, health, metrics,
    the admin pages, the lifespan) goes through the FastAPI app.

    FastAPI wraps every request in five middlewares (server errors, exceptions, an
    exit stack, a body limit, an OpenTelemetry span) and a router; the webhook needs
    none of them: it reads its own body under its own limit, answers every error it
    knows itself, and an exception it does not know still gets a 500 from the server.
    Measured with the broker alone at 800 webhooks/s (`py-spy`), those layers were
    ~8 % of the API's CPU."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.handler: Callable[[Request], Awaitable[Response]] = app.state.webhook_handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/webhook" and scope["method"] == "POST":
            response = await self.handler(Request(scope, receive))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(settings: Settings, publisher: Publisher | None = None) -> FastAPI:
    publisher = publisher or Publisher(settings)
    connector = _Connector(settings, publisher)
    metrics = IngestMetrics()
    topics = Topics.from_settings(settings)
    secret = settings.whatsapp_app_secret.get_secret_value()
    verify_token = settings.whatsapp_verify_token.get_secret_value()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        connector.start()
        try:
            yield
        finally:
            await connector.stop()

    app = FastAPI(title="zapstream webhook", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.metrics = metrics
    app.state.publisher = publisher

    @app.get("/webhook")
    async def verify(request: Request) -> Response:
        q = request.query_params
        if q.get("hub.mode") == "subscribe" and q.get("hub.verify_token") == verify_token:
            return PlainTextResponse(q.get("hub.challenge", ""))
        log.warning("webhook verification refused", extra={"mode": q.get("hub.mode")})
        return _error(403, "verification_failed", "hub.mode or hub.verify_token is wrong")

    async def receive(request: Request) -> Response:
        started = time.perf_counter()
        outcome, response = await _handle(request)
        count, latency = metrics.of_outcome(outcome)
        count.inc()
        latency.observe(time.perf_counter() - started)
        return response

    # A plain Starlette route: the handler takes the raw request (the signature is
    # over the exact bytes), so FastAPI's dependency solving and wrappers add nothing
    # but CPU on the hottest path (measured with the stack at 300 webhooks/s: the API
    # spent 1.25 ms of CPU per webhook through a FastAPI route, 1.09 through this).
    app.router.add_route("/webhook", receive, methods=["POST"], include_in_schema=False)
    app.state.webhook_handler = receive  # for `WebhookFastPath`

    async def _handle(request: Request) -> tuple[str, Response]:
        try:
            body = await read_limited(request, settings.webhook_max_body_bytes)
            verify_signature(body, request.headers.get("x-hub-signature-256"), secret)
            payload = load_json(body)
            items = outgoing_for(payload, body, topics)
            if not connector.connected.is_set():
                raise BrokerUnavailable("not connected", address=settings.kafka_bootstrap_servers)
            await publisher.publish(items)
        except PayloadTooLarge as exc:
            return "too_large", _error(413, "payload_too_large", str(exc))
        except InvalidSignature as exc:
            log.warning("rejected webhook: %s", exc.reason)
            return "bad_signature", _error(401, "invalid_signature", exc.reason)
        except InvalidPayload as exc:
            return "bad_json", _error(400, "invalid_json", exc.reason)
        except BrokerUnavailable as exc:
            connector.broker_failed()
            connector.log_503(exc)
            # exc.reason, not str(exc): the broker's address stays out of the answer
            return "broker_unavailable", _error(503, "broker_unavailable", exc.reason)
        for item in items:
            metrics.published_to(item.topic).inc()
        return "accepted", _accepted(len(items))

    app.include_router(handoffs_router(settings, publisher, connector.connected.is_set))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Response:
        bootstrap = settings.kafka_bootstrap_servers or ""
        ok = connector.connected.is_set() and await asyncio.to_thread(
            broker_answers, bootstrap, 1000
        )
        if ok:
            return JSONResponse({"status": "ready"})
        return _error(503, "not_ready", "broker not reachable")

    app.include_router(dashboard_router(settings))

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(exposition(metrics.registry), media_type=CONTENT_TYPE)

    app.include_router(search_router(settings))
    return app
