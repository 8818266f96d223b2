"""ENGINE=echo: one quoted reply per inbound message, for load tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from processors.actions import SendText
from processors.debounce import Pending, close
from processors.echo_engine import EchoEngine
from schemas.events import MessageReceived

T0 = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)
USER = "5511900000001"


def msg(mid: str, text: str | None, type_: str = "text", at: float = 0) -> MessageReceived:
    when = T0 + timedelta(seconds=at)
    return MessageReceived(
        message_id=mid,
        user_id=USER,
        wa_id=USER,
        phone_number_id="100",
        type=type_,
        sent_at=when,
        received_at=when,
        text=text,
        raw={},
    )


def test_echo_replies_once_per_message_quoting_it():
    messages = (msg("m1", "oi", at=0), msg("m2", "tudo bem?", at=1))
    turn = close(Pending(user_id=USER, messages=messages, first_at=T0, last_at=T0), T0, "quiet")
    d = EchoEngine().decide(None, turn, T0)
    assert d.actions == (
        SendText(body="echo: oi", reply_to="m1"),
        SendText(body="echo: tudo bem?", reply_to="m2"),
    )
    assert (d.intent, d.session.turn_count) == ("echo", 1)


def test_media_without_text_echoes_its_type():
    turn = close(
        Pending(user_id=USER, messages=(msg("m1", None, "image"),), first_at=T0, last_at=T0),
        T0,
        "immediate",
    )
    (reply,) = EchoEngine().decide(None, turn, T0).actions
    assert reply == SendText(body="echo: image", reply_to="m1")
