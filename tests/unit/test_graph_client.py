from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aiohttp
import httpx
import pytest

from processors.graph_client import (
    GraphClient,
    SendOutcome,
    build_message_body,
    is_bsuid,
)
from schemas.outbound import OutboundMessage, outbound_id_for
from tests.support.graph_stub import GraphStub, Handler
from tests.support.loopback_http import LoopbackServer
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


@asynccontextmanager
async def client_with(handler: Handler) -> AsyncIterator[tuple[GraphClient, GraphStub]]:
    """The Graph client, talking HTTP to a loopback Graph API answering with `handler`."""
    async with GraphStub(handler) as graph, GraphClient(loopback_settings(graph.url)) as client:
        yield client, graph


async def test_a_text_reply_posts_the_graph_body_with_the_bearer_token():
    async with client_with(ok("wamid.XYZ")) as (client, recorder):
        outcome = await client.send(message(reply_to="wamid.IN1"))
    request = recorder.requests[0]
    assert request.method == "POST"
    assert request.url.path == f"/v21.0/{PNID}/messages"
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
    async with client_with(ok()) as (client, recorder):
        with pytest.raises(GraphPermanentError) as info:
            await client.send(message(kind, payload))
    assert info.value.outbound_id == outbound_id_for("turn-1")
    assert recorder.requests == []


async def test_mark_read_returns_no_wamid():
    async with client_with(lambda r: httpx.Response(200, json={"success": True})) as (client, _):
        outcome = await client.send(message("mark_read", {"message_id": "wamid.IN1"}))
    assert outcome.wamid is None


async def test_an_undeliverable_recipient_raises_a_permanent_error_with_context():
    async with client_with(graph_error(400, 131026)) as (client, _):
        with pytest.raises(GraphPermanentError) as info:
            await client.send(message())
    error = info.value
    assert (error.status_code, error.code, error.outbound_id) == (
        400,
        131026,
        outbound_id_for("turn-1"),
    )


async def test_throttling_raises_rate_limited_with_retry_after():
    async with client_with(graph_error(429, 130429, {"Retry-After": "4"})) as (client, _):
        with pytest.raises(GraphRateLimited) as info:
            await client.send(message())
    assert info.value.retry_after == 4.0
    assert not info.value.per_recipient


async def test_pair_rate_limit_raises_a_per_recipient_rate_limit():
    async with client_with(graph_error(400, 131056)) as (client, _):
        with pytest.raises(GraphRateLimited) as info:
            await client.send(message())
    assert info.value.per_recipient


async def test_a_5xx_without_json_is_transient():
    async with client_with(lambda r: httpx.Response(502, text="<html>bad gateway</html>")) as (
        client,
        _,
    ):
        with pytest.raises(GraphTransientError) as info:
            await client.send(message())
    assert info.value.status_code == 502
    assert info.value.retryable


async def test_a_wrong_token_is_a_permanent_190():
    async with client_with(graph_error(401, 190)) as (client, _):
        with pytest.raises(GraphPermanentError) as info:
            await client.send(message())
    assert info.value.code == 190


async def test_no_answer_is_transient():
    def hang_up(request: httpx.Request) -> httpx.Response:
        raise ConnectionAbortedError

    async with client_with(hang_up) as (client, graph):
        with pytest.raises(GraphTransientError) as info:
            await client.send(message())
    assert info.value.outbound_id == outbound_id_for("turn-1")
    assert len(graph.requests) == 1


async def test_an_answer_later_than_the_send_timeout_is_transient():
    async with LoopbackGraph(hold_s=30) as graph:
        s = loopback_settings(graph.url, send_timeout_s=0.3)
        async with GraphClient(s) as client:
            with pytest.raises(GraphTransientError) as info:
                await client.send(message())
    assert "Timeout" in str(info.value)
    assert info.value.outbound_id == outbound_id_for("turn-1")


async def test_an_accepted_send_without_a_message_id_is_reported_sent(caplog):
    async with client_with(lambda r: httpx.Response(200, text="not json")) as (client, _):
        outcome = await client.send(message())
    assert outcome.wamid is None
    assert outcome.status_code == 200


async def test_the_token_and_raw_numbers_never_reach_logs_or_errors(caplog):
    caplog.set_level(logging.DEBUG)
    async with client_with(graph_error(400, 131026)) as (client, _):
        with pytest.raises(GraphPermanentError) as info:
            await client.send(message())
    async with client_with(ok()) as (client2, _):
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
            download = request.url.copy_with(path="/lookaside/m/4321")
            return httpx.Response(200, json={"url": str(download), "id": "4321"})
        return httpx.Response(200, content=b"jpeg-bytes")

    async with client_with(handler) as (client, recorder):
        url = await client.get_media_url("4321")
        content = await client.download_media(url)
    assert url.endswith("/lookaside/m/4321")
    assert content == b"jpeg-bytes"
    assert [r.method for r in recorder.requests] == ["GET", "GET"]
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in recorder.requests)


async def test_a_missing_media_id_raises_a_classified_error():
    async with client_with(graph_error(400, 100)) as (client, _):
        with pytest.raises(GraphPermanentError) as info:
            await client.get_media_url("nope")
    assert info.value.code == 100


