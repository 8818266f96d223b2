"""ENGINE=http: actions from a remote service; any failure gives a safe fallback reply."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import httpx
import pytest

from processors.actions import MarkRead, SendButtons, SendText
from processors.engine import observe_turn
from processors.http_engine import FALLBACK_INTENT, FALLBACK_TEXT, HttpEngine
from schemas.conversation import Session, Turn
from tests.support.events import single_turn
from tests.support.loopback_http import LoopbackServer

T0 = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)
USER = "5511900000001"
URL = "http://decider.test/decide"


def turn(text: str = "oi") -> Turn:
    return single_turn(text, user=USER, at=T0)


def engine(handler) -> HttpEngine:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return HttpEngine(URL, timeout_s=0.5, client=client)


def answer(doc: object, status: int = 200):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=doc)

    return handler


async def test_the_service_answer_becomes_the_decision():
    doc = {
        "intent": "faq_hours",
        "actions": [
            {"action": "mark_read", "message_id": "m1"},
            {"action": "send_buttons", "body": "Escolha", "buttons": [["a", "Um"]]},
        ],
        "session": {"language": "en"},
    }
    d = await engine(answer(doc)).decide(None, turn(), T0)
    assert d.intent == "faq_hours"
    assert d.actions == (
        MarkRead(message_id="m1"),
        SendButtons(body="Escolha", buttons=(("a", "Um"),)),
    )
    assert (d.session.language, d.session.last_intent, d.session.turn_count) == (
        "en",
        "faq_hours",
        1,
    )


async def test_the_request_carries_the_turn_the_session_and_now():
    seen: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json={"actions": []})

    s = Session.new(USER, language="pt")
    await engine(handler).decide(s, turn("olá"), T0)
    (body,) = seen
    assert body["schema_version"] == 1
    assert body["now"] == T0.isoformat()
    assert body["turn"]["messages"][0]["text"] == "olá"  # type: ignore[index]
    assert body["session"]["language"] == "pt"  # type: ignore[index]


def raise_timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("slow", request=request)


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("refused", request=request)


def not_json(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, text="<html>oops</html>")


@pytest.mark.parametrize(
    ("handler", "reason"),
    [
        (raise_timeout, "no answer within 0.5 s"),
        (refuse, "transport error ConnectError"),
        (answer({"error": "boom"}, status=500), "status 500"),
        (not_json, "not JSON"),
        (answer(["not", "an", "object"]), "not a JSON object"),
        (answer({"actions": [{"action": "send_fax"}]}), "action refused"),
        (answer({"actions": [{"action": "send_text", "body": "x" * 5000}]}), "action refused"),
        (answer({"actions": [], "session": {"turn_count": 99}}), "`session` may only set"),
        (answer({"actions": [], "session": {"opted_out": "maybe"}}), "session change refused"),
    ],
    ids=[
        "timeout",
        "refused",
        "5xx",
        "not-json",
        "not-object",
        "unknown-action",
        "too-long",
        "forbidden-field",
        "bad-field",
    ],
)
async def test_any_failure_gives_a_safe_fallback_reply_and_logs_why(handler, reason, caplog):
    caplog.set_level(logging.WARNING, logger="processors.http_engine")
    d = await engine(handler).decide(Session.new(USER, language="en"), turn(), T0)
    assert d.intent == FALLBACK_INTENT
    assert d.actions == (MarkRead(message_id="m1"), SendText(body=FALLBACK_TEXT["en"]))
    assert d.session.turn_count == 1  # the turn still counts: the window reopened
    (record,) = caplog.records
    assert reason in record.reason  # type: ignore[attr-defined]
    assert record.turn_id == d.session.last_turn_id  # type: ignore[attr-defined]


async def test_no_apology_while_a_human_has_the_conversation():
    t = turn()
    s = observe_turn(None, t, T0).updated(handoff_active=True, last_turn_id=None)
    d = await engine(raise_timeout).decide(s, t, T0)
    assert d.actions == (MarkRead(message_id="m1"),)


async def test_an_engine_without_a_client_makes_one_on_first_use_and_closes_it():
    e = HttpEngine(URL, timeout_s=0.2)
    assert e._client is None  # nothing opened at construction
    client = e._http()
    assert client.timeout.read == 0.2
    await e.aclose()
    assert client.is_closed


# --- the default client (httpx over aiohttp's pool), against a real server on loopback
class Decider:
    """A decision service on a free loopback port; `hold_s` delays each answer."""

    def __init__(self, hold_s: float = 0.0) -> None:
        self.hold_s = hold_s
        self.url = ""

    async def __aenter__(self) -> Decider:
        import asyncio

        from aiohttp import web

        async def handle(request: web.Request) -> web.Response:
            await request.json()
            await asyncio.sleep(self.hold_s)
            return web.json_response(
                {"intent": "greet", "actions": [{"action": "send_text", "body": "hi there"}]}
            )

        app = web.Application()
        app.router.add_post("/decide", handle)
        self._server = LoopbackServer(app)
        self.url = f"{await self._server.__aenter__()}/decide"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._server.__aexit__(*exc)


async def test_the_default_client_gets_the_answer_of_a_real_service():
    async with Decider() as decider:
        e = HttpEngine(decider.url, timeout_s=5.0)
        try:
            d = await e.decide(None, turn(), T0)
        finally:
            await e.aclose()
    assert d.intent == "greet"
    assert SendText(body="hi there") in d.actions


@pytest.mark.parametrize("case", ["slow", "refused"])
async def test_the_default_client_falls_back_when_the_service_is_slow_or_gone(case, caplog):
    caplog.set_level(logging.WARNING, logger="processors.http_engine")
    async with Decider(hold_s=3.0) as decider:
        url = decider.url
        e = HttpEngine(url, timeout_s=0.3)
        try:
            if case == "slow":
                d = await e.decide(Session.new(USER, language="en"), turn(), T0)
        finally:
            if case == "slow":
                await e.aclose()
    if case == "refused":  # the server is gone: its port refuses connections
        try:
            d = await e.decide(Session.new(USER, language="en"), turn(), T0)
        finally:
            await e.aclose()
    assert d.intent == FALLBACK_INTENT
    (record,) = caplog.records
    expected = "no answer within" if case == "slow" else "transport error"
    assert expected in record.reason  # type: ignore[attr-defined]
