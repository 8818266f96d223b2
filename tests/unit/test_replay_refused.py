"""A message marked as a replay's is never sent: the sender refuses it, typed and recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import httpx
import pytest

from processors.graph_client import GraphClient
from processors.sender import Sender
from schemas.codec import decode, encode
from schemas.outbound import OutboundMessage
from tests.support.graph_stub import GraphStub
from zapstream.errors import PermanentError, ReplayRefused
from zapstream.settings import Settings


def outbound(replay: str | None) -> OutboundMessage:
    return OutboundMessage(
        outbound_id="out_1",
        user_id="5511987654321",
        to="5511987654321",
        phone_number_id="100000000000001",
        kind="text",
        payload={"text": {"body": "olá"}},
        turn_id="turn-1",
        created_at=datetime(2026, 11, 26, 12, tzinfo=UTC),
        replay=replay,
    )


@asynccontextmanager
async def counting_client(
    settings: Settings,
) -> AsyncIterator[tuple[GraphClient, list[httpx.Request]]]:
    """The Graph client against a loopback Graph API that accepts every send."""
    ok = httpx.Response(200, json={"messages": [{"id": "wamid.SENT"}]})
    async with GraphStub(lambda request: ok) as graph:
        update = {"graph_api_base_url": graph.url}
        async with GraphClient(settings.model_copy(update=update)) as client:
            yield client, graph.requests


async def test_a_message_marked_as_a_replay_is_refused_and_never_reaches_the_graph_api() -> None:
    settings = Settings()
    async with counting_client(settings) as (client, calls):
        sender = Sender(client, settings)
        for priority in ("high", "low"):
            msg = outbound("replay-abc").model_copy(update={"priority": priority})
            delivery = await sender.deliver(msg)
            assert delivery.result.outcome == "refused"
            assert delivery.result.wamid is None
            assert delivery.result.attempts == 0
            assert "replay-abc" in (delivery.result.error_reason or "")
            assert delivery.dead_letter is None
    assert calls == []


async def test_the_graph_client_itself_refuses_a_marked_message() -> None:
    settings = Settings()
    async with counting_client(settings) as (client, calls):
        with pytest.raises(ReplayRefused) as caught:
            await client.send(outbound("replay-abc"))
    assert isinstance(caught.value, PermanentError)
    assert not caught.value.retryable
    assert calls == []


async def test_an_unmarked_message_still_goes_out() -> None:
    settings = Settings()
    async with counting_client(settings) as (client, calls):
        delivery = await Sender(client, settings).deliver(outbound(None))
    assert delivery.result.outcome == "sent"
    assert len(calls) == 1


def test_the_marker_survives_the_wire_and_old_records_read_as_unmarked() -> None:
    assert decode(OutboundMessage, encode(outbound("replay-abc"))).replay == "replay-abc"
    old = encode(outbound(None)).replace(b',"replay":null', b"")
    assert b"replay" not in old
    assert decode(OutboundMessage, old).replay is None
