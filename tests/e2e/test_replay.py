"""`zapstream replay` against a running stack (started as `make run` starts it).

After a playbook change, a replay records new decisions while the sandbox receives
nothing, no handoff or other outbound record is published and the live tables stay
as they were; the same replay again changes nothing; offset and time selections pick
exactly the records at their edges.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from ingest.samples import new_wamid
from processors.playbook import DEFAULT_PLAYBOOK
from processors.ticker import TICK_PREFIX
from schemas.codec import decode
from schemas.events import MessageReceived
from tests.support.stack import Sandbox, Stack, new_user, pid_alive

pytestmark = pytest.mark.e2e

PREFIX = "zapstream"  # the stack's TOPIC_PREFIX (the default)
INBOUND = f"{PREFIX}.messages.inbound.v1"
WATCHED = [  # topics a replay must never add to
    f"{PREFIX}.outbound.high.v1",
    f"{PREFIX}.outbound.low.v1",
    f"{PREFIX}.handoffs.v1",
    f"{PREFIX}.reengagements.v1",
    f"{PREFIX}.embeddings.requested.v1",
    f"{PREFIX}.turns.decided.v1",
    f"{PREFIX}.outbound.results.v1",
    INBOUND,
]


@pytest.fixture(scope="module")
def stack(broker_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp(f"replay-{broker_kind}"),
        broker=broker_kind,
        DEBOUNCE_QUIET_MS="400",
        DEBOUNCE_MAX_MS="2000",
    ).start()
    yield s
    pids = s.child_pids()
    assert s.stop() == 0, s.output()
    alive = {name: pid for name, pid in pids.items() if pid_alive(pid)}
    assert not alive, f"orphans after stop: {alive}"


def replay(stack: Stack, *args: str, **env: str) -> tuple[int, dict[str, Any] | None, str]:
    """Run the CLI as an operator would; (exit code, the JSON report, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "zapstream.cli", "replay", "--json", "--no-progress", *args],
        env={**stack.env, "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap, **env},
        capture_output=True,
        text=True,
        timeout=240,
    )
    report = json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else None
    return proc.returncode, report, proc.stderr


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


async def _read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record of `topic`, read to its end (Tansu's end_offsets can't be trusted)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, fetch_max_wait_ms=50)
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        parts = cluster.partitions_for_topic(topic)
        assert parts, f"no partitions known for {topic}"
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        while batch := await consumer.getmany(timeout_ms=1500):
            for records in batch.values():
                out.extend(records)
        return out
    finally:
        await consumer.stop()


def counts(stack: Stack) -> dict[str, int]:
    async def run() -> dict[str, int]:
        return {t: len(await _read_all(stack.bootstrap, t)) for t in WATCHED}

    return asyncio.run(run())


def inbound_of(stack: Stack, user: str) -> list[tuple[int, int, int, str]]:
    """(partition, offset, timestamp ms, message id) of `user`'s messages, in order."""
    records = asyncio.run(_read_all(stack.bootstrap, INBOUND))
    out = []
    for r in records:
        if r.key == user.encode() and not r.value.startswith(TICK_PREFIX):
            out.append(
                (r.partition, r.offset, r.timestamp, decode(MessageReceived, r.value).message_id)
            )
    return sorted(out)


def wait_sink_caught_up(stack: Stack, topic: str, timeout: float = 60.0) -> None:
    """Until the sink's group has committed every record of `topic`: all loaded."""

    async def behind() -> int:
        ends: dict[int, int] = {}
        for r in await _read_all(stack.bootstrap, topic):
            ends[r.partition] = max(ends.get(r.partition, 0), r.offset + 1)
        # the sink's group, asked through a consumer that assigns and never joins
        # (Tansu answers the admin client's OffsetFetch in a form aiokafka cannot read)
        group = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, group_id="zapstream-sink")
        await group.start()
        try:
            done = {p: await group.committed(TopicPartition(topic, p)) or 0 for p in ends}
        finally:
            await group.stop()
        return sum(max(0, end - done.get(p, 0)) for p, end in ends.items())

    deadline = time.monotonic() + timeout
    while (left := asyncio.run(behind())) > 0:
        assert time.monotonic() < deadline, f"the sink did not load {left} records of {topic}"
        time.sleep(0.5)


