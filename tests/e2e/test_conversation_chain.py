"""The conversation chain end to end: webhook → Kafka → worker → Graph API (the local
sandbox, over real HTTP) → DuckDB, on each broker, started as `make run` does."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ingest.samples import new_wamid
from tests.support.stack import Sandbox, Stack, new_user

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the slow engine looks for the files that hold a user's turns."""
    return tmp_path_factory.mktemp("slow-gate")


@pytest.fixture(scope="module")
def echo_stack(
    broker_kind: str, tmp_path_factory: pytest.TempPathFactory, gate: Path
) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp(f"chain-{broker_kind}"),
        broker=broker_kind,
        ENGINE="tests.support.slow_engine:create_engine",
        SLOW_ENGINE_GATE_DIR=str(gate),
        DEBOUNCE_QUIET_MS="0",
        SEND_BACKOFF_BASE_S="0.05",
        SEND_BACKOFF_CAP_S="0.5",
        # 30 % injected 500s and 10 % throttles: a send fails 8 times in a row (the
        # default SEND_MAX_ATTEMPTS) about once in 1,500, which dead-lettered a reply
        # in a CI run; 30 attempts make that about once in 10^12.
        SEND_MAX_ATTEMPTS="30",
        PAIR_RATE_BACKOFF_S="1",
    ).start()
    yield s
    assert s.stop() == 0, s.output()


@pytest.fixture
def sandbox(echo_stack: Stack) -> Iterator[Sandbox]:
    sb = Sandbox(echo_stack)
    sb.configure(fail_500_rate=0, throttle_rate=0, pair_rate_rate=0, permanent_fail_recipients=[])
    yield sb
    sb.configure(fail_500_rate=0, throttle_rate=0, pair_rate_rate=0, permanent_fail_recipients=[])


def test_a_text_gets_one_reply_of_the_right_shape_and_lands_in_duckdb(
    echo_stack: Stack, sandbox: Sandbox
) -> None:
    user, wamid = new_user(), new_wamid()
    assert echo_stack.post_text("olá", wa_id=user, message_id=wamid).status_code == 200
    replies = sandbox.wait_for(user, 1)
    body = replies[0]["body"]
    assert body["messaging_product"] == "whatsapp"
    assert body["to"] == user
    assert body["text"]["body"] == "echo: olá"
    assert body["context"] == {"message_id": wamid}
    rows = echo_stack.wait_for_rows(
        f"SELECT state FROM message_delivery WHERE user_id = '{user}' AND kind = 'text' AND state = 'read'",
        1,
    )
    assert rows == [("read",)]
    # the turn's topic is loaded apart from the statuses': wait for it, not just after
    echo_stack.wait_for_rows(f"SELECT 1 FROM turns WHERE user_id = '{user}'", 1)
    sandbox.settle()
    assert len(sandbox.messages(user)) == 1  # once
    assert echo_stack.query(f"SELECT count(*) FROM turns WHERE user_id = '{user}'") == [(1,)]


