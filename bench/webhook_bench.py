"""Webhook benchmark: signed bodies at fixed rates and at the maximum rate.

Starts the stack the way `make run` does (`zapstream up`, one per broker), or with
--alone only the broker and the webhook API (`zapstream api`: what the webhook itself
sustains), unless --url points at a running one. Latency is counted from each
request's *scheduled* send time (open loop), so a stalled server cannot hide its
queueing delay. The 200 includes the broker's acknowledgement (acks=all). Each run
also prints the CPU each process spent per accepted webhook.

    .venv/bin/python bench/webhook_bench.py --brokers tansu,kafka --rates 250,500,1000 --duration 10
    .venv/bin/python bench/webhook_bench.py --alone --brokers tansu,kafka --rates 500,1000,2000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.chain_stack import cpu_seconds
from bench.lean_http import LeanPool
from ingest.samples import dumps, text_webhook
from ingest.signature import sign
from schemas.topics import all_topic_specs
from tests.support.stack import APP_SECRET, Stack
from zapstream.brokers.factory import make_broker
from zapstream.brokers.process import free_port, stop_process
from zapstream.kafka_admin import ensure_topics_sync
from zapstream.settings import Settings

Pids = dict[str, int]


def cpu_of(pids: Pids) -> dict[str, float]:
    out = {}
    for name, pid in pids.items():
        # a process that is gone: OSError from /proc, psutil's NoSuchProcess
        with contextlib.suppress(Exception):
            out[name] = cpu_seconds(pid)
    return out


def cpu_line(before: dict[str, float], after: dict[str, float], accepted: int) -> str:
    if not accepted:
        return ""
    parts = [
        f"{name} {(after[name] - before[name]) * 1000 / accepted:.2f}"
        for name in after
        if name in before
    ]
    total = (
        sum(after[n] - before[n] for n in after if n in before and n != "generator")
        * 1000
        / accepted
    )
    return (
        f"    CPU ms per accepted webhook: {total:.2f} without the generator ({', '.join(parts)})"
    )


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def bodies(n: int) -> list[tuple[bytes, str]]:
    out = []
    for i in range(n):
        body = dumps(text_webhook(f"benchmark message {i}", wa_id=f"55119{i % 5000:08d}"))
        out.append((body, sign(body, APP_SECRET)))
    return out


CLIENT = "lean"
"""`--client`: the generator's HTTP client, "lean" (bench/lean_http.py) or "aiohttp"."""


class Poster:
    """POSTs signed bodies to the webhook through the generator's client."""

    def __init__(self, url: str, limit: int) -> None:
        self.url = url
        self.session: aiohttp.ClientSession | None = None
        self.pool: LeanPool | None = None
        if CLIENT == "lean":
            self.pool, self.path = LeanPool.for_url(url, limit=limit)
        else:
            self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit))

    async def post(self, body: bytes, sig: str) -> int:
        headers = {"content-type": "application/json", "x-hub-signature-256": sig}
        if self.pool is not None:
            return await self.pool.post(self.path, body, headers)
        assert self.session is not None
        async with self.session.post(self.url, data=body, headers=headers) as r:
            await r.read()
            return r.status

    async def aclose(self) -> None:
        if self.pool is not None:
            self.pool.close()
        if self.session is not None:
            await self.session.close()


async def fixed_rate(url: str, rate: float, duration: float) -> dict[str, float]:
    n = int(rate * duration)
    payloads = bodies(n)
    latencies: list[float] = []
    lags: list[float] = []
    """How late the generator started each request: its own share of the latency."""
    errors = 0
    poster = Poster(url, 256)
    # the generator's own collector pauses would be counted as the server's latency
    gc.collect()
    gc.disable()
    try:

        async def one(i: int, scheduled: float) -> None:
            nonlocal errors
            lags.append(time.perf_counter() - scheduled)
            status = await poster.post(*payloads[i])
            if status == 200:
                latencies.append(time.perf_counter() - scheduled)
            else:
                errors += 1

        tasks = []
        t0 = time.perf_counter() + 0.05
        for i in range(n):
            scheduled = t0 + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, scheduled)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
    finally:
        gc.enable()
        await poster.aclose()
    result = summary(f"{rate:.0f}/s", latencies, errors, elapsed)
    lags.sort()
    print(
        f"    the generator started requests late by p50 {pct(lags, 50) * 1000:.1f} "
        f"p99 {pct(lags, 99) * 1000:.1f} max {lags[-1] * 1000:.1f} ms (counted in the latency)",
        flush=True,
    )
    return result


