"""The handoff admin API over httpx's in-process ASGI transport: auth, validation,
and what it publishes (a recording publisher; the broker path is in the e2e test)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import httpx
import orjson
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from ingest.handoffs import handoffs_router, reply_outbound_id
from ingest.publisher import Outgoing
from schemas.codec import decode
from schemas.control import parse_control
from schemas.handoff import HandoffEvent
from schemas.outbound import OutboundMessage
from schemas.topics import Topics
from sinks.migrate import migrate
from sinks.tables import TABLES
from zapstream.settings import Settings

TOKEN = "t0ken-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
USER = "5511987654321"


class Recorder:
    def __init__(self) -> None:
        self.items: list[Outgoing] = []

    async def publish(self, items: Sequence[Outgoing]) -> None:
        self.items += items


@pytest.fixture
def api(tmp_path: Path) -> tuple[Any, Recorder, Topics]:
    path = tmp_path / "z.duckdb"
    con = duckdb.connect(str(path))
    migrate(con, TABLES.values())
    con.execute(
        "INSERT INTO messages (message_id, user_id, wa_id, phone_number_id, type, text, received_at) "
        f"VALUES ('wamid.1', '{USER}', '{USER}', '100000000000009', 'text', 'oi', now())"
    )
    con.execute(
        "INSERT INTO handoff_events (event_id, event, handoff_id, user_id, event_at, reason, source) "
        f"VALUES ('h:opened', 'opened', 'hnd_1', '{USER}', now(), 'asked', 'engine')"
    )
    con.close()
    settings = Settings(duckdb_path=path, admin_token=SecretStr(TOKEN))
    recorder = Recorder()
    app = FastAPI()
    app.include_router(handoffs_router(settings, recorder))  # type: ignore[arg-type]

    def call(method: str, url: str, **kw: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return await client.request(method, url, **kw)

        return asyncio.run(go())

    return call, recorder, Topics.from_settings(settings)


def test_every_route_needs_the_admin_token(api: Any) -> None:
    call, recorder, _ = api
    assert call("GET", "/handoffs").status_code == 401
    assert call("POST", "/handoffs", json={"user_id": USER}).status_code == 401
    assert call("POST", f"/handoffs/{USER}/reply", json={"text": "x"}).status_code == 401
    assert (
        call(
            "POST", f"/handoffs/{USER}/release", headers={"Authorization": "Bearer no"}
        ).status_code
        == 401
    )
    assert recorder.items == []


def test_open_handoffs_are_listed_from_duckdb(api: Any) -> None:
    call, _, _ = api
    resp = call("GET", "/handoffs", headers=AUTH)
    assert resp.status_code == 200
    [row] = resp.json()["handoffs"]
    assert (row["handoff_id"], row["user_id"], row["outcome"], row["source"]) == (
        "hnd_1",
        USER,
        "open",
        "engine",
    )


def test_opening_and_releasing_are_control_records_on_the_users_inbound_partition(api: Any) -> None:
    call, recorder, topics = api
    assert (
        call("POST", "/handoffs", json={"user_id": USER, "reason": "vip"}, headers=AUTH).status_code
        == 202
    )
    assert call("POST", f"/handoffs/{USER}/release", headers=AUTH).status_code == 202
    kinds = []
    for item in recorder.items:
        assert (item.topic, item.key) == (topics.inbound, USER.encode())
        control = parse_control(item.value)
        assert control is not None
        kinds.append((control.kind, control.fields))
    assert kinds == [("handoff_open", {"reason": "vip"}), ("handoff_release", {"by": "agent"})]


def test_a_reply_is_a_high_priority_message_and_an_agent_reply_event(api: Any) -> None:
    call, recorder, topics = api
    headers = {**AUTH, "Idempotency-Key": "ticket-42-msg-1"}
    first = call(
        "POST", f"/handoffs/{USER}/reply", json={"text": "Olá, sou a Ana"}, headers=headers
    )
    second = call(
        "POST", f"/handoffs/{USER}/reply", json={"text": "Olá, sou a Ana"}, headers=headers
    )
    assert first.status_code == second.status_code == 202
    assert (
        first.json()["outbound_id"]
        == second.json()["outbound_id"]
        == reply_outbound_id(USER, "ticket-42-msg-1")
    )
    assert first.json()["handoff_id"] == "hnd_1"
    message = decode(OutboundMessage, recorder.items[0].value)
    assert recorder.items[0].topic == topics.outbound_high
    assert (message.to, message.phone_number_id, message.kind) == (USER, "100000000000009", "text")
    assert message.payload == {"text": {"body": "Olá, sou a Ana", "preview_url": False}}
    event = decode(HandoffEvent, recorder.items[1].value)
    assert (recorder.items[1].topic, event.event, event.outbound_id) == (
        topics.handoffs,
        "agent_reply",
        message.outbound_id,
    )
    third = call("POST", f"/handoffs/{USER}/reply", json={"text": "sem chave"}, headers=AUTH)
    assert third.json()["outbound_id"] != message.outbound_id  # no key: a new message


@pytest.mark.parametrize(
    ("url", "body", "status", "error"),
    [
        (f"/handoffs/{USER}/reply", {"text": "  "}, 422, "invalid_text"),
        (f"/handoffs/{USER}/reply", {"text": "x" * 4097}, 422, "invalid_text"),
        ("/handoffs/5511000000000/reply", {"text": "oi"}, 404, "unknown_user"),
        ("/handoffs/x';DROP TABLE messages;--/reply", {"text": "oi"}, 422, "invalid_user_id"),
        ("/handoffs", {"user_id": "5511000000000"}, 404, "unknown_user"),
        ("/handoffs/5511000000000/release", None, 404, "unknown_user"),
    ],
)
def test_bad_input_gets_a_clear_4xx_and_publishes_nothing(
    api: Any, url: str, body: Any, status: int, error: str
) -> None:
    call, recorder, _ = api
    resp = call("POST", url, json=body, headers=AUTH)
    assert resp.status_code == status, resp.text
    assert resp.json()["error"] == error
    assert recorder.items == []


def test_a_malformed_body_is_422(api: Any) -> None:
    call, recorder, _ = api
    resp = call("POST", f"/handoffs/{USER}/reply", content=orjson.dumps({"txt": 1}), headers=AUTH)
    assert resp.status_code == 422
    assert recorder.items == []
