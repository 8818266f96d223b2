"""End-to-end benchmark: signed webhook → Kafka → worker → Graph API (the sandbox).

For each rate, one inbound text message per request from a pool of users (each
user's messages spaced out so debounce does not merge them unless it should), with
ENGINE=echo so every reply names the message it answers. Latency is sandbox receive
time − scheduled send time; "beyond debounce" subtracts DEBOUNCE_QUIET_MS. The send
rate limit is lifted (SEND_RATE_PER_S) and status webhooks are off, so the figure is
the chain's own; the webhook benchmark measures ingest alone.

    .venv/bin/python bench/chain_bench.py --brokers tansu,kafka --rates 100,250,500 --quiet-ms 0,1500
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.webhook_bench import pct, post
from ingest.samples import dumps, new_wamid, text_webhook
from ingest.signature import sign
from tests.support.stack import APP_SECRET, Sandbox, Stack


async def drive(url: str, rate: float, duration: float, users: int) -> dict[str, float]:
    """Send at `rate`; returns message id → scheduled epoch time."""
    n = int(rate * duration)
    scheduled: dict[str, float] = {}
    bodies = []
    for i in range(n):
        wamid = new_wamid()
        body = dumps(text_webhook(f"m{i}", wa_id=f"55119{i % users:08d}", message_id=wamid))
        bodies.append((wamid, body, sign(body, APP_SECRET)))
    errors = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session:

        async def one(i: int) -> None:
            nonlocal errors
            _, body, sig = bodies[i]
            if await post(session, url, body, sig) != 200:
                errors += 1

        t0 = time.time() + 0.05
        tasks = []
        for i in range(n):
            at = t0 + i / rate
            delay = at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            scheduled[bodies[i][0]] = at
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    if errors:
        print(f"    {errors} webhooks not accepted", flush=True)
    return scheduled


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(stack: Stack) -> dict[str, float]:
    pids = {**stack.child_pids(), "load generator": os.getpid()}
    out = {}
    for name, pid in pids.items():
        try:
            out[name] = cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def cpu_report(
    before: dict[str, float], after: dict[str, float], seconds: float, messages: int
) -> str:
    """Where the time went: each process's share of one core while the rate ran, and
    the CPU time the whole stack spent per message."""
    used = {name: after[name] - before[name] for name in after if name in before}
    shares = {name: u / seconds * 100 for name, u in used.items()}
    total = sum(shares.values())
    per_msg = {name: u / max(messages, 1) * 1000 for name, u in used.items()}
    parts = [
        f"{name} {share:.0f}%" for name, share in sorted(shares.items(), key=lambda kv: -kv[1])
    ]
    cost = ", ".join(f"{n} {ms:.2f}" for n, ms in sorted(per_msg.items(), key=lambda kv: -kv[1]))
    return (
        f"cpu (% of one core): {', '.join(parts)}; total {total:.0f}% of "
        f"{os.cpu_count() or 0}00%\n          cpu ms per message: {cost}; "
        f"total {sum(per_msg.values()):.2f}"
    )


def collect(sandbox: Sandbox, scheduled: dict[str, float], timeout: float) -> list[float]:
    deadline = time.time() + timeout
    latencies: dict[str, float] = {}
    while time.time() < deadline and len(latencies) < len(scheduled):
        for m in sandbox.messages():
            mid = m["body"].get("context", {}).get("message_id")
            if mid in scheduled and mid not in latencies:
                latencies[mid] = (
                    datetime.fromisoformat(m["received_at"]).timestamp() - scheduled[mid]
                )
        time.sleep(0.5)
    return list(latencies.values())


def run(kind: str, rates: list[float], duration: float, quiet_ms: int, users: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(
            Path(tmp),
            broker=kind,
            ENGINE="echo",
            DEBOUNCE_QUIET_MS=str(quiet_ms),
            SEND_RATE_PER_S="100000",
            SEND_BURST="100000",
            LOG_LEVEL="WARNING",
        ).start()
        sandbox = Sandbox(stack)
        sandbox.configure(status_webhooks=False)
        try:
            print(f"broker={kind} DEBOUNCE_QUIET_MS={quiet_ms} users={users}", flush=True)
            for rate in rates:
                httpx.delete(f"{sandbox.url}/_sandbox/messages", timeout=10)
                cpu_before, t0 = cpu_snapshot(stack), time.monotonic()
                scheduled = asyncio.run(drive(f"{stack.url}/webhook", rate, duration, users))
                lat = [
                    x * 1000 - quiet_ms for x in collect(sandbox, scheduled, timeout=60 + duration)
                ]
                cpu = cpu_report(
                    cpu_before, cpu_snapshot(stack), time.monotonic() - t0, len(scheduled)
                )
                got = len(lat)
                print(
                    f"  {rate:6.0f}/s: replies {got}/{len(scheduled)}  beyond debounce: "
                    f"p50={pct(lat, 50):.0f}ms p95={pct(lat, 95):.0f}ms p99={pct(lat, 99):.0f}ms",
                    flush=True,
                )
                print(f"          {cpu}", flush=True)
        finally:
            stack.stop()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--brokers", default="tansu")
    ap.add_argument("--rates", default="100,250,500")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--quiet-ms", default="0", help="comma list of DEBOUNCE_QUIET_MS values")
    ap.add_argument("--users", type=int, default=5000)
    args = ap.parse_args()
    for kind in args.brokers.split(","):
        for q in args.quiet_ms.split(","):
            run(kind, [float(r) for r in args.rates.split(",")], args.duration, int(q), args.users)


if __name__ == "__main__":
    main()
