"""Re-engagement on the whole stack (two workers, the sandbox as the Graph API): one
message per quiet period, a text inside the 24-hour window and the template outside
it, never to an opted-out user, exactly once across a worker SIGKILL, and the user's
return recorded in DuckDB. REENGAGE_AFTER_S is 3 s; "outside the window" is a message
whose webhook timestamp is 25 h old (the window runs from the user's send time)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from processors.reengage.decide import CONTROL_KIND
from schemas.control import control_value
from schemas.topics import Topics
from tests.support.stack import Sandbox, Stack, new_user
from zapstream.settings import Settings

pytestmark = pytest.mark.e2e

TEXT = "Ainda posso ajudar? (re-engagement)"
TEMPLATE = "volte_sempre"
AFTER_S = 3.0


@pytest.fixture(scope="module")
def stack(broker_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp(f"reengage-{broker_kind}"),
        broker=broker_kind,
        WORKERS="2",
        REENGAGE_AFTER_S=str(AFTER_S),
        REENGAGE_SCAN_INTERVAL_S="0.5",
        REENGAGE_TEXT=TEXT,
        REENGAGE_TEMPLATE=TEMPLATE,
        REENGAGE_TEMPLATE_LANGUAGE="en_US",
    ).start()
    yield s
    assert s.stop() == 0, s.output()


def reengaged(sandbox: Sandbox, user: str) -> list[dict[str, Any]]:
    """The re-engagement messages the sandbox received for `user` (text or template)."""
    found = []
    for m in sandbox.messages(user):
        body = m["body"]
        text = m["type"] == "text" and body["text"]["body"] == TEXT
        if text or (m["type"] == "template" and body["template"]["name"] == TEMPLATE):
            found.append(m)
    return found


def wait_reengaged(sandbox: Sandbox, user: str, timeout: float = 60.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        found = reengaged(sandbox, user)
        if found:
            return found
        time.sleep(0.2)
    return found


def ask_again(stack: Stack, periods: dict[str, str]) -> None:
    """Publish `reengage` control records for (user → quiet_since) as a second worker's
    scan, or one that ran before a rebalance, would."""
    inbound = Topics.from_settings(Settings()).inbound

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap)
        await producer.start()
        try:
            for user, since in periods.items():
                value = control_value(CONTROL_KIND, time.time(), quiet_since=since)
                await producer.send_and_wait(inbound, value, key=user.encode())
        finally:
            await producer.stop()

    asyncio.run(send())


def periods_of(stack: Stack, users: list[str]) -> dict[str, str]:
    names = ", ".join(f"'{u}'" for u in users)
    rows = stack.wait_for_rows(
        "SELECT user_id, strftime(quiet_since AT TIME ZONE 'UTC', '%Y-%m-%dT%H:%M:%S+00:00') "
        f"FROM reengagements WHERE user_id IN ({names})",
        len(users),
    )
    return {user: since for user, since in rows}


def past_any_second(sandbox: Sandbox) -> None:
    """Wait past the window in which a second re-engagement could still come: the
    in-doubt resend wait (`Sandbox.settle`) and many scans after the due time."""
    sandbox.settle()
    time.sleep(AFTER_S)


def test_quiet_users_get_one_text_inside_the_window_and_one_template_outside(
    stack: Stack,
) -> None:
    sandbox = Sandbox(stack)
    inside, outside = [new_user() for _ in range(3)], [new_user() for _ in range(3)]
    day_ago = int(time.time()) - 25 * 3600
    for user in inside:
        assert stack.post_text("bom dia", wa_id=user).status_code == 200
    for user in outside:
        assert stack.post_text("bom dia", wa_id=user, timestamp=day_ago).status_code == 200
    for user in inside + outside:
        assert wait_reengaged(sandbox, user), (user, sandbox.messages(user))
    past_any_second(sandbox)
    for user in inside:
        got = reengaged(sandbox, user)
        assert [m["type"] for m in got] == ["text"], got
    for user in outside:
        got = reengaged(sandbox, user)
        assert [m["type"] for m in got] == ["template"], got
        assert got[0]["body"]["template"]["language"] == {"code": "en_US"}
    users = ", ".join(f"'{u}'" for u in inside + outside)
    rows = stack.wait_for_rows(
        f"SELECT user_id, kind, returned_at FROM reengagements WHERE user_id IN ({users})", 6
    )
    kinds = {user: kind for user, kind, _ in rows}
    assert kinds == {**dict.fromkeys(inside, "text"), **dict.fromkeys(outside, "template")}
    assert all(returned is None for _, _, returned in rows)
    assert len(rows) == 6  # one per quiet period
    # the control records on the inbound topic are not messages: the sink skips them
    assert stack.query("SELECT topic, reason FROM rejected_events") == []


def test_an_opted_out_user_is_never_re_engaged(stack: Stack) -> None:
    sandbox = Sandbox(stack)
    quitter, control = new_user(), new_user()
    assert stack.post_text("parar", wa_id=quitter).status_code == 200
    assert stack.post_text("bom dia", wa_id=control).status_code == 200
    assert stack.wait_for_rows(
        f"SELECT 1 FROM sessions WHERE user_id = '{quitter}' AND opted_out", 1, timeout=30
    )
    assert wait_reengaged(sandbox, control)  # re-engagement ran for this period
    past_any_second(sandbox)
    assert reengaged(sandbox, quitter) == []
    assert stack.query(f"SELECT 1 FROM reengagements WHERE user_id = '{quitter}'") == []


def test_exactly_one_per_quiet_period_across_a_worker_sigkill(stack: Stack) -> None:
    sandbox = Sandbox(stack)
    users = [new_user() for _ in range(10)]
    for user in users:
        assert stack.post_text("bom dia", wa_id=user).status_code == 200
    # Kill one of the two workers about when the periods fall due: some re-engagements
    # are decided before the kill, some by the restarted worker or the other one
    # after the rebalance, some were asked by the dead worker's scan and are replayed.
    time.sleep(AFTER_S - 0.5)
    os.kill(stack.child_pids()["worker1"], signal.SIGKILL)
    for user in users:
        assert wait_reengaged(sandbox, user, timeout=120), user
    past_any_second(sandbox)
    for user in users:
        got = reengaged(sandbox, user)
        assert len(got) == 1, (user, got)
    # the restarted worker recovered the marks: asked again for the same periods (a
    # scan of the other worker before the rebalance), nobody gets a second message
    periods = periods_of(stack, users)
    assert set(periods) == set(users)
    ask_again(stack, periods)
    past_any_second(sandbox)
    for user in users:
        got = reengaged(sandbox, user)
        assert len(got) == 1, (user, got)
    workers = {name for name in stack.child_pids() if name.startswith("worker")}
    assert workers == {"worker1", "worker2"}


def test_a_user_who_writes_back_gets_returned_at_and_a_new_period(stack: Stack) -> None:
    sandbox = Sandbox(stack)
    user = new_user()
    assert stack.post_text("bom dia", wa_id=user).status_code == 200
    assert wait_reengaged(sandbox, user)
    assert stack.wait_for_rows(f"SELECT 1 FROM reengagements WHERE user_id = '{user}'", 1)
    time.sleep(1.0)  # a later send time than the first message (Meta's are in seconds)
    assert stack.post_text("voltei", wa_id=user).status_code == 200
    rows = stack.wait_for_rows(
        f"SELECT reengagement_id FROM reengagements WHERE user_id = '{user}' "
        "AND returned_at IS NOT NULL AND returned_at >= sent_at",
        1,
        timeout=30,
    )
    assert len(rows) == 1
    # writing back opened a new quiet period: it is re-engaged once more, once
    assert wait_reengaged_count(sandbox, user, 2)
    past_any_second(sandbox)
    assert len(reengaged(sandbox, user)) == 2
    periods = stack.wait_for_rows(
        f"SELECT reengagement_id, returned_at FROM reengagements WHERE user_id = '{user}' "
        "ORDER BY sent_at",
        2,
    )
    assert len(periods) == 2
    assert periods[0][1] is not None
    assert periods[1][1] is None


def wait_reengaged_count(sandbox: Sandbox, user: str, count: int, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(reengaged(sandbox, user)) >= count:
            return True
        time.sleep(0.2)
    return False
