"""GraphClient against the real sandbox over HTTP (uvicorn on free loopback ports)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from starlette.types import ASGIApp

from ingest.parse import parse_webhook
from processors.graph_client import GraphClient
from schemas.outbound import OutboundMessage, outbound_id_for
from zapstream.errors import GraphPermanentError, GraphRateLimited, GraphTransientError
from zapstream.sandbox.app import (
    SandboxConfig,
    SandboxRecorder,
    SendFastPath,
    create_sandbox_app,
)
from zapstream.settings import Settings

TOKEN = "sandbox-test-token"
SECRET = "sandbox-test-secret"
PNID = "106540352242922"
USER = "5511987654321"


class Served:
    """An ASGI app under uvicorn in a background thread, on a socket bound here (no
    port race); stopped by asking the server to exit and joining its thread."""

    def __init__(self, app: ASGIApp) -> None:
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say
        # so, and accepted sockets copy it; with proto 0 Nagle costs ~40 ms a request.
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            loop="asyncio",
            http="h11",
            ws="none",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert self.thread.is_alive(), "uvicorn died while starting"
            assert time.monotonic() < deadline, "uvicorn did not start in 10 s"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
        assert not self.thread.is_alive(), "uvicorn did not stop"


@dataclass
class Sandbox:
    url: str
    recorder: SandboxRecorder
    received: list[tuple[bytes, str | None]]

    def settings(self, token: str = TOKEN) -> Settings:
        return Settings(
            _env_file=None,
            graph_api_base_url=self.url,
            whatsapp_access_token=token,
            whatsapp_phone_number_id=PNID,
        )

    async def configure(self, **knobs: Any) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.url) as http:
            response = await http.post("/_sandbox/config", json=knobs)
        response.raise_for_status()
        return response.json()

    async def get(self, path: str, **params: str) -> Any:
        async with httpx.AsyncClient(base_url=self.url) as http:
            response = await http.get(path, params=params)
        response.raise_for_status()
        return response.json()


def receiver_app(received: list[tuple[bytes, str | None]]) -> FastAPI:
    app = FastAPI()

    @app.post("/webhook")
    async def webhook(request: Request) -> dict[str, bool]:
        received.append((await request.body(), request.headers.get("x-hub-signature-256")))
        return {"ok": True}

    return app


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    received: list[tuple[bytes, str | None]] = []
    with Served(receiver_app(received)) as receiver:
        config = SandboxConfig(
            access_token=TOKEN,
            app_secret=SECRET,
            phone_number_ids=frozenset({PNID}),
            webhook_url=f"{receiver.url}/webhook",
            status_delays_s=(0.0, 0.02, 0.02),
            seed=1,
        )
        app = create_sandbox_app(config)
        # served as `zapstream sandbox` serves it: sends through the fast path
        with Served(SendFastPath(app)) as served:
            yield Sandbox(served.url, app.state.recorder, received)


def outbound(
    kind: str = "text", payload: dict[str, Any] | None = None, **kw: Any
) -> OutboundMessage:
    fields: dict[str, Any] = {
        "outbound_id": outbound_id_for(kw.pop("turn_id", "turn-1")),
        "user_id": kw.get("to", USER),
        "to": USER,
        "phone_number_id": PNID,
        "kind": kind,
        "payload": {"text": {"body": "Olá!"}} if payload is None else payload,
        "turn_id": "turn-1",
        "created_at": datetime.now(UTC),
    }
    return OutboundMessage(**(fields | kw))


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_a_text_reply_is_recorded_once_with_the_graph_shape(sandbox):
    async with GraphClient(sandbox.settings()) as client:
        outcome = await client.send(outbound(reply_to="wamid.IN1"))
    assert outcome.wamid is not None
    assert outcome.wamid.startswith("wamid.")
    assert outcome.contact_id == USER
    [recorded] = sandbox.recorder.messages(USER)
    assert recorded.wamid == outcome.wamid
    assert recorded.body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": USER,
        "type": "text",
        "text": {"body": "Olá!"},
        "context": {"message_id": "wamid.IN1"},
        "biz_opaque_callback_data": outbound_id_for("turn-1"),
    }
    listed = await sandbox.get("/_sandbox/messages", to=USER)
    assert [m["wamid"] for m in listed] == [outcome.wamid]
    assert datetime.fromisoformat(listed[0]["received_at"]) <= datetime.now(UTC)


async def test_a_wrong_token_is_refused_with_190_and_nothing_is_recorded(sandbox):
    async with GraphClient(sandbox.settings(token="wrong")) as client:
        with pytest.raises(GraphPermanentError) as info:
            await client.send(outbound())
    assert (info.value.code, info.value.status_code) == (190, 401)
    assert "wrong" not in str(info.value)
    assert sandbox.recorder.messages() == []
    assert (await sandbox.get("/_sandbox/stats"))["errors"] == {"190": 1}


async def test_injected_500s_are_classified_retryable(sandbox):
    await sandbox.configure(fail_500_rate=1.0)
    async with GraphClient(sandbox.settings()) as client:
        with pytest.raises(GraphTransientError) as info:
            await client.send(outbound())
    assert info.value.retryable
    assert (info.value.status_code, info.value.code) == (500, 131000)
    assert sandbox.recorder.messages() == []


async def test_throttling_answers_130429_with_retry_after(sandbox):
    await sandbox.configure(throttle_rate=1.0, retry_after_s=2)
    async with GraphClient(sandbox.settings()) as client:
        with pytest.raises(GraphRateLimited) as info:
            await client.send(outbound())
    assert (info.value.status_code, info.value.code) == (429, 130429)
    assert info.value.retry_after == 2.0
    assert not info.value.per_recipient


async def test_pair_rate_limit_is_per_recipient(sandbox):
    await sandbox.configure(pair_min_interval_s=60)
    async with GraphClient(sandbox.settings()) as client:
        await client.send(outbound())
        with pytest.raises(GraphRateLimited) as info:
            await client.send(outbound(turn_id="turn-2"))
        await client.send(outbound(to="5511900000000", turn_id="turn-3"))  # someone else: fine
    assert (info.value.status_code, info.value.code) == (400, 131056)
    assert info.value.per_recipient
    assert len(sandbox.recorder.messages(USER)) == 1
    await sandbox.configure(pair_min_interval_s=0, pair_rate_rate=1.0)
    async with GraphClient(sandbox.settings()) as client:
        with pytest.raises(GraphRateLimited, match="131056"):
            await client.send(outbound(to="5511911111111"))


async def test_a_permanently_failing_recipient_gets_131026(sandbox):
    await sandbox.configure(permanent_fail_recipients=[USER])
    async with GraphClient(sandbox.settings()) as client:
        with pytest.raises(GraphPermanentError) as info:
            await client.send(outbound())
    assert (info.value.code, info.value.outbound_id) == (131026, outbound_id_for("turn-1"))
    assert USER not in str(info.value)


async def test_outside_the_window_text_fails_with_131047_but_a_template_passes(sandbox):
    await sandbox.configure(outside_window_recipients=[USER])
    template = {"template": {"name": "hello_world", "language": {"code": "pt_BR"}}}
    async with GraphClient(sandbox.settings()) as client:
        with pytest.raises(GraphPermanentError) as info:
            await client.send(outbound())
        outcome = await client.send(outbound("template", template, turn_id="turn-2"))
    assert info.value.code == 131047
    assert [m.wamid for m in sandbox.recorder.messages(USER)] == [outcome.wamid]


async def test_status_webhooks_arrive_signed_in_order_and_parse(sandbox):
    async with GraphClient(sandbox.settings()) as client:
        outcome = await client.send(outbound())
    await eventually(lambda: len(sandbox.received) == 3)
    statuses = []
    for body, signature in sandbox.received:
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert signature == expected
        statuses.append(json.loads(body)["entry"][0]["changes"][0]["value"]["statuses"][0])
    assert [s["status"] for s in statuses] == ["sent", "delivered", "read"]
    assert {s["id"] for s in statuses} == {outcome.wamid}
    assert {s["recipient_id"] for s in statuses} == {USER}
    assert statuses[0]["conversation"]["origin"]["type"] == "service"
    assert "expiration_timestamp" in statuses[0]["conversation"]
    assert statuses[1]["pricing"]["category"] == "service"
    parsed = [
        parse_webhook(json.loads(body), datetime.now(UTC)).statuses[0]
        for body, _ in sandbox.received
    ]
    assert [(p.wamid, p.status, p.user_id) for p in parsed] == [
        (outcome.wamid, s, USER) for s in ("sent", "delivered", "read")
    ]
    assert parsed[0].biz_opaque_callback_data == outbound_id_for("turn-1")
    await eventually(lambda: sandbox.recorder.stats()["webhooks"]["delivered"] == 3)


async def test_a_bsuid_recipient_is_answered_and_reported_by_user_id(sandbox):
    bsuid = "BR.1502576394655843"
    async with GraphClient(sandbox.settings()) as client:
        outcome = await client.send(outbound(to=bsuid))
    assert outcome.contact_id == bsuid
    await eventually(lambda: len(sandbox.received) == 3)
    status = json.loads(sandbox.received[0][0])["entry"][0]["changes"][0]["value"]["statuses"][0]
    assert status["recipient_user_id"] == bsuid
    assert "recipient_id" not in status


async def test_mark_as_read_answers_success_and_is_not_a_message(sandbox):
    async with GraphClient(sandbox.settings()) as client:
        outcome = await client.send(outbound("mark_read", {}, reply_to="wamid.IN7"))
    assert outcome.wamid is None
    assert sandbox.recorder.reads() == ["wamid.IN7"]
    assert sandbox.recorder.messages() == []


async def test_a_media_id_resolves_to_a_url_that_downloads_with_the_token(sandbox):
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        registered = await http.post("/_sandbox/media", content=b"jpeg bytes")
    media_id = registered.json()["id"]
    async with GraphClient(sandbox.settings()) as client:
        url = await client.get_media_url(media_id)
        content = await client.download_media(url)
    assert url.startswith(sandbox.url)
    assert content == b"jpeg bytes"


async def test_malformed_requests_get_graph_code_100(sandbox):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=sandbox.url, headers=headers) as http:
        no_body = await http.post(
            f"/v21.0/{PNID}/messages",
            json={"messaging_product": "whatsapp", "to": USER, "type": "text", "text": {}},
        )
        wrong_number = await http.post(
            "/v21.0/999/messages",
            json={
                "messaging_product": "whatsapp",
                "to": USER,
                "type": "text",
                "text": {"body": "x"},
            },
        )
    assert no_body.status_code == 400
    error = no_body.json()["error"]
    assert error["code"] == 100
    assert error["error_data"]["messaging_product"] == "whatsapp"
    assert "body" in error["error_data"]["details"]
    assert error["fbtrace_id"]
    assert wrong_number.json()["error"]["error_subcode"] == 33


async def test_a_dead_webhook_receiver_never_breaks_the_sandbox(sandbox):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    try:
        await sandbox.configure(webhook_url=f"http://127.0.0.1:{dead.getsockname()[1]}/webhook")
        async with GraphClient(sandbox.settings()) as client:
            await client.send(outbound())
            await eventually(lambda: sandbox.recorder.stats()["webhooks"]["failed"] == 3)
            second = await client.send(outbound(turn_id="turn-2"))
        assert second.wamid is not None
        assert sandbox.received == []
    finally:
        dead.close()


async def test_status_webhooks_can_be_switched_off(sandbox):
    await sandbox.configure(status_webhooks=False)
    async with GraphClient(sandbox.settings()) as client:
        await client.send(outbound())
    await asyncio.sleep(0.2)
    assert sandbox.received == []


async def test_seeded_faults_repeat_exactly(sandbox):
    async def run() -> list[bool]:
        await sandbox.configure(seed=7, fail_500_rate=0.5)
        results = []
        async with GraphClient(sandbox.settings()) as client:
            for i in range(20):
                try:
                    await client.send(outbound(to=f"55119000000{i:02d}", turn_id=f"t{i}"))
                    results.append(True)
                except GraphTransientError:
                    results.append(False)
        return results

    first, second = await run(), await run()
    assert first == second
    assert 0 < sum(first) < 20


async def test_reset_clears_messages_and_counters(sandbox):
    async with GraphClient(sandbox.settings()) as client:
        await client.send(outbound())
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        assert (await http.delete("/_sandbox/messages")).json() == {"success": True}
    assert await sandbox.get("/_sandbox/messages") == []
    assert (await sandbox.get("/_sandbox/stats"))["accepted"] == 0


async def test_added_latency_delays_every_answer(sandbox):
    await sandbox.configure(latency_ms=150)
    async with GraphClient(sandbox.settings()) as client:
        outcome = await client.send(outbound())
    assert outcome.latency_ms >= 150


async def test_knobs_are_validated_and_readable(sandbox):
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        typo = await http.post("/_sandbox/config", json={"fail_500_rat": 1})
        out_of_range = await http.post("/_sandbox/config", json={"fail_500_rate": 2})
    assert typo.status_code == 422
    assert out_of_range.status_code == 422
    config = await sandbox.configure(outside_window_recipients=[USER])
    assert config["outside_window_recipients"] == [USER]
    assert config["fail_500_rate"] == 0.0
    assert "access_token" not in config
    assert "app_secret" not in config
