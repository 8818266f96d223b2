"""The per-user intake step: dedupe by message id, debounce, and the offset fence that
makes a replay after a crash change nothing that was already applied."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from processors.debounce import DebounceConfig
from processors.user_state import Intake, Origin, SeenEntry, UserState, intake, with_session
from schemas.conversation import Session
from schemas.events import MessageReceived

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
QUIET = DebounceConfig(quiet_ms=1500, max_ms=5000, max_messages=10)
OFF = DebounceConfig(quiet_ms=0)


def msg(i: int, at: datetime) -> MessageReceived:
    return MessageReceived(
        message_id=f"wamid.{i}",
        user_id="5511987654321",
        wa_id="5511987654321",
        phone_number_id="100000000000001",
        type="text",
        sent_at=at,
        received_at=at,
        text=f"m{i}",
        raw={"id": f"wamid.{i}"},
    )


class Log:
    """A partition's records and a store of the user's state and seen entries, where a
    crash loses every write after a given record: a model of the worker."""

    def __init__(self, cfg: DebounceConfig) -> None:
        self.cfg = cfg
        self.state: UserState | None = None
        self.seen: dict[str, SeenEntry] = {}
        self.turns: list[tuple[str, ...]] = []

    def apply(self, record: MessageReceived | datetime, offset: int) -> Intake:
        entry = None if isinstance(record, datetime) else self.seen.get(record.message_id)
        step = intake(self.state, record, Origin(0, offset), entry, self.cfg)
        if step.seen is not None and isinstance(record, MessageReceived):
            self.seen[record.message_id] = step.seen
        if step.state is not None:
            state = step.state
            if step.turn is not None:
                self.turns.append(tuple(step.turn.message_ids))
                state = with_session(state, Session.new("5511987654321", last_turn_id=step.turn.turn_id))
            self.state = state
        return step


def burst() -> list[MessageReceived | datetime]:
    """Two messages half a second apart, then the tick past the quiet time."""
    return [msg(1, T0), msg(2, T0 + timedelta(seconds=0.5)), T0 + timedelta(seconds=2.1)]


def test_a_burst_closed_by_its_tick_is_one_turn() -> None:
    log = Log(QUIET)
    records = burst()
    for offset, record in enumerate(records):
        log.apply(record, offset)
    assert log.turns == [("wamid.1", "wamid.2")]
    assert log.state is not None
    assert log.state.pending is None


def test_a_replay_of_a_burst_whose_turn_closed_but_whose_tail_was_not_committed_gives_no_second_turn() -> None:
    # Hole 2: the tick closed the turn and the state was stored, but the committed offset
    # was still at the second message when the worker died. The replay of the tail must
    # not open a new burst of a different set of messages (a second reply).
    log = Log(QUIET)
    records = burst()
    for offset, record in enumerate(records):
        log.apply(record, offset)
    for offset, record in list(enumerate(records))[1:]:  # committed offset was 1
        step = log.apply(record, offset)
        assert step.outcome == "replayed"
    assert log.turns == [("wamid.1", "wamid.2")]


def test_a_crash_before_the_state_was_stored_replays_into_the_same_turn() -> None:
    log = Log(QUIET)
    records = burst()
    log.apply(records[0], 0)
    log.apply(records[1], 1)
    before = log.state
    log.apply(records[2], 2)  # the turn is decided and published ...
    log.state = before  # ... but the worker died before the state write landed
    log.apply(records[2], 2)
    assert log.turns == [("wamid.1", "wamid.2"), ("wamid.1", "wamid.2")]  # same turn, same ids


def test_a_replayed_older_turn_changes_nothing_on_a_newer_session() -> None:
    # Hole 3: the session has moved past turn 1; replaying turn 1's record must neither
    # count it again nor decide it again.
    log = Log(OFF)
    log.apply(msg(1, T0), 0)
    log.apply(msg(2, T0 + timedelta(seconds=5)), 1)
    newer = log.state
    step = log.apply(msg(1, T0), 0)
    assert step.outcome == "replayed"
    assert step.turn is None
    assert log.state == newer
    assert log.turns == [("wamid.1",), ("wamid.2",)]


def test_meta_redelivering_a_message_in_another_record_is_a_duplicate() -> None:
    log = Log(OFF)
    log.apply(msg(1, T0), 0)
    step = log.apply(msg(1, T0 + timedelta(seconds=30)), 7)
    assert step.outcome == "duplicate"
    assert log.turns == [("wamid.1",)]


def test_the_same_record_read_again_before_its_state_was_stored_is_not_a_duplicate() -> None:
    log = Log(OFF)
    before = log.state
    log.apply(msg(1, T0), 0)
    log.state = before  # the seen entry landed, the state did not
    step = log.apply(msg(1, T0), 0)
    assert step.outcome == "applied"
    assert step.turn is not None


def test_the_engine_runs_at_the_event_time_not_the_wall_clock() -> None:
    tick_at = T0 + timedelta(seconds=2)
    log = Log(QUIET)
    log.apply(msg(1, T0), 0)
    step = log.apply(tick_at, 1)
    assert step.now == tick_at
    assert step.turn is not None
    assert step.turn.closed_at == tick_at


def test_an_early_tick_stores_nothing() -> None:
    log = Log(QUIET)
    log.apply(msg(1, T0), 0)
    step = log.apply(T0 + timedelta(seconds=0.2), 1)
    assert step.outcome == "tick"
    assert step.state is None


def test_the_state_round_trips_through_its_bytes_and_a_moved_partition_is_not_fenced() -> None:
    log = Log(QUIET)
    log.apply(msg(1, T0), 4)
    assert log.state is not None
    again = UserState.decode(log.state.encode())
    assert again == log.state
    assert again is not None
    assert again.already_applied(Origin(0, 4))
    assert not again.already_applied(Origin(1, 2))
    entry = SeenEntry(1764417600.125, "3:99")
    assert SeenEntry.decode(entry.encode()) == entry
