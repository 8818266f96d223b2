"""A worker that restarts recovers its tables whole, up to the last changelog record.

Faust recovers a table by reading its changelog up to the end offsets the broker
reports. Tansu reports the end of a partition as the *base* offset of its last record
batch plus one, so when the worker's producer had sent the last few state writes of a
partition in one batch, recovery stopped before them: a user's state came back older
than the inbound offsets already committed, and the messages in between were lost
from the user's open burst (found by the SIGKILL burst test in
`test_debounce_and_workers.py`, about one run in three on a loaded machine). The
worker now reads the true end of each changelog partition (`processors.changelog_end`).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator

import pytest

from ingest.samples import new_wamid
from schemas.topics import Topics
from tests.support.sink_process import committed as committed_offsets
from tests.support.stack import Sandbox, Stack, new_user
from zapstream.settings import Settings

pytestmark = pytest.mark.e2e

USERS = 12
PER_USER = 3
QUIET_MS = 15_000
"""Long enough that no burst closes before the kill, even on a loaded machine."""


@pytest.fixture(scope="module")
def stack(broker_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(
        tmp_path_factory.mktemp(f"recovery-{broker_kind}"),
        broker=broker_kind,
        ENGINE="echo",
        # one partition: every user's state writes share it, so they go out in batches
        TOPIC_PARTITIONS="1",
        DEBOUNCE_QUIET_MS=str(QUIET_MS),
        DEBOUNCE_MAX_MS=str(QUIET_MS * 4),
    ).start()
    yield s
    assert s.stop() == 0, s.output()


def committed(stack: Stack) -> int:
    """The worker group's committed offset on the inbound topic (one partition)."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, kafka_bootstrap_servers=stack.bootstrap, topic_partitions=1
    )
    inbound = Topics.from_settings(settings).inbound
    return asyncio.run(committed_offsets(settings, settings.app_id, inbound))


def test_a_worker_killed_with_bursts_open_answers_each_whole_after_recovering_its_tables(
    stack: Stack,
) -> None:
    sandbox = Sandbox(stack)
    users = [new_user() for _ in range(USERS)]
    ids: dict[str, list[str]] = {user: [] for user in users}
    sent_at = int(time.time()) - 30
    for i in range(PER_USER):
        for user in users:
            wamid = new_wamid()
            ids[user].append(wamid)
            response = stack.post_text(f"m{i}", wa_id=user, message_id=wamid, timestamp=sent_at + i)
            assert response.status_code == 200
    # The worker has stored every message in its users' open bursts and committed their
    # offsets: from here on, the bursts exist only in the worker's tables.
    deadline = time.monotonic() + 60
    while committed(stack) < USERS * PER_USER:
        assert time.monotonic() < deadline, (
            "the worker did not commit the messages",
            stack.output(),
        )
        time.sleep(0.2)
    worker = stack.child_pids()["worker"]
    os.kill(worker, signal.SIGKILL)
    for user in users:
        replies = sandbox.wait_for(user, PER_USER, timeout=QUIET_MS / 1000 + 90)
        assert len(replies) == PER_USER, (user, replies, stack.output())
    rows = stack.wait_for_rows("SELECT user_id, message_ids FROM turns", USERS, timeout=60)
    turns = {user: json.loads(m) if isinstance(m, str) else m for user, m in rows}
    for user in users:
        assert sorted(turns.get(user, [])) == sorted(ids[user]), (user, turns.get(user))
    sandbox.settle()
    for user in users:
        assert len(sandbox.messages(user)) == PER_USER, user  # one burst, answered once
