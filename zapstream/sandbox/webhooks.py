"""The sandbox's status-webhook sender: signed `messages` webhooks, posted in due order.

One task and one heap of (due, seq, delivery) serve every callback, so a burst of
sends never spawns a task per webhook, and a full heap drops (and counts) instead
of growing. Deliveries are retried in line, which keeps one message's statuses in
order (sent → delivered → read); a dead receiver costs retries, never the sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from ingest.signature import sign

log = logging.getLogger("zapstream.sandbox")


@dataclass(frozen=True, slots=True, order=True)
class _Delivery:
    due: float
    seq: int
    url: str = field(compare=False)
    body: bytes = field(compare=False)
    signature: str = field(compare=False)


class StatusWebhookSender:
    """`count` receives "webhooks_delivered", "webhooks_failed" or "webhooks_dropped"."""

    def __init__(
        self,
        *,
        count: Callable[[str], None],
        max_pending: int = 10_000,
        attempts: int = 3,
        timeout_s: float = 2.0,
    ) -> None:
        self._count = count
        self._max_pending = max_pending
        self._attempts = attempts
        self._timeout_s = timeout_s
        self._heap: list[_Delivery] = []
        self._seq = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None

    @property
    def pending(self) -> int:
        return len(self._heap)

    def start(self) -> None:
        self._http = httpx.AsyncClient(timeout=self._timeout_s)
        self._task = asyncio.create_task(self._run(), name="sandbox-status-webhooks")

    async def stop(self) -> None:
        """Cancel the sender; what is still pending is dropped with the sandbox."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._http is not None:
            await self._http.aclose()

    def schedule(self, delay_s: float, payload: dict[str, Any], *, url: str, secret: str) -> None:
        """Post `payload` to `url` in `delay_s` seconds, signed with `secret`."""
        if len(self._heap) >= self._max_pending:
            self._count("webhooks_dropped")
            return
        self._seq += 1  # equal due times keep scheduling order
        body = json.dumps(payload).encode()
        due = asyncio.get_running_loop().time() + delay_s
        heapq.heappush(self._heap, _Delivery(due, self._seq, url, body, sign(body, secret)))
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            if not self._heap:
                await self._wake.wait()
                continue
            wait = self._heap[0].due - loop.time()
            if wait > 0:  # sleep until due, or until an earlier one is scheduled
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            await self._deliver(heapq.heappop(self._heap))

    async def _deliver(self, delivery: _Delivery) -> None:
        assert self._http is not None
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": delivery.signature}
        for attempt in range(self._attempts):
            try:
                response = await self._http.post(
                    delivery.url, content=delivery.body, headers=headers
                )
                if response.is_success:
                    self._count("webhooks_delivered")
                    return
            except Exception as exc:  # a dead or broken receiver must never stop the sandbox
                log.debug("status webhook failed", extra={"error": type(exc).__name__})
            if attempt + 1 < self._attempts:
                await asyncio.sleep(0.05 * 4**attempt)
        self._count("webhooks_failed")
        log.warning("status webhook given up", extra={"attempts": self._attempts})
