"""The chain benchmark's load generator (bench/chain_load.py `drive`) against a real
HTTP server on loopback: it must not make an inversion the stack did not make."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from bench.chain_load import Message, Plan, drive
from tests.support.loopback_http import LoopbackServer


async def test_a_redelivery_waits_for_its_first_delivery_so_it_cannot_overtake_earlier_messages() -> (
    None
):
    arrivals: list[tuple[bytes, float]] = []
    first_answered = asyncio.Event()
    answered_at: list[float] = []

    async def webhook(request: web.Request) -> web.Response:
        body = await request.read()
        arrivals.append((body, time.monotonic()))
        if body == b"#1":  # the user's first message is slow to be acknowledged
            await asyncio.sleep(0.3)
            answered_at.append(time.monotonic())
            first_answered.set()
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/webhook", webhook)
    async with LoopbackServer(app) as url:
        now = time.time()
        messages = [
            Message("5511", 1, "wamid.1", b"#1", "sha256=x", now),
            Message("5511", 2, "wamid.2", b"#2", "sha256=x", now + 0.01),
        ]
        # #2 is delivered twice; the redelivery is due long before #1 is answered
        posts = [(now, 0), (now + 0.01, 1), (now + 0.02, 1)]
        sent = await drive(f"{url}/webhook", Plan(messages, posts, 1, now))
    assert sent.statuses[200] == 3
    assert [body for body, _ in arrivals] == [b"#1", b"#2", b"#2"]
    # both deliveries of #2 came only once #1 had its answer (cause and effect, no margin)
    assert all(at > answered_at[0] for body, at in arrivals if body == b"#2")
