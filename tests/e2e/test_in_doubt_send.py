"""A send in doubt after a crash: Meta took it, the worker died before the answer.

The worker writes `sending` to its ledger before the Graph call. Killed while the
call is in flight, the restarted worker finds `sending`, and waits for Meta's status
webhook (which echoes our outbound id) before sending again: it finds the status on
the statuses topic (`processors.status_scan`), and the send is reported
`skipped_duplicate` instead of going out twice.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from tests.support.stack import Sandbox, Stack, new_user

pytestmark = pytest.mark.e2e

ANSWER_DELAY_MS = 30_000
"""How long the sandbox holds the answer of a send it took: the kill lands inside, with
room for a loaded machine (the worker's own call waits longer: SEND_TIMEOUT_S)."""


@pytest.fixture(scope="module")
def stack(broker_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp(f"in-doubt-{broker_kind}"),
        broker=broker_kind,
        ENGINE="echo",
        DEBOUNCE_QUIET_MS="0",
        # the restarted worker waits this long for the status webhook before it sends
        # again: long enough for a loaded machine's webhooks to come through
        SEND_CONFIRM_WAIT_S="30",
        SEND_TIMEOUT_S="60",
    ).start()
    yield s
    assert s.stop() == 0, s.output()


def test_a_send_taken_by_meta_before_a_worker_kill_is_confirmed_by_its_status_not_resent(
    stack: Stack,
) -> None:
    sandbox = Sandbox(stack)
    user = new_user()
    sandbox.configure(answer_delay_ms=ANSWER_DELAY_MS)
    assert stack.post_text("in doubt", wa_id=user).status_code == 200
    deadline = time.monotonic() + 60
    while not sandbox.messages(user):  # taken by "Meta"; its answer is still held
        assert time.monotonic() < deadline, "the worker never sent the reply"
        time.sleep(0.05)
    worker = stack.child_pids()["worker"]
    os.kill(worker, signal.SIGKILL)
    sandbox.configure(answer_delay_ms=0)  # a send made again would be answered at once
    deadline = time.monotonic() + 60
    while stack.child_pids().get("worker") in (worker, None):
        assert time.monotonic() < deadline, "the supervisor did not restart the worker"
        time.sleep(0.2)
    rows = stack.wait_for_rows(
        f"SELECT outcome, error_reason FROM send_results WHERE user_id = '{user}'",
        1,
        timeout=120,
    )
    assert rows == [("skipped_duplicate", "confirmed by a status webhook after a restart")]
    sandbox.settle()  # past the window in which a second copy could still go out
    assert sandbox.texts(user) == ["echo: in doubt"]