async def max_rate(url: str, duration: float, concurrency: int = 64) -> dict[str, float]:
    payloads = bodies(20_000)
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + duration
    poster = Poster(url, concurrency)
    try:

        async def loop(k: int) -> None:
            nonlocal errors
            i = k
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                status = await poster.post(*payloads[i % len(payloads)])
                if status == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1
                i += concurrency

        t0 = time.perf_counter()
        await asyncio.gather(*(loop(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - t0
    finally:
        await poster.aclose()
    return summary(f"max(c={concurrency})", latencies, errors, elapsed)


def summary(label: str, lat: list[float], errors: int, elapsed: float) -> dict[str, float]:
    ms = [x * 1000 for x in lat]
    row = {
        "ok": len(lat),
        "errors": errors,
        "throughput": len(lat) / elapsed,
        "p50": pct(ms, 50),
        "p95": pct(ms, 95),
        "p99": pct(ms, 99),
        "mean": statistics.fmean(ms) if ms else float("nan"),
    }
    print(
        f"  {label:>12}: {row['throughput']:8.0f} req/s ok={row['ok']} err={errors} "
        f"p50={row['p50']:.1f}ms p95={row['p95']:.1f}ms p99={row['p99']:.1f}ms",
        flush=True,
    )
    return row


async def run_all(
    url: str, rates: list[float], duration: float, include_max: bool, pids: Pids | None = None
) -> None:
    await fixed_rate(url, 50, 2)  # warm-up: connections, metadata, JIT of the broker

    # the generator's own CPU too: it shares the machine with what it measures
    counted = {**(pids or {}), "generator": os.getpid()}

    async def measured(run: Awaitable[dict[str, float]]) -> None:
        before = cpu_of(counted)
        row = await run
        line = cpu_line(before, cpu_of(counted), int(row["ok"]))
        if line:
            print(line, flush=True)

    for rate in rates:
        await measured(fixed_rate(url, rate, duration))
        await asyncio.sleep(1)
    if include_max:
        await measured(max_rate(url, duration))


def ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def broker_and_api(kind: str, tmp: Path) -> Iterator[tuple[str, Pids]]:
    """The embedded broker with the stack's topics and one `zapstream api` before it,
    nothing else: what the webhook alone sustains."""
    broker = make_broker(kind, tmp / "data")
    bootstrap = broker.start()
    api: subprocess.Popen[bytes] | None = None
    try:
        settings = Settings(_env_file=None, kafka_bootstrap_servers=bootstrap)  # type: ignore[call-arg]
        ensure_topics_sync(bootstrap, all_topic_specs(settings), 1)
        port = free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("KAFKA_", "WHATSAPP_", "WEBHOOK_", "LOG_"))
        }
        env.update(
            KAFKA_BOOTSTRAP_SERVERS=bootstrap,
            WEBHOOK_PORT=str(port),
            WHATSAPP_APP_SECRET=APP_SECRET,
            DATA_DIR=str(tmp / "data"),
            LOG_LEVEL="WARNING",
        )
        api = subprocess.Popen(
            [sys.executable, "-m", "zapstream.cli", "api"], env=env, stdin=subprocess.DEVNULL
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while not ready(f"{url}/readyz"):  # listening, and its producer connected
            if api.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the webhook API did not start (exit {api.poll()})")
            time.sleep(0.1)
        assert broker.pid is not None
        yield url, {"api": api.pid, "broker": broker.pid}
    finally:
        if api is not None:
            stop_process(api, timeout=15)
        broker.stop()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--brokers", default="tansu", help="comma list: tansu,kafka")
    ap.add_argument("--rates", default="250,500,1000", help="fixed rates to run, req/s")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--no-max", action="store_true")
    ap.add_argument(
        "--alone", action="store_true", help="only the broker and the webhook API, no stack"
    )
    ap.add_argument(
        "--url", help="benchmark a running webhook instead (its secret must be the bench's)"
    )
    ap.add_argument(
        "--client",
        choices=("lean", "aiohttp"),
        default="lean",
        help="the generator's HTTP client (lean: bench/lean_http.py, ~1/10 of aiohttp's CPU)",
    )
    args = ap.parse_args()
    global CLIENT
    CLIENT = args.client
    rates = [float(r) for r in args.rates.split(",") if r]
    if args.url:
        asyncio.run(run_all(args.url, rates, args.duration, not args.no_max))
        return
    for kind in args.brokers.split(","):
        if args.alone:
            with (
                tempfile.TemporaryDirectory() as tmp,
                broker_and_api(kind, Path(tmp)) as (url, pids),
            ):
                print(f"broker={kind} (the webhook API and the broker alone)", flush=True)
                asyncio.run(run_all(f"{url}/webhook", rates, args.duration, not args.no_max, pids))
            continue
        with tempfile.TemporaryDirectory() as tmp:
            stack = Stack(Path(tmp), broker=kind).start()  # the default log level, as users run it
            try:
                print(
                    f"broker={kind} (webhook API + sink + worker + broker on this machine)",
                    flush=True,
                )
                pids = {
                    name: pid
                    for name, pid in stack.child_pids().items()
                    if name in {"api", "worker", "sink", "sandbox", "tansu", "kafka"}
                }
                asyncio.run(
                    run_all(f"{stack.url}/webhook", rates, args.duration, not args.no_max, pids)
                )
            finally:
                stack.stop()


if __name__ == "__main__":
    main()
