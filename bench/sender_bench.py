"""Sender benchmark: outbound messages → Graph API (the local sandbox), rate limit lifted.

Two figures per broker:
- direct: `Sender` + `GraphClient` (GRAPH_MAX_CONNECTIONS keep-alive connections in
  small httpx pools) in this process against the sandbox, all N handed over at once,
  no Kafka: the HTTP path's own ceiling (latency: the Graph call alone);
- worker: N `OutboundMessage` events produced onto `outbound.high` at once, drained
  by the worker's send agent (idempotency record in the `sent` table, send result
  and changelog writes to Kafka): messages/s from the first produce to the last
  message the sandbox received.

The whole stack (broker, worker, sink, API, sandbox) and this script share the cores.

    .venv/bin/python bench/sender_bench.py --brokers tansu,kafka --messages 4000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.webhook_bench import pct
from processors.graph_client import GraphClient
from processors.sender import Sender
from schemas.codec import encode
from schemas.outbound import OutboundMessage, outbound_id_for
from schemas.topics import Topics
from tests.support.stack import Sandbox, Stack
from zapstream.settings import Settings

LIFTED = {"SEND_RATE_PER_S": "100000", "SEND_BURST": "100000", "LOG_LEVEL": "WARNING"}


def outbound(i: int, run: str, users: int) -> OutboundMessage:
    user = f"55119{i % users:08d}"
    turn = f"turn-bench-{run}-{i}"
    return OutboundMessage(
        outbound_id=outbound_id_for(turn),
        user_id=user,
        to=user,
        phone_number_id="100000000000001",
        kind="text",
        payload={"text": {"body": f"bench {i}"}},
        turn_id=turn,
        created_at=datetime.now(UTC),
    )


async def direct(settings: Settings, n: int, users: int) -> tuple[float, list[float]]:
    client = GraphClient(settings)
    sender = Sender(client, settings)
    msgs = [outbound(i, f"d{time.time_ns()}", users) for i in range(n)]
    latencies: list[float] = []

    async def one(msg: OutboundMessage) -> None:
        delivery = await sender.deliver(msg)
        assert delivery.result.outcome == "sent", delivery.result
        latencies.append(delivery.result.latency_ms or 0.0)  # the Graph call itself

    started = time.perf_counter()
    await asyncio.gather(*(one(m) for m in msgs))
    elapsed = time.perf_counter() - started
    await client.aclose()
    return n / elapsed, latencies


async def through_worker(stack: Stack, sandbox: Sandbox, n: int, users: int) -> float:
    topic = Topics.from_settings(Settings()).outbound_high
    run = f"w{time.time_ns()}"
    msgs = [outbound(i, run, users) for i in range(n)]
    before = sandbox.stats()["accepted"]
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, linger_ms=5)
    await producer.start()
    started = time.perf_counter()
    try:
        futures = [await producer.send(topic, encode(m), key=m.user_id.encode()) for m in msgs]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    async with httpx.AsyncClient() as http:
        while True:
            stats = (await http.get(f"{sandbox.url}/_sandbox/stats")).json()
            if stats["accepted"] - before >= n:
                break
            if time.perf_counter() - started > 120:
                raise RuntimeError(f"only {stats['accepted'] - before}/{n} sent in 120 s")
            await asyncio.sleep(0.05)
    return n / (time.perf_counter() - started)


def run(kind: str, n: int, users: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp), broker=kind, **LIFTED).start()
        sandbox = Sandbox(stack)
        sandbox.configure(status_webhooks=False)
        try:
            os.environ.update({k: v for k, v in stack.env.items() if k.isupper()})
            rate, lat = asyncio.run(direct(Settings(), n, users))
            print(
                f"broker={kind} direct (Sender → sandbox, no Kafka): {rate:,.0f} msg/s  "
                f"p50={pct(lat, 50):.1f}ms p95={pct(lat, 95):.1f}ms p99={pct(lat, 99):.1f}ms",
                flush=True,
            )
            rate = asyncio.run(through_worker(stack, sandbox, n, users))
            print(
                f"broker={kind} worker (outbound.high → send agent → sandbox): {rate:,.0f} msg/s",
                flush=True,
            )
        finally:
            stack.stop()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--brokers", default="tansu")
    ap.add_argument("--messages", type=int, default=4000)
    ap.add_argument("--users", type=int, default=2000)
    args = ap.parse_args()
    for kind in args.brokers.split(","):
        run(kind, args.messages, args.users)


if __name__ == "__main__":
    main()