def test_sigusr1_makes_the_worker_print_its_consumer_state(
    echo_stack: Stack, sandbox: Sandbox
) -> None:
    user = new_user()
    assert echo_stack.post_text("hi", wa_id=user).status_code == 200
    assert sandbox.wait_for(user, 1)
    os.kill(echo_stack.child_pids()["worker"], signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "--- consumer ---" not in echo_stack.output():
        time.sleep(0.1)
    out = echo_stack.output()
    state = out[out.rindex("--- consumer ---") :]
    assert "flow on" in state
    # every assigned partition has a line saying where it stands
    assert ".messages.inbound.v1[0] committed=" in state, state
    assert "guards=[" in state, state
    assert "fetch_position=" in state, state


def test_many_users_replies_leave_in_turn_order_and_a_slow_user_delays_only_itself(
    echo_stack: Stack, sandbox: Sandbox, gate: Path
) -> None:
    slow = new_user()
    (gate / slow).touch()  # its turns wait in the engine until this file goes
    users = [new_user() for _ in range(8)]
    per_user = 6

    def send_all(user: str) -> None:
        for i in range(per_user):
            assert echo_stack.post_text(f"m{i}", wa_id=user).status_code == 200

    with ThreadPoolExecutor(9) as pool:
        list(pool.map(send_all, [slow, *users]))
    # Every other user is answered in full, in order, while the slow user's first turn
    # is still held in the engine: an order of events, no wall-clock bound.
    for user in users:
        assert sandbox.wait_for(user, per_user, timeout=120), echo_stack.output()[-4000:]
    for user in users:
        assert sandbox.texts(user) == [f"echo: m{i}" for i in range(per_user)]
    assert sandbox.texts(slow) == [], "the slow user was answered before its engine let it"
    (gate / slow).unlink()
    assert sandbox.wait_for(slow, per_user, timeout=120)
    assert sandbox.texts(slow) == [f"echo: m{i}" for i in range(per_user)]


def test_500s_and_throttling_still_deliver_every_reply_exactly_once(
    echo_stack: Stack, sandbox: Sandbox
) -> None:
    sandbox.configure(fail_500_rate=0.3, throttle_rate=0.1, retry_after_s=0.2, seed=7)
    users = [new_user() for _ in range(5)]
    for user in users:
        for i in range(4):
            assert echo_stack.post_text(f"x{i}", wa_id=user).status_code == 200
    for user in users:
        sandbox.wait_for(user, 4, timeout=60)
    sandbox.settle()
    for user in users:
        assert sandbox.texts(user) == [f"echo: x{i}" for i in range(4)], (
            sandbox.texts(user),
            echo_stack.query(f"SELECT * FROM dead_letters WHERE user_id = '{user}'"),
            echo_stack.query(
                f"SELECT outcome, attempts, error_reason FROM send_results WHERE user_id = '{user}'"
            ),
            echo_stack.output()[-6000:],
        )
    errors = sandbox.stats()["errors"]
    assert sum(errors.values()) > 0, "the sandbox injected no faults"


def test_a_permanently_failing_recipient_is_dead_lettered_without_retries(
    echo_stack: Stack, sandbox: Sandbox
) -> None:
    user = new_user()
    sandbox.configure(permanent_fail_recipients=[user])
    before = sandbox.stats()["errors"].get("131026", 0)
    wamid = new_wamid()
    assert echo_stack.post_text("hello?", wa_id=user, message_id=wamid).status_code == 200
    rows = echo_stack.wait_for_rows(
        f"SELECT error_code, retryable FROM dead_letters WHERE user_id = '{user}'", 1, timeout=30
    )
    assert rows == [(131026, False)]
    sandbox.settle()
    assert sandbox.stats()["errors"].get("131026", 0) - before == 1  # one attempt, no retry
    assert sandbox.messages(user) == []


def test_the_pair_rate_error_slows_only_that_recipient(echo_stack: Stack, sandbox: Sandbox) -> None:
    sandbox.configure(pair_min_interval_s=0.8)
    chatty, other = new_user(), new_user()
    try:
        for i in range(3):
            assert echo_stack.post_text(f"p{i}", wa_id=chatty).status_code == 200
        assert echo_stack.post_text("hi", wa_id=other).status_code == 200
        assert sandbox.wait_for(other, 1, timeout=30)
        # the other user was answered while the chatty one was still held back by its
        # pair-rate pauses (an order of events, not a wall-clock bound)
        assert len(sandbox.texts(chatty)) < 3
        assert sandbox.wait_for(chatty, 3, timeout=60)
        assert sandbox.texts(chatty) == ["echo: p0", "echo: p1", "echo: p2"]
    finally:
        sandbox.configure(pair_min_interval_s=0)


def test_the_same_message_three_times_once_after_a_worker_kill_gets_one_reply(
    echo_stack: Stack, sandbox: Sandbox
) -> None:
    user, wamid = new_user(), new_wamid()
    assert echo_stack.post_text("once", wa_id=user, message_id=wamid).status_code == 200
    assert echo_stack.post_text("once", wa_id=user, message_id=wamid).status_code == 200
    assert sandbox.wait_for(user, 1)
    worker = echo_stack.child_pids()["worker"]
    os.kill(worker, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while echo_stack.child_pids().get("worker") == worker:
        assert time.monotonic() < deadline, "the supervisor did not restart the worker"
        time.sleep(0.2)
    assert echo_stack.post_text("once", wa_id=user, message_id=wamid).status_code == 200
    marker = new_user()
    assert echo_stack.post_text("marker", wa_id=marker).status_code == 200
    assert sandbox.wait_for(marker, 1, timeout=60)
    sandbox.settle()
    assert sandbox.texts(user) == ["echo: once"]


def test_sigkill_mid_stream_loses_no_reply_and_sends_none_twice(
    echo_stack: Stack, sandbox: Sandbox
) -> None:
    users = [new_user() for _ in range(10)]
    per_user = 10

    def send_all(user: str) -> None:
        for i in range(per_user):
            assert echo_stack.post_text(f"k{i}", wa_id=user).status_code == 200

    with ThreadPoolExecutor(10) as pool:
        futures = [pool.submit(send_all, u) for u in users]
        time.sleep(0.3)
        os.kill(echo_stack.child_pids()["worker"], signal.SIGKILL)
        for f in futures:
            f.result()
    deadline = time.monotonic() + 90
    for user in users:
        timeout = max(0.1, deadline - time.monotonic())
        if len(sandbox.wait_for(user, per_user, timeout=timeout)) < per_user:
            # a stall: have the worker print its tasks and consumer state for the report
            os.kill(echo_stack.child_pids()["worker"], signal.SIGUSR1)
            time.sleep(1.0)
            break
    sandbox.settle()
    for user in users:
        got = sandbox.texts(user)
        assert got == [f"echo: k{i}" for i in range(per_user)], (
            f"{user}: {got}\n" + echo_stack.output()[-12000:]
        )