def live_snapshot(stack: Stack) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "turns": stack.query("SELECT * FROM turns ORDER BY turn_id"),
        "sessions": stack.query("SELECT * FROM sessions ORDER BY user_id"),
        "messages": stack.query("SELECT count(*) FROM messages"),
        "outbound": stack.query("SELECT * FROM outbound_messages ORDER BY outbound_id"),
        "results": stack.query("SELECT outbound_id, outcome FROM send_results ORDER BY 1, 2"),
    }


def changed_playbook(tmp_path: Path) -> Path:
    """The built-in playbook, except that "oi" now asks for a human."""
    path = tmp_path / "playbook.yaml"
    text = DEFAULT_PLAYBOOK.read_text(encoding="utf-8")
    assert "handoff: [" in text
    path.write_text(text.replace("handoff: [", "handoff: [oi, ", 1), encoding="utf-8")
    return path


def test_a_replay_after_a_playbook_change_records_new_decisions_and_messages_nobody(
    stack: Stack, tmp_path: Path
) -> None:
    sandbox = Sandbox(stack)
    users = [new_user() for _ in range(3)]
    start = datetime.now(UTC) - timedelta(milliseconds=200)
    for user in users:
        for text in ("oi", "tudo bem?"):  # one burst, unless the stack is slow
            assert stack.post_text(text, wa_id=user, message_id=new_wamid()).status_code == 200
    time.sleep(1.0)  # past the quiet time: the next message is a turn of its own
    for user in users:
        assert stack.post_text("menu", wa_id=user, message_id=new_wamid()).status_code == 200
    end = datetime.now(UTC) + timedelta(milliseconds=200)
    in_list = ", ".join(f"'{u}'" for u in users)
    # How the bursts were cut depends on how fast the stack ran: count what it did.
    deadline = time.monotonic() + 90
    while stack.query(
        f"SELECT coalesce(sum(message_count), 0) FROM turns WHERE user_id IN ({in_list})"
    ) != [(9,)]:
        assert time.monotonic() < deadline, stack.output()
        time.sleep(0.2)
    live = stack.query(f"SELECT turn_id, intent FROM turns WHERE user_id IN ({in_list})")
    greetings = [t for t, intent in live if intent == "greeting"]
    assert len(greetings) == 3  # each user's "oi" (alone or with "tudo bem?")
    while stack.query(
        f"SELECT count(*) FROM outbound_messages WHERE user_id IN ({in_list})"
    ) != stack.query(f"SELECT count(*) FROM send_results WHERE user_id IN ({in_list})"):
        assert time.monotonic() < deadline, stack.output()
        time.sleep(0.2)
    sandbox.settle()
    sent_before = len(sandbox.messages())
    topics_before = counts(stack)
    live_before = live_snapshot(stack)

    code, report, err = replay(
        stack,
        "--from", start.isoformat(),
        "--to", end.isoformat(),
        "--diff",
        PLAYBOOK_PATH=str(changed_playbook(tmp_path)),
    )  # fmt: skip
    assert code == 0, err
    assert report is not None
    run_id = report["run_id"]
    assert report["messages"] == 9
    assert report["turns"] == len(live)
    diff = report["diff"]
    assert (diff["matched"], diff["unmatched"]) == (len(live), 0)  # the live turns, each one
    assert {"from": "greeting", "to": "handoff", "turns": 3} in diff["intent_changes"]
    assert diff["actions"]["request_handoff"]["replayed"] >= 3

    rows = stack.wait_for_rows(
        f"SELECT turn_id, intent, original_intent, engine, actions FROM replay_decisions "
        f"WHERE run_id = '{run_id}' ORDER BY turn_id",
        len(live),
        timeout=60,
    )
    assert len(rows) == len(live)
    assert {r[0]: r[2] for r in rows} == dict(live)  # original_intent is the live one
    handoffs = {r[0]: r for r in rows if r[2] == "greeting"}
    assert set(handoffs) == set(greetings)
    assert all(r[1] == "handoff" and r[3] == "playbook" for r in handoffs.values())
    assert all("request_handoff" in str(r[4]) for r in handoffs.values())
    runs = stack.wait_for_rows(
        f"SELECT events, turns, engine FROM replay_runs WHERE run_id = '{run_id}'", 1
    )
    assert runs == [(9, len(live), "playbook")]

    # nothing reached anyone, nothing live moved
    sandbox.settle()
    assert len(sandbox.messages()) == sent_before
    assert counts(stack) == topics_before
    assert live_snapshot(stack) == live_before

    # the same replay again (split between processes this time): the same run, the
    # same rows, nothing added
    decisions_before = stack.query(f"SELECT * FROM replay_decisions WHERE run_id = '{run_id}'")
    runs_before = stack.query("SELECT * FROM replay_runs ORDER BY run_id")
    code, again, err = replay(
        stack,
        "--from", start.isoformat(),
        "--to", end.isoformat(),
        "--jobs", "2",
        "--diff",
        PLAYBOOK_PATH=str(changed_playbook(tmp_path)),
    )  # fmt: skip
    assert code == 0, err
    assert again is not None
    assert again["run_id"] == run_id
    assert again["jobs"] == min(2, len(again["ranges"]))
    assert again["turns"] == report["turns"]
    assert again["diff"]["intent_changes"] == diff["intent_changes"]
    wait_sink_caught_up(stack, f"{PREFIX}.replay.decisions.v1")
    wait_sink_caught_up(stack, f"{PREFIX}.replay.runs.v1")
    assert (
        stack.query(f"SELECT * FROM replay_decisions WHERE run_id = '{run_id}'") == decisions_before
    )
    assert stack.query("SELECT * FROM replay_runs ORDER BY run_id") == runs_before
    assert len(sandbox.messages()) == sent_before
    assert live_snapshot(stack) == live_before


