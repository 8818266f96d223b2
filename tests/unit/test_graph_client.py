from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from processors.graph_client import (
    POOL_SIZE,
    GraphClient,
    HttpPools,
    SendOutcome,
    build_message_body,
    is_bsuid,
)
from schemas.outbound import OutboundMessage, outbound_id_for
from zapstream.errors import GraphPermanentError, GraphRateLimited, GraphTransientError
from zapstream.settings import Settings

TOKEN = "EAAG-secret-token-value"
PHONE = "5511987654321"
PNID = "123456789012345"


def settings() -> Settings:
    return Settings(
        _env_file=None,
        whatsapp_access_token=TOKEN,
        whatsapp_phone_number_id=PNID,
        graph_api_base_url="https://graph.test/",
        graph_api_version="v21.0",
    )


def message(
    kind: str = "text", payload: dict[str, Any] | None = None, **kw: Any
) -> OutboundMessage:
    fields: dict[str, Any] = {
        "outbound_id": outbound_id_for("turn-1"),
        "user_id": PHONE,
        "to": PHONE,
        "phone_number_id": PNID,
        "kind": kind,
        "payload": {"text": {"body": "hello"}} if payload is None else payload,
        "turn_id": "turn-1",
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    return OutboundMessage(**(fields | kw))


Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    def __init__(self, handler: Handler) -> None:
        self.requests: list[httpx.Request] = []
        self.handler = handler

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)


def ok(wamid: str = "wamid.ABC") -> Handler:
    return lambda request: httpx.Response(
        200,
        json={
            "messaging_product": "whatsapp",
            "contacts": [{"input": PHONE, "wa_id": PHONE}],
            "messages": [{"id": wamid}],
        },
    )


def graph_error(status: int, code: int, headers: dict[str, str] | None = None) -> Handler:
    body = {
        "error": {
            "message": f"(#{code}) error",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": "d"},
            "fbtrace_id": "Atrace",
        }
    }
    return lambda request: httpx.Response(status, json=body, headers=headers)


def client_with(handler: Handler) -> tuple[GraphClient, Recorder, httpx.AsyncClient]:
    recorder = Recorder(handler)
    http = httpx.AsyncClient(transport=httpx.MockTransport(recorder))
    return GraphClient(settings(), http), recorder, http


async def test_a_text_reply_posts_the_graph_body_with_the_bearer_token():
    client, recorder, http = client_with(ok("wamid.XYZ"))
    async with http:
        outcome = await client.send(message(reply_to="wamid.IN1"))
    request = recorder.requests[0]
    assert request.method == "POST"
    assert str(request.url) == f"https://graph.test/v21.0/{PNID}/messages"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": PHONE,
        "type": "text",
        "text": {"body": "hello"},
        "context": {"message_id": "wamid.IN1"},
        "biz_opaque_callback_data": outbound_id_for("turn-1"),
    }
    assert isinstance(outcome, SendOutcome)
    assert (outcome.wamid, outcome.contact_id, outcome.status_code) == ("wamid.XYZ", PHONE, 200)
    assert outcome.outbound_id == outbound_id_for("turn-1")
    assert outcome.latency_ms >= 0


def test_a_bsuid_recipient_goes_in_the_recipient_field():
    assert is_bsuid("US.13491208655302741918")
    assert is_bsuid("US.ENT.11815799212886844830")
    assert not is_bsuid(PHONE)
    body = build_message_body(message(to="BR.1502576394655843"))
    assert body["recipient"] == "BR.1502576394655843"
    assert "to" not in body


def test_interactive_template_and_media_bodies_carry_their_object():
    interactive = {"type": "button", "body": {"text": "Pick"}, "action": {"buttons": []}}
    body = build_message_body(message("interactive", {"interactive": interactive}))
    assert (body["type"], body["interactive"]) == ("interactive", interactive)
    template = {"name": "hello_world", "language": {"code": "en_US"}}
    body = build_message_body(message("template", {"template": template}))
    assert (body["type"], body["template"]) == ("template", template)
    body = build_message_body(message("media", {"image": {"id": "987", "caption": "c"}}))
    assert (body["type"], body["image"]) == ("image", {"id": "987", "caption": "c"})
    assert "context" not in body


def test_mark_read_uses_the_status_body_and_reply_to():
    msg = message("mark_read", {"typing_indicator": {"type": "text"}}, reply_to="wamid.IN9")
    assert build_message_body(msg) == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.IN9",
        "typing_indicator": {"type": "text"},
    }


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("text", {}),
        ("template", {"text": {"body": "x"}}),
        ("media", {}),
        ("media", {"image": {"id": "1"}, "video": {"id": "2"}}),
        ("mark_read", {}),
    ],
)
async def test_a_payload_that_cannot_make_a_valid_request_is_permanent_and_not_sent(kind, payload):
    client, recorder, http = client_with(ok())
    async with http:
        with pytest.raises(GraphPermanentError) as info:
            await client.send(message(kind, payload))
    assert info.value.outbound_id == outbound_id_for("turn-1")
    assert recorder.requests == []


async def test_mark_read_returns_no_wamid():
    client, _, http = client_with(lambda r: httpx.Response(200, json={"success": True}))
    async with http:
        outcome = await client.send(message("mark_read", {"message_id": "wamid.IN1"}))
    assert outcome.wamid is None