async def test_a_shared_session_is_not_closed_but_an_owned_one_is():
    async with GraphStub(ok()) as graph:
        shared = aiohttp.ClientSession()
        async with GraphClient(loopback_settings(graph.url), shared) as client:
            await client.send(message())
        assert not shared.closed
        await shared.close()
        owned = GraphClient(loopback_settings(graph.url))
        await owned.send(message())
        session = owned._session
        await owned.aclose()
    assert len(graph.requests) == 2
    assert session is not None
    assert session.closed


# --- the default client, against a real HTTP server on loopback ---------------------
class LoopbackGraph:
    """A minimal Graph API on a free loopback port (aiohttp's server): records each
    request and how many were in flight at once; `mode` picks the answer."""

    def __init__(self, mode: str = "ok", hold_s: float = 0.0) -> None:
        self.mode, self.hold_s = mode, hold_s
        self.requests: list[tuple[str, dict[str, Any], str | None]] = []
        self.in_flight = self.most_in_flight = 0
        self.peers: set[int] = set()
        self._server: LoopbackServer | None = None
        self._release = asyncio.Event()
        self.url = ""

    async def __aenter__(self) -> LoopbackGraph:
        from aiohttp import web

        async def handle(request: web.Request) -> web.StreamResponse:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            peer = request.transport.get_extra_info("peername") if request.transport else None
            if peer:
                self.peers.add(peer[1])
            try:
                body = await request.json()
                self.requests.append((request.path, body, request.headers.get("Authorization")))
                n = len(self.requests)
                with contextlib.suppress(TimeoutError):  # held until hold_s or the end
                    await asyncio.wait_for(self._release.wait(), self.hold_s)
                if self.mode == "drop":  # read the request, then hang up without answering
                    assert request.transport is not None
                    request.transport.close()
                    return web.Response(status=200)
                if self.mode == "garbage":
                    return web.Response(status=200, body=b"<html>not json</html>")
                return web.json_response(
                    {"messages": [{"id": f"wamid.{n}"}], "contacts": [{"wa_id": PHONE}]}
                )
            finally:
                self.in_flight -= 1

        app = web.Application()
        app.router.add_post("/{version}/{pnid}/messages", handle)
        self._server = LoopbackServer(app)
        self.url = await self._server.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._release.set()
        await self._server.__aexit__(*exc)


def loopback_settings(url: str, **kw: Any) -> Settings:
    return settings().model_copy(update={"graph_api_base_url": url, **kw})


async def test_the_default_client_sends_to_a_real_server_and_reads_the_answer() -> None:
    async with LoopbackGraph() as graph, GraphClient(loopback_settings(graph.url)) as client:
        outcome = await client.send(message())
    assert outcome.wamid == "wamid.1"
    assert outcome.contact_id == PHONE
    assert outcome.status_code == 200
    path, body, auth = graph.requests[0]
    assert path == f"/v21.0/{PNID}/messages"
    assert body["to"] == PHONE
    assert body["text"] == {"body": "hello"}
    assert auth == f"Bearer {TOKEN}"


async def test_the_default_client_keeps_to_its_connection_limit_and_reuses_connections() -> None:
    async with LoopbackGraph(hold_s=0.05) as graph:
        s = loopback_settings(graph.url, graph_max_connections=4)
        async with GraphClient(s) as client:
            outcomes = await asyncio.gather(
                *(client.send(message(outbound_id=f"out_{i}")) for i in range(40))
            )
    assert len({o.wamid for o in outcomes}) == 40
    assert graph.most_in_flight <= 4
    assert len(graph.peers) <= 4  # 40 requests over at most 4 kept-alive connections


async def test_a_refused_connection_is_a_transient_error() -> None:
    async with LoopbackGraph() as graph:
        url = graph.url  # the port is closed again when the server stops
    async with GraphClient(loopback_settings(url)) as client:
        with pytest.raises(GraphTransientError) as info:
            await client.send(message())
    assert info.value.retryable
    assert "ClientConnectorError" in str(info.value)  # the real cause, not "ConnectTimeout"
    assert TOKEN not in str(info.value)


async def test_a_connection_dropped_before_the_answer_is_a_transient_error() -> None:
    async with (
        LoopbackGraph(mode="drop") as graph,
        GraphClient(loopback_settings(graph.url)) as client,
    ):
        with pytest.raises(GraphTransientError) as info:
            await client.send(message())
    assert info.value.retryable
    assert len(graph.requests) == 1


async def test_an_answer_that_is_not_json_is_reported_sent_without_a_wamid() -> None:
    async with (
        LoopbackGraph(mode="garbage") as graph,
        GraphClient(loopback_settings(graph.url)) as client,
    ):
        outcome = await client.send(message())
    assert outcome.status_code == 200
    assert outcome.wamid is None


async def test_a_graph_base_url_of_a_wrong_scheme_is_a_permanent_error() -> None:
    async with GraphClient(loopback_settings("ftp://127.0.0.1:1")) as client:
        with pytest.raises(GraphPermanentError) as info:
            await client.send(message())
    assert "bad Graph API URL" in str(info.value)
    assert info.value.outbound_id == outbound_id_for("turn-1")