def test_a_replay_goes_on_from_where_the_live_session_stood_before_the_slice(
    stack: Stack,
) -> None:
    """The user's second fallback in a row asked for a human live; replayed alone with
    the same playbook it must do the same (from an empty session it would be a first
    fallback): the replay starts from the session after the last live turn before it."""
    user = new_user()

    def live_turns() -> list[tuple[Any, ...]]:
        return stack.query(
            f"SELECT intent, session FROM turns WHERE user_id = '{user}' ORDER BY decided_at"
        )

    def post_and_wait(text: str, turns: int) -> None:
        assert stack.post_text(text, wa_id=user, message_id=new_wamid()).status_code == 200
        deadline = time.monotonic() + 90
        while len(live_turns()) < turns:
            assert time.monotonic() < deadline, stack.output()
            time.sleep(0.2)

    post_and_wait("oi", 1)
    post_and_wait("xyzzy plugh", 2)
    start = datetime.now(UTC)
    time.sleep(0.2)  # the record timestamps of the slice come after `start`
    post_and_wait("frobozz quux", 3)
    intents = [intent for intent, _ in live_turns()]
    assert intents == ["greeting", "fallback", "handoff"], intents
    assert json.loads(live_turns()[1][1])["consecutive_fallbacks"] == 1

    code, report, err = replay(stack, "--from", start.isoformat(), "--user", user, "--diff")
    assert code == 0, err
    assert report is not None
    assert (report["messages"], report["turns"], report["seeded_users"]) == (1, 1, 1), report
    assert report["diff"]["changed"] == 0, report["diff"]
    rows = stack.wait_for_rows(
        f"SELECT intent, original_intent FROM replay_decisions WHERE run_id = '{report['run_id']}'",
        1,
        timeout=60,
    )
    assert rows == [("handoff", "handoff")]


