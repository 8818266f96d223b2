"""A local stand-in for the WhatsApp Cloud API, for development and tests.

It answers the Graph endpoints the sender uses (`POST /{version}/{phone_number_id}/
messages`, mark-as-read) and the media lookups and downloads of the media agent
(`zapstream.sandbox.media`: bytes a test registers) with Graph's shapes and error
bodies, records every accepted message, injects the failures a real sender meets
(500s, 130429, 131056, undeliverable recipients, the 24-hour window), and then posts
signed `sent → delivered → read` status webhooks back, as Meta does.

Test-only endpoints live under `/_sandbox/` (messages, stats, config, media bytes);
in-process tests read `app.state.recorder` (a `SandboxRecorder`) directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from starlette.types import Receive, Scope, Send

from zapstream.log import mask_phone
from zapstream.sandbox.graph import (
    BAD_TOKEN,
    INVALID_PARAMETER,
    OUTSIDE_WINDOW,
    PAIR_RATE,
    SERVER_ERROR,
    THROTTLED,
    UNDELIVERABLE,
    UNKNOWN_PATH,
    UNKNOWN_PHONE_NUMBER,
    VERSION,
    CannedError,
    recipient_of,
    send_response,
    shape_error,
    status_payload,
)
from zapstream.sandbox.media import MediaShelf, media_router
from zapstream.sandbox.recorder import RecordedMessage, SandboxRecorder
from zapstream.sandbox.webhooks import StatusWebhookSender
from zapstream.settings import Settings

log = logging.getLogger("zapstream.sandbox")

__all__ = [
    "RecordedMessage",
    "SandboxConfig",
    "SandboxKnobs",
    "SandboxRecorder",
    "create_sandbox_app",
    "run_sandbox",
]


class SandboxKnobs(BaseModel):
    """What a test may change at runtime (`POST /_sandbox/config`, partial JSON)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    fail_500_rate: float = Field(default=0.0, ge=0, le=1)
    throttle_rate: float = Field(default=0.0, ge=0, le=1)
    """Fraction answered 130429 (HTTP 429 with Retry-After)."""
    pair_rate_rate: float = Field(default=0.0, ge=0, le=1)
    """Fraction answered 131056 (HTTP 400)."""
    pair_min_interval_s: float = Field(default=0.0, ge=0)
    """>0: a second message to one recipient sooner than this is refused with 131056."""
    retry_after_s: float | None = Field(default=1.0, ge=0)
    latency_ms: float = Field(default=0.0, ge=0)
    """Every request waits this long before it is looked at (a slow network to Meta)."""
    answer_delay_ms: float = Field(default=0.0, ge=0)
    """A message is taken (recorded, its status webhooks scheduled) and the answer comes
    this much later: a caller that dies or gives up meanwhile has a send in doubt."""
    permanent_fail_recipients: frozenset[str] = frozenset()
    """Always 131026 (undeliverable)."""
    outside_window_recipients: frozenset[str] = frozenset()
    """131047 for anything but a template (the 24-hour window is closed)."""
    seed: int | None = None
    status_webhooks: bool = True
    webhook_url: str | None = None
    """Where status webhooks go (signed with the app secret); None disables them."""
    status_delays_s: tuple[float, float, float] = (0.05, 0.1, 0.1)
    """Pause before `sent`, then before `delivered`, then before `read`."""
    media_fail_next: int = Field(default=0, ge=0)
    """The next N media requests (lookups and downloads) answer 500 (code 131000)."""


class SandboxConfig(SandboxKnobs):
    access_token: SecretStr
    app_secret: SecretStr
    phone_number_ids: frozenset[str]
    display_phone_number: str = "15550001111"
    waba_id: str = "100000000000002"
    webhook_attempts: int = Field(default=3, ge=1)
    webhook_timeout_s: float = Field(default=2.0, gt=0)
    max_pending_webhooks: int = Field(default=10_000, ge=1)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> SandboxConfig:
        values: dict[str, Any] = {
            "access_token": settings.whatsapp_access_token,
            "app_secret": settings.whatsapp_app_secret,
            "phone_number_ids": frozenset({settings.whatsapp_phone_number_id}),
            "webhook_url": settings.webhook_url,
        }
        return cls(**(values | overrides))


