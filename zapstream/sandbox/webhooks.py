"""The sandbox's status-webhook sender: signed `messages` webhooks, posted in due order.

Deliveries are spread over `concurrency` lanes by a key (the message's wamid). Each
lane is one task and one heap of (due, seq, delivery), so a burst of sends never
spawns a task per webhook, one message's statuses go out one after another in order
(sent → delivered → read, retried in line), and different messages go out at once,
as Meta's do. A full sender drops (and counts) instead of growing; a dead receiver
costs retries, never the sandbox.

The posts go through aiohttp's client, not httpx's own transport: the sandbox posts
three webhooks per reply, and httpx (httpcore over anyio) cost 1.7-2.2 ms of CPU per
post on the 2-core development machine against 0.3 ms, client and server
(`bench/http_client_bench.py`),
CPU that a benchmark of the whole stack would charge to the pipeline. Before this,
one task posted every webhook in series, which capped them at one per round trip of
the webhook (~150/s): the statuses of a 200 msgs/s load fell further behind each
second.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from ingest.signature import sign

log = logging.getLogger("zapstream.sandbox")


@dataclass(frozen=True, slots=True, order=True)
class _Delivery:
    due: float
    seq: int
    url: str = field(compare=False)
    body: bytes = field(compare=False)
    signature: str = field(compare=False)


@dataclass(slots=True)
class _Lane:
    heap: list[_Delivery] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class StatusWebhookSender:
    """`count` receives "webhooks_delivered", "webhooks_failed" or "webhooks_dropped"."""

    def __init__(
        self,
        *,
        count: Callable[[str], None],
        max_pending: int = 10_000,
        attempts: int = 3,
        timeout_s: float = 2.0,
        concurrency: int = 16,
    ) -> None:
        self._count = count
        self._max_pending = max_pending
        self._attempts = attempts
        self._timeout_s = timeout_s
        self._lanes = [_Lane() for _ in range(max(1, concurrency))]
        self._seq = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._http: aiohttp.ClientSession | None = None

    @property
    def pending(self) -> int:
        return sum(len(lane.heap) for lane in self._lanes)

    def start(self) -> None:
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout_s),
            connector=aiohttp.TCPConnector(limit=len(self._lanes)),
        )
        self._tasks = [
            asyncio.create_task(self._run(lane), name=f"sandbox-status-webhooks-{i}")
            for i, lane in enumerate(self._lanes)
        ]

    async def stop(self) -> None:
        """Cancel the sender; what is still pending is dropped with the sandbox."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._http is not None:
            await self._http.close()

    def schedule(
        self, delay_s: float, payload: dict[str, Any], *, url: str, secret: str, key: str = ""
    ) -> None:
        """Post `payload` to `url` in `delay_s` seconds, signed with `secret`, after
        every earlier-due webhook of the same `key`."""
        if self.pending >= self._max_pending:
            self._count("webhooks_dropped")
            return
        self._seq += 1  # equal due times keep scheduling order
        body = orjson.dumps(payload)
        due = asyncio.get_running_loop().time() + delay_s
        lane = self._lanes[zlib.crc32(key.encode()) % len(self._lanes)]
        heapq.heappush(lane.heap, _Delivery(due, self._seq, url, body, sign(body, secret)))
        lane.wake.set()

    async def _run(self, lane: _Lane) -> None:
        loop = asyncio.get_running_loop()
        while True:
            lane.wake.clear()
            if not lane.heap:
                await lane.wake.wait()
                continue
            wait = lane.heap[0].due - loop.time()
            if wait > 0:  # sleep until due, or until an earlier one is scheduled
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):  # no task per wait, unlike wait_for
                        await lane.wake.wait()
                continue
            await self._deliver(heapq.heappop(lane.heap))

    async def _deliver(self, delivery: _Delivery) -> None:
        assert self._http is not None
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": delivery.signature}
        for attempt in range(self._attempts):
            try:
                async with self._http.post(
                    delivery.url, data=delivery.body, headers=headers
                ) as response:
                    await response.read()
                    if 200 <= response.status < 300:
                        self._count("webhooks_delivered")
                        return
            except Exception as exc:  # a dead or broken receiver must never stop the sandbox
                log.debug("status webhook failed", extra={"error": type(exc).__name__})
            if attempt + 1 < self._attempts:
                await asyncio.sleep(0.05 * 4**attempt)
        self._count("webhooks_failed")
        log.warning("status webhook given up", extra={"attempts": self._attempts})