def test_selection_by_offsets_and_by_time_picks_exactly_the_records_at_the_edges(
    stack: Stack,
) -> None:
    user = new_user()
    ids = []
    for i in range(6):
        ids.append(new_wamid())
        assert stack.post_text(f"pergunta {i}", wa_id=user, message_id=ids[-1]).status_code == 200
        time.sleep(0.6)  # each its own turn, with the debounce ticks in between
    stack.wait_for_rows(f"SELECT 1 FROM turns WHERE user_id = '{user}'", 6, timeout=60)
    records = inbound_of(stack, user)
    assert [r[3] for r in records] == ids
    partition = records[0][0]
    assert {r[0] for r in records} == {partition}
    stamps = [r[2] for r in records]
    assert len(set(stamps)) == 6, stamps

    def decided_ids(*selection: str) -> list[str]:
        code, report, err = replay(stack, *selection, "--user", user)
        assert code == 0, err
        assert report is not None
        rows = stack.wait_for_rows(
            f"SELECT message_ids FROM replay_decisions WHERE run_id = '{report['run_id']}'",
            report["turns"],
            timeout=60,
        )
        assert len(rows) == report["turns"]
        return sorted(m for (doc,) in rows for m in json.loads(doc))

    o = [r[1] for r in records]
    # offsets: from A included to B excluded
    assert decided_ids("--offsets", f"{partition}:{o[1]}-{o[4]}") == sorted(ids[1:4])
    assert decided_ids("--offsets", f"{partition}:{o[1]}-{o[4] + 1}") == sorted(ids[1:5])
    assert decided_ids("--offsets", f"{partition}:{o[5]}-") == [ids[5]]
    # time: from included, to excluded, to the millisecond
    assert decided_ids("--from", iso(stamps[1]), "--to", iso(stamps[4])) == sorted(ids[1:4])
    assert decided_ids("--from", iso(stamps[1] + 1), "--to", iso(stamps[4] + 1)) == sorted(ids[2:5])


def test_bad_selections_get_a_clear_message_and_a_non_zero_exit(stack: Stack) -> None:
    code, _, err = replay(stack, "--topic", "zapstream.no.such.topic")
    assert code == 1
    assert "does not exist" in err
    code, _, err = replay(stack, "--from", "2099-01-01T00:00:00Z")
    assert code == 1
    assert "no records" in err
    code, _, err = replay(stack, "--from", "1h", "--user", "5500000000000")
    assert code == 1
    assert "no message" in err
    code, _, err = replay(stack, "--offsets", "99:0-1")
    assert code == 2
    assert "no partition 99" in err
    code, _, err = replay(stack, "--from", "yesterday")
    assert code == 2
    assert "not a time" in err


def test_a_slice_that_retention_deleted_is_refused(stack: Stack, broker_kind: str) -> None:
    if broker_kind != "kafka":
        pytest.skip("the embedded Tansu cannot delete records (no DeleteRecords)")
    from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

    user = new_user()
    for text in ("primeira", "segunda"):
        assert stack.post_text(text, wa_id=user, message_id=new_wamid()).status_code == 200
    records = inbound_of(stack, user)
    assert len(records) == 2
    partition, first, stamp, _ = records[0]

    async def delete_first() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
        await admin.start()
        try:
            tp = TopicPartition(INBOUND, partition)
            await admin.delete_records({tp: RecordsToDelete(before_offset=first + 1)})
        finally:
            await admin.close()

    asyncio.run(delete_first())
    code, _, err = replay(stack, "--offsets", f"{partition}:{first}-")
    assert code == 1
    assert f"offset {first} is no longer retained" in err
    code, _, err = replay(stack, "--from", iso(stamp), "--user", user)
    assert code == 1
    assert "no longer retained" in err
    code, report, err = replay(stack, "--offsets", f"{partition}:{first + 1}-", "--user", user)
    assert code == 0, err
    assert report is not None
    assert report["messages"] == 1