@dataclass
class _State:
    config: SandboxConfig
    recorder: SandboxRecorder = field(default_factory=SandboxRecorder)
    rng: random.Random = field(default_factory=random.Random)
    last_sent: dict[str, float] = field(default_factory=dict)
    sender: StatusWebhookSender | None = None
    media: MediaShelf = field(default_factory=MediaShelf)

    def pending_webhooks(self) -> int:
        return self.sender.pending if self.sender is not None else 0


def _error(
    canned: CannedError, *, details: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(canned.body(details), status_code=canned.status, headers=headers)


def _fault(state: _State, to: str) -> CannedError | None:
    """The injected failure for this request, if any (drawn from the seeded rng)."""
    c, rng = state.config, state.rng
    if c.fail_500_rate and rng.random() < c.fail_500_rate:
        return SERVER_ERROR
    if c.throttle_rate and rng.random() < c.throttle_rate:
        return THROTTLED
    last = state.last_sent.get(to)
    if (
        c.pair_min_interval_s
        and last is not None
        and time.monotonic() - last < c.pair_min_interval_s
    ):
        return PAIR_RATE
    if c.pair_rate_rate and rng.random() < c.pair_rate_rate:
        return PAIR_RATE
    return None


def create_sandbox_app(config: SandboxConfig) -> FastAPI:
    """The sandbox as an ASGI app; its lifespan runs the status-webhook sender."""
    state = _State(config=config, rng=random.Random(config.seed))  # noqa: S311 - test faults

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state.sender = StatusWebhookSender(
            count=state.recorder.count,
            max_pending=config.max_pending_webhooks,
            attempts=config.webhook_attempts,
            timeout_s=config.webhook_timeout_s,
        )
        state.sender.start()
        try:
            yield
        finally:
            await state.sender.stop()

    app = FastAPI(title="zapstream Cloud API sandbox", lifespan=lifespan)
    app.state.recorder = state.recorder
    app.state.sandbox = state
    app.state.media = state.media

    def authorized(request: Request) -> bool:
        expected = f"Bearer {state.config.access_token.get_secret_value()}".encode()
        return secrets.compare_digest(request.headers.get("authorization", "").encode(), expected)

    def rejected(canned: CannedError, details: str | None = None) -> JSONResponse:
        state.recorder.count("rejected")
        state.recorder.count(f"error_{canned.code}")
        retry_after = state.config.retry_after_s
        headers = None
        if canned.status == 429 and retry_after is not None:
            headers = {"Retry-After": f"{retry_after:g}"}
        return _error(canned, details=details, headers=headers)

    # /_sandbox/* first: GET /{version}/{media_id} would match them otherwise.
    @app.get("/_sandbox/messages")
    async def list_messages(to: str | None = None) -> list[dict[str, Any]]:
        return [m.as_json() for m in state.recorder.messages(to)]

    @app.delete("/_sandbox/messages")
    async def reset_messages() -> dict[str, bool]:
        state.recorder.reset()
        state.last_sent.clear()
        return {"success": True}

    @app.get("/_sandbox/stats")
    async def stats(window_s: float = 1.0) -> dict[str, Any]:
        """Counters, and `peak_per_window`: per business number, the most messages
        accepted within any `window_s` seconds (what Meta's throughput limit counts)."""
        return state.recorder.stats() | {
            "webhooks_pending": state.pending_webhooks(),
            "peak_per_window": state.recorder.peak_rate(window_s),
        }

    @app.get("/_sandbox/config")
    async def get_config() -> dict[str, Any]:
        return state.config.model_dump(mode="json", include=set(SandboxKnobs.model_fields))

    @app.post("/_sandbox/config")
    async def set_config(knobs: SandboxKnobs) -> dict[str, Any]:
        update = knobs.model_dump(exclude_unset=True)
        state.config = state.config.model_copy(update=update)
        if "seed" in update:
            state.rng.seed(state.config.seed)
        return await get_config()

    def media_fault() -> CannedError | None:
        if state.config.media_fail_next <= 0:
            return None
        state.config = state.config.model_copy(
            update={"media_fail_next": state.config.media_fail_next - 1}
        )
        return SERVER_ERROR

    # after every other /_sandbox/ GET route: it holds GET /{version}/{media_id}
    app.include_router(
        media_router(state.media, authorized=authorized, rejected=rejected, fault=media_fault)
    )

    @app.post("/{version}/{phone_number_id}/messages")
    async def send(version: str, phone_number_id: str, request: Request) -> JSONResponse:
        """Also reached without FastAPI's layers: `SendFastPath`."""
        c = state.config
        state.recorder.count("requests")
        if c.latency_ms:
            await asyncio.sleep(c.latency_ms / 1000.0)
        if not authorized(request):
            return rejected(BAD_TOKEN)
        if not VERSION.fullmatch(version):
            return rejected(UNKNOWN_PATH)
        if phone_number_id not in c.phone_number_ids:
            return rejected(UNKNOWN_PHONE_NUMBER)
        try:
            body = json.loads(await request.body())
        except ValueError:
            return rejected(INVALID_PARAMETER, "The request body is not JSON.")
        if isinstance(body, dict) and body.get("status") == "read":
            if body.get("messaging_product") != "whatsapp" or not body.get("message_id"):
                return rejected(INVALID_PARAMETER, "Param message_id is required.")
            state.recorder.record_read(str(body["message_id"]))
            return JSONResponse({"success": True})
        if (problem := shape_error(body)) is not None:
            return rejected(INVALID_PARAMETER, problem)
        to, type_ = recipient_of(body)[0], str(body.get("type", "text"))
        if to in c.permanent_fail_recipients:
            return rejected(UNDELIVERABLE)
        if to in c.outside_window_recipients and type_ != "template":
            return rejected(OUTSIDE_WINDOW)
        if (fault := _fault(state, to)) is not None:
            return rejected(fault)
        wamid = "wamid." + uuid.uuid4().hex.upper()
        state.last_sent[to] = time.monotonic()
        state.recorder.record(wamid, to, type_, phone_number_id, body)
        log.debug("sandbox accepted", extra={"to": mask_phone(to), "wamid": wamid})
        if c.status_webhooks and c.webhook_url and state.sender is not None:
            delay, now = 0.0, int(time.time())
            for status, pause in zip(("sent", "delivered", "read"), c.status_delays_s, strict=True):
                delay += pause
                payload = status_payload(
                    status,
                    wamid=wamid,
                    request=body,
                    now=now + int(delay),
                    waba_id=c.waba_id,
                    phone_number_id=phone_number_id,
                    display_phone_number=c.display_phone_number,
                )
                secret = c.app_secret.get_secret_value()
                state.sender.schedule(delay, payload, url=c.webhook_url, secret=secret, key=wamid)
        if c.answer_delay_ms:
            await asyncio.sleep(c.answer_delay_ms / 1000.0)
        return JSONResponse(send_response(wamid, body))

    app.state.send_handler = send  # for `SendFastPath`
    return app


SEND_PATH = re.compile(r"/([^/]+)/([^/]+)/messages")


class SendFastPath:
    """The ASGI app the sandbox serves: a send (`POST /{version}/{phone_number_id}/
    messages`) goes straight to its handler, the one the FastAPI route calls;
    everything else goes through the FastAPI app.

    Each reply of a benchmark's load is one send here, and the sandbox runs on the same
    cores as the stack it stands in for Meta to: FastAPI's layers (five middlewares,
    the router, the path parameters' dependency solving) were ~16 % of its CPU
    (`py-spy`, 200 sends/s with three status webhooks each; `bench/chain_bench.py`:
    the sandbox's CPU per reply 1.15-1.30 ms before, 1.06-1.16 ms through this path).
    The handler checks its own path parameters (the version's shape, a known phone
    number id) and answers every error itself."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.handler: Callable[[str, str, Request], Awaitable[JSONResponse]] = (
            app.state.send_handler
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path = SEND_PATH.fullmatch(scope["path"])
            if path is not None and path.group(1) != "_sandbox":
                response = await self.handler(path.group(1), path.group(2), Request(scope, receive))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def run_sandbox(settings: Settings, config: SandboxConfig | None = None) -> None:
    """Serve the sandbox on SANDBOX_HOST:SANDBOX_PORT until interrupted (blocking)."""
    import uvicorn

    app = create_sandbox_app(config or SandboxConfig.from_settings(settings))
    uvicorn.run(
        SendFastPath(app),
        host=settings.sandbox_host,
        port=settings.sandbox_port,
        log_level=settings.log_level.lower(),
        access_log=False,
    )
