"""Handoff: the bot is silent while a human has the conversation, whatever the engine;
a handoff opens, expires and is released with deterministic ids and lifecycle events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from processors.actions import EmbedText, MarkRead, RequestHandoff, SendTemplate, SendText
from processors.debounce import Pending, close
from processors.echo_engine import EchoEngine
from processors.engine import (
    HANDOFF_ACTIVE,
    Decision,
    GuardedEngine,
    SyncEngineAdapter,
    enforce_handoff,
    expire_handoff,
    observe_turn,
    track_handoff,
)
from processors.handoff.lifecycle import open_by_agent, release, turn_events
from processors.playbook import create_engine
from schemas.conversation import Session, Turn
from schemas.events import MessageReceived
from schemas.handoff import handoff_id_for

T0 = datetime(2026, 1, 6, 12, 0, tzinfo=UTC)
USER = "5511900000001"
ACTIONS = (
    MarkRead(message_id="m1"),
    SendText(body="oi"),
    SendTemplate(name="t"),
    RequestHandoff(reason="again"),
    EmbedText(message_id="m1", text="oi"),
)


def turn(mid: str = "m1", text: str = "oi", at: datetime = T0) -> Turn:
    m = MessageReceived(
        message_id=mid,
        user_id=USER,
        wa_id=USER,
        phone_number_id="100",
        type="text",
        sent_at=at,
        received_at=at,
        text=text,
        raw={},
    )
    return close(Pending(user_id=USER, messages=(m,), first_at=at, last_at=at), at, "quiet")


def in_handoff(since: datetime = T0, hid: str = "hnd_x") -> Session:
    return Session.new(
        USER, last_inbound_at=since, handoff_active=True, handoff_since=since, handoff_id=hid
    )


def test_while_a_handoff_is_open_no_message_read_receipt_or_second_request_goes_out() -> None:
    s = in_handoff()
    result = enforce_handoff(s, s, ACTIONS)
    assert result.actions == (EmbedText(message_id="m1", text="oi"),)  # inbound still embedded
    assert {d.reason for d in result.dropped} == {HANDOFF_ACTIVE}
    assert len(result.dropped) == 4


def test_the_turn_that_opens_a_handoff_may_announce_it_and_the_turn_after_release_is_answered() -> (
    None
):
    idle = Session.new(USER)
    assert enforce_handoff(idle, in_handoff(), ACTIONS).actions == ACTIONS
    assert enforce_handoff(in_handoff(), idle, ACTIONS).actions == ACTIONS
    assert enforce_handoff(None, idle, ACTIONS).actions == ACTIONS


def test_a_handoff_expires_only_after_its_time() -> None:
    s = in_handoff()
    assert expire_handoff(s, T0 + timedelta(hours=23), timedelta(hours=24)) == s
    ended = expire_handoff(s, T0 + timedelta(hours=24), timedelta(hours=24))
    assert ended is not None
    assert not ended.handoff_active
    assert ended.handoff_id is None
    assert expire_handoff(s, T0 + timedelta(days=300), None) == s  # 0: never


def test_a_requested_handoff_opens_with_an_id_derived_from_the_turn() -> None:
    t = turn()
    after = observe_turn(None, t, T0)
    decision = Decision(after, (RequestHandoff(reason="asked"),), "x")
    opened = track_handoff(None, decision, t, T0).session
    assert opened.handoff_active
    assert opened.handoff_since == T0
    assert opened.handoff_id == handoff_id_for(USER, t.turn_id)
    assert track_handoff(None, decision, t, T0).session == opened  # a replay: the same id


def test_an_open_handoff_keeps_its_id_and_start_whatever_the_engine_says() -> None:
    before = in_handoff()
    t = turn("m2", at=T0 + timedelta(minutes=5))
    engine_says = before.updated(handoff_since=t.opened_at, handoff_id=None)
    decision = Decision(engine_says, (RequestHandoff(reason="again"),), "x")
    kept = track_handoff(before, decision, t, t.opened_at).session
    assert (kept.handoff_id, kept.handoff_since) == (before.handoff_id, before.handoff_since)


async def test_the_echo_engine_is_silenced_by_an_open_handoff_and_answers_after_release() -> None:
    engine = GuardedEngine(SyncEngineAdapter(EchoEngine()))
    s = in_handoff()
    d = await engine.decide(s, turn("m2", at=T0 + timedelta(minutes=1)), T0 + timedelta(minutes=1))
    assert d.actions == ()
    assert [x.reason for x in d.dropped] == [HANDOFF_ACTIVE]
    assert d.session.handoff_active
    assert d.session.handoff_id == "hnd_x"
    released = release(d.session, at=T0 + timedelta(minutes=2))
    assert released is not None
    after, event = released
    assert (event.event, event.handoff_id, event.event_id) == (
        "released",
        "hnd_x",
        "hnd_x:released",
    )
    d2 = await engine.decide(
        after, turn("m3", at=T0 + timedelta(minutes=3)), T0 + timedelta(minutes=3)
    )
    assert [type(a) for a in d2.actions] == [SendText]


async def test_an_unreleased_handoff_expires_and_the_bot_answers_that_turn() -> None:
    engine = GuardedEngine(SyncEngineAdapter(EchoEngine()), handoff_expiry=timedelta(hours=1))
    s = in_handoff()
    later = T0 + timedelta(hours=2)
    t = turn("m9", at=later)
    d = await engine.decide(s, t, later)
    assert [type(a) for a in d.actions] == [SendText]
    assert not d.session.handoff_active
    events = turn_events(s, d.session, t, d.actions, later)
    assert [(e.event, e.handoff_id) for e in events] == [("expired", "hnd_x")]


async def test_the_playbook_hands_off_on_request_then_stays_silent() -> None:
    engine = GuardedEngine(SyncEngineAdapter(create_engine()))
    t1 = turn("m1", "quero falar com um atendente")
    d1 = await engine.decide(None, t1, T0)
    assert d1.session.handoff_active
    assert any(isinstance(a, SendText) for a in d1.actions)  # "um atendente vai falar com você"
    events = turn_events(None, d1.session, t1, d1.actions, T0)
    assert [(e.event, e.source, e.handoff_id) for e in events] == [
        ("opened", "engine", handoff_id_for(USER, t1.turn_id))
    ]
    assert events[0].text == "quero falar com um atendente"
    at = T0 + timedelta(seconds=30)
    t2 = turn("m2", "oi? tem alguém aí?", at)
    d2 = await engine.decide(d1.session, t2, at)
    assert not [a for a in d2.actions if not isinstance(a, EmbedText)]
    assert turn_events(d1.session, d2.session, t2, d2.actions, at) == []


async def test_two_fallbacks_in_a_row_hand_off() -> None:
    engine = GuardedEngine(SyncEngineAdapter(create_engine()))
    d1 = await engine.decide(None, turn("m1", "xyzzy plugh"), T0)
    at = T0 + timedelta(seconds=10)
    t2 = turn("m2", "qwerty asdf", at)
    d2 = await engine.decide(d1.session, t2, at)
    assert d2.session.handoff_active
    events = turn_events(d1.session, d2.session, t2, d2.actions, at)
    assert [e.event for e in events] == ["opened"]
    assert "fallbacks" in (events[0].reason or "")


def test_an_agent_opens_a_handoff_once_with_an_id_from_the_command() -> None:
    opened = open_by_agent(None, USER, opened_by="control:3:41", at=T0, reason="vip")
    assert opened is not None
    session, event = opened
    assert session.handoff_id == handoff_id_for(USER, "control:3:41")
    assert (event.event, event.source, event.reason) == ("opened", "agent", "vip")
    assert open_by_agent(session, USER, opened_by="control:3:42", at=T0, reason="x") is None
    assert release(Session.new(USER), at=T0) is None
