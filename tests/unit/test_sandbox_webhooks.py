"""The sandbox's status-webhook sender against a real receiver on loopback: one
message's statuses in order, different messages' at once, a dead receiver counted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import zlib
from collections import Counter
from typing import Any

from aiohttp import web

from tests.support.loopback_http import LoopbackServer
from zapstream.sandbox.webhooks import StatusWebhookSender

SECRET = "app-secret"


class Receiver:
    """Records each webhook; holds each one until `together` are in flight at once
    (or `hold_s` passes), so overlapping deliveries are seen, not guessed from time."""

    def __init__(self, together: int = 2, hold_s: float = 5.0) -> None:
        self.together, self.hold_s = together, hold_s
        self.received: list[dict[str, Any]] = []
        self.in_flight = self.most_in_flight = 0
        self._crowd = asyncio.Event()
        self.url = ""

    async def __aenter__(self) -> Receiver:
        async def handle(request: web.Request) -> web.Response:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            if self.in_flight >= self.together:
                self._crowd.set()
            try:
                body = await request.read()
                assert request.headers["X-Hub-Signature-256"].startswith("sha256=")
                self.received.append(json.loads(body))
                if not self._crowd.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._crowd.wait(), self.hold_s)
                return web.Response(text="ok")
            finally:
                self.in_flight -= 1

        app = web.Application()
        app.router.add_post("/webhook", handle)
        self._server = LoopbackServer(app)
        self.url = f"{await self._server.__aenter__()}/webhook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._server.__aexit__(*exc)


async def eventually(check: Any, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


def keys_on_distinct_lanes(n: int, lanes: int) -> list[str]:
    picked: dict[int, str] = {}
    i = 0
    while len(picked) < n:
        key = f"wamid.{i}"
        picked.setdefault(zlib.crc32(key.encode()) % lanes, key)
        i += 1
    return list(picked.values())


async def test_statuses_of_one_message_arrive_in_order_and_messages_go_out_at_once() -> None:
    counts: Counter[str] = Counter()
    # Posts wait far longer than the receiver holds one (no timeout, no retry in the
    # test's way); the receiver lets a post go as soon as a second one is in flight.
    sender = StatusWebhookSender(
        count=lambda name: counts.update([name]), concurrency=4, timeout_s=120
    )
    keys = keys_on_distinct_lanes(3, 4) + ["wamid.same-lane-" + str(i) for i in range(5)]
    async with Receiver(together=2, hold_s=60) as receiver:
        sender.start()
        try:
            for key in keys:
                for status in ("sent", "delivered", "read"):
                    sender.schedule(
                        0.0, {"id": key, "status": status}, url=receiver.url, secret=SECRET, key=key
                    )
            await eventually(lambda: counts["webhooks_delivered"] == 3 * len(keys), timeout=300)
        finally:
            await sender.stop()
    assert receiver.most_in_flight >= 2  # different messages were posted at once
    for key in keys:
        order = [r["status"] for r in receiver.received if r["id"] == key]
        assert order == ["sent", "delivered", "read"], key
    assert sender.pending == 0


async def test_a_refused_receiver_is_counted_failed_and_the_sender_goes_on() -> None:
    counts: Counter[str] = Counter()
    sender = StatusWebhookSender(
        count=lambda name: counts.update([name]), attempts=2, concurrency=2
    )
    async with Receiver() as gone:
        url = gone.url  # closed again once the receiver stops
    sender.start()
    try:
        sender.schedule(0.0, {"id": "a"}, url=url, secret=SECRET, key="a")
        await eventually(lambda: counts["webhooks_failed"] == 1)
        async with Receiver(together=1) as alive:
            sender.schedule(0.0, {"id": "b"}, url=alive.url, secret=SECRET, key="b")
            await eventually(lambda: counts["webhooks_delivered"] == 1)
        assert [r["id"] for r in alive.received] == ["b"]
    finally:
        await sender.stop()


async def test_a_full_sender_drops_and_counts_instead_of_growing() -> None:
    counts: Counter[str] = Counter()
    sender = StatusWebhookSender(
        count=lambda name: counts.update([name]), max_pending=2, concurrency=2
    )
    sender.start()
    try:
        for i in range(5):
            sender.schedule(
                3600.0, {"id": i}, url="http://127.0.0.1:9/x", secret=SECRET, key=str(i)
            )
        assert sender.pending == 2
        assert counts["webhooks_dropped"] == 3
    finally:
        await sender.stop()
