"""Debounce with the default playbook engine, on two worker processes in one group."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator

import pytest

from ingest.samples import new_wamid
from tests.support.stack import Sandbox, Stack, new_user

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(broker_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp(f"debounce-{broker_kind}"),
        broker=broker_kind,
        WORKERS="2",
        # Long enough that a loaded 2-core machine still posts a test's burst within it
        # (a gap longer than the quiet time really is two turns).
        DEBOUNCE_QUIET_MS="3000",
        DEBOUNCE_MAX_MS="10000",
    ).start()
    yield s
    assert s.stop() == 0, s.output()


def turns_of(stack: Stack, user: str, count: int) -> list[list[str]]:
    rows = stack.wait_for_rows(
        f"SELECT message_ids FROM turns WHERE user_id = '{user}' ORDER BY decided_at",
        count,
        timeout=30,
    )
    return [json.loads(r[0]) if isinstance(r[0], str) else r[0] for r in rows]


def test_five_messages_within_a_second_become_one_turn_in_order_with_one_answer(
    stack: Stack,
) -> None:
    sandbox = Sandbox(stack)
    user = new_user()
    ids = [new_wamid() for _ in range(5)]
    for i, wamid in enumerate(ids):
        assert (
            stack.post_text(
                ["oi", "tudo bem?", "queria saber", "o horário", "de vocês"][i],
                wa_id=user,
                message_id=wamid,
                timestamp=int(time.time()) - 10 + i,
            ).status_code
            == 200
        )
        time.sleep(0.15)
    assert turns_of(stack, user, 1) == [ids]
    assert sandbox.wait_for(user, 1, kind="text", timeout=15)  # the FAQ answer on opening hours
    sandbox.settle()
    sent = [m for m in sandbox.messages(user) if m["type"] != "read"]
    assert len(sent) == 1, sent  # one answer to all five


def test_two_users_interleaved_never_mix(stack: Stack) -> None:
    a, b = new_user(), new_user()
    a_ids, b_ids = [new_wamid() for _ in range(3)], [new_wamid() for _ in range(3)]
    for i in range(3):
        assert (
            stack.post_text(
                f"a{i}", wa_id=a, message_id=a_ids[i], timestamp=int(time.time()) - 10 + i
            ).status_code
            == 200
        )
        assert (
            stack.post_text(
                f"b{i}", wa_id=b, message_id=b_ids[i], timestamp=int(time.time()) - 10 + i
            ).status_code
            == 200
        )
    assert turns_of(stack, a, 1) == [a_ids]
    assert turns_of(stack, b, 1) == [b_ids]


def test_two_workers_share_the_partitions_and_every_user_gets_exactly_one_answer(
    stack: Stack,
) -> None:
    sandbox = Sandbox(stack)
    users = [new_user() for _ in range(12)]
    for user in users:
        assert stack.post_text("bom dia", wa_id=user).status_code == 200
    for user in users:
        assert sandbox.wait_for(user, 1, kind="interactive", timeout=30), user
    sandbox.settle()
    for user in users:
        assert len([m for m in sandbox.messages(user) if m["type"] == "interactive"]) == 1
    workers = {name for name in stack.child_pids() if name.startswith("worker")}
    assert workers == {"worker1", "worker2"}


def test_bursts_cut_by_a_worker_sigkill_are_each_answered_exactly_once(stack: Stack) -> None:
    # Hole 2: a burst whose turn closed but whose tail was not yet committed must not be
    # replayed into a different set of messages (a second reply), wherever the kill
    # falls: before the tick, between the tick and the state write, after it.
    sandbox = Sandbox(stack)
    users = [new_user() for _ in range(8)]
    texts = ["oi", "tudo bem?", "qual o horário de vocês?"]
    for round_ in range(2):
        for i, text in enumerate(texts):
            for user in users:
                sent_at = int(time.time()) - 30 + 10 * round_ + i
                assert stack.post_text(text, wa_id=user, timestamp=sent_at).status_code == 200
        if round_ == 0:
            os.kill(stack.child_pids()["worker1"], signal.SIGKILL)
        time.sleep(3.5)  # past the quiet time: the next round is a new burst
    for user in users:
        if len(sandbox.wait_for(user, 2, kind="text", timeout=90)) < 2:
            turns = stack.query(
                "SELECT message_ids, intent, actions, dropped FROM turns "
                f"WHERE user_id = '{user}' ORDER BY decided_at"
            )
            inbound = stack.query(
                f"SELECT message_id, text, received_at FROM messages WHERE user_id = '{user}'"
            )
            raise AssertionError((user, turns, inbound, sandbox.messages(user), stack.output()))
    sandbox.settle()
    for user in users:
        answers = [m for m in sandbox.messages(user) if m["type"] == "text"]
        assert len(answers) == 2, (user, answers)  # one per burst, never a second
