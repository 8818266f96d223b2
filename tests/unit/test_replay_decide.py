"""The replay's re-decision (pure, in memory), its run id, and the diff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from processors import debounce
from processors.engine import load_engine
from processors.playbook import DEFAULT_PLAYBOOK
from processors.replay.decide import (
    Replayed,
    Replayer,
    RunInfo,
    engine_fingerprint,
    engine_version,
    run_id_for,
)
from processors.replay.diff import Diff, Original
from processors.replay.selection import OffsetRange
from schemas.codec import decode
from schemas.events import MessageReceived
from schemas.replay import ReplayDecided
from zapstream.settings import Settings

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
CFG = debounce.DebounceConfig(quiet_ms=1500, max_ms=5000, max_messages=10)


def msg(i: int, user: str, at: float, text: str = "oi") -> MessageReceived:
    when = T0 + timedelta(seconds=at)
    return MessageReceived(
        message_id=f"wamid.{i}",
        user_id=user,
        wa_id=user,
        phone_number_id="100000000000001",
        type="text",
        sent_at=when,
        received_at=when,
        text=text,
        raw={"id": f"wamid.{i}"},
    )


def replayer(settings: Settings | None = None, originals: dict[str, str] | None = None) -> Replayer:
    s = settings or Settings()
    return Replayer(
        load_engine(s.engine, **s.model_dump()),
        CFG,
        RunInfo("replay-test", s.engine, "v1"),
        originals or {},
    )


async def feed(r: Replayer, stream: list[MessageReceived]) -> list[Replayed]:
    out: list[Replayed] = []
    for offset, m in enumerate(stream):
        out += await r.message(0, offset, m)
    return out + await r.finish()


STREAM = [
    msg(1, "5511900000001", 0.0, "oi"),
    msg(2, "5511900000001", 0.5, "tudo bem?"),  # same burst
    msg(3, "5511900000002", 1.0, "menu"),
    msg(4, "5511900000001", 4.0, "qual o horário?"),  # after the quiet deadline: new burst
    msg(2, "5511900000001", 4.1, "tudo bem?"),  # Meta's redelivery: dropped
    msg(5, "5511900000002", 30.0, "obrigado"),
]


async def test_replayed_turns_are_the_turns_debounce_cuts_from_the_stream() -> None:
    r = replayer()
    out = await feed(r, STREAM)
    unique = [
        m for i, m in enumerate(STREAM) if m.message_id not in {x.message_id for x in STREAM[:i]}
    ]
    expected = debounce.run([(m.received_at, m) for m in unique], CFG)
    assert sorted(o.turn_id for o in out) == sorted(t.turn_id for t in expected)
    assert r.duplicates == 1
    assert r.messages == len(STREAM)
    assert r.turns == len(out) == 4


async def test_a_turn_closed_by_a_synthesized_tick_is_decided_at_its_deadline() -> None:
    out = await feed(replayer(), STREAM)
    first = decode(ReplayDecided, out[0].record)
    assert first.message_ids == ["wamid.1", "wamid.2"]
    assert first.decided_at == T0 + timedelta(seconds=0.5 + 1.5)  # last message + quiet
    last = [decode(ReplayDecided, o.record) for o in out if o.user_id == "5511900000002"]
    assert [d.decided_at for d in last] == [
        T0 + timedelta(seconds=2.5),
        T0 + timedelta(seconds=31.5),  # still open at the slice's end: closed at its deadline
    ]


async def test_records_name_the_run_and_engine_and_carry_the_original_intent() -> None:
    plain = await feed(replayer(), STREAM)
    originals = {plain[0].turn_id: "fallback"}
    out = await feed(replayer(originals=originals), STREAM)
    records = [decode(ReplayDecided, o.record) for o in out]
    assert {(d.run_id, d.engine, d.engine_version) for d in records} == {
        ("replay-test", "playbook", "v1")
    }
    assert records[0].original_intent == "fallback"
    assert all(d.original_intent is None for d in records[1:])
    assert records[0].intent == out[0].intent
    assert records[0].actions == out[0].actions
    # deterministic: the same slice makes byte-identical records
    assert [o.record for o in out] == [
        o.record for o in await feed(replayer(originals=originals), STREAM)
    ]


async def test_a_changed_playbook_changes_the_decisions(tmp_path: Path) -> None:
    changed = tmp_path / "playbook.yaml"
    changed.write_text(DEFAULT_PLAYBOOK.read_text().replace("handoff: [", "handoff: [oi, ", 1))
    before = await feed(replayer(), STREAM)
    after = await feed(replayer(Settings(playbook_path=changed)), STREAM)
    assert [o.turn_id for o in before] == [o.turn_id for o in after]
    assert before[0].intent != "handoff"
    assert after[0].intent == "handoff"
    assert any(a["action"] == "request_handoff" for a in after[0].actions)


def test_run_ids_follow_the_slice_and_the_engine_not_the_flags_order(tmp_path: Path) -> None:
    fp = engine_fingerprint(Settings().model_dump())
    ranges = [OffsetRange(0, 0, 10), OffsetRange(1, 5, 9)]
    one = run_id_for("t", ranges, ["b", "a"], fp)
    assert one.startswith("replay-")
    assert one == run_id_for("t", list(reversed(ranges)), ["a", "b", "a"], fp)
    assert one != run_id_for("t", [OffsetRange(0, 0, 11), OffsetRange(1, 5, 9)], ["a", "b"], fp)
    assert one != run_id_for("t", ranges, ["a"], fp)
    assert one != run_id_for("u", ranges, ["a", "b"], fp)
    changed = tmp_path / "playbook.yaml"
    changed.write_text(DEFAULT_PLAYBOOK.read_text() + "\n# a comment is a change too\n")
    other = engine_fingerprint(Settings(playbook_path=changed).model_dump())
    assert engine_version(other) != engine_version(fp)
    assert one != run_id_for("t", ranges, ["a", "b"], other)
    slower = engine_fingerprint(Settings(debounce_quiet_ms=3000).model_dump())
    assert one != run_id_for("t", ranges, ["a", "b"], slower)
    same = engine_fingerprint(Settings(playbook_path=DEFAULT_PLAYBOOK).model_dump())
    assert engine_version(same) == engine_version(fp)


def test_the_diff_counts_intents_and_actions_and_keeps_changed_samples() -> None:
    send = {"action": "send_text", "text": "olá"}
    read = {"action": "mark_read", "message_id": "m"}
    originals = {
        "t1": Original("greeting", [read, send]),
        "t2": Original("faq", [read, send]),
        "t3": Original("faq", [read, send]),
    }
    diff = Diff(originals, max_samples=1)
    diff.add("t1", "5511987654321", "greeting", [read, send])  # unchanged
    diff.add("t2", "5511987654321", "handoff", [read, {"action": "request_handoff"}])
    diff.add("t3", "5511987654321", "faq", [read, {"action": "send_text", "text": "new"}])
    diff.add("t9", "5511987654321", "menu", [read])  # no live decision
    assert (diff.turns, diff.matched, diff.changed, diff.unmatched) == (4, 3, 2, 1)
    doc = diff.to_dict()
    assert doc["intents"] == {
        "faq": {"original": 2, "replayed": 1},
        "greeting": {"original": 1, "replayed": 1},
        "handoff": {"original": 0, "replayed": 1},
    }
    assert doc["actions"]["send_text"] == {"original": 3, "replayed": 2}
    assert doc["actions"]["request_handoff"] == {"original": 0, "replayed": 1}
    assert doc["intent_changes"] == [{"from": "faq", "to": "handoff", "turns": 1}]
    assert len(doc["samples"]) == 1
    assert doc["samples"][0]["user"] == "55*******4321"  # masked
    text = diff.render()
    assert "faq -> handoff" in text
    assert "5511987654321" not in text


async def test_the_sink_reads_the_records_on_its_fast_path() -> None:
    from schemas.topics import Topics
    from sinks.routes import routes

    topics = Topics.from_settings(Settings())
    route = routes(topics)[topics.replay_decisions]
    for o in await feed(replayer(), STREAM):
        fast = route.decode_fast(o.record)
        assert fast is not None
        assert route.rows(o.record) == [
            ("replay_decisions", route.targets[0][1](decode(ReplayDecided, o.record)))
        ]


def test_jobs_get_whole_partitions_of_about_equal_size() -> None:
    from processors.replay.run import split

    ranges = [OffsetRange(p, 0, size) for p, size in enumerate([100, 10, 60, 50, 5, 40])]
    groups = split(ranges, 3)
    assert sorted(r for g in groups for r in g) == ranges  # each partition once, whole
    assert sorted(sum((r.end or 0) - r.start for r in g) for g in groups) == [75, 90, 100]
    assert split(ranges, 1) == [ranges]
    assert len(split(ranges[:2], 8)) == 2  # never more jobs than partitions


def test_diffs_of_parts_merge_into_the_diff_of_the_whole() -> None:
    send = {"action": "send_text", "text": "a"}
    originals = {f"t{i}": Original("faq", [send]) for i in range(4)}
    whole, left, right = (Diff(originals, max_samples=3) for _ in range(3))
    changes = [("t0", "faq"), ("t1", "handoff"), ("t2", "handoff"), ("t9", "menu")]
    for i, (turn, intent) in enumerate(changes):
        for d in (whole, left if i % 2 else right):
            d.add(turn, "5511987654321", intent, [send])
    left.merge(right)
    merged, expected = left.to_dict(), whole.to_dict()
    assert {k: v for k, v in merged.items() if k != "samples"} == {
        k: v for k, v in expected.items() if k != "samples"
    }
    assert len(merged["samples"]) == 2


async def test_a_recorded_tick_closes_the_burst_where_the_live_worker_closed_it() -> None:
    """The worker's tick came before a message that reached the topic late (its
    received_at was before the deadline): live, the burst closed without it."""
    user = "5511900000003"
    first, late = msg(10, user, 0.0, "oi"), msg(11, user, 1.2, "menu")
    r = replayer()
    out = await r.message(0, 0, first)
    out += await r.tick(0, 1, user, T0 + timedelta(seconds=1.6))
    out += await r.message(0, 2, late)
    out += await r.finish()
    assert [decode(ReplayDecided, o.record).message_ids for o in out] == [
        ["wamid.10"],
        ["wamid.11"],
    ]
    assert decode(ReplayDecided, out[0].record).decided_at == T0 + timedelta(seconds=1.6)
    # without the recorded tick the late message joins the burst (event time says so)
    plain = await feed(replayer(), [first, late])
    assert [decode(ReplayDecided, o.record).message_ids for o in plain] == [
        ["wamid.10", "wamid.11"]
    ]
    # an early or repeated tick changes nothing
    again = replayer()
    await again.message(0, 0, first)
    assert await again.tick(0, 1, user, T0 + timedelta(seconds=0.5)) == []
    assert await again.tick(0, 2, "5511999999999", T0 + timedelta(seconds=9)) == []