async def test_an_undeliverable_recipient_raises_a_permanent_error_with_context():
    client, _, http = client_with(graph_error(400, 131026))
    async with http:
        with pytest.raises(GraphPermanentError) as info:
            await client.send(message())
    error = info.value
    assert (error.status_code, error.code, error.outbound_id) == (
        400,
        131026,
        outbound_id_for("turn-1"),
    )


async def test_throttling_raises_rate_limited_with_retry_after():
    client, _, http = client_with(graph_error(429, 130429, {"Retry-After": "4"}))
    async with http:
        with pytest.raises(GraphRateLimited) as info:
            await client.send(message())
    assert info.value.retry_after == 4.0
    assert not info.value.per_recipient


async def test_pair_rate_limit_raises_a_per_recipient_rate_limit():
    client, _, http = client_with(graph_error(400, 131056))
    async with http:
        with pytest.raises(GraphRateLimited) as info:
            await client.send(message())
    assert info.value.per_recipient


async def test_a_5xx_without_json_is_transient():
    client, _, http = client_with(lambda r: httpx.Response(502, text="<html>bad gateway</html>"))
    async with http:
        with pytest.raises(GraphTransientError) as info:
            await client.send(message())
    assert info.value.status_code == 502
    assert info.value.retryable


async def test_a_wrong_token_is_a_permanent_190():
    client, _, http = client_with(graph_error(401, 190))
    async with http:
        with pytest.raises(GraphPermanentError) as info:
            await client.send(message())
    assert info.value.code == 190


@pytest.mark.parametrize("exc", [httpx.ReadTimeout("slow"), httpx.ConnectError("refused")])
async def test_no_answer_is_transient(exc):
    def raise_(request: httpx.Request) -> httpx.Response:
        raise exc

    client, _, http = client_with(raise_)
    async with http:
        with pytest.raises(GraphTransientError) as info:
            await client.send(message())
    assert info.value.outbound_id == outbound_id_for("turn-1")


async def test_an_accepted_send_without_a_message_id_is_reported_sent(caplog):
    client, _, http = client_with(lambda r: httpx.Response(200, text="not json"))
    async with http:
        outcome = await client.send(message())
    assert outcome.wamid is None
    assert outcome.status_code == 200


async def test_the_token_and_raw_numbers_never_reach_logs_or_errors(caplog):
    caplog.set_level(logging.DEBUG)
    client, _, http = client_with(graph_error(400, 131026))
    async with http:
        with pytest.raises(GraphPermanentError) as info:
            await client.send(message())
        client2, _, http2 = client_with(ok())
        async with http2:
            await client2.send(message())
    assert TOKEN not in repr(client)
    assert TOKEN not in str(info.value)
    assert TOKEN not in repr(info.value)
    assert {r.getMessage() for r in caplog.records} >= {"graph send", "graph call failed"}
    logged = caplog.text + " ".join(str(vars(r)) for r in caplog.records)
    assert TOKEN not in logged
    assert PHONE not in logged


async def test_media_urls_are_resolved_and_downloaded_with_the_token():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v21.0/4321":
            return httpx.Response(200, json={"url": "https://lookaside.test/m/4321", "id": "4321"})
        return httpx.Response(200, content=b"jpeg-bytes")

    client, recorder, http = client_with(handler)
    async with http:
        url = await client.get_media_url("4321")
        content = await client.download_media(url)
    assert url == "https://lookaside.test/m/4321"
    assert content == b"jpeg-bytes"
    assert [r.method for r in recorder.requests] == ["GET", "GET"]
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in recorder.requests)


async def test_a_missing_media_id_raises_a_classified_error():
    client, _, http = client_with(graph_error(400, 100))
    async with http:
        with pytest.raises(GraphPermanentError) as info:
            await client.get_media_url("nope")
    assert info.value.code == 100


async def test_a_shared_http_client_is_not_closed_but_an_owned_one_is():
    shared = httpx.AsyncClient(transport=httpx.MockTransport(ok()))
    async with GraphClient(settings(), shared):
        pass
    assert not shared.is_closed
    await shared.aclose()
    owned = GraphClient(settings())
    await owned.aclose()
    pools = owned._http
    assert isinstance(pools, HttpPools)
    assert all(c.is_closed for c in pools.clients)


def test_connections_are_spread_over_small_pools() -> None:
    assert len(HttpPools(32).clients) == 32 // POOL_SIZE
    assert len(HttpPools(5).clients) == 1
    assert len(HttpPools(POOL_SIZE + 1).clients) == 2


async def test_each_request_goes_to_the_least_busy_pool() -> None:
    gate = asyncio.Event()
    served: list[int] = []

    def transport(i: int) -> httpx.MockTransport:
        async def handler(request: httpx.Request) -> httpx.Response:
            served.append(i)
            await gate.wait()
            return httpx.Response(200, json={"ok": i})

        return httpx.MockTransport(handler)

    pools = HttpPools(24)
    pools.clients = [httpx.AsyncClient(transport=transport(i)) for i in range(3)]
    calls = [asyncio.create_task(pools.request("POST", "http://graph.test/x")) for _ in range(6)]
    await asyncio.sleep(0.01)
    assert sorted(served) == [0, 0, 1, 1, 2, 2]  # two in flight on each, none piled on one
    gate.set()
    assert [r.status_code for r in await asyncio.gather(*calls)] == [200] * 6
    await pools.aclose()
