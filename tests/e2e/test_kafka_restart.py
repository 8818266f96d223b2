"""Apache Kafka restarted under load: 503 meanwhile, Meta's retries land, nothing
acknowledged is lost, and the worker resumes by itself."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from ingest.samples import new_wamid
from tests.support.stack import Sandbox, Stack
from zapstream.brokers.kafka import KafkaBroker

pytestmark = pytest.mark.e2e


class MetaLike:
    """Sends messages one after another and retries each until it gets a 200."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.acked: list[tuple[str, str]] = []  # (wa_id, message id)
        self.refused = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            user, wamid = f"5511{7000000 + i % 40:07d}", new_wamid()
            while True:
                try:
                    code = self.stack.post_text(f"r{i}", wa_id=user, message_id=wamid).status_code
                except Exception:
                    code = 0
                if code == 200:
                    self.acked.append((user, wamid))
                    break
                self.refused += 1
                time.sleep(0.2)
            i += 1
            time.sleep(0.02)


def test_kafka_restart_under_load_loses_nothing_acknowledged(tmp_path: Path) -> None:
    broker = KafkaBroker(tmp_path / "kafka")
    bootstrap = broker.start(timeout=90)
    stack = Stack(
        tmp_path / "stack",
        bootstrap=bootstrap,
        ENGINE="echo",
        DEBOUNCE_QUIET_MS="0",
        PUBLISH_TIMEOUT_S="2",
    )
    meta = MetaLike(stack)
    try:
        stack.start()
        meta.thread.start()
        # under load, not after a fixed time: a busy CI machine may ack slowly
        deadline = time.monotonic() + 60
        while len(meta.acked) < 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        broker.stop()
        acked_before = len(meta.acked)
        time.sleep(4)
        refused_while_down = meta.refused
        broker.start(timeout=90)
        acked_down = len(meta.acked)  # webhooks in flight at the stop can still land
        deadline = time.monotonic() + 30
        while len(meta.acked) < acked_down + 20 and time.monotonic() < deadline:
            time.sleep(0.2)
        meta.stop.set()
        meta.thread.join(timeout=60)
        assert acked_before >= 10, f"only {acked_before} webhooks acknowledged before the stop"
        assert refused_while_down > 0, "the webhook never answered 503 while Kafka was down"
        assert len(meta.acked) >= acked_down + 20, (
            f"the webhook did not take webhooks again after Kafka restarted: "
            f"{len(meta.acked) - acked_down} acknowledged in 30 s\n" + stack.output()
        )
        acked = dict((wamid, user) for user, wamid in meta.acked)

        ids = ",".join(f"'{w}'" for w in acked)
        rows = stack.wait_for_rows(
            f"SELECT message_id FROM messages WHERE message_id IN ({ids})", len(acked), timeout=90
        )
        assert {r[0] for r in rows} == set(acked), "an acknowledged webhook never reached DuckDB"

        sandbox = Sandbox(stack)
        deadline = time.monotonic() + 90
        replied: dict[str, int] = {}
        while time.monotonic() < deadline:
            replied = {}
            for m in sandbox.messages():
                mid = m["body"].get("context", {}).get("message_id")
                if mid in acked:
                    replied[mid] = replied.get(mid, 0) + 1
            if len(replied) == len(acked):
                break
            time.sleep(0.5)
        missing = set(acked) - set(replied)
        assert not missing, (
            f"{len(missing)} acknowledged messages never got a reply (worker did not resume?)"
        )
        assert max(replied.values()) == 1, "a reply was sent twice"
    finally:
        meta.stop.set()
        stack.stop()
        broker.stop()
