"""The handoff admin API (bearer ADMIN_TOKEN on every route):

    GET  /handoffs                      open handoffs (DuckDB `handoffs`, through the sink)
    POST /handoffs                      {"user_id", "reason"}: an agent takes the conversation
    POST /handoffs/{user_id}/reply      {"text"}: the agent's message, through the high lane
    POST /handoffs/{user_id}/release    the bot answers again

Opening and releasing are control records on the inbound topic (`schemas.control`),
run in the user's lane by the worker (ordered with the user's messages, applied
once). A reply is an `OutboundMessage` on the outbound high topic, so it takes the
same rate limits, retries and send ledger as the bot's replies: with an
`Idempotency-Key` header its outbound id is derived from the key, so a retried call
sends once; without one each call is a new message. Commands answer 202 once the
broker holds them. Who the user is (their number, the business number they wrote to)
is read from DuckDB: a user never seen there is 404.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from ingest.auth import admin_guard
from ingest.publisher import Outgoing, Publisher, to_outgoing
from processors.actions import TEXT_BODY_MAX, SendText, outbound_payload
from schemas.control import control_value
from schemas.handoff import HandoffEvent, event_id_for
from schemas.outbound import OutboundMessage, outbound_id_for
from schemas.topics import Topics
from zapstream.db_query import QueryFailed, query
from zapstream.errors import BrokerUnavailable
from zapstream.settings import Settings

USER_ID = re.compile(r"^[A-Za-z0-9._:+-]{1,128}$")
"""A wa_id (digits) or a business-scoped user id: nothing that needs quoting in SQL."""
IDEMPOTENCY_KEY_MAX = 200
REASON_MAX = 500
REPLY_STALE_AFTER = timedelta(hours=1)
OPEN = ("open", "notify_failed")
LIST_SQL = (
    "SELECT handoff_id, user_id, reason, source, opened_at, notified_at, renotified_at, "
    "first_agent_reply_at, outcome FROM handoffs WHERE outcome IN ('open', 'notify_failed') "
    "ORDER BY opened_at LIMIT 1000"
)


class OpenRequest(BaseModel):
    user_id: str
    reason: str = Field(default="agent", max_length=REASON_MAX)


class ReplyRequest(BaseModel):
    text: str


def _error(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


class _Refused(Exception):
    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.response = _error(status, error, detail)


def _json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def reply_outbound_id(user_id: str, idempotency_key: str | None) -> str:
    """Derived from the key (same key, same id: the sender sends once), else random."""
    if idempotency_key:
        return outbound_id_for(f"agent_reply\x1f{user_id}\x1f{idempotency_key}")
    return f"out_{uuid.uuid4().hex}"


def reply_text_problem(text: str) -> str | None:
    if not text.strip():
        return "text is empty"
    if len(text) > TEXT_BODY_MAX:
        return f"text has {len(text)} characters (limit {TEXT_BODY_MAX})"
    return None


def handoffs_router(
    settings: Settings, publisher: Publisher, connected: Callable[[], bool] = lambda: True
) -> APIRouter:
    router = APIRouter(prefix="/handoffs", dependencies=[Depends(admin_guard(settings))])
    topics = Topics.from_settings(settings)

    async def read(sql: str) -> list[dict[str, Any]]:
        try:
            columns, rows = await asyncio.to_thread(query, settings, sql)
        except QueryFailed as exc:
            raise _Refused(503, "duckdb_unavailable", str(exc)) from exc
        return [dict(zip(columns, (_json(v) for v in r), strict=True)) for r in rows]

    async def known_user(user_id: str) -> dict[str, Any]:
        if not USER_ID.match(user_id):
            raise _Refused(422, "invalid_user_id", "user_id must be a wa_id or a BSUID")
        found = await read(
            "SELECT wa_id, bsuid, phone_number_id FROM messages "
            f"WHERE user_id = '{user_id}' ORDER BY received_at DESC LIMIT 1"
        )
        if not found:
            raise _Refused(404, "unknown_user", "no message from this user in DuckDB")
        return found[0]

    async def send(items: list[Outgoing]) -> None:
        try:
            if not connected():
                raise BrokerUnavailable("not connected")
            await publisher.publish(items)
        except BrokerUnavailable as exc:
            raise _Refused(503, "broker_unavailable", exc.reason) from exc

    async def command(user_id: str, kind: str, **fields: Any) -> None:
        value = control_value(kind, time.time(), **fields)
        await send([Outgoing(topics.inbound, user_id.encode(), value)])

    @router.get("")
    async def list_open() -> JSONResponse:
        try:
            return JSONResponse({"handoffs": await read(LIST_SQL)})
        except _Refused as refused:
            return refused.response

    @router.post("")
    async def open_handoff(body: OpenRequest) -> JSONResponse:
        try:
            await known_user(body.user_id)
            await command(body.user_id, "handoff_open", reason=body.reason or "agent")
        except _Refused as refused:
            return refused.response
        return JSONResponse({"status": "accepted", "user_id": body.user_id}, status_code=202)

    @router.post("/{user_id}/release")
    async def release(user_id: str) -> JSONResponse:
        try:
            await known_user(user_id)
            await command(user_id, "handoff_release", by="agent")
        except _Refused as refused:
            return refused.response
        return JSONResponse({"status": "accepted", "user_id": user_id}, status_code=202)

    @router.post("/{user_id}/reply")
    async def reply(
        user_id: str,
        body: ReplyRequest,
        idempotency_key: str | None = Header(default=None, alias="Idempotency-Key"),
    ) -> JSONResponse:
        problem = reply_text_problem(body.text)
        if problem:
            return _error(422, "invalid_text", problem)
        if idempotency_key is not None and not 0 < len(idempotency_key) <= IDEMPOTENCY_KEY_MAX:
            return _error(422, "invalid_idempotency_key", f"1 to {IDEMPOTENCY_KEY_MAX} characters")
        try:
            who = await known_user(user_id)
            open_now = await read(
                "SELECT handoff_id FROM handoffs WHERE outcome IN ('open', 'notify_failed') "
                f"AND user_id = '{user_id}' ORDER BY opened_at DESC LIMIT 1"
            )
            handoff_id = open_now[0]["handoff_id"] if open_now else None
            now = datetime.now(UTC)
            oid = reply_outbound_id(user_id, idempotency_key)
            _, payload = outbound_payload(SendText(body=body.text))
            message = OutboundMessage(
                outbound_id=oid,
                user_id=user_id,
                to=who["wa_id"] or who["bsuid"] or user_id,
                phone_number_id=who["phone_number_id"] or settings.whatsapp_phone_number_id,
                priority="high",
                kind="text",
                payload={k: v for k, v in payload.items() if k != "type"},
                turn_id=f"agent_reply:{oid}",
                created_at=now,
                not_after=now + REPLY_STALE_AFTER,
            )
            event = HandoffEvent(
                event_id=event_id_for(None, "agent_reply", oid),
                event="agent_reply",
                handoff_id=handoff_id,
                user_id=user_id,
                at=now,
                outbound_id=oid,
            )
            await send(
                [
                    to_outgoing(topics.outbound_high, message, user_id),
                    to_outgoing(topics.handoffs, event, user_id),
                ]
            )
        except _Refused as refused:
            return refused.response
        doc = {"status": "accepted", "outbound_id": oid, "handoff_id": handoff_id}
        return JSONResponse(doc, status_code=202)

    return router
