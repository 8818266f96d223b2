"""Policies every engine's output obeys: the 24-hour window, opt-out, repeated turns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from processors.actions import (
    EmbedText,
    MarkRead,
    RequestHandoff,
    SendButtons,
    SendMedia,
    SendTemplate,
    SendText,
)
from processors.debounce import Pending, close
from processors.engine import (
    DUPLICATE_TURN,
    OPTED_OUT,
    OUTSIDE_WINDOW,
    Decision,
    GuardedEngine,
    SyncEngineAdapter,
    enforce_opt_out,
    enforce_service_window,
    observe_turn,
    turn_decided,
    window_open,
)
from schemas.conversation import Session, Turn
from schemas.events import MessageReceived

T0 = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)
USER = "5511900000001"
REENGAGE = SendTemplate(name="reengage", language="pt_BR")
FREE_FORM = (
    MarkRead(message_id="m1"),
    SendText(body="oi"),
    SendButtons(body="menu", buttons=(("a", "A"),)),
    SendMedia(kind="image", media_id="7"),
    RequestHandoff(reason="asked"),
    EmbedText(message_id="m1", text="oi"),
)


def hours(h: float) -> datetime:
    return T0 + timedelta(hours=h)


def session(last_inbound_h: float | None = 0, **fields: object) -> Session:
    last = hours(last_inbound_h) if last_inbound_h is not None else None
    return Session.new(USER, last_inbound_at=last, **fields)


def turn(mid: str = "m1", *, sent: datetime = T0, received: datetime | None = None) -> Turn:
    m = MessageReceived(
        message_id=mid,
        user_id=USER,
        wa_id=USER,
        phone_number_id="100",
        type="text",
        sent_at=sent,
        received_at=received or sent,
        text="oi",
        raw={},
    )
    return close(Pending(user_id=USER, messages=(m,), first_at=sent, last_at=sent), sent, "quiet")


def test_inside_the_24_hours_everything_passes():
    result = enforce_service_window(session(0), FREE_FORM, hours(23.9))
    assert result.actions == FREE_FORM
    assert result.dropped == ()


def test_outside_the_24_hours_only_templates_are_sent():
    actions = (*FREE_FORM, REENGAGE)
    result = enforce_service_window(session(0), actions, hours(24))
    assert [a for a in result.actions if isinstance(a, SendText | SendButtons | SendMedia)] == []
    assert REENGAGE in result.actions
    assert {d.reason for d in result.dropped} == {OUTSIDE_WINDOW}
    assert len(result.dropped) == 3
    # Non-message actions are not sends: they stay.
    assert MarkRead(message_id="m1") in result.actions
    assert RequestHandoff(reason="asked") in result.actions


def test_outside_the_window_free_form_sends_become_one_configured_template():
    result = enforce_service_window(session(0), FREE_FORM, hours(30), fallback_template=REENGAGE)
    assert [a for a in result.actions if isinstance(a, SendTemplate)] == [REENGAGE]
    assert result.actions.index(REENGAGE) == 1  # where the first dropped send was


def test_an_existing_template_is_not_doubled_by_the_fallback():
    actions = (SendText(body="a"), REENGAGE)
    other = SendTemplate(name="other")
    result = enforce_service_window(session(0), actions, hours(30), fallback_template=other)
    assert result.actions == (REENGAGE,)


def test_without_a_known_inbound_message_the_window_is_closed():
    assert enforce_service_window(None, (SendText(body="hi"),), T0).actions == ()
    assert enforce_service_window(session(None), (SendText(body="hi"),), T0).actions == ()


def test_a_safety_margin_closes_the_window_early():
    assert window_open(T0, hours(23.99))
    assert not window_open(T0, hours(23.99), margin=timedelta(minutes=1))


def test_an_inbound_turn_reopens_the_window():
    old = session(0)
    later = hours(72)
    after = observe_turn(old, turn(sent=later), later)
    assert after.last_inbound_at == later
    assert enforce_service_window(after, (SendText(body="oi"),), later).dropped == ()


def test_an_older_turn_does_not_shrink_the_window():
    s = session(10)
    assert observe_turn(s, turn(sent=hours(5)), hours(10)).last_inbound_at == hours(10)


async def test_a_late_reply_after_24_hours_is_dropped():
    class Replies:
        name = "test"

        def decide(self, s: Session | None, t: Turn, now: datetime) -> Decision:
            return Decision(observe_turn(s, t, now), (SendText(body="sorry for the wait"),), "x")

    engine = GuardedEngine(SyncEngineAdapter(Replies()))
    # The turn sat in a backlog for 25 h (an outage): the user's window has closed.
    d = await engine.decide(None, turn(sent=T0), hours(25))
    assert d.actions == ()
    assert [x.reason for x in d.dropped] == [OUTSIDE_WINDOW]


def test_a_user_who_had_opted_out_gets_no_message():
    before = session(0, opted_out=True)
    result = enforce_opt_out(before, before, FREE_FORM)
    assert all(not isinstance(a, SendText | SendButtons | SendMedia) for a in result.actions)
    assert {d.reason for d in result.dropped} == {OPTED_OUT}


def test_the_turn_that_opts_out_may_confirm_it():
    before = session(0)
    after = before.updated(opted_out=True)
    confirm = (SendText(body="pronto"),)
    assert enforce_opt_out(before, after, confirm).actions == confirm


async def test_a_turn_already_decided_gets_no_actions():
    class Never:
        name = "never"

        async def decide(self, s: Session | None, t: Turn, now: datetime) -> Decision:
            raise AssertionError("a repeated turn must not reach the engine")

    t = turn()
    s = observe_turn(None, t, T0)
    d = await GuardedEngine(Never()).decide(s, t, T0)
    assert (d.intent, d.actions, d.session) == (DUPLICATE_TURN, (), s)


def test_observing_the_same_turn_twice_counts_it_once():
    t = turn()
    once = observe_turn(None, t, T0)
    assert observe_turn(once, t, T0).turn_count == once.turn_count == 1


def test_turn_decided_records_actions_drops_and_latency():
    t = turn(received=T0)
    result = enforce_service_window(None, (SendText(body="x"),), T0)
    d = Decision(observe_turn(None, t, T0), result.actions, "greeting", result.dropped)
    record = turn_decided(t, d, engine="playbook", decided_at=T0 + timedelta(milliseconds=250))
    assert record.latency_ms == 250
    assert record.actions == []
    assert record.dropped == [
        {
            "action": "send_text",
            "body": "x",
            "preview_url": False,
            "reply_to": None,
            "reason": OUTSIDE_WINDOW,
        }
    ]
    assert record.key == USER
    assert record.message_ids == ["m1"]


def test_turn_session_and_decision_round_trip_through_the_codec():
    from schemas.codec import decode, encode
    from schemas.conversation import TurnDecided

    t = turn()
    d = Decision(observe_turn(None, t, T0), (SendText(body="oi"),), "greeting")
    record = turn_decided(t, d, engine="playbook", decided_at=T0)
    assert decode(Turn, encode(t)) == t
    assert decode(Session, encode(d.session)) == d.session
    assert decode(TurnDecided, encode(record)) == record
