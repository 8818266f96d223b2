"""Re-engagement rules (processors.reengage.decide), pure: any `now`, no broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from processors import debounce
from processors.reengage.decide import (
    CONTROL_KIND,
    ReengageConfig,
    check,
    quiet_of,
    quiet_of_json,
    reengage_step,
    returned_step,
)
from processors.reengage.timer import ScanRule, Seen
from processors.user_state import Origin, UserState, intake
from schemas.codec import decode, encode
from schemas.control import Control, control_value, parse_control
from schemas.conversation import Session
from schemas.events import MessageReceived
from schemas.outbound import OutboundMessage
from schemas.reengagement import Reengagement

USER = "5511987654321"
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
CFG = ReengageConfig(
    after_s=3600,
    text="Ainda por aí?",
    template="volte_sempre",
    template_language="pt_BR",
    window_margin_s=60,
)


def state(last_inbound: datetime = T0, **session: object) -> UserState:
    s = Session(
        user_id=USER,
        wa_id=USER,
        phone_number_id="100000000000001",
        first_inbound_at=last_inbound,
        last_inbound_at=last_inbound,
        **session,  # type: ignore[arg-type]
    )
    return UserState(session=s, applied=(0, 10), touched_at=last_inbound.timestamp())


def control(now: datetime, quiet_since: datetime | None = T0) -> Control:
    fields = {"quiet_since": quiet_since.isoformat()} if quiet_since else {}
    parsed = parse_control(control_value(CONTROL_KIND, now.timestamp(), **fields))
    assert parsed is not None
    return parsed


def message(sent_at: datetime, i: int = 1) -> MessageReceived:
    return MessageReceived(
        message_id=f"wamid.R{i}",
        user_id=USER,
        wa_id=USER,
        phone_number_id="100000000000001",
        type="text",
        sent_at=sent_at,
        received_at=sent_at + timedelta(seconds=1),
        text="voltei",
        raw={},
    )


def test_inside_the_window_the_text_goes_on_the_low_priority_lane() -> None:
    step = reengage_step(USER, state(), control(T0 + 2 * HOUR), CFG)
    assert step.skipped == ""
    out = step.outbound
    assert out is not None
    assert (out.kind, out.priority, out.to) == ("text", "low", USER)
    assert out.payload["text"]["body"] == "Ainda por aí?"
    # useless past the window: the sender drops it as stale rather than get 131047
    assert out.not_after == T0 + timedelta(hours=24) - timedelta(seconds=60)
    assert step.event is not None
    assert (step.event.event, step.event.kind, step.event.outbound_id) == (
        "sent",
        "text",
        out.outbound_id,
    )
    assert step.event.quiet_since == T0
    assert step.event.sent_at == T0 + 2 * HOUR
    assert step.state is not None
    assert step.state.reengaged is not None
    assert step.state.reengaged.quiet_since == T0
    decode(OutboundMessage, encode(out))  # what the sender reads


def test_outside_the_window_only_the_template_goes() -> None:
    step = reengage_step(USER, state(), control(T0 + 30 * HOUR), CFG)
    assert step.outbound is not None
    assert step.outbound.kind == "template"
    assert step.outbound.payload == {
        "template": {"name": "volte_sempre", "language": {"code": "pt_BR"}}
    }
    assert step.event is not None
    assert step.event.kind == "template"


def test_the_window_margin_closes_it_early() -> None:
    now = T0 + timedelta(hours=24) - timedelta(seconds=30)  # open, but inside the margin
    step = reengage_step(USER, state(), control(now), CFG)
    assert step.outbound is not None
    assert step.outbound.kind == "template"


def test_outside_the_window_without_a_template_nothing_goes_and_says_why() -> None:
    cfg = ReengageConfig(after_s=3600, text="Ainda por aí?", template=None)
    step = reengage_step(USER, state(), control(T0 + 30 * HOUR), cfg)
    assert step == (None, None, None, "outside_window_no_template")


def test_an_opted_out_user_gets_nothing() -> None:
    step = reengage_step(USER, state(opted_out=True), control(T0 + 2 * HOUR), CFG)
    assert (step.outbound, step.skipped) == (None, "opted_out")


def test_a_conversation_with_a_human_gets_nothing() -> None:
    st = state(handoff_active=True, handoff_since=T0)
    step = reengage_step(USER, st, control(T0 + 2 * HOUR), CFG)
    assert (step.outbound, step.skipped) == (None, "handoff_active")


def test_not_yet_quiet_long_enough_gets_nothing() -> None:
    step = reengage_step(USER, state(), control(T0 + HOUR - timedelta(seconds=1)), CFG)
    assert (step.outbound, step.skipped) == (None, "not_quiet_yet")


def test_an_open_burst_waits() -> None:
    msg = message(T0)
    st = state().model_copy(
        update={"pending": debounce.Pending(user_id=USER, messages=(msg,), first_at=T0, last_at=T0)}
    )
    assert reengage_step(USER, st, control(T0 + 2 * HOUR), CFG).skipped == "burst_open"


def test_re_engagement_off_sends_nothing() -> None:
    cfg = ReengageConfig(after_s=0, text="x")
    assert reengage_step(USER, state(), control(T0 + 2 * HOUR), cfg).skipped == "off"


def test_no_user_state_sends_nothing() -> None:
    assert reengage_step(USER, None, control(T0 + 2 * HOUR), CFG).skipped == "no_inbound"


def test_twice_in_one_quiet_period_sends_once() -> None:
    first = reengage_step(USER, state(), control(T0 + 2 * HOUR), CFG)
    assert first.state is not None
    again = reengage_step(USER, first.state, control(T0 + 3 * HOUR), CFG)
    assert (again.state, again.outbound, again.skipped) == (None, None, "already_reengaged")
    # even past the window, when the template would fit
    late = reengage_step(USER, first.state, control(T0 + 30 * HOUR), CFG)
    assert late.skipped == "already_reengaged"


def test_the_same_period_decided_twice_makes_the_same_ids() -> None:
    # two workers, or a crash between the publish and the store: the sender's ledger
    # drops the repeat because the outbound id is the same
    a = reengage_step(USER, state(), control(T0 + 2 * HOUR), CFG)
    b = reengage_step(USER, state(), control(T0 + 5 * HOUR), CFG)
    assert a.outbound is not None
    assert b.outbound is not None
    assert a.outbound.outbound_id == b.outbound.outbound_id
    assert a.event is not None
    assert b.event is not None
    assert a.event.reengagement_id == b.event.reengagement_id


def test_a_replay_of_the_control_record_changes_nothing() -> None:
    c = control(T0 + 2 * HOUR)
    first = reengage_step(USER, state(), c, CFG)
    replay = reengage_step(USER, state(), c, CFG)
    assert first == replay  # decided on the record's time: the same state and effects
    assert first.state is not None
    assert reengage_step(USER, first.state, c, CFG).state is None


def test_a_control_record_for_an_older_period_does_nothing() -> None:
    st = state(last_inbound=T0 + HOUR)  # the user wrote after the scan asked
    step = reengage_step(USER, st, control(T0 + 3 * HOUR, quiet_since=T0), CFG)
    assert (step.outbound, step.skipped) == (None, "period_changed")


def test_a_new_inbound_opens_a_new_period() -> None:
    first = reengage_step(USER, state(), control(T0 + 2 * HOUR), CFG)
    assert first.state is not None
    assert first.state.session is not None
    later = T0 + 5 * HOUR
    new_period = first.state.model_copy(
        update={"session": first.state.session.updated(last_inbound_at=later)}
    )
    assert reengage_step(USER, new_period, control(later + HOUR / 2, later), CFG).skipped == (
        "not_quiet_yet"
    )
    second = reengage_step(USER, new_period, control(later + 2 * HOUR, later), CFG)
    assert second.outbound is not None
    assert first.outbound is not None
    assert second.outbound.outbound_id != first.outbound.outbound_id
    assert second.event is not None
    assert second.event.quiet_since == later


def test_the_first_message_after_a_re_engagement_marks_it_returned_once() -> None:
    sent = reengage_step(USER, state(), control(T0 + 2 * HOUR), CFG).state
    assert sent is not None
    back = message(T0 + 3 * HOUR)
    after, event = returned_step(USER, sent, back)
    assert event is not None
    assert (event.event, event.returned_at) == ("returned", back.received_at)
    assert event.sent_at == T0 + 2 * HOUR  # the whole row: the sink upserts it
    assert after.reengaged is not None
    assert after.reengaged.returned_at == back.received_at
    again, none = returned_step(USER, after, message(T0 + 4 * HOUR, 2))
    assert none is None
    assert again == after


def test_a_late_message_of_the_old_period_is_not_a_return() -> None:
    sent = reengage_step(USER, state(), control(T0 + 2 * HOUR), CFG).state
    assert sent is not None
    assert returned_step(USER, sent, message(T0 - timedelta(minutes=5)))[1] is None


def test_no_re_engagement_no_returned_event() -> None:
    assert returned_step(USER, state(), message(T0 + HOUR))[1] is None


def test_intake_keeps_the_re_engagement_mark() -> None:
    sent = reengage_step(USER, state(), control(T0 + 2 * HOUR), CFG).state
    assert sent is not None
    cfg = debounce.DebounceConfig(0, 0, 10)
    step = intake(sent, message(T0 + 3 * HOUR), Origin(0, 11), None, cfg)
    assert step.state is not None
    assert step.state.reengaged == sent.reengaged


def test_the_mark_survives_the_state_encoding() -> None:
    sent = reengage_step(USER, state(), control(T0 + 2 * HOUR), CFG).state
    assert sent is not None
    assert UserState.decode(sent.encode()) == sent


def test_the_scan_reads_the_same_as_the_lane() -> None:
    sent = reengage_step(USER, state(), control(T0 + 2 * HOUR), CFG).state
    for st in (state(), state(opted_out=True), state(handoff_active=True), sent):
        assert st is not None
        assert quiet_of_json(orjson.loads(st.encode())) == quiet_of(st)


def test_the_scan_asks_only_for_due_users_something_fits() -> None:
    rule = ScanRule.of(CFG)

    def seen(st: UserState) -> Seen:
        return Seen(b"", 0, rule.due(quiet_of(st)))

    now = (T0 + 2 * HOUR).timestamp()
    assert rule.why_not(seen(state()), now) == ""
    assert rule.why_not(seen(state()), (T0 + HOUR / 2).timestamp()) == "not_due"
    assert rule.why_not(seen(state(opted_out=True)), now) == "handled"
    assert rule.why_not(seen(state(handoff_active=True)), now) == "handled"
    sent = reengage_step(USER, state(), control(T0 + 2 * HOUR), CFG).state
    assert sent is not None
    assert rule.why_not(seen(sent), now) == "handled"
    no_template = ScanRule.of(ReengageConfig(after_s=3600, text="x", window_margin_s=60))
    late = (T0 + 30 * HOUR).timestamp()
    due = no_template.due(quiet_of(state()))
    assert no_template.why_not(Seen(b"", 0, due), late) == "outside_window_no_template"
    # the lane agrees with the scan on every one of these
    assert check(quiet_of(state()), T0 + 30 * HOUR, CFG) == ("template", "")


def test_the_sent_event_round_trips() -> None:
    step = reengage_step(USER, state(), control(T0 + 2 * HOUR), CFG)
    assert step.event is not None
    assert decode(Reengagement, encode(step.event)) == step.event


def test_the_scan_waits_for_an_open_burst_to_close() -> None:
    rule = ScanRule.of(CFG)
    open_burst = Seen(b"", 0, rule.due(quiet_of(state())), burst_open=True)
    assert rule.why_not(open_burst, (T0 + 2 * HOUR).timestamp()) == "burst_open"


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "reengagement" / "v1"


def test_the_v1_samples_keep_decoding() -> None:
    """Frozen samples: never regenerate them from the models (a change that breaks one
    needs a new schema_version and an upgrade in schemas.codec)."""
    sent = decode(Reengagement, (FIXTURES / "reengagement_sent.json").read_bytes())
    back = decode(Reengagement, (FIXTURES / "reengagement_returned.json").read_bytes())
    assert (sent.event, sent.returned_at, back.event) == ("sent", None, "returned")
    assert back.returned_at == datetime(2026, 11, 26, 13, 30, 1, tzinfo=UTC)
    assert sent.key == USER
    stored = UserState.decode((FIXTURES / "user_state_reengaged.json").read_bytes())
    assert stored is not None
    assert stored.reengaged is not None
    assert stored.reengaged.quiet_since == datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    # the scan reads it the same way, and finds the period handled
    assert quiet_of_json(orjson.loads((FIXTURES / "user_state_reengaged.json").read_bytes())) == (
        quiet_of(stored)
    )
    c = control(datetime(2026, 11, 26, 12, 0, tzinfo=UTC), stored.reengaged.quiet_since)
    assert reengage_step(USER, stored, c, CFG).skipped == "already_reengaged"
